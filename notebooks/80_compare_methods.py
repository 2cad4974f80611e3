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
# # 80 · Comparing the methods: one leaderboard, one timeline, one question
#
# Four chapters built four detectors: LAVAD (captions + an LLM), AnomalyCLIP (a trained
# head in CLIP's space), AnyAnomaly (a VLM answering about a typed description) and VERA
# (a VLM with learned guiding questions); notebook 75 added Flashback (a caption memory
# searched by an embedder). This notebook runs them side by side, together with a
# **classical baseline** that uses no learned model at all, on the same campus test clips
# and on any video you point it at, and measures each method's **upper bound** with
# perfect perception.
#
# In this notebook you will learn:
# - how to compare detectors fairly: same clips, same frame-level metrics (micro AUC and
#   AP, and per class), the same ground truth;
# - what each method *costs*: model calls per minute of video, by model role, and seconds;
# - what each method's own steps can reach when its models see perfectly (an upper bound of
#   the steps, not of any model), beside the classical baseline's real number;
# - why a number from random-init models (the `tiny` profile) must never be read as a
#   result (the leaderboard flags such rows), and why the classical row is meaningful
#   even offline;
# - how to read all methods' timelines and explanations of the same moment at once.
#
# Where it sits: after the method chapters. It uses the campus benchmark (`00`), the metrics
# (`40`), and the methods of `10`–`40` (LAVAD), `50` (AnomalyCLIP), `60` (AnyAnomaly) and `70`
# (VERA); `85_your_video` then runs one method on a video of yours, and `90_scale_out` runs a
# method over a whole benchmark. Whatever those notebooks computed with the same settings is in the cache, so it is
# not paid for again here.

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vadnb/vadnb/blob/main/notebooks/80_compare_methods.ipynb)
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
        keep_on_drive("80")

# %% tags=["parameters"]
PROFILE = None             # "tiny" (CPU, random models), "colab" (T4), "paper"; None: $VADNB_PROFILE or auto
OUTPUT_DIR = "outputs/80"  # leaderboard.csv/.html, metrics.json, timelines.png, detections/
METHODS = ["classical", "lavad", "anomalyclip", "vera", "anyanomaly", "flashback"]  # the rows of the leaderboard
MAX_VIDEOS = None          # None: every campus test clip; a number: that many (normal and anomalous mixed)
EPOCHS = 20                # AnomalyCLIP trains a checkpoint on the campus train split first
VIDEO = None               # a video of your own: every method scores it too (no ground truth needed)
FRESH_CACHE = False        # True: recompute every stage in a private cache, so every model call is counted
OVERRIDES = {}             # per-method Config fields, e.g. {"vera": {"stride": 32}, "lavad": {"stride": 8}}
VERA_QUESTIONS = None      # None: VERA's shipped questions; or notebook 70's learned_questions.json
ANYANOMALY_PROMPTS = None  # None: one typed description per campus class (as notebook 60)

# %%
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import HTML, display

import vadnb
from vadnb import metrics, models
from vadnb.cache import Cache, get_cache
from vadnb.compare import MethodRunner, availability, campus_prompts
from vadnb.data import load_campus
from vadnb.detect import METHODS as KNOWN_METHODS
from vadnb.detect import TINY_WARNING
from vadnb.plots import plot_many
from vadnb.widgets import compare_explorer

env = vadnb.setup(PROFILE)
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)
unknown = sorted((set(METHODS) | set(OVERRIDES)) - set(KNOWN_METHODS))
if unknown:
    raise ValueError(f"METHODS or OVERRIDES name unknown method(s) {unknown}; "
                     f"choose from {sorted(KNOWN_METHODS)}")
if VIDEO is not None and not Path(VIDEO).is_file():
    raise FileNotFoundError(f"VIDEO = {VIDEO!r} is not a file: set VIDEO to the path of a "
                            "video (mp4, avi, mkv, ...) or to None")

# %%
from vadnb import lesson

lesson.references("80")
lesson.banner(env, real="the classical baseline and the perfect-perception rows")

