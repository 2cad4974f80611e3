"""Small copies of the public benchmarks' layouts (exact folder, file and annotation
formats, synthetic videos), so a reader sees what ``load_*`` expects before downloading
gigabytes (notebook 00), and the tests run the parsers on the real formats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

#: Per benchmark: where to get it, the files a loader reads (relative to the folder you
#: pass), and the call. Shown as a table in notebook 00.
_LAYOUTS = {
    "ucf_crime": (
        "https://www.crcv.ucf.edu/projects/real-world/ (videos, Anomaly_Train.txt, "
        "Temporal_Anomaly_Annotation_for_Testing_Videos.txt)",
        "<Class>/<Class>NNN_x264.mp4, Training_Normal_Videos_Anomaly/, "
        "Testing_Normal_Videos_Anomaly/, Anomaly_Train.txt, "
        "Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
        "load_ucf_crime(root)  # test 290, train 1610 -> train + val (0.1)"),
    "xd_violence": (
        "https://roc-ng.github.io/XD-Violence/ (training and test videos, annotations.txt)",
        "train/<name>_label_<codes>.mp4, test/<name>_label_<codes>.mp4, annotations.txt",
        "load_xd_violence(root)  # test 800, train 3954"),
    "shanghaitech": (
        "https://svip-lab.github.io/dataset/campus_dataset.html (+ the weak split lists "
        "SH_Train_new.txt / SH_Test_NEW.txt)",
        "training/videos/NN_NNN.avi, testing/frames/NN_NNNN/NNN.jpg, "
        "testing/test_frame_mask/NN_NNNN.npy",
        "load_shanghaitech(root)  # one-class; split='weak', train_list=, test_list="),
    "avenue": (
        "https://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html (videos and "
        "ground_truth_demo)",
        "training_videos/NN.avi, testing_videos/NN.avi, "
        "ground_truth_demo/testing_label_mask/N_label.mat",
        "load_avenue(root)"),
    "ubnormal": (
        "https://github.com/lilygeorgescu/UBnormal (videos; split lists in scripts/)",
        "Scene<k>/<name>.mp4, Scene<k>/<name>_annotations/<name>_tracks.txt, "
        "scripts/{abnormal,normal}_{training,validation,test}_video_names.txt",
        "load_ubnormal(root)"),
    "lavad_files": (
        "LAVAD's README (Google Drive): annotations/, captions, scores per dataset",
        "annotations/test.txt, annotations/Temporal_Anomaly_Annotation_for_Testing_Videos.txt, "
        "frames/<Class>/<name>/",
        "load_lavad_annotations(list, temporal, dataset='ucf_crime', frames_root=...)"),
    "c_shtech": (
        "AnyAnomaly's repository, ground_truth/ (+ ShanghaiTech's test frames)",
        "ground_truth/c-shtech_labels/shtech_<type>_label.h5, ground_truth/c-shtech.json, "
        "testing/frames/NN_NNNN/",
        "load_cvad(ground_truth, dataset='shanghaitech', anomaly_type='car', videos_root=...)"),
    "vera_files": (
        "VERA's repository, Data/*.json",
        "Data/UCF_Eval.json, Data/UCF_Instruct_{train,val}.json, Data/xd_*.json",
        "load_vera_annotations(json_file, dataset='ucf_crime', videos_root=...)"),
}
SAMPLE_LAYOUTS: dict[str, dict[str, str]] = {
    k: dict(zip(("download", "files", "call"), v)) for k, v in _LAYOUTS.items()}


# UCF-Crime's test annotation lines of the sample videos (LAVAD's files repeat them)
_UCF_TEST_LINES = ["Arson011_x264.mp4  Arson  10  20  30  40",
                   "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1"]
# the UCF-Crime test videos as frame folders, as LAVAD and VERA keep them: folder, frames
_UCF_FRAMES = (("frames/Arson/Arson011_x264", 48),
               ("frames/Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264", 32))
# ShanghaiTech's sample test videos: name, frames, anomalous span (C-ShT relabels them)
_SHT_TEST = (("01_0014", 40, (12, 28)), ("01_0015", 32, (0, 0)), ("02_0128", 36, (0, 10)))


def _video(path: Path, num_frames: int, fps: float) -> None:
    from ..video import write_test_video

    path.parent.mkdir(parents=True, exist_ok=True)
    write_test_video(path, num_frames, fps, size=(32, 32))


def _frames(folder: Path, num_frames: int) -> None:
    """A frame folder in ShanghaiTech's style: ``000.jpg``, ``001.jpg``, ..."""
    import cv2

    from ..video import _code_image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), _code_image(i, 32, 32)[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 95])


