"""Notebook 85 runs headless on the bundled clip and leaves the timeline and the detection."""

from __future__ import annotations

import pytest
from conftest import run_notebook

from vadnb.detect import Detection

pytestmark = pytest.mark.notebook


def test_notebook_85_falls_back_to_a_bundled_clip_and_explains_its_peak(tmp_path):
    out = tmp_path / "out"
    nb = run_notebook("85_your_video", out)  # METHOD left at None: a CPU picks "classical"
    assert (out / "timeline.png").stat().st_size > 10_000
    det = Detection.load(out / "detection" / "classical")
    assert det.method == "classical" and det.num_frames > 0
    said = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("metadata", {}).get("vadnb", {}).get("kind") == "computed"]
    texts = " ".join(o["data"]["text/markdown"] for o in said)
    assert "bundled campus clip" in texts and "Highest score" in texts
    assert "Method: **classical** (device cpu)" in texts
    # the fallback clip's labelled frames are named (and shaded on its timeline)
    from vadnb.data import load_campus
    from vadnb.plots import intervals

    test = load_campus().subset("test")
    runner = test.videos.loc[test.videos["label"] == "Running", "name"].iloc[0]
    assert f"(frames {intervals(test.frame_labels(runner))}) is shaded" in texts
