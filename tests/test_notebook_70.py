"""Notebook 70 (VERA) runs headless on the tiny profile and writes what it promises."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from conftest import run_notebook

from vadnb.detect import TINY_WARNING

pytestmark = pytest.mark.notebook


def test_notebook_70_writes_its_artifacts(tmp_path):
    pytest.importorskip("vadnb.data")
    nb = run_notebook("70_verbalized_learning_vera", tmp_path, PROFILE="tiny", STEPS=1,
                 MAX_TRAIN_VIDEOS=2, MAX_VAL_VIDEOS=2, MAX_TEST_VIDEOS=2, IMAGE_SIZE=32,
                 MAX_NEW_TOKENS=8, STRIDE=64)
    history = pd.read_csv(tmp_path / "question_history.csv")
    assert list(history["step"]) == [0, 1]
    assert history["chosen"].sum() == 1
    chosen = history[history["chosen"]].iloc[0]
    assert chosen["val_acc"] == history["val_acc"].max()
    learned = json.loads((tmp_path / "learned_questions.json").read_text())
    assert learned["questions"] == json.loads(chosen["questions"])
    assert 1 <= len(learned["questions"]) <= 5
    assert learned["meta"]["meaningless"] is True
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["meaningless"] is True and m["warning"] == TINY_WARNING
    assert m["test_videos"] == 2 and 0.0 <= m["auc"] <= 1.0 and 0.0 <= m["ap"] <= 1.0
    assert not math.isnan(m["auc"])
    assert (tmp_path / "validation_curve.png").stat().st_size > 5_000
    # perfect perception: the oracle runs VERA's real steps; the default variant separates
    perfect = pd.read_csv(tmp_path / "perfect_perception.csv")
    assert list(perfect["variant"])[0] == "official (default)" and len(perfect) == 7
    assert (perfect["auc_vs_official"] == perfect["test_auc"] - perfect["test_auc"][0]).all()
    assert (perfect["ap_vs_official"] == perfect["test_ap"] - perfect["test_ap"][0]).all()
    assert perfect["val_acc"].iloc[0] == 1.0
    assert perfect["test_auc"].iloc[0] > 0.7 and perfect["test_auc"].between(0, 1).all()
    # the official row's bound is in metrics.json, where the index page's card finds it
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["perfect_perception"]["auc"] == pytest.approx(perfect["test_auc"].iloc[0], abs=1e-12)
    assert m["perfect_perception"]["ap"] == pytest.approx(perfect["test_ap"].iloc[0], abs=1e-12)
    assert m["test_videos"] == 2 and m["meaningless"] is True  # the model run's entries stay

    # the "highest score" example is chosen and described by code, ties said (issue 25)
    said = [o["data"]["text/markdown"] for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("metadata", {}).get("vadnb", {}).get("kind")
            == "computed" and "highest frame score" in o["data"].get("text/markdown", "")]
    assert len(said) == 1
    assert "tie for the highest frame score" in said[0] or "has the highest frame score" in said[0]
