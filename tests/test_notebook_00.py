"""Notebook 00 runs headless and writes the campus table, the class examples and the environment."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pandas as pd
import pytest
from conftest import REPO, run_notebook

pytestmark = pytest.mark.notebook


def test_notebook_00_writes_campus_table_examples_and_environment(tmp_path):
    out = tmp_path / "out"
    nb = run_notebook("00_setup_and_data", out, ZOOM_FRAMES=4)

    # the table agrees with annotations.txt, line for line
    table = pd.read_csv(out / "campus_videos.csv")
    assert {"name", "split", "label", "is_anomalous", "num_frames", "fps", "intervals"} <= set(table.columns)
    assert len(table) == 16
    rows = table.set_index("name")
    for line in (REPO / "data" / "campus" / "annotations.txt").read_text().splitlines():
        file_name, label, s1, e1, *_ = line.split()
        row = rows.loc[Path(file_name).stem]
        assert row["label"] == label.replace("_", " ")
        expected = "[]" if s1 == "-1" else f"[({s1}, {e1})]"
        assert row["intervals"] == expected
    assert set(table.loc[table["split"] == "test", "label"]) == {
        "Normal", "Vehicle", "Running", "Fallen", "Object left"}

    # one captioned frame per class (Normal + 4) on a 3-wide sheet: two rows of 384x288 frames
    sheet = cv2.imread(str(out / "class_examples.png"))
    assert sheet is not None
    height, width = sheet.shape[:2]
    assert width > 600 and 0.45 < height / width < 0.95

    environment = json.loads((out / "environment.json").read_text())
    assert environment["profile"] == "tiny" and environment["scores_meaningless"] is True
    assert environment["device"] in ("cpu", "cuda")
    assert "torch" in environment["versions"]
    # saving is plumbing: the cell that writes environment.json shows nothing (not a byte count)
    saving = [c for c in nb.cells
              if c.cell_type == "code" and '"environment.json", environment' in "".join(c.source)]
    assert len(saving) == 1 and saving[0].outputs == []
    assert (out / "label_timelines.png").exists()

    # the public benchmarks' walk-through: every loader ran (on its sample layout here)
    summaries = pd.read_csv(out / "benchmark_summaries.csv")
    assert set(summaries["benchmark"]) == {"ucf_crime", "xd_violence", "shanghaitech", "avenue",
                                           "ubnormal"}
    assert set(summaries["source"]) == {"sample layout"}
    ucf = summaries[summaries["benchmark"] == "ucf_crime"].set_index("split")
    assert set(ucf.index) == {"train", "val", "test"} and ucf.loc["train", "video_level_only"] > 0
    assert (summaries["anomalous_frames"] <= summaries["frames"]).all()
    protocols = pd.read_csv(out / "protocols.csv")
    assert {"method", "benchmark", "metric", "ap_variant", "reported"} <= set(protocols.columns)
