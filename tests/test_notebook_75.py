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
    nb = run_notebook("75_flashback_memory_retrieval", tmp_path, PROFILE="tiny",
                      MAX_TEST_VIDEOS=2)
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

    # metrics.json comes from lesson.save_metrics and carries the perfect-perception bound
    # the index card shows (a dict, with the defaults' numbers from the table)
    pp = m["perfect_perception"]
    assert "upper bound" in pp["note"]
    assert pp["auc"] == pytest.approx(perfect["auc"].iloc[0])
    assert pp["ap"] == pytest.approx(perfect["ap"].iloc[0])
    assert [r["variant"] for r in pp["variants"]] == list(perfect["variant"])

    # issue 25: perfect perception comes before the profile's run, and every outcome the
    # prose states is printed by code
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    oracle_cell = next(i for i, s in enumerate(sources) if "oracle_backends(bench)" in s)
    tiny_run = next(i for i, s in enumerate(sources) if 'method="flashback"' in s)
    assert oracle_cell < tiny_run
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs) + "".join(
        str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "an anomalous segment of this clip has on average" in text
    highest = text.split("highest score ", 1)[1].splitlines()
    assert highest[1].strip().startswith("anomalous ")  # the oracle retrieves the truth
    assert "The variant that loses the most AP is '" in text
    assert "Loading it with the oracle's embedder:" in text and "another recipe" in text
    assert "An LLM that never writes JSON: Flashback recall:" in text and "stayed malformed" in text
