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
# - what the refinement does when perception is perfect: raw vs refined scores on
#   **oracle inputs** (captions, embeddings and scores that state what happens), first;
# - that the refinement is **attention pooling** (Nadaraya-Watson, with a cosine kernel),
#   and what its temperature and K do, swept on those inputs;
# - how position scores become **frame scores** (repeat over 16 frames, no smoothing);
# - frame-level **micro AUC / AP** over all test clips, per anomaly class, and the floor a
#   constant detector sets;
# - then the same steps with this profile's models, and how to explore a detection.
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
SWEEP_T = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]  # temperatures of the attention-pooling plot
ORACLE_WINDOWS = [10, 4]   # window lengths (s) for the perfect-perception run
RELEASED_DIR = None        # the paper's released results for one dataset (e.g. ".../ucf_crime")

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import vadnb
from vadnb import lavad, lesson, metrics, plots
from vadnb.data import load_campus
from vadnb.detect import TINY_WARNING

env = vadnb.setup(PROFILE)
out = Path(OUTPUT_DIR)
(out / "frame_scores").mkdir(parents=True, exist_ok=True)


def warn(detections) -> str:
    """The tiny-profile warning, to print next to every number."""
    return f"  [{TINY_WARNING}]" if any(d.meaningless for d in detections) else ""


# %%
lesson.references("40")
lesson.banner(env)

# %% [markdown]
# ## See it work first: perfect perception
#
# Before any model runs, feed LAVAD inputs whose meaning is known. `lavad.oracle_backends`
# builds a captioner, an embedder and an LLM that **read the ground truth** from the
# pixels: the captioner says "something unusual: Vehicle" exactly on the anomalous frames
# and "people walk along a path" elsewhere, the embedder puts unusual frames and captions
# in one direction and normal ones in another, and the LLM's score is the share of unusual
# moments in the window's temporal description. The oracle *states what happens*.
#
# What this tests: LAVAD's own steps (the windows, the caption cleaning, the summary index,
# the video embedding of each window, the refinement and the frame expansion), exactly as
# they run with real models. What it does not test: whether any captioner, embedder or LLM
# perceives the scene; a real model can only do worse than the oracle's raw scores. Nothing
# is downloaded and no model runs.

# %%
bench = load_campus().subset(SPLIT)
videos = bench.videos
if MAX_VIDEOS is not None:  # keep both normal and anomalous clips
    videos = (videos.assign(_o=videos.groupby("is_anomalous").cumcount())
              .sort_values(["_o", "name"]).head(int(MAX_VIDEOS)).drop(columns="_o"))
labels = {name: bench.frame_labels(name) for name in videos.name}
classes = dict(zip(videos.name, videos.label))
oracle = lavad.oracle_backends(bench)
ideal = dict(zip(videos.name, lavad.run_many(list(videos.path), backends=oracle)))
ideal_result = lavad.evaluate(ideal, labels, classes)
name = next((n for n in videos.name if classes[n] != "Normal"), videos.name.iloc[0])
videos[["name", "label", "num_frames", "fps"]]

# %% [markdown]
# Raw (the oracle LLM's) and refined scores of the first anomalous clip over time, ground
# truth shaded. Each position's score covers its 16 frames `[centre, centre + 16)`; the
# last position is cut at the end of the video. No smoothing: LAVAD relies on the
# refinement alone. The line under the figure is computed over all the clips.

# %%
fig = plots.plot_many({"raw (oracle LLM)": lavad.frame_scores_of(ideal[name], "raw_score"),
                       "refined": ideal[name].frame_scores}, labels=labels[name],
                      fps=ideal[name].fps,
                      title=f"LAVAD with perfect perception on {name} ({classes[name]})")
fig.savefig(out / "oracle_timeline.png", dpi=80, bbox_inches="tight")
plt.show()
lesson.say(lavad.lesson.refinement_statement(
    ideal_result, f"these {len(videos)} short campus clips with perfect perception"))

# %% [markdown]
# **The floor.** A detector that gives every frame the same score knows nothing. Its AUC is
# chance; its trapezoid AP is not zero and not the share of anomalous frames either, because
# the trapezoid rule joins the precision-recall curve's first point (recall 0, precision 1)
# straight to its only other point (notebook 00 explains it). Every AP below must be read
# against that floor:

