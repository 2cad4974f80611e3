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
# # 20 · Captioning and cleaning: LAVAD's first two steps
#
# LAVAD (Zanella et al., CVPR 2024) detects anomalies **without any training**: a captioner
# describes frames in words, a large language model reads the words and says how suspicious
# the scene is. This notebook covers the part before the LLM: which frames get a caption,
# and how LAVAD *cleans* noisy captions by retrieving, for every frame, the best-matching
# caption of the same video.
#
# In this notebook you will learn:
# - which frames LAVAD scores (the **centre frames**, one every 16 frames at the native
#   rate) and which frames it looks at around them (a **window** of 10 s, 10 frames);
# - how the **caption index** of a video is built (its unique captions, as text embeddings);
# - how **caption cleaning** works: every window frame is replaced by its nearest caption,
#   giving each centre frame a **temporal description** of 10 captions in time order;
# - what these steps produce when perception is perfect (captions that state what happens),
#   before any model runs;
# - why the cleaning helps, seen on an image-caption similarity matrix.
#
# Where it sits: after `10_frame_extraction` (reading the frames exactly) and before
# `30_llm_temporal_summaries`, which hands the temporal descriptions to the LLM.
# The code lives in `vadnb/lavad/` (the algorithm alone in `vadnb/lavad/core.py`); this
# notebook runs it and opens up its tables.

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vadnb/vadnb/blob/main/notebooks/20_captioning_and_cleaning.ipynb)
#
# **On Colab**: choose a GPU first (Runtime › Change runtime type › **T4 GPU**), then run
# the cells in order; the next cell installs the suite (a minute or two) and is safe to re-run.
# With `PROFILE = "colab"` this notebook downloads, once: Salesforce/blip2-opt-2.7b
# (captioner, ~15.5 GB), imagebind_huge (embedder, ~4.5 GB; weights CC BY-NC-SA 4.0:
# non-commercial use only) and Qwen/Qwen2.5-3B-Instruct (llm, ~6.2 GB): ~26.2 GB in all (sizes
# approximate). The `tiny` profile (the default without a GPU) downloads nothing. Each Colab
# notebook starts on a fresh machine: set `KEEP_ON_DRIVE = True` in the next cell to keep the
# downloads and vadnb's cache on your Google Drive, so the next notebook reuses them (it
# prints the space needed and Drive's free space).

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
        keep_on_drive("20")

# %% tags=["parameters"]
PROFILE = None             # "tiny" (CPU), "colab" (T4), "paper", None: $VADNB_PROFILE or auto
OUTPUT_DIR = "outputs/20"  # captions.csv, similarity.png, contact_sheet.png go here
VIDEO = None               # a video path, None: the first anomalous campus test clip
SHOW_POSITIONS = 4         # positions (rows) on the contact sheet

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import vadnb
from IPython.display import display

from vadnb import lavad, plots, stages, video

env = vadnb.setup(PROFILE)
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)

# %%
from vadnb import lesson

lesson.references("20")
lesson.banner(env)

# %% [markdown]
# The pipeline at a glance: each box is a stage and who does it, and below it what
# the stage hands to the next. The sections below walk through the stages in order.

# %%
from vadnb.plots import pipeline

pipeline("lavad");

# %% [markdown]
# ## The video and the frames LAVAD uses
#
# By default we take the first test clip of the *campus* benchmark (notebook 00) that
# contains an anomaly: a fixed camera over a campus path at 10 frames per second.

# %%
labels = None
if VIDEO is None:
    from vadnb.data import load_campus

    bench = load_campus().subset("test")
    clip = bench.videos[bench.videos.is_anomalous].iloc[0]
    VIDEO, labels = clip.path, bench.frame_labels(clip["name"])
info = video.probe(VIDEO)
print(f"{Path(VIDEO).name}: {info.num_frames} frames at {info.fps:g} fps "
      f"= {info.num_frames / info.fps:.1f} s")
if labels is not None:
    print(lavad.truth_statement(labels, info.fps).replace("Shaded: the", "The"))

