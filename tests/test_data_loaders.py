"""The benchmark loaders on inputs that used to give silent wrong results or raw errors.

Each fixture starts from ``vadnb.data.write_sample`` (the benchmark's exact public layout)
and changes one thing a real download can have: a missing video, a stray copy, a backup
file, an interval past the end, a damaged or duplicated annotation line, a byte-order mark.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from vadnb import data
from vadnb.data import AnnotationError
from vadnb.video import write_test_video

XD_FIGHT = "Bad.Boys.1995__#01-11-55_01-12-40_label_B1-0-0"
UCF_TEMPORAL = "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("samples")
    for name in ("ucf_crime", "xd_violence", "avenue", "ubnormal", "lavad_files"):
        data.write_sample(name, root / name)
    return root


def _copy(samples: Path, name: str, tmp_path: Path) -> Path:
    """A private copy of one sample layout, to damage."""
    return Path(shutil.copytree(samples / name, tmp_path / name))


def _labels(n: int, *spans: tuple[int, int]) -> np.ndarray:
    """0/1 labels with inclusive (start, end) spans set."""
    y = np.zeros(n, np.uint8)
    for s, e in spans:
        y[s:e + 1] = 1
    return y


# ------------------------------------------------------------------- videos missing on disk


def test_xd_violence_annotated_video_missing_on_disk_warns_naming_it(samples, tmp_path):
    root = _copy(samples, "xd_violence", tmp_path)
    (root / "test" / f"{XD_FIGHT}.mp4").unlink()
    with pytest.warns(UserWarning, match=re.escape(
            f"1 annotated XD-Violence videos (in annotations.txt) not found under {root}; "
            f"they are left out: {XD_FIGHT}.mp4")):
        bench = data.load_xd_violence(root)
    assert XD_FIGHT not in set(bench.videos["name"])


def test_ubnormal_video_missing_on_disk_is_reported_at_load_time(samples, tmp_path):
    root = _copy(samples, "ubnormal", tmp_path)
    (root / "Scene2" / "abnormal_scene_2_scenario_1.mp4").unlink()
    with pytest.warns(UserWarning, match=re.escape(
            "1 listed UBnormal videos not found under") + ".*Scene2/abnormal_scene_2_scenario_1.mp4"):
        bench = data.load_ubnormal(root)
    assert "abnormal_scene_2_scenario_1" not in set(bench.videos["name"])
    summary = bench.summary().set_index("split")  # used to raise FileNotFoundError here
    assert summary.loc["test", "videos"] == 1 and summary.loc["test", "anomalous"] == 0


# ------------------------------------------------------------------- intervals past the end


def test_ucf_interval_past_the_video_end_warns_naming_video_and_interval(samples, tmp_path):
    root = _copy(samples, "ucf_crime", tmp_path)
    (root / UCF_TEMPORAL).write_text(  # Stealing058 has 32 frames, Arson011 48
        "Arson011_x264.mp4  Arson  10  20  30  60\n"
        "Stealing058_x264.mp4  Stealing  40  50  -1  -1\n"
        "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n")
    bench = data.load_ucf_crime(root)
    with pytest.warns(UserWarning, match="video Stealing058_x264 .*has 32 frames; interval 40..50 "
                      "starts past the last frame 31: it labels nothing; so the Stealing "
                      "video's frames are all normal"):
        labels = bench.frame_labels("Stealing058_x264")
    np.testing.assert_array_equal(labels, np.zeros(32, np.uint8))
    with pytest.warns(UserWarning, match="video Arson011_x264 .*interval 30..60 runs past the last "
                      "frame 47: cut to 30..47"):
        labels = bench.frame_labels("Arson011_x264")
    np.testing.assert_array_equal(labels, _labels(48, (10, 20), (30, 47)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per video; an interval inside the video: silent
        bench.frame_labels("Arson011_x264")
        bench.frame_labels("Normal_Videos_003_x264")


# ------------------------------------------------------------------- UBnormal frame numbers


def test_ubnormal_tracks_read_whole_floats_and_reject_fractions_and_inf(samples, tmp_path):
    root = _copy(samples, "ubnormal", tmp_path)
    name = "abnormal_scene_2_scenario_1"
    tracks = root / "Scene2" / f"{name}_annotations" / f"{name}_tracks.txt"
    tracks.write_text("0.0,6.0,14.0\n1,2e1,25\n")  # whole floats: what np.loadtxt reads too
    np.testing.assert_array_equal(data.load_ubnormal(root).frame_labels(name),
                                  _labels(32, (6, 14), (20, 25)))
    tracks.write_text("0,6,14\n1,20.5,25\n")  # used to be truncated to 20
    with pytest.raises(AnnotationError, match=r"_tracks.txt, line 2: .*'20.5' is not a whole frame"):
        data.load_ubnormal(root)
    tracks.write_text("0,6,inf\n")  # used to raise a raw OverflowError
    with pytest.raises(AnnotationError, match=r"_tracks.txt, line 1: .*'inf' is not a whole frame"):
        data.load_ubnormal(root)


# ------------------------------------------------------------------- LAVAD duplicate lines


def test_lavad_video_annotated_twice_differently_names_both_lines(samples, tmp_path):
    root = _copy(samples, "lavad_files", tmp_path)
    listing, temporal = root / "annotations" / "test.txt", root / "annotations" / UCF_TEMPORAL
    original = temporal.read_text()
    temporal.write_text(original + "Arson011_x264.mp4  Arson  10  20  -1  -1\n")
    with pytest.raises(AnnotationError, match=r"line 3: video Arson011_x264 is annotated again, "
                       r"differently from .*line 1"):
        data.load_lavad_annotations(listing, temporal)
    temporal.write_text(original + "Arson011_x264.mp4   Arson 10 20 30 40\n")  # the same line
    bench = data.load_lavad_annotations(listing, temporal)
    np.testing.assert_array_equal(bench.frame_labels("Arson011_x264"), _labels(48, (10, 20), (30, 40)))


# ------------------------------------------------------------------- UCF copies


def test_ucf_labelled_copy_wins_over_a_second_copy(samples, tmp_path):
    root = _copy(samples, "ucf_crime", tmp_path)
    for copy in (root / "backup" / "Arson011_x264.mp4", root / "zz" / "Stealing002_x264.mp4"):
        copy.parent.mkdir()
        write_test_video(copy, 20, 30, size=(32, 32))
    bench = data.load_ucf_crime(root)  # rglob sorts "backup" after "Arson": it used to win
    assert bench.path("Arson011_x264") == root / "Arson" / "Arson011_x264.mp4"
    assert bench.path("Stealing002_x264") == root / "Stealing" / "Stealing002_x264.mp4"
    assert bench.num_frames("Arson011_x264") == 48


def test_ucf_two_copies_outside_the_labelled_folder_are_an_error(samples, tmp_path):
    root = _copy(samples, "ucf_crime", tmp_path)
    for folder in ("a", "b"):
        (root / folder).mkdir()
        shutil.copy(root / "Arson" / "Arson011_x264.mp4", root / folder)
    (root / "Arson" / "Arson011_x264.mp4").unlink()
    with pytest.raises(ValueError, match=re.escape(
            f"Arson011_x264.mp4 is under {root} 2 times (none of them in a folder named 'Arson', "
            f"{root / 'a' / 'Arson011_x264.mp4'} and {root / 'b' / 'Arson011_x264.mp4'})")):
        data.load_ucf_crime(root)


# ------------------------------------------------------------------- Avenue stray files


def test_avenue_file_outside_the_naming_is_left_out_with_a_warning(samples, tmp_path):
    root = _copy(samples, "avenue", tmp_path)
    shutil.copy(root / "testing_videos" / "01.avi", root / "testing_videos" / "01_backup.avi")
    with pytest.warns(UserWarning, match=r"1 files in .*testing_videos do not follow Avenue's "
                      r"naming 'NN.avi'.*left out: 01_backup.avi"):
        bench = data.load_avenue(root)
    assert sorted(bench.videos["name"]) == ["01", "02", "train_01"]
    np.testing.assert_array_equal(bench.frame_labels("01"), _labels(30, (8, 19)))


# ------------------------------------------------------------------- C-VAD JSON


def test_cvad_multi_type_json_with_a_bom_and_bad_json(tmp_path):
    pytest.importorskip("h5py")
    root = data.write_sample("c_shtech", tmp_path / "c_shtech")
    multiple = root / "ground_truth" / "c-shtech-multiple.json"
    multiple.write_bytes(b"\xef\xbb\xbf" + json.dumps({"car-running": ["01_0015"]}).encode())
    bench = data.load_cvad(root / "ground_truth", "shanghaitech", "car")
    assert list(bench.videos["name"]) == ["01_0014", "02_0128"]
    multiple.write_text('{"car-running": [01_0015]}')
    with pytest.raises(AnnotationError, match=r"c-shtech-multiple.json: not valid JSON: "
                       r"Expecting ',' delimiter at line 1, column 19"):
        data.load_cvad(root / "ground_truth", "shanghaitech", "car")
    multiple.write_text('["01_0015"]')
    with pytest.raises(AnnotationError, match=r"c-shtech-multiple.json: holds a JSON list; "
                       r"expected a JSON object"):
        data.load_cvad(root / "ground_truth", "shanghaitech", "car")


# ------------------------------------------------------------------- VERA length


def test_vera_entry_with_zero_length_is_refused(tmp_path):
    json_file = tmp_path / "UCF_Eval.json"
    json_file.write_text(json.dumps([
        {"video": "frames/Arson/Arson011_x264.mp4", "temporal_label": [10, 20, -1, -1],
         "length": 48},
        {"video": "frames/Arson/Arson012_x264.mp4", "temporal_label": [10, 20, -1, -1],
         "length": 0}]))
    with pytest.raises(AnnotationError, match=r"UCF_Eval.json, entry 1: expected 'length', the "
                       r"video's number of frames \(a whole number >= 1\), got 0"):
        data.load_vera_annotations(json_file)


# ------------------------------------------------------------------- campus text files


def test_campus_split_and_class_files_with_a_bom_read_like_the_annotations(tmp_path):
    root = Path(shutil.copytree(data.campus_root(), tmp_path / "campus"))
    for path in (root / "splits" / "test.txt", root / "classes.txt"):  # as Notepad saves them
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    bench = data.load_campus(root)
    assert bench.videos.equals(data.load_campus().videos.assign(
        path=lambda t: [str(root / "videos" / Path(p).name) for p in t["path"]]))
