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
# # 70 · Verbalized learning: training a prompt without gradients (VERA)
#
# VERA (CVPR 2025) detects anomalies with a **frozen** vision-language model (VLM). Nothing
# about the model changes during training. What is trained is a short list of **guiding
# questions** in the prompt ("Is anyone hitting another person?"), and the "optimizer" that
# improves them is the same VLM, reading its own mistakes and rewriting the questions in
# plain words.
#
# In this notebook you will learn:
# - how a prompt can be *trained*: a learner, an optimizer, a batch, a validation split,
#   and model selection, all in text;
# - why the question set must be chosen on **validation** accuracy, never on test;
# - how VERA turns 0/1 answers about 10-second windows into frame scores (retrieval
#   ensemble within the video, Gaussian smoothing), and what the optional *centre-of-video prior* is;
# - how to read the VLM's explanation for every interval in the explorer.
#
# Where it sits: after `60_context_vqa_anyanomaly` (a VLM scores a user-typed anomaly) and
# before notebook 80, which compares all the methods. It uses the campus benchmark of
# `00_setup_and_data` and the frame-level metrics of `40_score_refinement_and_evaluation`.

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vadnb/vadnb/blob/main/notebooks/70_verbalized_learning_vera.ipynb)
#
# **On Colab**: choose a GPU first (Runtime › Change runtime type › **T4 GPU**), then run
# the cells in order; the next cell installs the suite (a minute or two) and is safe to re-run.
# With `PROFILE = "colab"` this notebook downloads, once: Qwen/Qwen2.5-VL-3B-Instruct (vlm,
# ~7.5 GB) and imagebind_huge (embedder, ~4.5 GB; weights CC BY-NC-SA 4.0: non-commercial use
# only): ~12.0 GB in all (sizes approximate). The `tiny` profile (the default without a GPU)
# downloads nothing. Each Colab notebook starts on a fresh machine: set `KEEP_ON_DRIVE = True`
# in the next cell to keep the downloads and vadnb's cache on your Google Drive, so the next
# notebook reuses them (it prints the space needed and Drive's free space).

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
        keep_on_drive("70")

# %% tags=["parameters"]
PROFILE = None             # "tiny" (CPU, meaningless scores), "colab" (T4), "paper"; None: $VADNB_PROFILE
OUTPUT_DIR = "outputs/70"  # question_history.csv, learned_questions.json, metrics.json, validation_curve.png
STEPS = 4                  # optimizer steps (batches of 2 training videos); the paper trains longer
VALIDATE_EVERY = 1         # score the questions on the validation split every this many steps
MAX_TRAIN_VIDEOS = None    # None: every training video of the campus benchmark
MAX_VAL_VIDEOS = None      # None: every validation video
MAX_TEST_VIDEOS = None     # None: every test video
IMAGE_SIZE = None          # None: 448 px as in VERA's code (tiny profile: 64 px)
MAX_NEW_TOKENS = None      # None: 1024 tokens per reply as in VERA's code (tiny profile: 16)
STRIDE = 16                # one VLM query per this many frames at inference
POSITION_PRIOR = False     # the UCF-Crime centre-of-video prior (a dataset prior, off by default)

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import vadnb
from vadnb import metrics, vera
from vadnb.data import load_campus
from vadnb.detect import TINY_WARNING
from vadnb.plots import contact_sheet, plot_detection

env = vadnb.setup(PROFILE)
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)

# %%
from vadnb import lesson

lesson.references("70")
lesson.banner(env, real="the perfect-perception (oracle) sections")

# %% [markdown]
# The pipeline at a glance: each box is a stage and who does it, and below it what
# the stage hands to the next. The sections below walk through the stages in order.

# %%
from vadnb.plots import pipeline

pipeline("vera");

# %% [markdown]
# On the `tiny` profile the VLM is a small random-init model: it writes gibberish. The
# notebook still runs every step, so you can see the machinery, and we shrink the frames and
# the replies so that it finishes in minutes on a CPU. **Every number it prints is
# meaningless** and carries the warning below.

# %%
tiny = env.meaningless
image_size = IMAGE_SIZE or (64 if tiny else 448)
max_new_tokens = MAX_NEW_TOKENS or (16 if tiny else vera.Config().max_new_tokens)
WARN = "  (tiny models: meaningless)" if tiny else ""