# %%
constant = {n: np.full(len(y), 0.5) for n, y in labels.items()}
floor = metrics.frame_ap(labels, constant, variant="trapezoid")
refined_ap = ideal_result["ap_refined_trapezoid"]
lesson.say(f"A constant detector on these clips: AUC {metrics.frame_auc(labels, constant):.3f}, "
           f"step-wise AP {metrics.frame_ap(labels, constant):.3f}, trapezoid AP {floor:.3f}. "
           f"LAVAD's refined scores with perfect perception: trapezoid AP {refined_ap:.3f}, "
           f"{'above' if refined_ap > floor else 'not above'} that floor.")

# %% [markdown]
# ## Refinement is attention pooling
#
# The **summary index** of a video holds its unique summaries $t_j$, embedded with the
# *text* encoder, each with the LLM's score $s_j$. Each position $i$'s window is embedded as
# a *video* $v_i$ the way the official code feeds ImageBind: a 2-frame clip (the first and
# the last of the window's 10 frames) in three square crops (left, centre, right), averaged.
# The refined score of position $i$ is a softmax-weighted mean of the scores of its $K$
# nearest summaries $\mathcal N_K(i)$ (cosine similarity of unit vectors, $K = 10$,
# temperature $\tau = 1$, the paper's defaults):
#
# $$\tilde s_i \;=\; \sum_{j \in \mathcal N_K(i)}
#   \frac{\exp\big(\cos(v_i, t_j)/\tau\big)}{\sum_{l \in \mathcal N_K(i)} \exp\big(\cos(v_i, t_l)/\tau\big)}\; s_j$$
#
# This is **Nadaraya-Watson kernel regression**, which d2l's *attention pooling* chapter
# presents as the simplest attention: the query is the window's video embedding $v_i$, the
# keys are the summary embeddings $t_j$, the values their scores $s_j$, and the kernel is
# $\exp(\cos/\tau)$. The temperature plays the kernel width: as $\tau \to 0$ all the weight
# goes to the nearest summary; as $\tau$ grows the weights flatten to a plain mean of the
# $K$ neighbours. Cosines lie in $[-1, 1]$, so at $\tau = 1$ the weights are never far from
# uniform. (If a video has fewer than $K$ distinct summaries, every one of them votes.)
#
# The neighbours of the middle position of the clip above, with perfect perception:

# %%
i = len(ideal[name].segments) // 2
neighbours = lavad.lesson.neighbours_table(ideal[name], i)
print(f"{name}, position {i}: raw {ideal[name].segments.raw_score.iloc[i]:.2f} -> refined "
      f"{ideal[name].segments.score.iloc[i]:.2f} = sum(weight x score)")
print(lavad.lesson.neighbours_statement(ideal[name]))
neighbours

# %% [markdown]
# The refinement as `vadnb` runs it (the same function scores every position):

# %%
lesson.show_source(lavad.refine_scores)

# %% [markdown]
# ## Sweeping the temperature
#
# As d2l sweeps the kernel width, sweep $\tau$ (with $K = 10$) on the perfect-perception
# inputs: no model call, `lavad.rescore` re-weights the stored embeddings. Left: the clip
# above, refined at a few temperatures. Right: frame AUC and trapezoid AP over all clips,
# and the *effective number of neighbours* $1/\sum_j w_j^2$ (1 when one summary takes all
# the weight, $K$ when the weights are uniform; at most the number of distinct summaries when
# a video has fewer than $K$). The line under the figure is computed.

# %%
sweep = lavad.lesson.temperature_sweep(ideal, labels, SWEEP_T)
fig = lavad.lesson.plot_temperature_sweep(sweep, ideal[name], labels[name],
                                          [SWEEP_T[0], 0.1, 1.0, SWEEP_T[-1]])
fig.savefig(out / "temperature_sweep.png", dpi=80, bbox_inches="tight")
plt.show()
lo, hi, best = sweep.iloc[0], sweep.iloc[-1], sweep.loc[sweep.auc.idxmax()]
lesson.say(f"Perfect perception: frame AUC {lo.auc:.3f} at temperature {lo.temperature:g} "
           f"({lo['effective neighbours']:.1f} effective neighbours), {hi.auc:.3f} at "
           f"{hi.temperature:g} ({hi['effective neighbours']:.1f}); the best of the sweep is "
           f"{best.auc:.3f} at {best.temperature:g}, against {ideal_result['auc_raw']:.3f} "
           "for the raw scores.")
