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
# # 30 · LLM temporal summaries: from captions to an anomaly score
#
# In notebook 20 every centre frame got a **temporal description**: 10 cleaned captions
# covering 10 seconds. LAVAD now asks a large language model two questions per position:
# first *"summarise what happened"*, then *"how suspicious is this summary, from 0 to 1?"*.
#
# In this notebook you will learn:
# - the exact prompts, and what the LLM sees for one position;
# - what the two steps produce when perception is perfect (oracle inputs that state what
#   happens), first, and then what a real small LLM (SmolLM2-135M, on a CPU) makes of the
#   same true temporal descriptions, when it is on this machine;
# - how the reply is read (a Python list `[x]`), what happens when it cannot be read
#   (counted, then interpolated from the neighbours), and how often that happens; and how
#   asking for the likeliest of the allowed replies ("choices") makes every reply readable;
# - why we decode greedily (temperature 0) where the paper sampled, and every other place
#   where vadnb differs from the official code (the one table of differences);
# - how to try your own prompt, reusing everything already computed.
#
# Where it sits: after `20_captioning_and_cleaning` and before
# `40_score_refinement_and_evaluation`, which refines these scores and evaluates them.

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vadnb/vadnb/blob/main/notebooks/30_llm_temporal_summaries.ipynb)
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
        keep_on_drive("30")

# %% tags=["parameters"]
PROFILE = None             # "tiny" (CPU), "colab" (T4), "paper", None: $VADNB_PROFILE or auto
OUTPUT_DIR = "outputs/30"  # summaries.csv, parse_report.json, scores.png go here
VIDEO = None               # a video path, None: the first anomalous campus test clip
MY_SCORE_CONTEXT = (       # the "try your own prompt" cell uses this framing
    "You are a campus security guard. How unusual is the scene described below for a "
    "campus path, on a scale from 0 (nothing unusual) to 1 (call for help)?")
LAVAD_OVERRIDES = {}       # lavad.Config settings, e.g. {"stride": 50} for fewer positions
PROBE_POSITIONS = 8        # score prompts asked again live to count truncated replies
REAL_LLM_SETTINGS = {"stride": 32, "summary_max_new_tokens": 24}  # keep the real LLM quick on a CPU

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from IPython.display import Markdown, display

import vadnb
from vadnb import lavad, plots, stages

env = vadnb.setup(PROFILE)
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)

# %%
from vadnb import lesson

lesson.references("30")
lesson.banner(env)

# %% [markdown]
# ## The prompts
#
# Written for this suite, faithful to the paper's. The **summary prompt** is an
# instruction followed by the temporal description, one caption per line. The **score
# prompt** has three parts: a *context* (rate as a law enforcement agency would, from 0 =
# standard to 1 = suspicious), a *format* (answer with a Python list holding one value of
# 0, 0.1, ..., 1.0), then the summary.

# %%
cfg = lavad.Config(**LAVAD_OVERRIDES)
print("SUMMARY PROMPT:\n" + cfg.summary_prompt + "\n")
print("SCORE CONTEXT:\n" + cfg.score_context + "\n")
print("SCORE FORMAT:\n" + cfg.score_format)

# %% [markdown]
# Chat models often open their reply with a sentence like *"Sure, here is a summary:"*. LAVAD
# keeps only the **last line** of the summary reply:

# %%
print(repr(lavad.last_line("Sure! Here is a summary:\n\nA man runs across the lawn.\n")))

# %% [markdown]
# ## See it work first: perfect perception
#
# Before any model runs, feed the two prompts temporal descriptions whose meaning is known.
# `lavad.oracle_backends` builds a captioner, an embedder and an LLM that **read the ground
# truth** from the pixels: the captioner says "something unusual: Vehicle" exactly on the
# anomalous frames and "people walk along a path" elsewhere; the oracle LLM's summary counts
# the unusual moments of the temporal description and its score is their share. The oracle
# *states what happens* (perfect perception). It tests LAVAD's plumbing around the LLM: the
# prompts are built from the right captions in time order, the last line of the summary is
# kept, the `[x]` is parsed and each score lands on its position. It does not test whether
# an LLM understands a scene: the oracle LLM cannot misread, so its scores are an upper
# bound, not a result. No model runs and nothing is downloaded.

# %%
from vadnb.data import load_campus