def warn_if_tiny() -> None:
    """Print the tiny-profile warning next to a table of numbers."""
    if tiny:
        print("(tiny models: these numbers mean nothing, see the banner above)")


print(f"frames {image_size} px, replies up to {max_new_tokens} tokens{WARN}")

# %% [markdown]
# ## Training a prompt: the idea
#
# Gradient descent changes numbers so that a loss goes down. Verbalized learning keeps the
# same loop and replaces every part with text:
#
# | gradient training | VERA's verbalized learning |
# |---|---|
# | weights | the guiding questions in the prompt |
# | forward pass | the **learner** (the VLM) answers a training video with the questions: reasoning, then `Output: 0/1` |
# | loss on a batch | which of the 2 videos it got wrong, against the video-level labels |
# | gradient step | the **optimizer** (the same VLM) sees the frames, the predictions, the labels and the questions, and writes "New Prompt Questions" |
# | early stopping / model selection | every few steps, accuracy on a held-out **validation** split; the best set wins |
#
# The model's weights never move, so this works with any VLM you can only *call*. Here are
# the suite's hand-written starting questions (`data/vera_questions.json`):

# %%
start_questions = vera.default_questions()
for i, q in enumerate(start_questions, 1):
    print(f"{i}. {q}")

# %% [markdown]
# The learner's prompt puts them in front of the frames. An unreadable reply (no `Output:
# 0/1` anywhere) counts as a **wrong** prediction: a detector that cannot answer is not right.

# %%
print(vera.learner_prompt(start_questions))

# %% [markdown]
# The optimizer's prompt, for a batch where the learner missed the first video (the 16
# frames of the two videos go with it as images):

# %%
print(vera.optimizer_prompt(start_questions, predictions=[0, 1], targets=[1, 1],
                            replies=["Nobody is running. Output: 0", "A car on the lawn. Output: 1"]))

# %% [markdown]
# ## The data: train, validation, test
#
# The campus benchmark has three splits. Training videos feed the optimizer, validation videos
# pick the best question set, and test videos are touched only once, at the very end.
# `learn_questions` refuses test videos outright.

# %%
bench = load_campus()


