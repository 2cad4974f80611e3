"""``run_dataset`` on every public benchmark, read from its exact public layout.

Each benchmark's sample (``vadnb.data.write_sample``: tiny synthetic videos under the real
file names and annotation formats; ShanghaiTech's test videos are frame folders) is scored
with the classical method, the cheapest, and the run's metrics are checked against
scikit-learn on the saved scores and the loader's labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vadnb import data
from vadnb.scale import read_frame_scores, run_dataset


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench-samples")
    for name in ("ucf_crime", "xd_violence", "shanghaitech", "avenue", "ubnormal", "c_shtech",
                 "lavad_files", "vera_files"):
        data.write_sample(name, root / name)
    return root


def _benchmarks(root: Path) -> dict[str, data.Benchmark]:
    ann = root / "lavad_files" / "annotations"
    return {
        "ucf_crime": data.load_ucf_crime(root / "ucf_crime"),
        "xd_violence": data.load_xd_violence(root / "xd_violence"),
        "shanghaitech": data.load_shanghaitech(root / "shanghaitech"),  # frame folders
        "avenue": data.load_avenue(root / "avenue"),
        "ubnormal": data.load_ubnormal(root / "ubnormal"),
        "c_shtech/car": data.load_cvad(root / "c_shtech" / "ground_truth", "shanghaitech", "car",
                                       videos_root=root / "c_shtech" / "testing" / "frames"),
        "lavad_files": data.load_lavad_annotations(
            ann / "test.txt", ann / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
            frames_root=root / "lavad_files" / "frames"),
        "vera_files": data.load_vera_annotations(root / "vera_files" / "Data" / "UCF_Eval.json",
                                                 videos_root=root / "vera_files"),
    }


def test_run_dataset_scores_every_benchmark_from_its_public_layout(samples, tmp_path):
    for key, bench in _benchmarks(samples).items():
        test = bench.subset("test")
        run = run_dataset(test, "classical", out_dir=tmp_path / key.replace("/", "_"),
                          progress=False)
        scores = read_frame_scores(run.out_dir)
        names = list(test.videos["name"])
        assert sorted(scores) == sorted(names), key
        for name in names:  # one score per frame of the video or frame folder
            assert len(scores[name]) == test.num_frames(name), (key, name)
        y = np.concatenate([test.frame_labels(n) for n in names])
        s = np.concatenate([scores[n] for n in names])
        assert run.summary["videos"] == len(names) and run.summary["video_level_only"] == 0
        assert run.summary["auc"] == pytest.approx(roc_auc_score(y, s)), key


def test_a_weakly_labelled_split_is_scored_but_only_labelled_videos_are_evaluated(samples, tmp_path):
    bench = data.load_ucf_crime(samples / "ucf_crime", val=None)
    train = bench.subset("train")
    run = run_dataset(train, "classical", out_dir=tmp_path / "train", split="train",
                      progress=False)
    unlabelled = [n for n in train.videos["name"] if not train.has_frame_labels(n)]
    assert run.summary["video_level_only"] == len(unlabelled) == 2
    assert len(run.per_video) == len(train) and run.per_video.set_index("video").loc[
        unlabelled, "auc"].isna().all()
    assert np.isnan(run.summary["auc"])  # the labelled training videos are all normal