sweep

# %% [markdown]
# Where refinement lowers a score inside the event (the clip's left panel), the reason is the
# query: the video embedding of a window reads only the window's **first and last** frames,
# 10 s apart. On a 15 s clip whose event lasts a few seconds, both ends of most windows can
# fall outside the event, and then the nearest summary is a normal one even in the middle
# of the event. The next two tables take the method apart on the same inputs.
#
# ## Ablation over K and the temperature (perfect perception)
#
# K = 1 with a low temperature keeps (almost) only the nearest summary; K = 10,
# temperature 1 is the paper's setting.

# %%
oracle_ablation = lavad.lesson.ablation_table(ideal, labels, ABLATION_K, ABLATION_T)
print(lavad.lesson.ablation_statement(oracle_ablation, ideal))
oracle_ablation

# %% [markdown]
# ## Window length and video clip (perfect perception)
#
# - **The window length.** Campus clips last 15 s; a 10 s window spans two thirds of a
#   clip, so every event is smeared over its neighbours. UCF-Crime videos last minutes.
# - **The video clip.** The official video embedding reads only the first and the last
#   frame of the window; `video_clip="pairs"` reads all ten.
#
# The lines under the table are computed from it.

# %%
oracle_runs, rows = {}, []
for window_s in ORACLE_WINDOWS:
    for clip in lavad.VIDEO_CLIPS:  # the official 2-frame / 3-crop clip, and all 10 frames
        dets = dict(zip(videos.name, lavad.run_many(list(videos.path), backends=oracle,
                                                    window_s=window_s, video_clip=clip)))
        res = oracle_runs[window_s, clip] = lavad.evaluate(dets, labels)
        rows.append({"window_s": window_s, "video_clip": clip, "auc_raw": res["auc_raw"],
                     "auc_refined": res["auc_refined"], "ap_raw (sklearn)": res["ap_raw"],
                     "ap_refined (sklearn)": res["ap_refined"],
                     "ap_refined (trapezoid)": res["ap_refined_trapezoid"]})
oracle_table = pd.DataFrame(rows)
oracle_table.to_csv(out / "oracle.csv", index=False)
for window_s in ORACLE_WINDOWS:
    t = oracle_table[oracle_table.window_s == window_s].set_index("video_clip")
    print(f"window {window_s} s: refined AUC {t.auc_refined['imagebind']:.3f} with the official "
          f"clip, {t.auc_refined['pairs']:.3f} with all 10 frames (raw: {t.auc_raw.iloc[0]:.3f})")
oracle_table

# %% [markdown]
# ## The official defaults beside vadnb's options
#
# `lavad.Config()`'s defaults compute what the official code computes (greedy decoding
# apart, a choice for reproducible runs). Each of vadnb's named options is one setting
# away; here each runs beside the defaults on the same perfect-perception inputs
# (`lavad.options_table`), and `lavad.options_statement` says what it changed:
# `video_clip='pairs'` embeds all the window's frames instead of ImageBind's 2-frame clip,
# `summary_max_new_tokens=160` gives every summary one budget, `llm_decoding='paper'`
# samples as the paper did, `caption_max_new_tokens=30` caps the captions. (The oracle LLM
# answers the same whatever its budget or decoding.) Every difference from the official
# code, with its reason, is listed once, in notebook 30 (`lavad.DIFFERENCES`).

# %%
options = lavad.options_table(bench, backends=oracle, names=list(videos.name))
options.to_csv(out / "options.csv", index=False)
print(lavad.options_statement(options))
options

# %% [markdown]
# ## Now with this profile's models
#
# The same steps with the models of the profile this notebook runs with (printed by
# `vadnb.setup` above; with `tiny` they are random-weight models: every number below is
# meaningless and every summary is random words; they exercise the code). `lavad.run_many` runs the stages over all clips
# *stage by stage*: the captioner captions every clip, is released, then the embedder
# runs, then the LLM... so each model is loaded once and a 16 GB GPU only holds one at a
# time. Everything is cached (notebooks 20 and 30 already paid for the first clip).