def some(table: pd.DataFrame, n: int | None) -> pd.DataFrame:
    """All videos, or ``n`` of them with both kinds: half anomalous, half normal."""
    if n is None or n >= len(table):
        return table
    bad, good = table[table["is_anomalous"]], table[~table["is_anomalous"]]
    k = min(len(bad), max(1, (n + 1) // 2))
    return pd.concat([bad.head(k), good.head(n - k)])


train = some(bench.subset("train").videos, MAX_TRAIN_VIDEOS)
val = some(bench.subset("val").videos, MAX_VAL_VIDEOS)
test = some(bench.subset("test").videos, MAX_TEST_VIDEOS)
pd.DataFrame({split: t["label"].value_counts() for split, t in
              [("train", train), ("val", val), ("test", test)]}).fillna(0).astype(int)

# %% [markdown]
# During training the learner sees 8 frames spread evenly over the **whole** video (only a
# video-level label exists, so the whole video is one example). These are the 8 frames of
# the first training video:

# %%
from vadnb.video import probe, read_frames  # noqa: E402

example = train.iloc[0]
picked = vera.even_frame_indices(probe(example["path"]).num_frames, 8)
sheet = contact_sheet(read_frames(example["path"], indices=picked).images,
                      labels=[f"frame {i}" for i in picked], cols=8,
                      title=f"{example['name']} (label: {example['label']})")
plt.show()

# %% [markdown]
# ## A loop you can watch: a VLM with perfect perception
#
# Before the real model, a pretend one whose behaviour we know, so the loop's moves are easy
# to follow. `vera.oracle_backends` builds a VLM that *reads the ground truth* of the campus
# videos (it recognises every frame by a hash of its pixels: a teaching device, not a model):
#
# - as **learner**, it says `Output: 1` only when a frame it sees shows an anomaly *and* one
#   of the questions asks about that kind of anomaly, else `Output: 0`;
# - as **optimizer**, it adds a question about each kind the learner missed, keeping only the
#   **2** newest (`max_questions=2`): a small prompt budget, so learning one thing can push
#   out another.
#
# We start from one unhelpful question.

# %%
oracle = vera.oracle_backends(bench, image_size=image_size)
demo = vera.learn_questions(train, val, backends=oracle, questions=["Is there fire or smoke?"],
                            steps=6, max_questions=2, image_size=image_size)
demo.history[["step", "questions", "train_acc", "val_acc", "chosen"]]

# %% [markdown]
# How to read the table, top to bottom: a step whose batch had a missed anomaly adds a
# question, the budget of two pushes older ones out, and training-batch accuracy moves with
# whichever videos the batch holds. Validation accuracy is the steady judge: the chosen set
# (the star) is the best on validation, not the last one and not the best on a training
# batch.

# %%
vera.plot_history(demo.history)
plt.show()

# %% [markdown]
# ## Learning the questions
#
# One model plays both roles. `learn_questions` loads it only if a step is not cached yet,
# and releases it when it returns, so the embedder used at inference never shares the GPU
# with it. Every step is cached: if the notebook is interrupted, running it again continues
# from the last finished step.

# %% [markdown]
# One optimizer step as `vadnb` runs it for each batch: the learner answers, the optimizer
# reads the mistakes and writes new questions.

# %%
lesson.show_source(vera.optimizer_step)

# %%
result = vera.learn_questions(
    train, val, profile=env.profile, questions=start_questions, steps=STEPS,
    validate_every=VALIDATE_EVERY, image_size=image_size, max_new_tokens=max_new_tokens)
print(vera.learning_summary(result))

# %% [markdown]
# The history has one row per question set: where it came from, its accuracy on the training
# batch it was used for, its validation accuracy (when it was validated), and whether it was
# chosen.

# %%
history = result.history
warn_if_tiny()
history[["step", "source", "train_acc", "val_acc", "chosen"]]

# %% [markdown]
# What did the optimizer actually write? The first reply, verbatim. The parser keeps only
# items made of words, so noise never becomes a question; the old set is kept instead.

# %%
print(repr(history["optimizer_reply"].iloc[0][:500]))

# %% [markdown]
# The validation curve: the choice is the highest point of the validation line (the earliest
# one on ties), whatever the training accuracy says.

# %%
fig = vera.plot_history(result.history, warning=TINY_WARNING if tiny else None)
fig.savefig(out / "validation_curve.png", dpi=100)
plt.show()

# %% [markdown]
# The questions that won, next to the ones we started from, saved for later
# (`vadnb.detect(video, method="vera", questions="learned_questions.json")`):

# %%
result.save(out / "learned_questions.json")
result.save_history(out / "question_history.csv")
pd.DataFrame({"start": pd.Series(start_questions), "learned": pd.Series(result.questions)})

# %% [markdown]
# ## Inference: from 0/1 answers to frame scores
#
# With the learned questions fixed, VERA scores a test video in three steps:
#
# 1. **Answers.** Every 16th frame is the centre of a 10-second window (measured in seconds,
#    so it spans 300 frames at 30 fps and 100 at 10 fps); the VLM sees 8 frames of it and
#    answers 0 or 1.
# 2. **Retrieval ensemble.** Each segment is embedded the way the official README says:
#    LAVAD's ImageBind clip feature of its 10-second window (the first and last of the 10
#    frames LAVAD samples there, in 3 square crops, averaged). A segment's score becomes the
#    softmax-weighted mean of the answers of its `floor(0.15 × #segments)` most similar
#    segments in the same video (itself included): similar-looking moments should get
#    similar scores, which repairs isolated wrong answers.
# 3. **Smoothing.** As the official `compute_auc.py` does it: a normalised Gaussian of 15
#    taps and sigma 10 sampled slightly off-centre (from -8 to 7), convolved over the
#    segments with zeros beyond both ends, each result rounded to one decimal; then each
#    segment's score is repeated over its 16 frames.
#
# As equations, with $a_j \in \{0, 1\}$ the answer of segment $j$, $e_j$ its unit-length
# embedding, $\mathcal{N}_i$ the $k = \lfloor 0.15\, n \rfloor$ segments most similar to
# segment $i$ among the video's $n$ (at least 1), $\tau = 0.1$, and $g_j$ the Gaussian
# ($\sigma = 10$) sampled at 15 points from -8 to 7 and normalised to sum 1
# (`np.convolve(..., "same")` written out):
#
# $$\tilde{a}_i = \sum_{j \in \mathcal{N}_i} w_{ij}\, a_j, \qquad
#   w_{ij} = \frac{\exp(e_i^\top e_j / \tau)}{\sum_{l \in \mathcal{N}_i} \exp(e_i^\top e_l / \tau)},
#   \qquad s_i = \operatorname{round}_{0.1}\Big(\sum_{j=0}^{14} g_j\, \tilde{a}_{i+7-j}\Big)$$
#
# ($\tilde{a}$ is zero beyond the video's ends; `vera.core.retrieval_ensemble`,
# `vera.core.smooth_segments`). The ensemble is the attention pooling of LAVAD's refinement
# (notebook 40), over answers instead of LLM scores.
#
# These defaults reproduce the official computation (a test holds `vera.run` against a
# transcription of the official scripts; the few departures that remain, such as the
# prompt's wording, are listed at the end of this notebook). Where vadnb thinks it can do better, the change
# is a *named option*, never the default: `vera.VADNB_STEP3` (a centred kernel, ends padded
# by reflection, no rounding) and `segment_features="window"` (embed the 8 frames the VLM
# saw). The perfect-perception section below measures each of them beside the defaults.
#
# The published UCF-Crime number also multiplies by `exp(-0.5((t - n/2)/(n/2))^2)`, a
# centre-of-video prior that favours the middle of each video. That is knowledge about *that*
# test set (its anomalies sit mid-video), not part of the method, so it is off here
# (`POSITION_PRIOR`, the code's name for it).

# %% [markdown]
# Here are those steps as `vadnb` runs them: `vera.core.pipeline`, the whole of VERA's
# inference with its numbered steps. The models, the frames and the cache are the runtime's
# job (`rt.map` asks a model only what it has not answered before, keyed by the exact prompt
# and frames sent); steps 2 and 3 are the small functions of `vera.core` it calls.

# %%
lesson.show_source(vera.core.pipeline)

# %% [markdown]
# `run_many` goes stage by stage over the test videos: every answer with the VLM, then (the
# VLM released) every embedding with the embedder, then steps 2 and 3. A re-run is served
# from the cache without loading any model.

# %%
detections = dict(zip(test["name"], vera.run_many(
    list(test["path"]), profile=env.profile, questions=result.questions,
    image_size=image_size, stride=STRIDE, max_new_tokens=max_new_tokens,
    position_prior=POSITION_PRIOR)))
labels = {name: bench.frame_labels(name) for name in detections}
print(vera.inference_summary(detections.values()))

# %% [markdown]
# Frame-level **micro** metrics: all test frames concatenated, then ROC-AUC and average
# precision (scikit-learn, via `vadnb.metrics`).

# %%
scores = {name: d.frame_scores for name, d in detections.items()}
summary = lesson.save_metrics(out / "metrics.json", {
    "profile": env.profile, "meaningless": tiny, "warning": TINY_WARNING if tiny else "",
    "test_videos": len(detections), "auc": metrics.frame_auc(labels, scores),
    "ap": metrics.frame_ap(labels, scores), "position_prior": POSITION_PRIOR,
    "chosen_step": result.best_step, "val_acc": result.best_val_acc, "steps": STEPS,
    "unparseable_answers": int(sum(d.extras["unparseable"] for d in detections.values())),
    "answers": int(sum(d.extras["answers"] for d in detections.values())),
})
print(f"AUC {summary['auc']:.3f}  AP {summary['ap']:.3f}{WARN}")
print(f"{summary['unparseable_answers']} of {summary['answers']} answers unreadable "
      "(filled from their neighbours)")
print(vera.auc_note(detections.values(), summary["auc"]))

# %% [markdown]
# Per video, for a closer look (`metrics.per_video`; one-class videos get no AUC):

# %%
warn_if_tiny()
metrics.per_video(labels, scores)

# %% [markdown]
# ## Explanations per interval
#
# Every segment keeps the VLM's answer, so each flagged interval comes with a reason. We look
# at the test video with the highest score. Scores tie often (0/1 answers; on the tiny
# profile the answers are often all alike, and then every video scores the same): the line
# under the cell says whether the score chose the video or a tie had to be broken, and how.

# %%
name, why = vera.lesson.highest_scoring(detections, labels)
lesson.say(why)
det = detections[name]
plot_detection(det, labels=labels[name])
plt.show()
warn_if_tiny()
det.segments[["time_s", "raw_score", "score", "explanation"]].sort_values(
    "score", ascending=False).head(5)

# %% [markdown]
# The explorer: move along the timeline to see the frame, the score and the explanation of
# the segment under the cursor.

# %%
from vadnb.widgets import explorer  # noqa: E402

explorer(det, labels=labels[name])

# %% [markdown]
# ## With perfect perception
#
# What can VERA's own steps do when perception is perfect? The oracle VLM and embedder from
# above (they read the campus ground truth) go through the whole method: verbalized learning
# from one unhelpful question (with the default budget of 5 questions, not the 2 of the demo),
# then inference on the test videos with the learned questions.
# The numbers below are an **upper bound of the method's steps** (learning loop, 10-second
# windows, retrieval ensemble, smoothing) on these clips, **not of any model**.
#
# The first row runs the official defaults. The rows after it change one named setting
# each: vadnb's step 3 (`vera.VADNB_STEP3`) and its two parts, the UCF-Crime centre-of-video
# prior the published number uses (`vera.PAPER_STEP3` = the defaults plus that prior), vadnb's
# segment features, and no steps 2-3 at all. The lines printed under the table give each
# row's change against the official defaults, computed by this run.
# %%
perfect = vera.perfect_perception(bench, oracle, image_size=image_size)
official = perfect.iloc[0]
perfect["auc_vs_official"] = perfect["test_auc"] - official["test_auc"]
perfect["ap_vs_official"] = perfect["test_ap"] - official["test_ap"]
perfect.to_csv(out / "perfect_perception.csv", index=False)
summary = lesson.save_metrics(out / "metrics.json", {**summary, "perfect_perception": {
    "auc": official["test_auc"], "ap": official["test_ap"], "note": lesson.PERFECT_PERCEPTION}})
for row in perfect.iloc[1:].itertuples():
    print(f"{row.variant}: AUC {row.auc_vs_official:+.3f}, AP {row.ap_vs_official:+.3f} "
          f"against the official defaults ({official['test_auc']:.3f} / "
          f"{official['test_ap']:.3f})")
perfect

# %% [markdown]
# ## What differs from the original code, and why
#
# The table is `vera.DIFFERENCES`, the one list the code keeps; the last column names the
# setting that restores the paper's behaviour where there is one.

# %%
from IPython.display import Markdown  # noqa: E402

from vadnb.stages import differences_markdown  # noqa: E402

Markdown(differences_markdown(vera.DIFFERENCES))

# %% [markdown]
# ## Summary
#
# - VERA trains *words*, not weights: a learner answers with guiding questions, an optimizer
#   (the same frozen VLM) rewrites them from its mistakes, and validation accuracy picks the
#   winner.
# - Inference asks one question per 16 frames about a 10 s window, then a retrieval ensemble
#   within the video and Gaussian smoothing turn 0/1 answers into frame scores.
# - Unreadable replies never become questions or labels: they are counted and fall back
#   safely (the printed summaries say what happened in this run); real numbers need a real
#   VLM (`PROFILE="colab"`), and the perfect-perception table bounds what the steps can do.
# - The defaults compute what the official code computes; where vadnb departs from it,
#   `vera.DIFFERENCES` says so, and vadnb's own choices are named options
#   (`vera.run(..., **vera.VADNB_STEP3)`, `segment_features="window"`,
#   `label_reading="tolerant"`) whose effect the perfect-perception table measures.
#
# ## Exercises
#
# 1. Set `VALIDATE_EVERY = 2`. Which question sets can no longer be chosen, and why can the
#    chosen one change?
# 2. Write a question set of your own to `my_questions.json` with `vera.save_questions` and
#    score the test videos with it. Is it better than the learned set? Why is comparing sets
#    on *test* fine here but not when choosing among them?
# 3. Turn on `POSITION_PRIOR`. Plot `vera.position_prior(n)` for a 300-frame video. On which
#    kind of video does it hurt?
# 4. Run `vera.run` with `ensemble_fraction=0.01` (every segment is its own only neighbour)
#    and with `smooth_taps=1`. Which step helps most on the campus test videos?

# %% [markdown]
# *The words used here are defined once, in the [glossary](https://github.com/vadnb/vadnb/blob/main/README.md#glossary).*