# %% [markdown]
# LAVAD's settings are a `Config` dataclass with the paper's defaults; each field has a
# docstring (`help(lavad.Config)`).
#
# - **Centre frames**: frame 0, 16, 32, ... at the video's *native* rate. At 30 fps
#   (UCF-Crime) that is a score every 0.53 s; at 10 fps (campus) every 1.6 s.
# - **Window**: 10 *seconds* around each centre frame, 10 frames spread evenly over it.
#   Because it is measured in seconds, the window covers the same stretch of time at any
#   frame rate (300 frames at 30 fps, 100 at 10 fps). Near the ends it is clipped.
#   `lavad.window_frames` picks the frames exactly as the official code does.

# %%
cfg = lavad.Config()
centres = stages.centre_frames(info.num_frames, cfg.stride)
windows = np.stack([lavad.window_frames(int(c), info.num_frames, info.fps, cfg.window_s,
                                        cfg.frames_per_window) for c in centres])
print(f"{len(centres)} centre frames: {centres.tolist()}")
print(f"window of centre frame {centres[len(centres) // 2]}: "
      f"{windows[len(centres) // 2].tolist()}")

# %% [markdown]
# A picture of the same thing: each row is one centre frame (black dot) and the 10 frames
# its window samples (blue ticks). Windows overlap heavily: neighbouring positions see
# almost the same stretch of video, which is what makes the scores smooth in time.

# %%
fig, ax = plt.subplots(figsize=(10, 3.2))
for row, (c, w) in enumerate(zip(centres, windows)):
    ax.plot(w / info.fps, np.full(len(w), row), "|", color="tab:blue", ms=8)
    ax.plot(c / info.fps, row, "o", color="black", ms=4)
ax.set_xlabel("time (s)")
ax.set_ylabel("position")
ax.set_title("centre frames (dots) and their 10-frame windows (ticks)")
plt.show()

# %% [markdown]
# ## See it work first: perfect perception
#
# Before any model runs, feed LAVAD inputs whose meaning is known. `lavad.oracle_backends`
# builds a captioner, an embedder and an LLM that **read the ground truth** from the
# pixels (only for the campus clips it was built from): the captioner says "something
# unusual: Vehicle" exactly on the anomalous frames and "people walk along a path"
# elsewhere, and the embedder puts unusual frames and captions in one direction, normal ones
# in another. The oracle *states what happens*: this is **perfect perception**.
#
# What it tests: LAVAD's own steps, exactly as they run with real models: which frames are
# captioned, how the windows are sampled, how cleaning retrieves a caption for every window
# frame, and the temporal descriptions that result. What it does not test: whether any
# captioner sees anything (its captions are right by construction) or whether an embedder
# matches images to words. Nothing is downloaded and no model runs. The oracle LLM's
# summaries and scores are in the table too; notebook 30 explains them.

# %%
from vadnb.data import load_campus

campus_test = load_campus().subset("test")
rows = np.linspace(0, len(centres) - 1, min(SHOW_POSITIONS, len(centres))).round().astype(int)
ideal = None
if Path(VIDEO).stem in set(campus_test.videos.name):
    ideal = lavad.run(VIDEO, backends=lavad.oracle_backends(campus_test))
    lesson.say(lavad.lesson.oracle_statement(ideal))
    table = ideal.segments[["centre_frame", "captions", "temporal_description", "summary",
                            "raw_score"]]
    with pd.option_context("display.max_colwidth", None):  # the whole description
        display(table.assign(temporal_description=table.temporal_description
                             .str.replace("\n", " | ")))
else:
    lesson.say(f"{Path(VIDEO).name} is not a campus test clip: the oracle only knows those.")

# %% [markdown]
# The contact sheet of the same run: each row is one position's window, each picture one
# of its frames with the caption cleaning retrieved for it; the row title is the caption of
# the centre frame. With perfect perception the words are readable and true, so you can
# check the mechanics by eye: a window that straddles the event mixes both captions.

# %%
if ideal is not None:
    fig = lavad.plot_contact_sheet(ideal, rows)
    fig.savefig(out / "oracle_contact_sheet.png", dpi=80)
    plt.show()