def _lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def write_sample(benchmark: str, root: str | os.PathLike) -> Path:
    """Write a tiny sample of ``benchmark``'s layout (a key of :data:`SAMPLE_LAYOUTS`) under
    ``root`` and return ``root``: synthetic 32x32 bar-code videos, nothing real."""
    root = Path(root)
    if benchmark not in SAMPLE_LAYOUTS:
        raise ValueError(f"no sample layout {benchmark!r}; choose from {sorted(SAMPLE_LAYOUTS)}")
    root.mkdir(parents=True, exist_ok=True)
    if benchmark == "ucf_crime":
        train = ["Arson/Arson001_x264.mp4", "Stealing/Stealing002_x264.mp4",
                 *(f"Training_Normal_Videos_Anomaly/Normal_Videos00{i}_x264.mp4" for i in (1, 2))]
        for rel in ["Arson/Arson011_x264.mp4", "Stealing/Stealing058_x264.mp4",
                    "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4", *train]:
            _video(root / rel, 48 if rel.startswith("Arson/Arson011") else 32, 30)
        _lines(root / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt", [
            _UCF_TEST_LINES[0], "Stealing058_x264.mp4  Stealing  0  8  -1  -1", _UCF_TEST_LINES[1]])
        _lines(root / "Anomaly_Train.txt", train)
    elif benchmark == "xd_violence":
        fight = "Bad.Boys.1995__#01-11-55_01-12-40_label_B1-0-0"
        blast = "Black.Hawk.Down.2001__#00-27-00_00-27-40_label_G-B2-0"
        normal = "v=wVey5JfRtmE__#1_label_A"
        for folder, name, n in (("test", fight, 40), ("test", blast, 32), ("test", normal, 24),
                                ("train", "v=2ncA53czMOg__#00-02-40_00-03-55_label_B4-0-0", 24),
                                ("train", "v=2lXh2n0aPyw__#1_label_A", 24)):
            _video(root / folder / f"{name}.mp4", n, 24)
        _lines(root / "annotations.txt", [f"{fight}.mp4 4 12 20 30", f"{blast}.mp4 0 16"])
    elif benchmark == "shanghaitech":
        masks = root / "testing" / "test_frame_mask"
        masks.mkdir(parents=True, exist_ok=True)
        for name, n, span in _SHT_TEST:
            _frames(root / "testing" / "frames" / name, n)
            mask = np.zeros(n, np.uint8)
            mask[slice(*span)] = 1
            np.save(masks / f"{name}.npy", mask)
        for name in ("01_001", "02_001"):
            _video(root / "training" / "videos" / f"{name}.avi", 24, 24)
        # the weakly supervised split (Zhong et al. 2019): anomalous test videos move to train
        _lines(root / "SH_Train_new.txt", ["01_001", "02_0128"])
        _lines(root / "SH_Test_NEW.txt", ["01_0014", "01_0015", "02_001"])
    elif benchmark == "avenue":
        from scipy.io import savemat

        mask_dir = root / "ground_truth_demo" / "testing_label_mask"
        mask_dir.mkdir(parents=True, exist_ok=True)
        for i, (n, span) in enumerate(((30, (8, 20)), (24, (0, 0))), start=1):
            _video(root / "testing_videos" / f"{i:02d}.avi", n, 25)
            vol = np.empty((1, n), object)
            for f in range(n):  # one pixel set in each anomalous frame's mask
                vol[0, f] = np.zeros((4, 4), np.uint8)
                vol[0, f][1, 1] = span[0] <= f < span[1]
            savemat(mask_dir / f"{i}_label.mat", {"volLabel": vol})
        _video(root / "training_videos" / "01.avi", 24, 25)
    elif benchmark == "ubnormal":
        names = {"abnormal_test": "abnormal_scene_2_scenario_1",
                 "normal_test": "normal_scene_2_scenario_3", "abnormal_validation": "",
                 "normal_training": "normal_scene_1_scenario_1",
                 "abnormal_training": "abnormal_scene_1_scenario_2",
                 "normal_validation": "normal_scene_3_scenario_1"}
        for key, name in names.items():  # no abnormal validation video: an empty list file
            _lines(root / "scripts" / f"{key}_video_names.txt", [name] if name else [])
            if not name:
                continue
            scene = root / f"Scene{name.split('_')[2]}"
            _video(scene / f"{name}.mp4", 32, 30)
            if name.startswith("abnormal"):
                _lines(scene / f"{name}_annotations" / f"{name}_tracks.txt",
                       ["0,6,14", "1,20,25"])
    elif benchmark == "lavad_files":
        for rel, n in _UCF_FRAMES:
            _frames(root / rel, n)
        _lines(root / "annotations" / "test.txt", [
            "Arson/Arson011_x264 0 47 2",
            "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264 0 31 7"])
        _lines(root / "annotations" / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
               _UCF_TEST_LINES)
    elif benchmark == "c_shtech":
        # AnyAnomaly's C-ShT: per type, one 1-D int8 array per test video (that type's frames 1)
        import h5py

        write_sample("shanghaitech", root)
        spans = {"car": {"01_0014": (12, 28)}, "running": {"02_0128": (0, 10)}}
        labels_dir = root / "ground_truth" / "c-shtech_labels"
        labels_dir.mkdir(parents=True, exist_ok=True)
        for kind, marked in spans.items():
            with h5py.File(labels_dir / f"shtech_{kind}_label.h5", "w") as f:
                for name, n, _ in _SHT_TEST:
                    y = np.zeros(n, np.int8)
                    y[slice(*marked.get(name, (0, 0)))] = 1
                    f.create_dataset(name, data=y)
        (root / "ground_truth" / "c-shtech.json").write_text(
            json.dumps({kind: sorted(marked) for kind, marked in spans.items()}))
        (root / "ground_truth" / "c-shtech-multiple.json").write_text(json.dumps({}))
    elif benchmark == "vera_files":
        for rel, n in _UCF_FRAMES:  # VERA's folders are named like the videos
            _frames(root / f"{rel}.mp4", n)
        question = "Is there any anomaly in the video?"
        _lines(root / "Data" / "UCF_Eval.json", [json.dumps([
            {"video": "frames/Arson/Arson011_x264.mp4", "temporal_label": [10, 20, 30, 40],
             "length": 48, "QA": [{"q": question, "a": "Yes."}]},
            {"video": "frames/Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4",
             "temporal_label": [-1, -1, -1, -1], "length": 32,
             "QA": [{"q": question, "a": "No."}]}])])
    return root
