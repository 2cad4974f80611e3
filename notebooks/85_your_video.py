# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   accelerator: GPU
#   colab:
#     gpuType: T4
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 85 · Your own video: upload it, pick a method, type what counts as anomalous
#
# The chapters so far ran the methods on the campus clips. Here you bring a video: from
# your phone, a dashcam, a webcam. There is no ground truth, so no AUC: you read the
# timeline and the explanations and decide whether you would trust the alarm.
#
# In this notebook you will learn:
# - how to run any of the methods on one video of yours with one call
#   (`vadnb.compare.detect_one`);
# - how a typed description (AnyAnomaly's prompt) changes what is flagged;
# - how to read the explorer without labels: where the score rises, and what the method said.
#
# Where it sits: after `80_compare_methods`, which compares the methods on labelled clips.
# Run headless (papermill, CI) it falls back to a bundled campus clip.

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vadnb/vadnb/blob/main/notebooks/85_your_video.ipynb)
#
# **On Colab**: choose a GPU first (Runtime › Change runtime type › **T4 GPU**), then run
# the cells in order; the next cell installs the suite (a minute or two) and is safe to re-run.
# With `PROFILE = "colab"` this notebook downloads, once, the models of the methods it runs:
# Salesforce/blip2-opt-2.7b (captioner, ~15.5 GB), imagebind_huge (embedder, ~4.5 GB; weights
# CC BY-NC-SA 4.0: non-commercial use only), Qwen/Qwen2.5-3B-Instruct (llm, ~6.2 GB),
# ViT-B-16-quickgelu:openai (clip, ~0.6 GB), Qwen/Qwen2.5-VL-3B-Instruct (vlm/vlm-3b, ~7.5 GB)
# and ViT-B-32-quickgelu:openai (clip-b32, ~0.6 GB): ~34.9 GB in all (sizes approximate). The
# `tiny` profile (the default without a GPU) downloads nothing. Each Colab notebook starts on
# a fresh machine: set `KEEP_ON_DRIVE = True` in the next cell to keep the downloads and
# vadnb's cache on your Google Drive, so the next notebook reuses them (it prints the space
# needed and Drive's free space).

