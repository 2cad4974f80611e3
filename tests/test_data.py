"""vadnb.data: the committed campus clips and the public-benchmark parsers."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from vadnb.data import (
    AnnotationError,
    intervals_to_labels,
    load_avenue,
    load_campus,
    load_shanghaitech,
    load_ubnormal,
    load_ucf_crime,
    load_xd_violence,
    parse_ucf_annotations,
)
from vadnb.video import probe

REPO = Path(__file__).resolve().parents[1]
CAMPUS = REPO / "data" / "campus"
CLASSES = {"Vehicle", "Running", "Fallen", "Object left"}


def write_video(path: Path, num_frames: int, fps: int = 10) -> Path:
    """A tiny real H.264 file with ``num_frames`` frames (a moving bright square)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(num_frames):
            image = np.zeros((32, 32, 3), np.uint8)
            image[8:16, i % 24:i % 24 + 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


# --------------------------------------------------------------------------- campus


@pytest.fixture(scope="module")
def campus():
    return load_campus(CAMPUS)


def test_campus_checksums_match_the_committed_clips():
    load_campus(CAMPUS, verify=True)  # raises if any clip differs from SHA256SUMS


def test_campus_checksum_mismatch_is_reported(tmp_path):
    shutil.copytree(CAMPUS, tmp_path / "campus")
    clip = tmp_path / "campus" / "videos" / "test_normal_01.mp4"
    data = bytearray(clip.read_bytes())
    data[-10] ^= 0xFF
    clip.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="test_normal_01.mp4 \\(content differs\\)"):
        load_campus(tmp_path / "campus", verify=True)


def test_campus_annotations_are_ucf_style_and_match_the_table(campus):
    lines = (CAMPUS / "annotations.txt").read_text().splitlines()
    assert len(lines) == len(campus.videos) == 16
    for line in lines:
        name, label, s1, e1, s2, e2 = line.split()
        labels = campus.frame_labels(Path(name).stem)
        expected = np.zeros(len(labels), np.uint8)
        for s, e in ((int(s1), int(e1)), (int(s2), int(e2))):
            if s != -1:
                expected[s:e + 1] = 1
        np.testing.assert_array_equal(labels, expected)
        row = campus.videos.set_index("name").loc[Path(name).stem]
        assert row["label"] == label.replace("_", " ")
        assert row["is_anomalous"] == (label != "Normal") == bool(labels.any())


def test_campus_frame_counts_equal_label_lengths(campus):
    for row in campus.videos.itertuples():
        info = probe(row.path)  # decodes every frame
        assert info.num_frames == row.num_frames == len(campus.frame_labels(row.name)), row.name
        assert 100 <= info.num_frames <= 200 and round(info.fps) == 10
        assert (info.width, info.height) == (384, 288)


def test_campus_anomalies_are_inner_intervals(campus):
    for name, labels in campus.all_frame_labels().items():
        if campus.video_classes()[name] == "Normal":
            assert labels.sum() == 0
        else:
            first = int(np.argmax(labels))
            assert first >= 20, f"{name}: needs normal frames before the anomaly"
            assert 0.1 < labels.mean() < 0.8, name


def test_campus_split_composition(campus):
    assert set(campus.classes) == CLASSES
    for split, min_normal in (("train", 2), ("val", 1), ("test", 2)):
        part = campus.subset(split)
        labels = part.videos["label"]
        assert (labels == "Normal").sum() >= min_normal
        assert set(part.videos["split"]) == {split}
        if split != "val":
            assert set(labels) - {"Normal"} == CLASSES, split
        else:
            assert part.videos["is_anomalous"].any()
    assert set(campus.all_frame_labels("val")) == set(campus.subset("val").videos["name"])
    with pytest.raises(ValueError, match="no split 'dev'"):
        campus.subset("dev")


def test_campus_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VADNB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make_campus.py"):
        load_campus()


# --------------------------------------------------------------------------- UCF-Crime


UCF_LINES = [
    "Arson011_x264.mp4  Arson  3  5  8  9",
    "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1",
    "Stealing058_x264.mp4  Stealing  0  2  -1  -1",
]