campus_test = load_campus().subset("test")
if VIDEO is None:
    test_videos = campus_test.videos
    VIDEO = test_videos[test_videos.is_anomalous].path.iloc[0]
labels = (campus_test.frame_labels(Path(VIDEO).stem)
          if Path(VIDEO).stem in set(campus_test.videos.name) else None)
oracle = lavad.oracle_backends(campus_test)
ideal = lavad.run(VIDEO, backends=oracle, **LAVAD_OVERRIDES) if labels is not None else None
if ideal is None:
    print(f"{Path(VIDEO).name} is not a campus test clip: the oracle only knows those.")
else:
    row = ideal.segments.iloc[len(ideal.segments) // 2]
    for message in lavad.summary_messages(row.temporal_description.split("\n")):
        print(f"--- summary prompt ({message['role']}) ---\n{message['content']}")
    print(f"\n=== summary kept: {row.summary}\n=== score reply: {row.score_reply} "
          f"-> score {row.raw_score}")

# %% [markdown]
# Every position with perfect perception: its summary and its score, then the scores over
# time, ground truth shaded. The line under the figure is counted from the run.

# %%
if ideal is not None:
    fig = plots.plot_scores(lavad.frame_scores_of(ideal, "raw_score"), fps=ideal.fps,
                            labels=labels, label="oracle LLM score",
                            title=f"perfect perception, LLM scores · {Path(VIDEO).name}")
    fig.savefig(out / "oracle_scores.png", dpi=80, bbox_inches="tight")
    plt.show()
    lesson.say(lavad.lesson.oracle_statement(ideal))
    with pd.option_context("display.max_colwidth", None):  # the whole (readable) summary
        display(ideal.segments[["centre_frame", "time_s", "summary", "raw_score"]])
else:
    lesson.say("No perfect-perception run: the oracle only knows the campus test clips.")

# %% [markdown]
# ## A real small LLM reads the true temporal descriptions
#
# Now keep the oracle captioner and embedder (true temporal descriptions) and give the two
# prompts to a **real** LLM: SmolLM2-135M-Instruct, the `cpu` profile's LLM (a wheel on
# PyPI, 93 MB, converted once into vadnb's cache). The next cell runs it only when it is
# already on this machine or the profile is `cpu` (which downloads it); it never downloads
# otherwise. It prints the model that actually loaded. It asks for the score twice:
#
# - `score_decoding="free"` (the paper's): the LLM writes free text and the parser looks for
#   `[x]` in it. A small LLM often writes no readable `[x]` at all: it echoes the list of
#   candidates or chats.
# - `score_decoding="choices"` (vadnb's option): the reply is whichever of the 11 allowed
#   replies `[0]`, `[0.1]`, ..., `[1.0]` the model itself finds most likely
#   (`llm.batch(..., choices=LAVAD_SCORE_CHOICES)`), so every reply parses.
#
# `REAL_LLM_SETTINGS` keeps it short on a CPU (a position every 32 frames, 24-token
# summaries), so the oracle's scores it is compared with are those of every other position
# of the table above; the line under the cell says, from the run, how many replies were readable and
# whether the scores tell the positions apart as the oracle's do. Readable is not the same as
# right.

# %%
from vadnb.models.base import LAVAD_SCORE_CHOICES

real_llm_ran = ideal is not None and (env.profile == "cpu" or lavad.lesson.real_llm_on_disk())
if real_llm_ran:
    real_llm = vadnb.models.load("llm", profile="cpu")
    backends = {**oracle, "llm": real_llm}  # true temporal descriptions, a real LLM
    settings = {**REAL_LLM_SETTINGS, **LAVAD_OVERRIDES}
    real = {d: lavad.run(VIDEO, backends=backends, score_decoding=d, **settings)
            for d in ("free", "choices")}
    real_llm.release()
    kind = "MEANINGLESS random weights" if real_llm.meaningless else "a real, trained model"
    print(f"LLM that loaded: {real_llm.name} ({kind}), reading true temporal descriptions of "
          f"{Path(VIDEO).name}")
    truth = lavad.run(VIDEO, backends=oracle, **settings).segments.raw_score
    lesson.say(lavad.lesson.real_llm_statement(real_llm.name, real, truth))
    lesson.save_metrics(out / "choices.json", {"llm": real_llm.name, **{
        d: {"positions": r.extras["positions"],
            "parsed": r.extras["positions"] - r.extras["parse_failures"],
            "replies": [str(x) for x in r.segments.score_reply]} for d, r in real.items()}})
    print("per position: the real LLM's summary -> its choices score | oracle score | "
          "start of its free-text score reply")
    for (_, c), (_, f), x in zip(real["choices"].segments.iterrows(),
                                 real["free"].segments.iterrows(), truth):
        print(f"  frame {c.centre_frame:4}: {c.summary!r} -> {c.score_reply} | {x:.1f} | "
              f"{str(f.score_reply)[:60]!r}")
else:
    lesson.say("The real LLM is not on this machine (and this profile is not 'cpu'): nothing "
               "to run. With PROFILE = 'cpu' the suite downloads it once (93 MB).")

# %% [markdown]
# ## What differs from the official code
#
# The defaults compute what the official code computes: the summary's token budget is the
# LLM's 512-token context minus the prompt, the captioner keeps its own length, the first
# `[x]` of a score reply is read, unreadable scores are interpolated. The exceptions are
# listed here, once for notebooks 20-40: the prompts are ours (same structure as the
# paper's), decoding is greedy, the score reply has a token budget, and the parser is a
# little more lenient. Every difference, with its effect and the setting that gives the
# other behaviour, from `lavad.DIFFERENCES`:

# %%
display(Markdown(stages.differences_markdown(lavad.DIFFERENCES,
                                             "LAVAD in vadnb vs the official code")))

# %% [markdown]
# ## Now with this profile's models
#
# The same two steps with the models of this run's profile (printed by `vadnb.setup` above).
# If you ran notebook 20 with the same video and profile, the captions and embeddings come
# from the cache and only missing stages run. The model-call table says what was computed.
#
# With `tiny` the LLM has random weights and writes random words until its token budget
# runs out: meaningless text. This part only shows that the code runs on your machine, what
# each artifact looks like and what is counted (calls, distinct prompts, parse failures), so
# it shows a few rows and cuts long random text to a few characters, with its full length
# (`lavad.lesson.glimpse`). Text from a real model is shown whole: with `cpu`, the LLM's
# summaries and replies (its captioner is a tiny model).

# %%
det = lavad.run(VIDEO, profile=env.profile, **LAVAD_OVERRIDES)
noise = lavad.lesson.random_roles(det)  # the roles with random weights: their text is cut
print(det.model_calls.to_string(index=False) if det.model_calls["calls"].sum()
      else "no model call: every answer came from the cache")

# %% [markdown]
# ## What the LLM sees for one position
#
# The two conversations sent for the middle position of the video, as built by
# `lavad.summary_messages` and `lavad.score_messages`: the instruction first, then the
# temporal description (or the summary). With `tiny`, the captions, the summary and the
# reply are random words, so each conversation shows its first lines, cut (the prompts'
# fixed parts are printed whole under "The prompts", and a whole summary prompt with
# readable captions in the perfect-perception section).

# %%
seg = det.segments
row = seg.iloc[len(seg) // 2]
lavad.lesson.print_messages(lavad.summary_messages(row.temporal_description.split("\n")),
                            "captioner" in noise)
print("=== summary kept:", lavad.lesson.glimpse(row.summary) if "llm" in noise else row.summary)
lavad.lesson.print_messages(lavad.score_messages(row.summary), "llm" in noise)
reply = lavad.lesson.glimpse(row.score_reply) if "llm" in noise else row.score_reply
print(f"=== reply: {reply!r} -> score {row.raw_score}")

# %% [markdown]
# ## Greedy decoding, and asking once per distinct prompt
#
# The paper sampled its replies (temperature 0.6, top-p 0.9): run it twice and the scores
# differ. We decode **greedily** (`llm_decoding = "greedy"`): the same prompt always gets the
# same reply, so a result can be reproduced, and a cached reply is exactly what the model
# would say again. A side effect: two positions with the same temporal description (common
# in static scenes) get the same summary, so the LLM is asked once per *distinct* prompt.

# %%
print(f"{det.extras['positions']} positions -> {det.extras['n_llm_prompts']} distinct LLM "
      f"prompts (the paper's code: {2 * det.extras['positions']})")

# %% [markdown]
# ## Summaries and scores
#
# One row per position, saved whole to `summaries.csv`; below, its first rows (cut, with
# `tiny`: its summaries and replies are random words). `parsed` says whether the score
# reply held a readable `[x]`.

# %%
summaries = seg[["centre_frame", "time_s", "summary", "score_reply", "parsed", "raw_score"]]
summaries.to_csv(out / "summaries.csv", index=False)
print(f"wrote {out / 'summaries.csv'}: {len(summaries)} rows")
lavad.lesson.glimpse_table(summaries, "llm" in noise)

# %% [markdown]
# ## Parse failures
#
# `vadnb.stages.parse_bracket_score` takes, as the official parser does, the first bracket
# that holds *one* number, between 0 and 1: "Sure! [0.7]" works, and so does "From [0, 0.1,
# ..., 1.0] I pick [0.7]" (the echoed list of candidates is skipped); "0.7" without
# brackets, "[1.5]" or "[high]" do not. An unreadable reply becomes *missing*, and missing
# scores are filled by **linear interpolation** from the nearest readable positions (at the
# ends, the nearest value; if nothing is readable, 0.5). Every failure is counted, and so is
# every reply cut at its token budget (`score_max_new_tokens`): a reply that ran out of
# tokens before its bracket is a budget problem, not a model that cannot follow the format.

# %%
for reply in ["[0.7]", "Sure! I would say [0.3].", "From [0, 0.1, ..., 1.0] I pick [0.7]",
              "0.7", "[1.5]", "[high]"]:
    print(f"{reply!r:42} -> {lavad.parse_scores([reply])[1][0]}")

# %%
report = {
    "video": Path(VIDEO).name,
    "profile": det.profile,
    "meaningless": det.meaningless,
    "positions": det.extras["positions"],
    "parse_failures": det.extras["parse_failures"],
    "failure_rate": det.extras["parse_failures"] / max(det.extras["positions"], 1),
    "score_replies_truncated": det.extras["score_truncated"],
    "summary_replies_truncated": det.extras["summary_truncated"],
    "score_max_new_tokens": det.extras["config"]["score_max_new_tokens"],
    "parse_report": det.extras["parse_report"],
    "examples": det.extras["parse_failure_examples"],
}
lesson.save_metrics(out / "parse_report.json", report)
print(report["parse_report"] + (" (tiny: meaningless replies)" if "llm" in noise else ""))
for example in dict.fromkeys(report["examples"]):  # each distinct unreadable reply once
    print(f"  unreadable: {lavad.lesson.glimpse(example) if 'llm' in noise else example!r}")

# %% [markdown]
# ## How the LLM handled the prompts
#
# The next cell measures this run's LLM (its name is printed; with `PROFILE="cpu"` a real
# small model, with `tiny` a random one): how many score replies could be read, how spread
# the scores are, and, asking the first `PROBE_POSITIONS` score prompts again live, how
# many replies were cut at the method's token budget before the model ended its turn.

# %%
from vadnb.models.probe import ask_and_parse

probe_llm = vadnb.models.load("llm", profile=env.profile)
asked = list(dict.fromkeys(seg.summary))[:PROBE_POSITIONS]
probe = ask_and_parse(probe_llm, [lavad.score_messages(s, cfg) for s in asked],
                      lambda r: lavad.parse_scores([r])[1][0], cfg.score_max_new_tokens)
probe_llm.release()
read = seg.raw_score[seg.parsed.astype(bool)]
probe.update(llm=probe_llm.name, positions=len(seg), positions_parsed=int(len(read)),
             score_min=float(read.min()) if len(read) else None,
             score_max=float(read.max()) if len(read) else None,
             score_std=float(read.std(ddof=0)) if len(read) else None,
             distinct_scores=int(read.nunique()))
lesson.save_metrics(out / "llm_probe.json", probe)
print(f"LLM {probe['llm']}" + (" (random weights: meaningless)" if probe_llm.meaningless else "")
      + f": {probe['positions_parsed']} of {probe['positions']} score replies "
      f"of the run were readable")
if len(read):
    print(f"readable scores span {probe['score_min']:.2f} to {probe['score_max']:.2f} "
          f"(std {probe['score_std']:.3f}, {probe['distinct_scores']} distinct values)")
print(f"asked again: {probe['parsed']} of {probe['asked']} parsed; {probe['truncated']} cut at "
      f"the {probe['max_new_tokens']}-token budget ({probe['truncated_unparsed']} of them "
      f"unreadable); mean new tokens {probe['mean_new_tokens']}")
for reply in probe["replies"][:3]:
    print("  reply:", repr(lavad.lesson.glimpse(reply) if probe_llm.meaningless else reply))

# %% [markdown]
# The LLM's scores over time (before refinement), with the positions whose reply could not
# be read marked in red: their value was filled in (interpolated from readable neighbours,
# or 0.5 when none was readable). The line under the figure says what the shaded
# ground-truth band holds for this clip.

# %%
fig = plots.plot_scores(lavad.frame_scores_of(det, "raw_score"), fps=det.fps, labels=labels,
                        warning=det.warning or None, label="LLM score",
                        title=f"LAVAD raw scores · {Path(VIDEO).name}")
bad = seg[~seg.parsed]
fig.axes[0].plot(bad.time_s, bad.raw_score, "rx", label="unreadable (filled in)")
fig.axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
fig.savefig(out / "scores.png", dpi=80, bbox_inches="tight")
plt.show()
print(lavad.truth_statement(labels, det.fps))

# %% [markdown]
# ## Try your own prompt
#
# Change `MY_SCORE_CONTEXT` (a parameter at the top) and run the next cell. Only the score
# prompt changed, so the captions, embeddings and summaries come from the cache; the LLM is
# asked again for the scores only (once: run the cell again and they come from the cache too;
# the model-call table says which happened).

# %%
mine = lavad.run(VIDEO, profile=env.profile, score_context=MY_SCORE_CONTEXT, **LAVAD_OVERRIDES)
print(mine.model_calls.to_string(index=False) if mine.model_calls["calls"].sum()
      else "no model call: every answer came from the cache")
compare = pd.DataFrame({"summary": seg.summary, "default prompt": seg.raw_score,
                        "my prompt": mine.segments.raw_score})
print(f"{int((compare['default prompt'] != compare['my prompt']).sum())} of {len(compare)} "
      "positions changed score")
lavad.lesson.glimpse_table(compare, "llm" in noise)

# %% [markdown]
# The choices path with this profile's own LLM, on a few of its summaries: each reply is the
# allowed value the model finds likeliest, with the top log-probabilities beside it (skipped
# when the real LLM above already ran with this profile's LLM).

# %%
if not (real_llm_ran and env.profile == "cpu"):
    choice_llm = vadnb.models.load("llm", profile=env.profile)
    asked = list(dict.fromkeys(seg.summary))[:3]
    chosen = choice_llm.batch([lavad.score_messages(s, cfg) for s in asked],
                              choices=LAVAD_SCORE_CHOICES)
    choice_llm.release()
    note = (" (random weights: the choices below are MEANINGLESS; they only show the "
            "mechanics)" if choice_llm.meaningless else "")
    print(f"LLM {choice_llm.name}{note}")
    for summary, reply in zip(asked, chosen):
        best = sorted(reply.logprobs.items(), key=lambda kv: -kv[1])[:3]
        print(f"  {str(reply):6} <- {lavad.lesson.glimpse(summary, 30)!r}  top log-probs: "
              + ", ".join(f"{k} {v:.2f}" for k, v in best))

# %% [markdown]
# ## Summary
#
# - Two LLM calls per position: a **summary** of the temporal description (last line kept)
#   and a **score** for the summary, read from `[x]`.
# - Perfect perception shows the two steps doing their job; a real small LLM on the same
#   true temporal descriptions shows what is left when the model, not the perception, is
#   the limit.
# - Unreadable replies are counted and **interpolated**; the report says how many.
#   `score_decoding="choices"` makes every reply readable, which is not the same as making
#   it right: compare its scores with the oracle's.
# - Greedy decoding makes runs reproducible and lets identical prompts be asked once.
#
# ## Exercises
#
# 1. Ask the LLM for a score *without* the summary step (score the temporal description
#    directly: `lavad.score_messages(description)`). Are the scores better or worse?
# 2. Drop the format prompt (`score_format=""`) and count the parse failures.
# 3. Run with `llm_decoding="paper"` twice with a fresh cache (`cache=...`). How much do
#    the scores move between runs?
# 4. Write a context for a different setting (a shop, a highway). Which scenes change score?

# %% [markdown]
# *The words used here are defined once, in the [glossary](https://github.com/vadnb/vadnb/blob/main/README.md#glossary).*