# %% [markdown]
# ## The contestants
#
# Notebook 00's contestants table says what each method learns from, which models it calls
# and what one call looks at; the rows below are those methods.
#
# A method whose module cannot be imported in your copy of the suite gets a row saying
# "not available" instead of stopping the notebook.

# %%
status = {m: availability(m) for m in METHODS}
runnable = [m for m in METHODS if status[m] == "ok"]
pd.Series(status, name="status").to_frame()

# %% [markdown]
# On the `tiny` profile every model is a small random-init network: the methods run every
# step on a CPU in minutes, but **their scores mean nothing**, and the leaderboard flags their
# rows. We also shorten the replies and shrink the frames they generate from (random models
# write noise of any length). `OVERRIDES` sets any Config field of any method on top.

# %%
TINY_KNOBS = {  # only on the tiny profile: the settings notebooks 50-70 use, so their cache serves
    "vera": {"image_size": 64, "max_new_tokens": 16},
    "anyanomaly": {"max_new_tokens": 8},
    "anomalyclip": {"feature_stride": 2, "emb_size": 64},
}
knobs = {m: {**(TINY_KNOBS.get(m, {}) if env.meaningless else {}), **OVERRIDES.get(m, {})}
         for m in METHODS}
knobs

# %% [markdown]
# ## The clips and the ground truth
#
# The campus **test** split: normal clips and one clip per anomaly class, with frame labels.
# With `MAX_VIDEOS` we keep a mix of normal and anomalous clips (an AUC needs both).

# %%
campus = load_campus()
test = campus.subset("test")
videos = test.videos
if MAX_VIDEOS is not None:  # keep both normal and anomalous clips
    videos = (videos.assign(_o=videos.groupby("is_anomalous").cumcount())
              .sort_values(["_o", "name"]).head(int(MAX_VIDEOS)).drop(columns="_o"))
videos = videos.reset_index(drop=True)
labels = {name: test.frame_labels(name) for name in videos.name}
classes = dict(zip(videos.name, videos.label))
minutes = float((videos.num_frames / videos.fps).sum() / 60)
print(f"{len(videos)} clips, {minutes:.1f} minutes of video")
videos[["name", "label", "num_frames", "fps"]]

# %% [markdown]
# **The cache.** Every method caches its expensive stages (captions, embeddings, replies)
# by the video's content, the stage's settings and the model's name. By default we share
# the suite's cache, so what notebooks 20–75 computed is reused, and a stage found there
# makes **no** model call. The cost table below counts its items anyway (as "from cache"),
# so the run's work shows either way; set `FRESH_CACHE = True` to also time every stage.

# %%
if FRESH_CACHE:
    stage_cache = Cache(tempfile.mkdtemp(prefix="stage-cache-", dir=out))
else:
    stage_cache = get_cache()
print("stage cache:", stage_cache.root, "(fresh: every call counted)" if FRESH_CACHE else
      "(shared: cached stages make no calls)")

# %% [markdown]
# ## The classical baseline, step by step
#
# One contestant uses no learned model, so it is the one detector you can watch work on any
# CPU. It turns every frame into a few **facts** a person can read, each from a classic
# computer-vision tool:
#
# - **Background subtraction** (OpenCV's MOG2) keeps, per pixel, a model of the colours seen
#   over the last `history_s` seconds; a pixel that fits none of them is *moving*. The share
#   of moving pixels is `fg_area`; the largest connected moving region gives `blob_area` (a
#   van is one big blob) and `blob_flatness` (width / height: a person lying down is wide).
# - A second, **slow background** starts as the per-pixel median of the first seconds and
#   learns only where nothing moves: what differs from it *without moving* is `static_area`
#   (a box left behind, a person lying still).
# - **Optical flow** (Farnebäck) estimates how far every pixel moved since the previous
#   frame; the 95th percentile over the moving pixels, in pixels per second, is `speed`
#   (a runner, a van).
# - A **people detector** (OpenCV's HOG + linear SVM) counts people, `people`. It is off by
#   default (`people_every = 0`): its 64x128-pixel window needs people taller than the campus
#   camera shows them; switch it on for close-up footage.
#
# Here is what the first three see in the middle of the campus test clip's van:

