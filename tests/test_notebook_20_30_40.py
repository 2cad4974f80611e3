"""Notebooks 20, 30 and 40 (LAVAD) run headless on the tiny profile and write what they promise.

They share the session cache, so notebook 30 reuses notebook 20's captions and embeddings,
and notebook 40 reuses both for the first clip.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from conftest import run_notebook
from vadnb.detect import TINY_WARNING

pytestmark = pytest.mark.notebook

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def campus():
    from vadnb.data import load_campus

    return load_campus()


def first_test_clip(campus):
    return campus.subset("test").videos.iloc[0]


def test_notebook_20_writes_captions_and_similarity(tmp_path, campus):
    run_notebook("20_captioning_and_cleaning", tmp_path, PROFILE="tiny", SHOW_POSITIONS=2)
    clip = first_test_clip(campus)
    captions = pd.read_csv(tmp_path / "captions.csv", keep_default_na=False)
    assert list(captions.columns) == ["centre_frame", "time_s", "raw_caption",
                                      "cleaned_caption", "temporal_description"]
    np.testing.assert_array_equal(captions.centre_frame, np.arange(0, clip.num_frames, 16))
    # every temporal description holds 10 captions in time order
    assert (captions.temporal_description.str.count(r" \| ") == 9).all()
    for name in ("similarity.png", "contact_sheet.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000


def test_notebook_30_writes_summaries_and_parse_report(tmp_path, campus):
    run_notebook("30_llm_temporal_summaries", tmp_path, PROFILE="tiny")
    clip = first_test_clip(campus)
    summaries = pd.read_csv(tmp_path / "summaries.csv", keep_default_na=False)
    assert len(summaries) == math.ceil(clip.num_frames / 16)
    assert summaries.raw_score.between(0, 1).all()
    report = json.loads((tmp_path / "parse_report.json").read_text())
    assert report["video"] == Path(clip.path).name
    assert report["profile"] == "tiny" and report["meaningless"] is True
    assert report["positions"] == len(summaries)
    assert report["parse_failures"] == int((~summaries.parsed.astype(bool)).sum())
    assert (tmp_path / "scores.png").read_bytes().startswith(PNG)


def test_notebook_40_writes_metrics_scores_and_timeline(tmp_path, campus):
    run_notebook("40_score_refinement_and_evaluation", tmp_path, PROFILE="tiny",
                 MAX_VIDEOS=2, ABLATION_K=[1, 10], ABLATION_T=[1.0])
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["profile"] == "tiny" and m["meaningless"] is True and m["warning"] == TINY_WARNING
    assert m["videos"] == 2
    saved = {p.stem: np.load(p) for p in (tmp_path / "frame_scores").glob("*.npy")}
    assert len(saved) == 2
    test = campus.subset("test")
    labels = {n: test.frame_labels(n) for n in saved}
    assert {int(y.max()) for y in labels.values()} == {0, 1}  # one normal, one anomalous clip
    for n, s in saved.items():
        assert len(s) == len(labels[n])
    y = np.concatenate([labels[n] for n in sorted(saved)])
    s = np.concatenate([saved[n] for n in sorted(saved)])
    assert m["auc_refined"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert 0 <= m["auc_raw"] <= 1 and 0 <= m["ap_raw"] <= 1
    ablation = pd.read_csv(tmp_path / "ablation.csv")
    assert len(ablation) == 3
    assert ablation.auc.iloc[-1] == pytest.approx(m["auc_refined"], abs=1e-6)  # K=10, T=1
    assert (tmp_path / "timeline.png").read_bytes().startswith(PNG)
    # the oracle (ground-truth doubles) recovers the planted anomalies; shorter windows help
    oracle = pd.read_csv(tmp_path / "oracle.csv").set_index("window_s")
    assert list(oracle.index) == [10, 4]
    assert oracle.loc[4, "auc_raw"] >= 0.95
    assert oracle.loc[4, "auc_raw"] >= oracle.loc[10, "auc_raw"]