# %% [markdown]
# ## Step 1: caption the centre frames
#
# The original code captions *every* frame, yet only ever reads the captions of frames
# whose index is a multiple of 16: we caption only those. The paper also pooled the
# captions of **five** BLIP-2 captioners into the caption index (`lavad.paper_config`
# sets that up). Every such difference from the official code is listed once, with its
# reason and effect, in notebook 30 (`lavad.DIFFERENCES`).

# %% [markdown]
# The whole method, as `vadnb` runs it, is one function: `lavad.pipeline`, the paper's
# steps numbered in order. Steps 1-3 are this notebook's (caption the centre frames, build
# the caption index, clean the captions over each window); 4-5 are notebook 30's (summarise
# and score with the LLM); 6-8 notebook 40's (summary index, refinement, frame scores).
# Every model call goes through `rt.map`, which keys each answer by what was sent (the
# model, the exact text, the frames, the settings): change a prompt and the model is asked
# again; change nothing and the answer comes from the cache.

# %%
lesson.show_source(lavad.pipeline)

# %% [markdown]
# Now the same steps with this profile's models (printed by `vadnb.setup` above).
# `lavad.run` checks the settings, opens the video and calls the pipeline; every model call
# is cached, so the next notebooks reuse this run for free. Its `segments` table has one row
# per centre frame.
#
# With `tiny` the models have random weights: their captions are strings of random words,
# which mean nothing. This part only shows that the code runs on your machine and what each
# table looks like, so `lavad.lesson.glimpse_table` shows three rows and cuts long random
# text to a few characters, with its full length (a real captioner's text is shown whole).

# %%
det = lavad.run(VIDEO, profile=env.profile)
random_words = "captioner" in lavad.lesson.random_roles(det)  # cut its captions when shown
print(det.model_calls.to_string(index=False) if det.model_calls["calls"].sum()
      else "no model call: every answer came from the cache")

# %%
seg = det.segments
lavad.lesson.glimpse_table(seg[["centre_frame", "time_s", "captions"]], random_words)

# %% [markdown]
# ## Step 2: the caption index
#
# The unique captions of the video, each embedded with the **text** encoder of a
# vision-language embedder (ImageBind in the paper) and L2-normalised, so that the inner
# product of two vectors is their cosine similarity. This index is per video: a frame can
# only be described with words that the captioner used somewhere in the same video. (With
# `tiny`, the index holds the random-word captions above; the line under the table counts
# them.)

# %%
tables = lavad.stage_tables(det)  # every stage's output as a table
index = det.extras["caption_index"]
print(f"{len(index)} unique caption(s) in the index")
lavad.lesson.glimpse_table(tables["caption_index"], random_words)

# %% [markdown]
# ## Step 3: cleaning, frame by frame
#
# Every frame of every window is embedded with the **image** encoder and replaced by its
# single nearest caption (K = 1) in the index. The 10 retrieved captions, in time order,
# are the centre frame's **temporal description**.
#
# The contact sheet of this profile's run, for the same positions as the perfect-perception
# one above (with `tiny`, only the first of them: its words are random, so the sheet only
# shows the layout).

# %%
fig = lavad.plot_contact_sheet(det, rows[:1] if random_words else rows)
fig.savefig(out / "contact_sheet.png", dpi=80)
plt.show()

# %% [markdown]
# ## The image-caption similarity matrix
#
# Rows: the window frames of the `SHOW_POSITIONS` positions chosen for the contact sheets
# (10 frames each); columns: the captions of the index;
# colour: cosine similarity. Cleaning picks the brightest cell of each row. A good
# embedder makes one column stand out per row. The lines printed under the figure say, from
# the numbers, how clearly it does for this run and for the perfect-perception run above.

# %%
frame_emb = det.extras["frame_embeddings"][rows]  # [positions, 10, D]
frame_emb = frame_emb.reshape(-1, frame_emb.shape[-1])
similarity = frame_emb @ det.extras["caption_embeddings"].T
fig = plots.similarity_matrix(similarity, index, title="cosine similarity: window frames x caption index",
                              row_label="window frame (position x 10)",
                              column_label="caption in the index", profile=det.profile)