# %%
detections = dict(zip(videos.name, lavad.run_many(list(videos.path), profile=env.profile)))
det = detections[name]
print(f"{name}, position {i}: raw {det.segments.raw_score.iloc[i]:.2f} -> refined "
      f"{det.segments.score.iloc[i]:.2f}{warn([det])}")
print(lavad.lesson.neighbours_statement(det))
lavad.lesson.neighbours_table(det, i)

# %%
fig = plots.plot_many({"raw (LLM)": lavad.frame_scores_of(det, "raw_score"),
                       "refined": det.frame_scores}, labels=labels[name], fps=det.fps,
                      title=f"LAVAD ({det.profile} profile) on {name} ({classes[name]})"
                      + warn([det]))
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
print(lavad.lesson.refinement_statement(result, f"the {det.profile} profile's scores", detections)
      + warn(detections.values()))

# %% [markdown]
# Per class: each anomaly class judged against the same normal clips (the usual protocol).
# The `ap` columns are scikit-learn's average precision.

# %%
per_class = result["per_class_refined"].merge(result["per_class_raw"], on=["class", "videos"],
                                              suffixes=("_refined", "_raw"))
print(f"anomaly classes: {len(per_class)}{warn(detections.values())}")
per_class

# %% [markdown]
# The ablation over K and the temperature, on this profile's scores (the line above the
# table says, from the run, whether its rows can differ):

# %%
ablation = lavad.lesson.ablation_table(detections, labels, ABLATION_K, ABLATION_T)
ablation.to_csv(out / "ablation.csv", index=False)
print(lavad.lesson.ablation_statement(ablation, detections) + warn(detections.values()))
ablation

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
# the tiny profile), and the perfect-perception run's refined AUC and AP as the upper bound
# of LAVAD's steps on these clips; `frame_scores/<clip>.npy` holds one refined score per frame.

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
summary["perfect_perception"] = {"auc": ideal_result["auc_refined"],
                                 "ap_trapezoid": ideal_result["ap_refined_trapezoid"],
                                 "note": lesson.PERFECT_PERCEPTION}
lesson.save_metrics(out / "metrics.json", summary)
print(f"wrote {out / 'metrics.json'}: {', '.join(summary)}")

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
# - Refinement is attention pooling (Nadaraya-Watson with the kernel $\exp(\cos/\tau)$): each
#   position's score becomes a softmax-weighted mean of the scores of its 10 nearest
#   summaries (video embedding vs summary text embeddings), temperature 1; the video
#   embedding is ImageBind's 2-frame clip (window ends) in 3 crops, as officially.
# - Perfect perception shows what LAVAD's own steps keep of the truth, before any model
#   runs; the lines printed above say, for these short clips, whether refinement helped.
# - Frame scores repeat each position's score over 16 frames; no smoothing.
# - Evaluation: micro frame AUC / AP over the whole split, and per class against the normal
#   clips. Two APs exist; the papers report the trapezoid one, and a constant detector
#   already earns a trapezoid AP well above zero. With the tiny profile every number of
#   the profile's run is meaningless.
#
# ## Exercises
#
# 1. Re-run the real models with `window_s=4` (`lavad.run_many(..., window_s=4)`): the
#    captions come from the cache (the centre frames do not change); the new window frames
#    are embedded and the LLM reads the new descriptions. Does the oracle's lesson hold for
#    real models?
# 2. In the ablation, which setting is best on this split? Would you trust that choice,
#    made on the test split? (Make it on `val` instead: `SPLIT = "val"`.)
# 3. Add Gaussian smoothing (`vadnb.stages.gaussian_smooth`) to the refined scores. Does
#    AUC improve? LAVAD does not smooth; VERA (notebook 70) does.
# 4. Which class is hardest? Look at its clips in the explorer: what do the summaries say?
# 5. Evaluate per video (`vadnb.metrics.per_video`) and find the clip where refinement hurts
#    the most.

# %% [markdown]
# *The words used here are defined once, in the [glossary](https://github.com/vadnb/vadnb/blob/main/README.md#glossary).*
