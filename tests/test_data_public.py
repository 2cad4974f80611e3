"""The public benchmarks end to end: splits, weak labels, converted files, bad input.

Every fixture is written by ``vadnb.data.write_sample`` in the benchmark's exact public
layout (or built here for a bad-input case), and checked against labels computed by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from vadnb import data
from vadnb.data import AnnotationError

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "REFERENCE.md"


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("samples")
    for name in data.SAMPLE_LAYOUTS:
        data.write_sample(name, root / name)
    return root


def _labels(n: int, *spans: tuple[int, int]) -> np.ndarray:
    """0/1 labels with inclusive (start, end) spans set."""
    y = np.zeros(n, np.uint8)
    for s, e in spans:
        y[s:e + 1] = 1
    return y


# --------------------------------------------------------------------------- UCF-Crime


def test_ucf_crime_train_val_test(samples):
    bench = data.load_ucf_crime(samples / "ucf_crime")
    table = bench.videos.set_index("name")
    assert sorted(table.index[table["split"] == "test"]) == [
        "Arson011_x264", "Normal_Videos_003_x264", "Stealing058_x264"]
    assert set(table.loc[["Arson001_x264", "Stealing002_x264"], "label"]) == {"Arson", "Stealing"}
    # class-stratified 0.1: the one label with two videos (Normal) gives one to val
    assert list(table.index[table["split"] == "val"]) in (["Normal_Videos001_x264"],
                                                          ["Normal_Videos002_x264"])
    np.testing.assert_array_equal(bench.frame_labels("Arson011_x264"),
                                  _labels(48, (10, 20), (30, 40)))
    # anomalous training videos: a video-level label only, said clearly
    assert not bench.has_frame_labels("Arson001_x264") and bench.has_frame_labels("Normal_Videos001_x264")
    with pytest.raises(ValueError, match="Arson001_x264 .*video-level label only"):
        bench.frame_labels("Arson001_x264")
    assert not bench.frame_labels("Normal_Videos001_x264").any()
    assert set(bench.all_frame_labels("train", skip_video_level=True)) == set(
        table.index[table["split"] == "train"]) - {"Arson001_x264", "Stealing002_x264"}
    summary = bench.summary().set_index("split")
    assert summary.loc["test", "anomalous_frames"] == 11 + 11 + 9
    assert summary.loc["train", "video_level_only"] == 2


def test_ucf_validation_split_is_reproducible_and_accepts_a_list(samples, tmp_path):
    a = data.load_ucf_crime(samples / "ucf_crime", val=0.5, seed=3).videos
    b = data.load_ucf_crime(samples / "ucf_crime", val=0.5, seed=3).videos
    assert a["split"].tolist() == b["split"].tolist()
    given = tmp_path / "val.txt"
    given.write_text("Stealing/Stealing002_x264.mp4\n")
    c = data.load_ucf_crime(samples / "ucf_crime", val=given).videos.set_index("name")
    assert list(c.index[c["split"] == "val"]) == ["Stealing002_x264"]
    given.write_text("Arson/Arson011_x264.mp4\n")  # a test video is not a training video
    with pytest.raises(AnnotationError, match="not training videos"):
        data.load_ucf_crime(samples / "ucf_crime", val=given)
    none = data.load_ucf_crime(samples / "ucf_crime", val=None).videos
    assert "val" not in set(none["split"])


def test_split_validation_is_stratified():
    import pandas as pd

    table = pd.DataFrame({"name": [f"n{i}" for i in range(20)] + [f"a{i}" for i in range(10)],
                          "label": ["Normal"] * 20 + ["Arson"] * 10})
    chosen = data.split_validation(table, 0.1, seed=0)
    assert len({c for c in chosen if c.startswith("n")}) == 2
    assert len({c for c in chosen if c.startswith("a")}) == 1
    assert data.split_validation(table, 0.1, seed=0) == chosen
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        data.split_validation(table, 1.5)


def test_ucf_annotation_with_a_byte_order_mark_keeps_its_first_video(samples, tmp_path):
    import shutil

    root = tmp_path / "ucf"
    shutil.copytree(samples / "ucf_crime", root)
    ann = root / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    ann.write_bytes(b"\xef\xbb\xbf" + ann.read_bytes())
    assert "Arson011_x264" in set(data.load_ucf_crime(root).videos["name"])
    ann.write_bytes(ann.read_bytes()[3:].decode().encode("utf-16"))  # UTF-16 with its BOM
    assert "Arson011_x264" in set(data.load_ucf_crime(root).videos["name"])


def test_non_utf8_annotation_is_a_clear_error(tmp_path):
    path = tmp_path / "ann.txt"
    path.write_bytes("Caf\u00e9_x264.mp4  Arson  1  2  -1  -1\n".encode("latin-1"))
    with pytest.raises(AnnotationError, match=r"ann.txt: not UTF-8 text \(byte 0xe9 at offset 3\).*iconv"):
        data.parse_ucf_annotations(path)
    path.write_bytes("x.mp4 Arson 1 2 -1 -1\n".encode("utf-16-le"))  # no BOM
    with pytest.raises(AnnotationError, match="NUL bytes: UTF-16"):
        data.parse_ucf_annotations(path)


# --------------------------------------------------------------------------- XD-Violence

FIGHT = "Bad.Boys.1995__#01-11-55_01-12-40_label_B1-0-0"
BLAST = "Black.Hawk.Down.2001__#00-27-00_00-27-40_label_G-B2-0"


def test_xd_violence_train_and_test_by_folder_with_every_class_code(samples):
    bench = data.load_xd_violence(samples / "xd_violence")
    table = bench.videos.set_index("name")
    assert table["split"].value_counts().to_dict() == {"test": 3, "train": 2}
    assert table.loc[BLAST, "label"] == "Explosion" and table.loc[BLAST, "labels"] == "Explosion|Shooting"
    np.testing.assert_array_equal(bench.frame_labels(FIGHT), _labels(40, (4, 12), (20, 30)))
    riot = "v=2ncA53czMOg__#00-02-40_00-03-55_label_B4-0-0"
    assert table.loc[riot, "split"] == "train" and table.loc[riot, "is_anomalous"]
    with pytest.raises(ValueError, match="video-level label only"):
        bench.frame_labels(riot)
    assert data.xd_codes(BLAST) == ["G", "B2"]


def test_xd_violence_rejects_intervals_on_a_normal_video(samples, tmp_path):
    import shutil

    root = tmp_path / "xd"
    shutil.copytree(samples / "xd_violence", root)
    with (root / "annotations.txt").open("a") as f:
        f.write("v=wVey5JfRtmE__#1_label_A.mp4 3 5\n")
    with pytest.raises(AnnotationError, match="line 3: .*label_A.*normal video .*cannot have"):
        data.load_xd_violence(root)


# --------------------------------------------------------------------------- ShanghaiTech


def test_shanghaitech_one_class_and_weak_split(samples):
    root = samples / "shanghaitech"
    one = data.load_shanghaitech(root).videos.set_index("name")
    assert one["split"].to_dict() == {"01_0014": "test", "01_0015": "test", "02_0128": "test",
                                      "01_001": "train", "02_001": "train"}
    weak = data.load_shanghaitech(root, split="weak", train_list=root / "SH_Train_new.txt",
                                  test_list=root / "SH_Test_NEW.txt")
    table = weak.videos.set_index("name")
    assert table["split"].to_dict() == {"01_001": "train", "02_0128": "train", "01_0014": "test",
                                        "01_0015": "test", "02_001": "test"}
    assert not weak.has_frame_labels("02_0128")  # its mask exists but weak training hides it
    np.testing.assert_array_equal(weak.frame_labels("01_0014"), _labels(40, (12, 27)))
    assert not weak.frame_labels("02_001").any()


def test_shanghaitech_weak_split_with_anomalyclip_class_ids(samples, tmp_path):
    root = samples / "shanghaitech"
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("shanghaitech/01_001 0 23 8\nshanghaitech/02_0128 0 35 3\n")
    test.write_text("shanghaitech/01_0014 0 39 0\nshanghaitech/01_0015 0 31 8\n")
    weak = data.load_shanghaitech(root, split="weak", train_list=train, test_list=test)
    assert weak.video_classes() == {"01_001": "Normal", "02_0128": "fall", "01_0014": "car",
                                    "01_0015": "Normal"}
    assert weak.classes == ["car", "fall"]
    train.write_text("shanghaitech/01_001 0 23 18\n")
    with pytest.raises(AnnotationError, match="line 1: class id 18 is not one of 0..17"):
        data.load_shanghaitech(root, split="weak", train_list=train, test_list=test)
    train.write_text("shanghaitech/01_001 23 0 8\n")  # the same row checks as LAVAD's lists
    with pytest.raises(AnnotationError, match="line 1: frames 23..0 are not a start <= end range"):
        data.load_shanghaitech(root, split="weak", train_list=train, test_list=test)


def test_mask_of_the_wrong_length_is_refused(samples, tmp_path):
    import shutil

    root = tmp_path / "sht"
    shutil.copytree(samples / "shanghaitech", root)
    np.save(root / "testing" / "test_frame_mask" / "01_0014.npy", np.zeros(39, np.uint8))
    with pytest.raises(AnnotationError, match=r"01_0014.npy has 39 frame labels but .* has 40 frames \(images in the frame folder"):
        data.load_shanghaitech(root)
    # a video file (not a frame folder) is checked when its labels are first read
    avenue = tmp_path / "avenue"
    shutil.copytree(samples / "avenue", avenue)
    from scipy.io import savemat

    vol = np.empty((1, 29), object)
    for f in range(29):
        vol[0, f] = np.zeros((4, 4), np.uint8)
    savemat(avenue / "ground_truth_demo" / "testing_label_mask" / "1_label.mat", {"volLabel": vol})
    bench = data.load_avenue(avenue)
    with pytest.raises(AnnotationError, match=r"01 has 29 frame labels but .* has 30 frames \(decoded from the video"):
        bench.frame_labels("01")


# --------------------------------------------------------------------------- Avenue, UBnormal


def test_avenue_training_videos_and_fractional_frames(samples, tmp_path):
    bench = data.load_avenue(samples / "avenue")
    assert bench.videos.set_index("name").loc["train_01", "split"] == "train"
    np.testing.assert_array_equal(bench.frame_labels("01"), _labels(30, (8, 19)))
    from scipy.io import savemat

    gt = np.empty((1, 2), object)
    gt[0, 0] = np.array([[1.5], [4.0]])
    gt[0, 1] = np.zeros((0, 0))
    savemat(tmp_path / "gt.mat", {"gt": gt})
    with pytest.raises(AnnotationError, match="gt entry 1 holds non-integer frame numbers \\[1.5\\]"):
        data.load_avenue(samples / "avenue", annotations=tmp_path / "gt.mat")


def test_ubnormal_sample_has_three_splits(samples):
    bench = data.load_ubnormal(samples / "ubnormal")
    assert bench.videos["split"].value_counts().to_dict() == {"train": 2, "test": 2, "val": 1}
    np.testing.assert_array_equal(bench.frame_labels("abnormal_scene_2_scenario_1"),
                                  _labels(32, (6, 14), (20, 25)))


# --------------------------------------------------------------------------- LAVAD's and VERA's files


def test_lavad_and_vera_files_give_the_original_labels(samples):
    ucf = data.load_ucf_crime(samples / "ucf_crime").subset("test")
    ann = samples / "lavad_files" / "annotations"
    lavad = data.load_lavad_annotations(ann / "test.txt",
                                        ann / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
                                        frames_root=samples / "lavad_files" / "frames")
    vera = data.load_vera_annotations(samples / "vera_files" / "Data" / "UCF_Eval.json",
                                      videos_root=samples / "vera_files")
    for bench in (lavad, vera):
        assert set(bench.videos["split"]) == {"test"}
        assert bench.video_classes() == {"Arson011_x264": "Arson", "Normal_Videos_003_x264": "Normal"}
        for name in bench.videos["name"]:
            np.testing.assert_array_equal(bench.frame_labels(name), ucf.frame_labels(name))
            assert Path(bench.path(name)).is_dir()
    assert lavad.num_frames("Arson011_x264") == 48  # from the list, no decoding


def test_lavad_list_start_offset_and_bad_rows(tmp_path):
    temporal = tmp_path / "temporal.txt"
    temporal.write_text("Arson011_x264.mp4  Arson  10  20  -1  -1\n")
    listing = tmp_path / "test.txt"
    listing.write_text("Arson/Arson011_x264 5 30 2\n")  # the video's frames start at source frame 5
    bench = data.load_lavad_annotations(listing, temporal)
    np.testing.assert_array_equal(bench.frame_labels("Arson011_x264"), _labels(26, (5, 15)))
    listing.write_text("Arson/Arson011_x264 5 30 14\n")
    with pytest.raises(AnnotationError, match="line 1: class id 14 is not one of 0..13"):
        data.load_lavad_annotations(listing, temporal)
    listing.write_text("Arson/Arson011_x264 5 30\n")
    with pytest.raises(AnnotationError, match="line 1: expected '<frames folder>"):
        data.load_lavad_annotations(listing, temporal)


def test_vera_files_of_each_kind(tmp_path):
    train = tmp_path / "UCF_Instruct_train.json"
    train.write_text(json.dumps([
        {"video": "frames/RoadAccidents/RoadAccidents075_x264.mp4", "video_label": "328",
         "length": 328, "QA": [{"q": "?", "a": "Yes, there exist anomalies from 3.2s to 6.6s."}]},
        {"video": "frames/Training_Normal_Videos_Anomaly/Normal_Videos267_x264.mp4",
         "video_label": "3276", "length": 3276, "QA": [{"q": "?", "a": "No, there are no anomalies."}]}]))
    bench = data.load_vera_annotations(train)
    assert set(bench.videos["split"]) == {"train"}
    assert bench.video_classes() == {"RoadAccidents075_x264": "RoadAccidents",
                                     "Normal_Videos267_x264": "Normal"}
    assert not bench.has_frame_labels("RoadAccidents075_x264")
    xd = tmp_path / "xd_val.json"
    xd.write_text(json.dumps([{"video_name": "v=DSG-zxGRkJw__#1_label_A", "path": "/nowhere",
                               "video_label": 0, "length": 3529},
                              {"video_name": BLAST, "path": "/nowhere", "video_label": 1, "length": 90}]))
    bench = data.load_vera_annotations(xd, dataset="xd_violence")
    assert set(bench.videos["split"]) == {"val"}
    assert bench.videos.set_index("name").loc[BLAST, "labels"] == "Explosion|Shooting"
    xd.write_text(json.dumps([{"video_name": BLAST, "video_label": 0, "length": 90}]))
    with pytest.raises(AnnotationError, match="entry 0: .* normal in the file but its name/folder says Explosion"):
        data.load_vera_annotations(xd, dataset="xd_violence")
    xd.write_text("{not json")
    with pytest.raises(AnnotationError, match="xd_val.json: not JSON"):
        data.load_vera_annotations(xd, dataset="xd_violence")


# --------------------------------------------------------------------------- the protocol table


def test_protocol_table_holds_the_reference_numbers():
    table = data.protocol_table()
    assert set(table["method"]) == {"lavad", "anomalyclip", "vera", "anyanomaly", "classical",
                                    "flashback"}
    assert set(table["ap_variant"]) <= {"—", "step", "trapezoid"}
    reported = {round(float(v), 2) for v in table["reported"].dropna()}
    if REFERENCE.exists():  # CI lays ../shared beside the checkout: every headline number is here
        text = REFERENCE.read_text()
        headlines = [re.sub(r"\([^)]*\d[^)]*\)", "", line)  # drop "(baseline 78.01)"
                     for line in text.splitlines() if line.startswith("Headline")]
        numbers = {round(float(n), 2) for line in headlines
                   for n in re.findall(r"\b\d{2}\.\d{1,2}\b", line)}
        assert numbers and numbers <= reported, sorted(numbers - reported)
    with pytest.raises(ValueError, match="no protocol rows for method 'nope'"):
        data.protocol_table("nope")
    assert len(data.protocol_table("lavad")) == 3
    # Flashback's headline numbers (arXiv 2505.15205, ../shared/FLASHBACK.md section 3)
    flashback = data.protocol_table("flashback").set_index("benchmark")["reported"]
    assert flashback.to_dict() == {"UCF-Crime": 87.3, "XD-Violence": 75.1}


def test_counting_a_frame_folder_opens_no_image_and_agrees_with_probe(samples, monkeypatch):
    """Loading ShanghaiTech checks every mask against its folder: that must not read frames."""
    import vadnb.cache
    from vadnb.data import benchmarks
    from vadnb.video import probe

    folder = samples / "shanghaitech" / "testing" / "frames" / "01_0014"
    expected = probe(folder).num_frames
    benchmarks._FRAME_COUNTS.clear()

    def no_hashing(*args, **kwargs):
        raise AssertionError("counting frames hashed the folder")

    monkeypatch.setattr(vadnb.cache, "file_digest", no_hashing)
    assert data.count_frames(folder) == expected == 40
    data.load_shanghaitech(samples / "shanghaitech")  # every test folder is counted this way