def make_ucf(root: Path) -> Path:
    write_video(root / "Anomaly-Videos-Part-2" / "Arson" / "Arson011_x264.mp4", 12)
    write_video(root / "Testing_Normal_Videos_Anomaly" / "Normal_Videos_003_x264.mp4", 6)
    write_video(root / "Anomaly-Videos-Part-4" / "Stealing" / "Stealing058_x264.mp4", 4)
    (root / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt").write_text("\n".join(UCF_LINES) + "\n")
    return root


def test_ucf_crime_parser(tmp_path):
    bench = load_ucf_crime(make_ucf(tmp_path))
    table = bench.videos.set_index("name")
    assert table.loc["Arson011_x264", "label"] == "Arson"
    assert table.loc["Arson011_x264", "num_frames"] == 12
    assert table["fps"].eq(30.0).all() and set(table["split"]) == {"test"}
    np.testing.assert_array_equal(bench.frame_labels("Arson011_x264"), [0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(bench.frame_labels("Normal_Videos_003_x264"), np.zeros(6))
    np.testing.assert_array_equal(bench.frame_labels("Stealing058_x264"), [1, 1, 1, 0])
    assert bench.classes == ["Arson", "Stealing"]
    assert bench.video_classes()["Normal_Videos_003_x264"] == "Normal"


@pytest.mark.parametrize("line, message", [
    ("Arson011_x264.mp4  Arson  3  5  8", "line 2: expected .*six fields.*got 5 fields"),
    ("Arson011_x264.mp4  Arson  3  x  -1  -1", "line 2: .*non-integer"),
    ("Arson011_x264.mp4  Arson  9  5  -1  -1", "line 2: .*\\(9, 5\\) is not a start <= end"),
    ("Arson011_x264  Arson  3  5  -1  -1", "line 2: .*not a video file name"),
    ("Normal_Videos_1.mp4  Normal  3  5  -1  -1", "line 2: a 'Normal' video cannot"),
])
def test_ucf_bad_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "ann.txt"
    path.write_text(UCF_LINES[1] + "\n" + line + "\n")
    with pytest.raises(AnnotationError, match=message) as err:
        parse_ucf_annotations(path)
    assert str(path) in str(err.value)


def test_ucf_missing_videos_warn_and_are_left_out(tmp_path):
    make_ucf(tmp_path)
    (tmp_path / "Anomaly-Videos-Part-4" / "Stealing" / "Stealing058_x264.mp4").unlink()
    with pytest.warns(UserWarning, match="1 listed UCF-Crime videos not found"):
        bench = load_ucf_crime(tmp_path)
    assert sorted(bench.videos["name"]) == ["Arson011_x264", "Normal_Videos_003_x264"]


# --------------------------------------------------------------------------- XD-Violence

XD_FIGHT = "Bad.Boys.1995__#01-11-55_01-12-40_label_B1-0-0"
XD_NORMAL = "v=wVey5JfRtmE__#1_label_A"
XD_BLAST = "Black.Hawk.Down.2001__#00-27-00_00-27-40_label_G-B2-0"


def make_xd(root: Path, lines: list[str]) -> Path:
    for name, n in ((XD_FIGHT, 10), (XD_NORMAL, 5), (XD_BLAST, 8)):
        write_video(root / "videos" / f"{name}.mp4", n, fps=24)
    (root / "annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def test_xd_violence_parser(tmp_path):
    bench = load_xd_violence(make_xd(tmp_path, [f"{XD_FIGHT} 2 3 6 7", f"{XD_BLAST}.mp4 0 4"]))
    classes = bench.video_classes()
    assert classes == {XD_FIGHT: "Fighting", XD_NORMAL: "Normal", XD_BLAST: "Explosion"}
    np.testing.assert_array_equal(bench.frame_labels(XD_FIGHT), [0, 0, 1, 1, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(bench.frame_labels(XD_BLAST), [1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(bench.frame_labels(XD_NORMAL), np.zeros(5))
    assert bench.videos["fps"].eq(24.0).all()
    assert "Car accident" in bench.classes


def test_xd_violence_bad_formats(tmp_path):
    make_xd(tmp_path, [f"{XD_FIGHT} 2 3 6", f"{XD_BLAST} 0 4"])
    with pytest.raises(AnnotationError, match="annotations.txt, line 1: .*odd number"):
        load_xd_violence(tmp_path)
    (tmp_path / "annotations.txt").write_text(f"{XD_FIGHT} 2 3\n")
    with pytest.raises(AnnotationError, match=f"no line for the violent test video {XD_BLAST}"):
        load_xd_violence(tmp_path)


# --------------------------------------------------------------------------- ShanghaiTech


def test_shanghaitech_parser(tmp_path):
    masks = tmp_path / "testing" / "test_frame_mask"
    masks.mkdir(parents=True)
    np.save(masks / "01_0014.npy", np.array([0, 0, 1, 1, 0]))
    np.save(masks / "01_0015.npy", np.zeros(3, np.int64))
    bench = load_shanghaitech(tmp_path)
    table = bench.videos.set_index("name")
    assert table.loc["01_0014", "num_frames"] == 5 and table.loc["01_0014", "label"] == "Abnormal"
    assert table.loc["01_0015", "label"] == "Normal"
    np.testing.assert_array_equal(bench.frame_labels("01_0014"), [0, 0, 1, 1, 0])
    np.save(masks / "01_0016.npy", np.ones((2, 3)))
    with pytest.raises(AnnotationError, match="01_0016.npy: expected a 1-D array of 0/1"):
        load_shanghaitech(tmp_path)


# --------------------------------------------------------------------------- Avenue


def test_avenue_parser_pixel_masks_and_intervals(tmp_path):
    from scipy.io import savemat

    for n in ("01", "02"):
        write_video(tmp_path / "testing_videos" / f"{n}.avi", 6)
    mask_dir = tmp_path / "ground_truth_demo" / "testing_label_mask"
    mask_dir.mkdir(parents=True)
    for i, anomalous in ((1, {2, 3}), (2, set())):
        vol = np.empty((1, 6), object)
        for f in range(6):
            vol[0, f] = np.zeros((4, 4), np.uint8)
            if f in anomalous:
                vol[0, f][1, 2] = 1
        savemat(mask_dir / f"{i}_label.mat", {"volLabel": vol})
    bench = load_avenue(tmp_path)
    np.testing.assert_array_equal(bench.frame_labels("01"), [0, 0, 1, 1, 0, 0])
    assert bench.video_classes() == {"01": "Abnormal", "02": "Normal"}

    gt = np.empty((1, 2), object)
    gt[0, 0] = np.array([[1, 5], [2, 6]])  # 1-based [start; end]: frames 1-2 and 5-6
    gt[0, 1] = np.zeros((0, 0))
    savemat(tmp_path / "avenue.mat", {"gt": gt})
    bench = load_avenue(tmp_path, annotations=tmp_path / "avenue.mat")
    np.testing.assert_array_equal(bench.frame_labels("01"), [1, 1, 0, 0, 1, 1])
    assert bench.num_frames("02") == 6 and not bench.frame_labels("02").any()

    savemat(tmp_path / "bad.mat", {"labels": np.ones(3)})
    with pytest.raises(AnnotationError, match="bad.mat: expected a variable 'gt'"):
        load_avenue(tmp_path, annotations=tmp_path / "bad.mat")


# --------------------------------------------------------------------------- UBnormal


def make_ubnormal(root: Path, tracks: str) -> Path:
    names = {"abnormal_test": "abnormal_scene_2_scenario_1", "normal_test": "normal_scene_2_scenario_3",
             "abnormal_training": "", "normal_training": "normal_scene_1_scenario_1",
             "abnormal_validation": "", "normal_validation": ""}
    for key, name in names.items():
        (root / f"{key}_video_names.txt").write_text(name + "\n" if name else "")
    write_video(root / "Scene2" / "abnormal_scene_2_scenario_1.mp4", 10, fps=30)
    write_video(root / "Scene2" / "normal_scene_2_scenario_3.mp4", 4, fps=30)
    write_video(root / "Scene1" / "normal_scene_1_scenario_1.mp4", 3, fps=30)
    ann = root / "Scene2" / "abnormal_scene_2_scenario_1_annotations"
    ann.mkdir(parents=True)
    (ann / "abnormal_scene_2_scenario_1_tracks.txt").write_text(tracks)
    return root


def test_ubnormal_parser(tmp_path):
    bench = load_ubnormal(make_ubnormal(tmp_path, "0,2,3\n1,7,8\n"))
    table = bench.videos.set_index("name")
    assert table.loc["normal_scene_1_scenario_1", "split"] == "train"
    assert table.loc["abnormal_scene_2_scenario_1", "label"] == "Abnormal"
    np.testing.assert_array_equal(bench.frame_labels("abnormal_scene_2_scenario_1"),
                                  [0, 0, 1, 1, 0, 0, 0, 1, 1, 0])
    assert table.loc["normal_scene_2_scenario_3", "num_frames"] == 4


def test_ubnormal_bad_tracks_line(tmp_path):
    make_ubnormal(tmp_path, "0,2,3\n1;7;8\n")
    with pytest.raises(AnnotationError, match="_tracks.txt, line 2: expected 'object_id,start_frame"):
        load_ubnormal(tmp_path)


def test_intervals_to_labels_cuts_at_the_end():
    np.testing.assert_array_equal(intervals_to_labels([(3, 10)], 5), [0, 0, 0, 1, 1])
