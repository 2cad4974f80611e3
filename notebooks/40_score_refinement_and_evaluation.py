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
# # 40 · Score refinement and evaluation: LAVAD's last step, and how good it is
#
# The LLM of notebook 30 scores each position on its own; neighbouring positions can
# disagree wildly. LAVAD's last step **refines** each score with the scores of the
# summaries that best match the position's video content. Then we measure the result the
# way every paper does: frame-level ROC-AUC and average precision over a test split.
#
# In this notebook you will learn:
# - how the refinement works (K = 10 nearest summaries, softmax weights), on one position;
# - whether it helps: raw vs refined scores, and an ablation over K and the temperature;
# - how position scores become **frame scores** (repeat over 16 frames, no smoothing);
# - frame-level **micro AUC / AP** over all test clips, and per anomaly class;
# - what LAVAD's own steps keep of a *perfect* perception (an oracle in place of the models);
# - how to explore a detection interactively.
#
# Where it sits: after `30_llm_temporal_summaries`; the other methods (notebooks 50-70) are
# evaluated the same way, and notebook 80 compares them all.

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vadnb/vadnb/blob/main/notebooks/40_score_refinement_and_evaluation.ipynb)
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
        keep_on_drive("40")

# %% tags=["parameters"]
PROFILE = None             # "tiny" (CPU), "colab" (T4), "paper", None: $VADNB_PROFILE or auto
OUTPUT_DIR = "outputs/40"  # metrics.json, frame_scores/*.npy, timeline.png, ablation.csv go here
SPLIT = "test"             # which campus split to evaluate
MAX_VIDEOS = None          # None: every clip of the split, a number: that many (mixed)
ABLATION_K = [1, 3, 10]    # refinement K values to compare
ABLATION_T = [0.1, 1.0]    # refinement temperatures to compare
ORACLE_WINDOWS = [10, 4]   # window lengths (s) for the perfect-perception run
RELEASED_DIR = None        # the paper's released results for one dataset (e.g. ".../ucf_crime")

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from IPython.display import Markdown, display

import vadnb
from vadnb import lavad, metrics, plots, stages
from vadnb.data import load_campus
from vadnb.detect import TINY_WARNING

env = vadnb.setup(PROFILE)
out = Path(OUTPUT_DIR)
(out / "frame_scores").mkdir(parents=True, exist_ok=True)


def warn(detections) -> str:
    """The tiny-profile warning, to print next to every number."""
    return f"  [{TINY_WARNING}]" if any(d.meaningless for d in detections) else ""


# %%
from vadnb import lesson

lesson.references("40")
lesson.banner(env)

# %% [markdown]
# ## Run LAVAD on the split
#
# `lavad.run_many` runs the stages over all clips *stage by stage*: the captioner captions
# every clip, is released, then the embedder runs, then the LLM... so each model is loaded
# once and a 16 GB GPU only holds one at a time. Everything is cached (notebooks 20 and 30
# already paid for the first clip).

# %%
bench = load_campus().subset(SPLIT)
videos = bench.videos
if MAX_VIDEOS is not None:  # keep both normal and anomalous clips
    videos = (videos.assign(_o=videos.groupby("is_anomalous").cumcount())
              .sort_values(["_o", "name"]).head(int(MAX_VIDEOS)).drop(columns="_o"))
detections = dict(zip(videos.name, lavad.run_many(list(videos.path), profile=env.profile)))
labels = {name: bench.frame_labels(name) for name in videos.name}
classes = dict(zip(videos.name, videos.label))
videos[["name", "label", "num_frames", "fps"]]

# %% [markdown]
# ## Refinement, on one position
#
# The **summary index** of a video holds its unique summaries, embedded with the *text*
# encoder. Each position's window is embedded as a *video* the way the official code feeds
# ImageBind: a 2-frame clip (the first and the last of the window's 10 frames) in three
# square crops (left, centre, right), whose embeddings are averaged. The position's
# refined score is the weighted mean of the scores of its K = 10 nearest
# summaries, with weights `softmax(cosine similarity / temperature)`, temperature 1:
#
# $$\tilde s_i = \sum_{k=1}^{K} \frac{e^{\cos(v_i, t_k)/\tau}}{\sum_j e^{\cos(v_i, t_j)/\tau}}\, s_k$$
#
# Cosine similarities lie in [-1, 1], so with temperature 1 the weights are close to
# uniform: the refinement is mostly an average over the K best-matching moments of the
# video. Here are the neighbours of the middle position of the first anomalous clip:

