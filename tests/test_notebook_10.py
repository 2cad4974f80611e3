"""Notebook 10 runs headless and writes exact, checkable artifacts.

It is given a generated clip whose frames show their own index, so the test can check the
sampled indices against a hand computation and the extracted JPEGs against their names.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import run_notebook

from vadnb import video

pytestmark = pytest.mark.notebook


def test_notebook_10_writes_exact_frame_index(tmp_path):
    clip = video.write_test_video(tmp_path / "clip.mp4", num_frames=60, fps=25, size=(96, 64))
    out = tmp_path / "out"
    nb = run_notebook("10_frame_extraction", out, VIDEO=str(clip), SAMPLE_FPS=2.0, SHEET_FRAMES=4)

    # 60 frames at 25 fps, sampled at 2 fps: the first frame at or after 0, 0.5, 1, 1.5, 2 s
    table = pd.read_csv(out / "frames_index.csv")
    assert list(table.columns) == ["index", "timestamp_s"]
    assert table["index"].tolist() == [0, 13, 25, 38, 50]
    np.testing.assert_allclose(table["timestamp_s"], table["index"] / 25, atol=1e-6)

    # the JPEGs are named by index and show that very frame
    jpegs = sorted((out / "frames").glob("frame_*.jpg"))
    assert [p.name for p in jpegs] == [f"frame_{i:06d}.jpg" for i in [0, 13, 25, 38, 50]]
    assert [video.read_frame_code(cv2.imread(str(p))[..., ::-1]) for p in jpegs] == \
        [0, 13, 25, 38, 50]

    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 50 and sheet.shape[1] > 200
    assert sheet.std() > 20  # frames were drawn, not a blank canvas

    timings = json.loads((out / "timings.json").read_text())
    assert timings["num_frames"] == 60 and timings["sampled_frames"] == 5
    for key in ("probe_cold_s", "probe_cached_s", "read_fps_s", "every_frame_s"):
        assert timings[key] > 0
    assert timings["every_over_fps"] == pytest.approx(
        timings["every_frame_s"] / timings["read_fps_s"])
    # the saving is stated from the measurement, whichever way it went on this machine
    text = "\n".join(str(v) for c in nb.cells for o in c.get("outputs", [])
                     for v in [o.get("text", ""), *o.get("data", {}).values()])
    stated = (f"Sampling at 2 fps took {timings['read_fps_s']:.3f} s, converting all 60 frames "
              f"{timings['every_frame_s']:.3f} s: sampling was ")
    assert stated in text
    faster = timings["every_frame_s"] > timings["read_fps_s"]
    assert (f"{stated}{timings['every_over_fps']:.1f}x faster here." in text) == faster
    assert (f"{stated}not faster here" in text) == (not faster)
    # the lying AVI the notebook builds really lies, and probe saw through it
    assert video.probe(out / "lying.avi").num_frames == 60
    cap = cv2.VideoCapture(str(out / "lying.avi"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 444
    cap.release()