# %%
from vadnb import baseline

normal_train = list(campus.videos.query("split == 'train' and label == 'Normal'").path)
lesson_clip = test.videos.query("label == 'Vehicle'").name.iloc[0]
lesson_labels = test.frame_labels(lesson_clip)
inside = np.flatnonzero(lesson_labels)
lesson_frame = int(inside[len(inside) // 2])
views = baseline.frame_views(test.path(lesson_clip), [lesson_frame])[lesson_frame]
fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
panels = [("the frame", "frame", None), ("moving (background subtraction)", "moving", "gray"),
          ("speed, px/s (optical flow)", "speed", "magma"),
          ("still change (slow background)", "still_change", "gray")]
for ax, (title, key, cmap) in zip(axes, panels):
    shown = ax.imshow(views[key], cmap=cmap)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    if key == "speed":
        fig.colorbar(shown, ax=ax, fraction=0.035)
fig.suptitle(f"{lesson_clip}, frame {lesson_frame}: what the classical baseline measures")
fig.tight_layout()
fig.savefig(out / "classical_views.png", dpi=100)
plt.show()

# %% [markdown]
# **How the facts become a score.** "Normal" is what the train split's normal clips (same
# camera) show: for every fact its median and a robust spread (1.4826 × the median absolute
# deviation). A frame's fact lies `z = (fact − median) / spread` spreads above normal
# (clipped at 0: only *more* than normal is suspicious). The frame's score is the largest
# z over the facts, squashed to [0, 1] by `1 − exp(−z / 6)` and smoothed over about a
# second. `baseline.score_steps` returns every step; the top panel shows each fact's z,
# the bottom one the score, with the anomalous frames shaded:

# %%
steps = baseline.score_steps(test.path(lesson_clip), reference=normal_train, cache=stage_cache,
                             config=baseline.Config(**knobs.get("classical", {})))
fps_lesson = float(test.videos.set_index("name").fps[lesson_clip])
times = np.arange(len(steps)) / fps_lesson
fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
for fact in baseline.FACTS:
    top.plot(times, steps[f"z {fact}"], lw=1.2, label=fact)
bottom.plot(times, steps["score"], color="black", label="score")
for ax in (top, bottom):
    ax.fill_between(times, 0, 1, where=lesson_labels > 0, color="tab:red", alpha=0.15,
                    transform=ax.get_xaxis_transform(), label="anomalous frames")
top.set_ylabel("z (spreads above normal)")
top.legend(fontsize=8, ncol=4)
bottom.set_ylabel("score")
bottom.set_xlabel("time (s)")
fig.tight_layout()
fig.savefig(out / "classical_steps.png", dpi=100)
plt.show()
row = steps.iloc[lesson_frame]
lead = max(baseline.FACTS, key=lambda f: row[f"z {f}"])
lesson.say(f"At frame {lesson_frame} the largest z is {lead}'s ({row['max z']:.1f} spreads above "
           f"normal), so the raw score is {row['raw']:.2f} and the smoothed score "
           f"{row['score']:.2f}.")

# %% [markdown]
# ## AnomalyCLIP needs a checkpoint first
#
# AnomalyCLIP is weakly supervised: it trains a head on the **train** split's video-level
# labels (notebook 50 explains every loss term), then scores the test clips. The learning
# rate is larger than the paper's 1e-5 because we take a few dozen steps, not 1,250 (as in
# notebook 50). Training time is reported apart from scoring time.

# %%
checkpoint, clip_for_anomalyclip, ac_config, train_seconds = None, None, None, {}
if "anomalyclip" in runnable:
    from vadnb import anomalyclip

    ac_knobs = knobs["anomalyclip"]
    clip_for_anomalyclip = models.load("clip", profile=env.profile,
                                       model=ac_knobs.get("clip_model"))
    ac_config = anomalyclip.Config(**{"epochs": EPOCHS, "lr": 1e-3,
                                      "warmup_epochs": max(1, EPOCHS // 10), **ac_knobs})
    started = time.perf_counter()
    ac_model, curves = anomalyclip.train(campus, "train", ac_config, cache=stage_cache,
                                         backends={"clip": clip_for_anomalyclip})
    train_seconds["anomalyclip"] = time.perf_counter() - started
    checkpoint = anomalyclip.save_checkpoint(ac_model, out / "anomalyclip.safetensors")
    print(f"trained {len(curves)} steps in {train_seconds['anomalyclip']:.0f} s -> {checkpoint}")

# %% [markdown]
# ## Running every method
#
# `vadnb.compare.MethodRunner` says how to call each method. Its models are loaded **once**
# and used for every clip (LAVAD's `run_many` does this itself and loads one model at a
# time, so a 16 GB GPU holds only one). AnyAnomaly looks for the typed descriptions of the
# campus classes; the classical baseline learns "normal" from the train split's normal clips
# (same camera).

# %%
prompts = ANYANOMALY_PROMPTS or campus_prompts(campus.classes)
runner = MethodRunner(profile=env.profile, cache=stage_cache, knobs=knobs, checkpoint=checkpoint,
                      clip=clip_for_anomalyclip, prompts=prompts, questions=VERA_QUESTIONS)
run_method = runner.run
lesson.show_source(MethodRunner.arguments)


# %%
detections, seconds = {}, {}
for method in runnable:
    started = time.perf_counter()
    dets = run_method(method, list(videos.path), reference=normal_train)
    seconds[method] = time.perf_counter() - started
    print(f"{method}: {len(dets)} clips in {seconds[method]:.1f} s")
    detections[method] = dict(zip(videos.name, dets))
    for name, det in detections[method].items():
        det.save(out / "detections" / method / name)
pd.DataFrame({"seconds": seconds}).round(1)


# %% [markdown]
# ## Cost: model calls per minute of video
#
# Every Detection carries `model_calls`: calls, items (images, prompts) and seconds per model
# role. Dividing by the minutes of video gives a cost that does not depend on the clips'
# length. One **call** is one batched forward pass; **items** are what went through it;
# **cached** items were answered from the cache instead (a stage notebooks 20–75 or an
# earlier run already computed). So the run's work, cached or not, is items + cached: the
# first columns below. The calls *made now* are what this run paid; on a warm cache they
# can be 0 while the work is not. LAVAD's `run_many` shares its stages across clips, so each
# of its Detections holds the calls of the whole batch: we count them once.

# %%
def per_minute(method: str, dets: list, what: str = "calls") -> dict:
    """Model ``what`` ("calls", "items", "cached" or "work" = items + cached) per minute of
    video, by role, from the Detections' ``model_calls``."""
    tables = [d.model_calls for d in dets if not d.model_calls.empty]
    if method == "lavad":
        tables = tables[:1]  # every LAVAD Detection holds the calls of the whole run_many batch
    if not tables:
        return {}
    table = pd.concat(tables)
    table = table.assign(work=table["items"] + table["cached"])
    totals = table.groupby("role")[what].sum()
    return {role: float(n) / minutes for role, n in totals.items()}


def per_method(what: str) -> pd.DataFrame:
    return pd.DataFrame({m: per_minute(m, list(detections[m].values()), what)
                         for m in detections}).T


cost = {m: per_minute(m, list(detections[m].values())) for m in detections}
items = {m: per_minute(m, list(detections[m].values()), "items") for m in detections}
work = {m: per_minute(m, list(detections[m].values()), "work") for m in detections}
cost_table = pd.concat({"items / min (the work)": per_method("work"),
                        "calls / min (made now)": per_method("calls"),
                        "items / min (from cache)": per_method("cached")},
                       axis=1).rename_axis("method").fillna(0)
cost_table.to_csv(out / "cost.csv")
needed = cost_table["items / min (the work)"].to_numpy().sum() * minutes
from_cache = cost_table["items / min (from cache)"].to_numpy().sum() * minutes
lesson.say(f"This run's methods needed {needed:.0f} model items; {from_cache:.0f} of them came "
           f"from the {'fresh' if FRESH_CACHE else 'shared'} cache.")
cost_table.round(2)

# %% [markdown]
# ## Upper bounds: every method with perfect perception
#
# A tiny-profile row says nothing about a method. What each method's *own steps* can reach
# on these clips is measured instead with the oracle models of its notebook (40, 50, 60, 70,
# 75): models that read the campus ground truth (captions, features or answers that state
# what happens) while every other step is the method's real code (`lesson.perfect_perception`).
# Each such row is an **upper bound of the method's steps (perfect perception), not of any
# model**: a real model can only see worse. The classical baseline has no oracle: it uses no
# learned model, so its own row is already real.

# %%
upper = {}
for method in runnable:
    dets = lesson.perfect_perception(method, campus, list(videos.path), cache=stage_cache,
                                     knobs=knobs[method], clip=clip_for_anomalyclip,
                                     train_config=ac_config)
    if dets is not None:
        upper[method] = dict(zip(videos.name, dets))
        for name, det in upper[method].items():
            det.save(out / "detections" / "perfect_perception" / method / name)
print("perfect perception ran for:", ", ".join(upper) or "no method")

# %% [markdown]
# ## The leaderboard
#
# Frame-level micro AUC and AP over all test frames (notebook 40), the same numbers per
# anomaly class (each class's clips against all normal clips), the cost and the profile.
# The `calls/min` columns count the model calls this run *made* per minute of video: on a
# warm cache they are 0, and the cost table above shows the work behind them.
# The `kind` column says what a row is:
#
# - **this run**: each method with the profile's models. A tiny-profile row is meaningless
#   (random-init models, red): it proves the pipeline runs, not that a method works. The
#   classical row uses no learned model, so its numbers are real on any machine: it is the
#   bar the vision-language methods must clear with real models.
# - **upper bound (perfect perception)** (blue): the section above, the most each method's
#   steps can make of perfect inputs on these clips; not a model's result, and no cost.
#
# It is saved as `leaderboard.csv` and `leaderboard.html` and shown once, as the HTML page
# draws it.

# %%
MODELS, UPPER = "this run", "upper bound (perfect perception)"


def leaderboard_row(method: str, runs: dict | None = None, kind: str = MODELS) -> dict:
    runs = detections if runs is None else runs
    if method not in runs:
        return {"method": method, "kind": kind, "status": status[method], "profile": "",
                "meaningless": None}
    dets = runs[method]
    scores = {name: dets[name].frame_scores for name in labels}
    meaningless = any(d.meaningless for d in dets.values())
    note = ("⚠ tiny models: meaningless" if meaningless else
            lesson.PERFECT_PERCEPTION if kind == UPPER else "")
    row = {"method": method, "kind": kind, "status": "ok",
           "profile": ",".join(sorted({d.profile for d in dets.values()})),
           "meaningless": meaningless, "note": note,
           "videos": len(scores), "frame_auc": metrics.frame_auc(labels, scores),
           "frame_ap": metrics.frame_ap(labels, scores),
           "seconds": seconds[method] if kind == MODELS else np.nan,
           "train_seconds": train_seconds.get(method, np.nan) if kind == MODELS else np.nan}
    per_class = metrics.per_class(labels, scores, classes)
    row.update({f"auc {c}": a for c, a in zip(per_class["class"], per_class["auc"])})
    if kind == MODELS:
        row.update({f"calls/min {role}": v for role, v in cost[method].items()})
    return row


board = pd.DataFrame([leaderboard_row(m) for m in METHODS]
                     + [leaderboard_row(m, upper, UPPER) for m in upper])
board.to_csv(out / "leaderboard.csv", index=False)
any_meaningless = any(d.meaningless for dets in detections.values() for d in dets.values())


# shown once, as it is saved in leaderboard.html: meaningless rows red, upper bounds blue
def flag_rows(row: pd.Series) -> list[str]:
    meaningless = pd.notna(row["meaningless"]) and bool(row["meaningless"])
    style = ("background-color:#fde8e8;color:darkred" if meaningless else
             "background-color:#e8f0fd;color:#123e7c;font-style:italic"
             if row["kind"] == UPPER else "")
    return [style] * len(row)


one_decimal = [c for c in board.columns if "seconds" in c or c.startswith("calls/min")]
styled = (board.style.apply(flag_rows, axis=1).hide(axis="index")
          .format(precision=3, na_rep="–").format("{:.1f}", subset=one_decimal, na_rep="–")
          .set_caption(f"campus test, {len(videos)} clips"
                       + (f"; red rows: {TINY_WARNING}" if any_meaningless else "")
                       + (f"; blue rows: {lesson.PERFECT_PERCEPTION}" if upper else "")))
(out / "leaderboard.html").write_text(styled.to_html())
display(HTML(styled.to_html()))

# %%
def saved(row: dict) -> dict:
    """One leaderboard row as metrics.json keeps it."""
    keep = ("status", "meaningless", "profile", "frame_auc", "frame_ap", "seconds")
    return {k.replace("frame_", ""): row.get(k) for k in keep}


rows = board.to_dict(orient="records")
summary = lesson.save_metrics(out / "metrics.json", {
    "profile": env.profile, "videos": list(videos.name), "minutes": minutes,
    "fresh_cache": bool(FRESH_CACHE), "warning": TINY_WARNING if any_meaningless else "",
    "methods": {r["method"]: {**saved(r), "calls_per_minute": cost.get(r["method"], {}),
                              "items_per_minute": items.get(r["method"], {}),
                              "work_per_minute": work.get(r["method"], {})}  # cached or not
                for r in rows if r["kind"] == MODELS},
    "perfect_perception": {r["method"]: {**saved(r), "note": lesson.PERFECT_PERCEPTION}
                           for r in rows if r["kind"] == UPPER}})
bounds = ", ".join(f"{m} {v['auc']:.3f}" for m, v in summary["perfect_perception"].items())
lesson.say(f"Frame AUC with perfect perception (upper bounds of the steps, not of any model): "
           f"{bounds or 'none ran'}."
           + (f" The classical baseline, real on any machine: "
              f"{summary['methods']['classical']['auc']:.3f}."
              if summary["methods"].get("classical", {}).get("auc") is not None else ""))

# %% [markdown]
# ### Why notebook 90 reports a slightly different classical number
#
# Notebook 90 runs the classical baseline on the same campus test clips, through
# `scale.run_dataset`, which hands a method nothing but the video: so each clip is its own
# notion of normal (robust statistics: a short anomaly barely moves a median). Here
# "normal" is the train split's normal clips of the same camera. Both, on this run's clips:

# %%
if "classical" in detections:
    itself = dict(zip(videos.name, run_method("classical", list(videos.path), reference=None)))
    references = {"train split's normal clips (this notebook)": detections["classical"],
                  "each clip itself (notebook 90)": itself}
    rows = [{"reference": ref, "clips": len(labels),
             "frame_auc": metrics.frame_auc(labels, {n: d[n].frame_scores for n in labels}),
             "frame_ap": metrics.frame_ap(labels, {n: d[n].frame_scores for n in labels})}
            for ref, d in references.items()]
    display(pd.DataFrame(rows).round(4))
else:
    print("the classical baseline is not among METHODS")

# %% [markdown]
# ## All timelines of one clip
#
# Numbers hide *where* a method fires. Here every method's frame scores on one anomalous
# clip, stacked on the same time axis, ground truth shaded red. Look for: does the score
# rise inside the red band, does it stay low elsewhere, how sharp are the edges?
#
# Every panel is drawn on the same [0, 1] axis, so the panels compare by eye. A score
# outside it is drawn at the edge (`lesson.clip_for_display`), and the cell says which
# method left the range, on how many frames, and why; the leaderboard above used the raw
# scores. AnyAnomaly can leave it: its official parser takes the first number anywhere in
# the VLM's reply as the score, unclipped (notebook 60), so a "7" in a reply scores 7.

# %%
anomalous = [n for n in videos.name if classes[n] != "Normal"]
chosen = anomalous[0] if anomalous else videos.name.iloc[0]
on_chosen = {m: detections[m][chosen] for m in detections}
shown, clipped = lesson.clip_for_display(on_chosen)
fig = plot_many(shown, labels=labels[chosen], threshold=0.5,
                title=f"{chosen} ({classes[chosen]}): every method, ground truth shaded")
fig.savefig(out / "timelines.png", dpi=110)
plt.show()
for r in clipped.itertuples():
    left = [f"{r.above} of {r.frames} frames scored above 1 (up to {r.max:.2f})"] * bool(r.above) \
        + [f"{r.below} of {r.frames} frames below 0 (down to {r.min:.2f})"] * bool(r.below)
    why = ("its parser reads the first number of the VLM's reply, unclipped (the official "
           "behaviour)" if r.method == "anyanomaly" else "the method does not bound its scores")
    noise = " The tiny VLM's replies are random, and so are the numbers in them." \
        if on_chosen[r.method].meaningless else ""
    lesson.say(f"{r.method}: {' and '.join(left)}, drawn at the edge of the axis: {why}.{noise}")
if clipped.empty:
    lesson.say(f"Every method's scores on {chosen} lie in [0, 1]: nothing was clipped.")

# %% [markdown]
# The same clip through each method's own steps with perfect perception (the blue rows of
# the leaderboard). On the tiny profile these are the timelines that show each method
# working: where one of them misses the red band or rises outside it, the method's steps
# (windows, fusion, smoothing) did it, not a model.

# %%
if upper:
    fig = plot_many({m: upper[m][chosen] for m in upper}, labels=labels[chosen], threshold=0.5,
                    title=f"{chosen} ({classes[chosen]}): perfect perception, upper bounds")
    fig.savefig(out / "timelines_perfect_perception.png", dpi=110)
    plt.show()
    on_clip = {m: metrics.frame_auc({chosen: labels[chosen]}, {chosen: upper[m][chosen].frame_scores})
               for m in upper}
    lesson.say(f"Frame AUC on {chosen} alone, perfect perception: "
               + ", ".join(f"{m} {a:.3f}" for m, a in on_clip.items()) + ".")
else:
    print("no method with an oracle ran: no perfect-perception timelines")

# %% [markdown]
# ## What did each method say about the same moment?
#
# The middle of the clip's anomaly: each method's score there and its own words (the
# classical baseline names the fact that stood out; LAVAD its summary; AnomalyCLIP its
# class; AnyAnomaly its reason; VERA its answer; Flashback the memory entries it matched).
# Words worth reading come first: the classical baseline's (no learned model) and every
# method's with perfect perception, whose oracle models state what happens. The words of
# random-init models follow, cut short: they only show what shape a method's explanation
# takes.

# %%
truth = np.flatnonzero(labels[chosen])
moment = int(truth[len(truth) // 2]) if len(truth) else len(labels[chosen]) // 2


def said_at(runs: dict, kind: str) -> pd.DataFrame:
    """Each method's score at ``moment`` on the chosen clip and its explanation there."""
    return pd.DataFrame([{"method": m, "kind": kind, "meaningless": d.meaningless,
                          "score": float(d.frame_scores[min(moment, d.num_frames - 1)]),
                          "explanation": d.explanation_at(moment)} for m, d in runs.items()],
                        columns=["method", "kind", "meaningless", "score", "explanation"])


said = said_at(on_chosen, MODELS)
said.to_csv(out / "explanations.csv", index=False)
said_perfect = said_at({m: upper[m][chosen] for m in upper}, UPPER)
said_perfect.to_csv(out / "explanations_perfect_perception.csv", index=False)
print(f"{chosen}, frame {moment} ({moment / videos.set_index('name').fps[chosen]:.1f} s)")
worth = pd.concat([said[~said.meaningless], said_perfect], ignore_index=True)
with pd.option_context("display.max_colwidth", None):
    display(worth.drop(columns="meaningless"))
noise = said[said.meaningless]
if len(noise):
    BRIEF = 40  # characters: enough to see the shape of a reply
    lesson.say(f"{len(noise)} of {len(said)} methods' words at this moment come from "
               f"random-init models ({env.profile} profile): they mean nothing, so each is cut "
               f"to {BRIEF} characters.")
    display(noise.assign(explanation=noise.explanation.map(lambda t: lesson.brief(t, BRIEF)))
            .drop(columns=["kind", "meaningless"]))

# %% [markdown]
# ## Explore them together
#
# The comparison explorer stacks the timelines over **one** frame view: move the frame
# slider (or click a timeline) and every method's explanation of that moment appears on the
# right; the threshold slider lists each method's flagged intervals. It draws the scores as
# the figure above does, on [0, 1]. (On Colab the
# interactive timeline needs the custom widget manager, which `vadnb.widgets` turns on.)

# %%
compare_explorer(shown, labels=labels[chosen], video=videos.set_index("name").path[chosen])

# %% [markdown]
# ## Your own video
#
# Set `VIDEO` to any file: every method scores it (AnomalyCLIP with the checkpoint trained
# above; the classical baseline with the video itself as its notion of normal, since your
# camera is not the campus one). There is no ground truth, so no AUC: read the timelines
# and the explanations.

# %%
yours = {}
if VIDEO is not None:
    for method in list(detections):
        yours[method] = run_method(method, [str(VIDEO)], reference=None)[0]
        yours[method].save(out / "your_video" / method)
    fig = plot_many(yours, threshold=0.5, title=f"{Path(str(VIDEO)).name}: every method")
    fig.savefig(out / "your_video_timelines.png", dpi=110)
    plt.show()
    display(compare_explorer(yours, video=str(VIDEO)))
else:
    print("VIDEO is None: set it to a video file to see every method on it")

# %%
if FRESH_CACHE:  # the private stage cache has served its purpose
    shutil.rmtree(stage_cache.root, ignore_errors=True)

# %% [markdown]
# ## Summary
#
# - A fair comparison fixes the clips, the metric (frame-level micro AUC/AP, and per class)
#   and the ground truth, then runs every method through the same `Detection` interface.
# - Cost matters as much as accuracy: model items per minute of video by role tell you what
#   a method would cost on a camera that never stops. Cached stages make no calls now, but
#   their items still count as the run's work.
# - Tiny-profile rows are meaningless (random-init models); the classical baseline is the
#   meaningful reference on any machine, and the bar a real vision-language model must clear.
#   The perfect-perception rows are upper bounds of each method's steps, not results of any
#   model: they say how much of the truth a method's windows, fusion and smoothing keep.
# - The classical baseline turns background subtraction, optical flow (and optionally a
#   people detector) into facts per frame; a frame's score is how far its most unusual fact
#   lies above normal.
# - What counts as "normal" is part of a method: the classical baseline's number moves with
#   its reference clips (this notebook's train clips, or each clip itself as in 90).
# - The stacked timelines and the comparison explorer show *where* and *why* each method
#   fires, which a single number cannot.
#
# ## Exercises
#
# 1. Run the notebook on the `colab` profile. Which method beats the classical baseline, on
#    which class? Which class does the baseline find easily, and why (look at its facts)?
# 2. Set `VERA_QUESTIONS` to notebook 70's `learned_questions.json`. Does VERA's row move?
# 3. Double LAVAD's `stride` with `OVERRIDES = {"lavad": {"stride": 32}}`: how do its calls
#    per minute and its AUC change? Where is the knee of cost against accuracy?
# 4. Point `VIDEO` at a clip from your phone. Which method's explanations would you trust to
#    send a guard, and which threshold keeps the flagged intervals to a handful?

# %% [markdown]
# *The words used here are defined once, in the [glossary](https://github.com/vadnb/vadnb/blob/main/README.md#glossary).*