# %%
name = next((n for n in videos.name if classes[n] != "Normal"), videos.name.iloc[0])
det = detections[name]
i = len(det.segments) // 2
ex = det.extras
neighbours = pd.DataFrame({
    "summary": [ex["summary_index"][j] for j in ex["neighbours"][i]],
    "cosine": ex["video_embeddings"][i] @ ex["summary_embeddings"][ex["neighbours"][i]].T,
    "weight": ex["weights"][i],
    "score": ex["summary_scores"][ex["neighbours"][i]],
})
print(f"{name}, position {i}: raw {det.segments.raw_score.iloc[i]:.2f} -> refined "
      f"{det.segments.score.iloc[i]:.2f} = sum(weight x score){warn([det])}")
neighbours

# %% [markdown]
# The refinement as `vadnb` runs it (the same function scores every position above):

# %%
lesson.show_source(lavad.refine_scores)

# %%
fig, ax = plt.subplots(figsize=(7, 2.5))
ranks = np.arange(1, len(neighbours) + 1)
ax.bar(ranks, neighbours.weight, color="tab:blue")
ax.set_xticks(ranks)
ax.set_xlabel("neighbour rank (1 = nearest summary)")
ax.set_ylabel("softmax weight")
ax.set_title("refinement weights of one position"
             + ("\n" + TINY_WARNING if det.meaningless else ""), fontsize=9)
plt.show()

# %% [markdown]
# ## To frames
#
# Each position's score covers its 16 frames `[centre, centre + 16)`; the last position
# is cut at the end of the video. No smoothing: LAVAD relies on the refinement alone.
# Raw (LLM) and refined scores over time, ground truth shaded:

# %%
fig = plots.plot_many({"raw (LLM)": lavad.frame_scores_of(det, "raw_score"),
                       "refined": det.frame_scores}, labels=labels[name], fps=det.fps,
                      title=f"LAVAD on {name} ({classes[name]})" + warn([det]))
fig.savefig(out / "timeline.png", dpi=80, bbox_inches="tight")
plt.show()

# %% [markdown]
# ## Frame-level evaluation
#
# As in all four papers: concatenate every clip's frames into one long sequence and
# compute one ROC-AUC and one average precision (*micro* metrics, scikit-learn underneath).
# `lavad.evaluate` does it for the raw and the refined scores.
#
# **Which AP?** Two definitions are in use. scikit-learn's `average_precision_score` sums
# precision steps; LAVAD's and XD-Violence's evaluation code integrate the PR curve with the
# trapezoid rule (`auc(recall, precision)`), and that is the AP their papers report. With
# LAVAD's 11 possible scores many frames are tied, and the two differ. We print both, and
# every table below names the one it shows.

# %%
result = lavad.evaluate(detections, labels, classes)
print(f"AP = {metrics.ap_name('sklearn')}\nAP_trapezoid = {metrics.ap_name('trapezoid')}"
      f" (reported for XD-Violence: {metrics.REPORTED_AP['xd-violence']})")
for kind in ("raw", "refined"):
    print(f"{kind:8} AUC {result[f'auc_{kind}']:.3f}  AP {result[f'ap_{kind}']:.3f}  "
          f"AP_trapezoid {result[f'ap_{kind}_trapezoid']:.3f}{warn(detections.values())}")

# %% [markdown]
# Per class: each anomaly class judged against the same normal clips (the usual protocol).
# The `ap` columns are scikit-learn's average precision.

# %%
per_class = result["per_class_refined"].merge(result["per_class_raw"], on=["class", "videos"],
                                              suffixes=("_refined", "_raw"))
per_class

# %% [markdown]
# ## Ablation: does the refinement help?
#
# The refinement needs no model call: `lavad.rescore` re-weights the stored embeddings with
# another K or temperature. K = 1 with a low temperature keeps (almost) only the nearest
# summary; K = 10, temperature 1 is the paper's setting.