fig.savefig(out / "similarity.png", dpi=80)
plt.show()
print(f"{det.profile} profile: " + lavad.similarity_statement(similarity, index))
if ideal is not None:
    ex = ideal.extras
    ideal_frames = ex["frame_embeddings"][rows].reshape(-1, ex["frame_embeddings"].shape[-1])
    print("perfect perception: " + lavad.similarity_statement(
        ideal_frames @ ex["caption_embeddings"].T, ex["caption_index"]))

# %% [markdown]
# ## Why cleaning helps
#
# A captioner looks at one frame at a time and sometimes hallucinates: a shadow becomes "a
# man holding a gun". Cleaning keeps such a caption only if the image encoder agrees that
# some frame looks most like it. Two effects follow:
#
# - a caption that no image prefers disappears from the temporal descriptions;
# - each description spans 10 s, so the LLM reads *what happens over time*, not a snapshot.
#
# Count how often each caption appears before (one per centre frame) and after cleaning
# (ten per window). Captions that vanish after cleaning are the ones no frame chose. (With
# `tiny` the captions counted are random words: the counts show the mechanism, not a
# hallucination caught.)

# %%
counts = tables["captions"]["caption"].value_counts()
after = tables["cleaning"]["caption"].value_counts()
usage = pd.DataFrame({"raw (centre frames)": counts,
                      "cleaned (window frames)": after}).fillna(0).astype(int)
usage["never retrieved"] = usage["cleaned (window frames)"] == 0
print(f"{int(usage['never retrieved'].sum())} of {len(usage)} caption(s) never retrieved")
lavad.lesson.glimpse_table(usage.sort_values("raw (centre frames)", ascending=False),
                           random_words)

# %% [markdown]
# The table of this notebook, one row per centre frame: the raw caption, the caption
# retrieved for the window frame nearest the centre, and the whole temporal description.
# It is saved whole to `captions.csv`; below, its first rows (cut, with `tiny`).

# %%
middle = [int(np.argmin(np.abs(w - c))) for w, c in zip(det.extras["window_frames"], centres)]
captions_csv = pd.DataFrame({
    "centre_frame": seg["centre_frame"],
    "time_s": seg["time_s"].round(2),
    "raw_caption": seg["captions"],
    "cleaned_caption": [d.split("\n")[m] for d, m in zip(seg["temporal_description"], middle)],
    "temporal_description": seg["temporal_description"].str.replace("\n", " | "),
})
captions_csv.to_csv(out / "captions.csv", index=False)
print(f"wrote {out / 'captions.csv'}: {len(captions_csv)} rows")
lavad.lesson.glimpse_table(captions_csv, random_words)

# %% [markdown]
# ## Summary
#
# - LAVAD scores one **centre frame** every 16 frames; only those frames need a caption.
# - Around each centre frame, a **10 s window** of 10 frames is embedded with the image
#   encoder; each frame takes its nearest caption from the video's **caption index**.
# - The result, the **temporal description**, is what the LLM reads in notebook 30.
# - Perfect perception (oracle captions that state what happens) shows these steps at work
#   before any model runs: it tests LAVAD's windows and cleaning, not a captioner.
#
# ## Exercises
#
# 1. Run with `stride=8` (`lavad.run(VIDEO, stride=8)`). How many captioner calls does it
#    cost, and how does the temporal description change?
# 2. Change `window_s` to 4 and to 20. What happens to the temporal descriptions near the start of
#    the video, where the window is clipped?
# 3. With a real profile, find a caption in the index that no window frame retrieves.
#    Look at its centre frame: was the caption wrong?
# 4. Set `caption_k=3`: each frame now lists its three nearest captions. Is the
#    description more informative, or just longer?
# 5. Run twice with two different captioners (`captioner_model=...`) and compare their
#    caption indexes. Which captions would a pooled index add, and would the cleaning pick
#    them?

# %% [markdown]
# *The words used here are defined once, in the [glossary](https://github.com/vadnb/vadnb/blob/main/README.md#glossary).*