# %%
KEEP_ON_DRIVE = False  # on Colab: True keeps the model downloads and vadnb's cache on Google Drive
import sys
if "google.colab" in sys.modules:  # on Colab only: fetch the suite once, install it (torch is already there)
    import os
    import subprocess
    if not os.path.isdir("/content/vadnb/.git"):  # safe to re-run: clone only once
        subprocess.run(["git", "clone", "-q", "--depth", "1", "https://github.com/vadnb/vadnb", "/content/vadnb"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/vadnb[imagebind]"], check=True)
    # ImageBind's model code only (its data loaders need decord: vadnb.models.imagebind.IMAGEBIND_PIP)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "imagebind-unofficial==0.1.1"], check=True)
    if "/content/vadnb" not in sys.path:
        sys.path.insert(0, "/content/vadnb")
    if KEEP_ON_DRIVE:  # before anything imports the hub: it reads HF_HOME once
        from vadnb.environment import keep_on_drive
        keep_on_drive("85")

# %% tags=["parameters"]
PROFILE = None             # "tiny" (CPU, random models), "colab" (T4), "paper"; None: $VADNB_PROFILE or auto
OUTPUT_DIR = "outputs/85"  # uploads/, detection/, timeline.png go here
VIDEO = None               # a video path; None: upload one below (headless: a bundled campus clip)
METHOD = None              # None: "classical" on a CPU, "anyanomaly" on a GPU; or "lavad", "vera" ("anomalyclip" with CHECKPOINT)
PROMPT = "a person running"  # what AnyAnomaly looks for (the other methods ignore it)
CHECKPOINT = None          # AnomalyCLIP only: a checkpoint saved by notebook 50 or 80

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import vadnb
from vadnb import compare, lesson, widgets
from vadnb.data import load_campus
from vadnb.plots import plot_detection

env = vadnb.setup(PROFILE)
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)
methods = ["classical", "lavad", "anyanomaly", "vera"] + (["anomalyclip"] if CHECKPOINT else [])
# on a CPU only the classical baseline's scores mean something (the others get random-init models)
METHOD = METHOD or ("classical" if env.device == "cpu" else "anyanomaly")
if METHOD not in methods:
    raise ValueError(f"METHOD = {METHOD!r}: choose one of {methods}")

# %%
lesson.references("85")
lesson.banner(env, real="the classical baseline" if METHOD == "classical" else "")

# %% [markdown]
# ## Upload a video
#
# Choose a file, pick a method, type a description and press **Detect**; the explorer
# appears under the button. Keep it short (a minute or less): on a T4, LAVAD and VERA take
# a few minutes per minute of video, the classical baseline seconds. On Colab you can also
# use the file browser on the left, or `from google.colab import files; files.upload()`,
# and then set `VIDEO` to the file's path.


# %%
def analyse(path, method: str, prompt: str):
    """One method on one video; the Detection is saved next to the uploads."""
    det = compare.detect_one(path, method, prompt, profile=env.profile, checkpoint=CHECKPOINT)
    det.save(out / "detection" / method)
    return det


widgets.upload_form(analyse, methods, METHOD, PROMPT, folder=out / "uploads")

# %% [markdown]
# ## The same, from code
#
# With `VIDEO` set (or headless, with no upload) this cell runs the chosen method on that
# file, or on the campus clip with a runner if `VIDEO` is None, so that there is always
# something to look at. That clip has labels, so its timeline shades the runner's frames:
# a video of yours has none. Without a GPU the method is the classical baseline
# (notebook 80 teaches it), the one detector whose scores mean something on a CPU.

# %%
from vadnb.plots import intervals

labels = None
if VIDEO is None:
    test = load_campus().subset("test")
    fallback = test.videos.loc[test.videos["label"] == "Running"].iloc[0]
    VIDEO, labels = fallback["path"], test.frame_labels(fallback["name"])
    lesson.say(f"No video given: using the bundled campus clip `{Path(VIDEO).name}`; its "
               f"labelled anomaly (frames {intervals(labels)}) is shaded on the timeline.")
lesson.say(f"Method: **{METHOD}** (device {env.device}).")
det = analyse(VIDEO, METHOD, PROMPT)
THRESHOLD = 0.5  # the explorer's starting threshold; drag its slider to move it
fig = plot_detection(det, labels=labels, threshold=THRESHOLD,
                     title=f"{Path(str(VIDEO)).name}: {METHOD}"
                           + (f", looking for '{PROMPT}'" if METHOD == "anyanomaly" else ""))
fig.savefig(out / "timeline.png", dpi=100)
plt.show()
top = det.segments.sort_values("score", ascending=False).head(1)
if len(top):
    row = top.iloc[0]
    lesson.say(f"Highest score {row['score']:.2f} at {row['time_s']:.1f} s; the method said: "
               f"*{str(row.get('explanation', '')).strip()[:200] or '(no explanation)'}*")
flagged = widgets.flagged_intervals(det.frame_scores, THRESHOLD, det.fps)
lesson.say(f"At threshold {THRESHOLD} the explorer flags {len(flagged)} interval(s)"
           + ("" if len(flagged) else
              f": every score is below it, so drag the slider under the peak "
              f"({np.nanmax(det.frame_scores):.2f}) to see which frames rise first") + ".")

# %%
widgets.explorer(det, labels=labels, video=str(VIDEO), threshold=THRESHOLD)

# %% [markdown]
# ## Summary
#
# - `vadnb.compare.detect_one(video, method, prompt)` runs any method on any video; the
#   upload form above is a thin layer over it.
# - Without ground truth, the timeline and the method's own words are what you judge by:
#   does the score rise where something unusual happens, and is the explanation about it?
# - A typed description (AnyAnomaly) is a question you ask the video; other methods decide
#   for themselves what is unusual.
#
# ## Exercises
#
# 1. Upload a clip with an obvious event and run the classical baseline and AnyAnomaly.
#    Which one puts its peak on the event?
# 2. Change the prompt for the same clip ("a person falling", "a car"). How does the
#    timeline change, and is the reason the VLM gives about your description?
# 3. Run VERA on your clip (notebook 70 learns its questions). Does it say *why*?

# %% [markdown]
# *The words used here are defined once, in the [glossary](https://github.com/vadnb/vadnb/blob/main/README.md#glossary).*