# %%
def ablation_table(dets: dict) -> pd.DataFrame:
    """Raw scores, then every (K, temperature) of the ablation; both AP variants."""
    raw = {n: lavad.frame_scores_of(dets[n], "raw_score") for n in labels}
    runs = {"none (raw LLM scores)": raw}
    for k in ABLATION_K:
        for t in ABLATION_T:
            runs[f"K={k}, temperature={t:g}"] = {n: lavad.rescore(dets[n], refine_k=k,
                                                                  temperature=t) for n in labels}
    return pd.DataFrame([{"refinement": what, "auc": metrics.frame_auc(labels, sc),
                          "ap (sklearn)": metrics.frame_ap(labels, sc),
                          "ap (trapezoid)": metrics.frame_ap(labels, sc, "trapezoid")}
                         for what, sc in runs.items()])


ablation = ablation_table(detections)
ablation.to_csv(out / "ablation.csv", index=False)
ablation

# %% [markdown]
# ## What if perception were perfect?
#
# With the tiny profile the numbers above say nothing. To see what LAVAD's *own* steps do,
# replace the models by an **oracle**: `lavad.oracle_backends` builds a captioner, an
# embedder and an LLM that read the ground truth from the pixels (the captioner says
# "something unusual: Vehicle" exactly on the anomalous frames, the LLM's score is the share
# of unusual moments in the window). No model runs; whatever is lost from the ground truth
# is lost by the windows, the refinement and the frame expansion.

# %%
oracle = lavad.oracle_backends(bench)
oracle_runs, rows = {}, []
for window_s in ORACLE_WINDOWS:
    for clip in lavad.VIDEO_CLIPS:  # the official 2-frame / 3-crop clip, and all 10 frames
        dets = dict(zip(videos.name, lavad.run_many(list(videos.path), backends=oracle,
                                                    window_s=window_s, video_clip=clip)))
        res = oracle_runs[window_s, clip] = lavad.evaluate(dets, labels) | {"detections": dets}
        rows.append({"window_s": window_s, "video_clip": clip, "auc_raw": res["auc_raw"],
                     "auc_refined": res["auc_refined"], "ap_raw (sklearn)": res["ap_raw"],
                     "ap_refined (sklearn)": res["ap_refined"],
                     "ap_refined (trapezoid)": res["ap_refined_trapezoid"]})
oracle_table = pd.DataFrame(rows)
oracle_table.to_csv(out / "oracle.csv", index=False)
oracle_table

# %% [markdown]
# Three things to look for in this table, all about how the method's own steps treat these
# short clips (the lines under the table are computed from it):
#
# - **The window length.** Campus clips last 15 s; a 10 s window spans two thirds of a
#   clip, so every event is smeared over its neighbours. UCF-Crime videos last minutes.
# - **The video clip.** The official video embedding reads only the first and the last
#   frame of the window, 10 s apart; `video_clip="pairs"` reads all ten.
# - **Temperature 1 on cosine similarities gives almost uniform weights.** The refinement
#   pulls every position of a video towards the video's mean: the order *within* a video is
#   kept, but its range shrinks, and the micro AUC compares positions *across* videos.

# %%
for window_s in ORACLE_WINDOWS:
    t = oracle_table[oracle_table.window_s == window_s].set_index("video_clip")
    print(f"window {window_s} s: refined AUC {t.auc_refined['imagebind']:.3f} with the official "
          f"clip, {t.auc_refined['pairs']:.3f} with all 10 frames (raw: {t.auc_raw.iloc[0]:.3f})")
oracle_ablation = ablation_table(oracle_runs[ORACLE_WINDOWS[0], "imagebind"]["detections"])
print(f"oracle ablation, window {ORACLE_WINDOWS[0]} s: refined AUC from "
      f"{oracle_ablation.auc[1:].min():.3f} to {oracle_ablation.auc[1:].max():.3f} over "
      f"{len(oracle_ablation) - 1} settings (raw {oracle_ablation.auc[0]:.3f})")
oracle_ablation

# %% [markdown]
# ## The official defaults beside vadnb's options
#
# `lavad.Config()`'s defaults compute what the official code computes (greedy decoding
# apart, a choice for reproducible runs). Each of vadnb's named options is one setting
# away; here each runs beside the defaults on the same perfect-perception inputs
# (`lavad.options_table`), and `lavad.options_statement` says what it changed:
# `video_clip='pairs'` embeds all the window's frames instead of ImageBind's 2-frame clip,
# `summary_max_new_tokens=160` gives every summary one budget, `llm_decoding='paper'`
# samples as the paper did, `caption_max_new_tokens=30` caps the captions.

