# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The explorer, served for a browser test
#
# `tests/test_browser.py` serves this notebook with Voila and drives it with Chromium.
# It runs the classical baseline on one campus test clip (a generated clip with a planted
# anomaly when the campus data is missing) and shows `vadnb.widgets.explorer`.
# Try it by hand: `voila tests/browser_support/explorer_demo.ipynb`.
#
# Environment variables (all optional): `VADNB_DEMO_VIDEO` picks the clip,
# `VADNB_DEMO_OUT` is a folder where the Detection is saved (the test recomputes the
# flagged intervals from it).

# %%
import os
from pathlib import Path

import cv2
import numpy as np

import vadnb
from vadnb.widgets import explorer


# %%
def planted_clip(path: Path, seconds: int = 12, fps: int = 10) -> np.ndarray:
    """A grey scene with a small square walking slowly and, from 6 s to 8 s, a large square
    racing across (the anomaly). Returns the 0/1 frame labels."""
    width, height = 192, 144
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    labels = np.zeros(seconds * fps, dtype=np.uint8)
    for i in range(seconds * fps):
        image = np.full((height, width, 3), 110, np.uint8)
        x = 20 + (i % 120)
        cv2.rectangle(image, (x, 90), (x + 8, 110), (40, 40, 40), -1)
        if 6 * fps <= i < 8 * fps:
            labels[i] = 1
            bx = (i - 6 * fps) * 9
            cv2.rectangle(image, (bx, 20), (bx + 60, 80), (230, 230, 230), -1)
        writer.write(image)
    writer.release()
    return labels


def pick_clip() -> tuple[str, np.ndarray | None]:
    """The clip to explore and its frame labels (None when unknown)."""
    chosen = os.environ.get("VADNB_DEMO_VIDEO")
    try:
        from vadnb.data import load_campus

        bench = load_campus()
        test = bench.videos[(bench.videos["split"] == "test") & bench.videos["is_anomalous"]]
        if chosen:
            named = bench.videos[bench.videos["path"].astype(str) == str(Path(chosen))]
            if len(named):
                return chosen, bench.frame_labels(named["name"].iloc[0])
            return chosen, None
        if len(test):
            row = test.sort_values("num_frames").iloc[0]
            return str(row["path"]), bench.frame_labels(row["name"])
    except (FileNotFoundError, ImportError, ValueError) as err:
        print(f"campus data not available ({err}); using a generated clip")
    if chosen:
        return chosen, None
    folder = Path(os.environ.get("VADNB_DEMO_OUT") or ".")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "planted.mp4"
    return str(path), planted_clip(path)


VIDEO, LABELS = pick_clip()
print("clip:", VIDEO)

# %%
det = vadnb.detect(VIDEO, method="classical")
if os.environ.get("VADNB_DEMO_OUT"):
    det.save(os.environ["VADNB_DEMO_OUT"])
det

# %% [markdown]
# Move the threshold slider: the table of flagged intervals below it follows.

# %%
ex = explorer(det, labels=LABELS, threshold=0.5)
# stable hooks for the browser test (class names only change the DOM, not the look)
ex.add_class("vadnb-explorer")
ex.threshold_slider.add_class("vadnb-threshold")
ex.flagged.add_class("vadnb-flagged")
ex.image.add_class("vadnb-frame")
ex
