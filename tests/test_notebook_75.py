"""Notebook 75 (Flashback) runs headless on the tiny profile and writes what it promises."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from conftest import run_notebook

from vadnb.detect import TINY_WARNING

pytestmark = pytest.mark.notebook


def test_notebook_75_writes_its_artifacts(tmp_path):
    pytest.importorskip("vadnb.data")
    run_notebook("75_flashback_memory_retrieval", tmp_path, PROFILE="tiny", MAX_TEST_VIDEOS=2)
    # perfect perception: the oracle embedder runs Flashback's real steps and separates
    perfect = pd.read_csv(tmp_path / "perfect_perception.csv")
    assert list(perfect["variant"])[:2] == ["vadnb (default)", "research code's tail and 30 fps"]
    assert perfect["auc"].iloc[0] > 0.9 and perfect["auc"].between(0, 1).all()
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["meaningless"] is True and m["warning"] == TINY_WARNING
    assert m["test_videos"] == 2 and not math.isnan(m["auc"]) and 0.0 <= m["ap"] <= 1.0
    assert m["memory_source"].startswith("handwritten") and m["memory_size"]["normal"] >= 20
    assert (tmp_path / "memory_space.png").stat().st_size > 5_000
    saved = json.loads((tmp_path / "memory.json").read_text())
    assert saved["format"] == "vadnb-flashback-memory" and (tmp_path / "memory.safetensors").is_file()