# %%
options = lavad.options_table(bench, backends=oracle, names=list(videos.name))
options.to_csv(out / "options.csv", index=False)
print(lavad.options_statement(options))
options

# %% [markdown]
# ## What differs from the official code
#
# Everything above follows the official computation except what this list says (the same
# list as in notebooks 20 and 30, from `lavad.DIFFERENCES`):

# %%
display(Markdown(stages.differences_markdown(lavad.DIFFERENCES,
                                             "LAVAD in vadnb vs the official code")))

# %% [markdown]
# ## The paper's own intermediate results
#
# The authors released their captions, temporal summaries and scores for UCF-Crime and
# XD-Violence (links in the official README). Unzip one and set `RELEASED_DIR` to its
# dataset folder: `lavad.load_released` turns it into Detections, one per video, whose
# refined score is the softmax over the released neighbour similarities, exactly as the
# official `src/eval.py` computes it; `lavad.rescore` re-weights it with another K or
# temperature, and `lavad.evaluate` scores it against the benchmark's labels
# (`vadnb.data.load_ucf_crime` / `load_xd_violence`).

# %%
if RELEASED_DIR:
    released = lavad.load_released(RELEASED_DIR)
    first = next(iter(released.values()))
    print(f"{len(released)} videos from {RELEASED_DIR}; the first, {first.video}: "
          f"{len(first.segments)} positions, {first.num_frames} frames")
    display(first.segments[["centre_frame", "summary", "raw_score", "score"]].head())
else:
    print("RELEASED_DIR is not set: nothing to load (see the markdown above).")

# %% [markdown]
# ## Save the results
#
# `metrics.json` holds the numbers with the profile and the *meaningless* flag (true for
# the tiny profile), `frame_scores/<clip>.npy` one refined score per frame.

# %%
for n, d in detections.items():
    np.save(out / "frame_scores" / f"{n}.npy", np.asarray(d.frame_scores, dtype=np.float64))
summary = {k: result[k] for k in ("videos", "frames", "auc_raw", "ap_raw", "auc_refined",
                                  "ap_refined", "ap_raw_trapezoid", "ap_refined_trapezoid",
                                  "profile", "meaningless")}
summary["ap_variants"] = {"ap_*": metrics.ap_name("sklearn"),
                          "ap_*_trapezoid": metrics.ap_name("trapezoid")}
summary["split"] = SPLIT
summary["warning"] = TINY_WARNING if result["meaningless"] else ""
summary["per_class"] = per_class.to_dict(orient="records")
(out / "metrics.json").write_text(json.dumps(summary, indent=2))
summary

# %% [markdown]
# ## Explore a detection
#
# Click on the timeline (or drag the slider) to see the frame, its summary and score; move
# the threshold to see which intervals would raise an alarm.

# %%
from vadnb.widgets import explorer  # noqa: E402

explorer(det, labels=labels[name])

# %% [markdown]
# ## Summary
#
# - Refinement: each position's score becomes a softmax-weighted mean of the scores of its
#   10 nearest summaries (video embedding vs summary text embeddings), temperature 1; the
#   video embedding is ImageBind's 2-frame clip (window ends) in 3 crops, as officially.
# - Frame scores repeat each position's score over 16 frames; no smoothing.
# - Evaluation: micro frame AUC / AP over the whole split, and per class against the normal
#   clips. Two APs exist; the papers report the trapezoid one. With the tiny profile every
#   number is meaningless; the oracle shows what the method's own steps keep of a perfect
#   perception.
#
# ## Exercises
#
# 1. Re-run the real models with `window_s=4` (`lavad.run_many(..., window_s=4)`): only the
#    windows and the LLM are recomputed, the captions come from the cache. Does the
#    oracle's lesson hold for real models?
# 2. In the ablation, which setting is best on this split? Would you trust that choice,
#    made on the test split? (Make it on `val` instead: `SPLIT = "val"`.)
# 3. Add Gaussian smoothing (`vadnb.stages.gaussian_smooth`) to the refined scores. Does
#    AUC improve? LAVAD does not smooth; VERA (notebook 70) does.
# 4. Which class is hardest? Look at its clips in the explorer: what do the summaries say?
# 5. Evaluate per video (`vadnb.metrics.per_video`) and find the clip where refinement hurts
#    the most.

# %% [markdown]
# *The words used here are defined once, in the [glossary](https://github.com/vadnb/vadnb/blob/main/README.md#glossary).*
