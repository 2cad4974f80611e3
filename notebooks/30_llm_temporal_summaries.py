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
# - how the reply is read (a Python list `[x]`), what happens when it cannot be read
#   (counted, then interpolated from the neighbours), and how often that happens;
# - why we decode greedily (temperature 0) where the paper sampled;
# - that every other default computes what the official code computes, and what each of
#   vadnb's named options changes, measured on perfect-perception inputs;
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

# %%
import json
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
# ## Run LAVAD (cached)
#
# If you ran notebook 20 with the same video and profile, the captions and embeddings come
# from the cache and only missing stages run. The model-call table says what was computed.

# %%
if VIDEO is None:
    from vadnb.data import load_campus

    test_videos = load_campus().subset("test").videos
    VIDEO = test_videos[test_videos.is_anomalous].path.iloc[0]
det = lavad.run(VIDEO, profile=env.profile, **LAVAD_OVERRIDES)
print(det.model_calls.to_string(index=False) if det.model_calls["calls"].sum()
      else "no model call: every answer came from the cache")

# %% [markdown]
# ## What the LLM sees for one position
#
# The two conversations sent for the middle position of the video, exactly as built by
# `lavad.summary_messages` and `lavad.score_messages`:

# %%
seg = det.segments
row = seg.iloc[len(seg) // 2]
for message in lavad.summary_messages(row.temporal_description.split("\n")):
    print(f"--- {message['role']} ---\n{message['content']}")
print("\n=== summary kept:", row.summary)

# %%
for message in lavad.score_messages(row.summary):
    print(f"--- {message['role']} ---\n{message['content']}")
print("\n=== reply:", repr(row.score_reply), "-> score", row.raw_score)

# %% [markdown]
# ## What differs from the official code
#
# The defaults compute what the official code computes: the summary's token budget is the
# LLM's 512-token context minus the prompt, the captioner keeps its own length, the first
# `[x]` of a score reply is read, unreadable scores are interpolated. The exceptions are
# listed here: the prompts are ours (same structure as the paper's), decoding is greedy,
# the score reply has a token budget, and the parser is a little more lenient. Every
# difference, with its effect and the setting that gives the other behaviour, from
# `lavad.DIFFERENCES`:

# %%
display(Markdown(stages.differences_markdown(lavad.DIFFERENCES,
                                             "LAVAD in vadnb vs the official code")))

# %% [markdown]
# ## The official defaults beside vadnb's options
#
# Each named option runs beside the defaults on the campus test clips with
# **perfect perception** (`lavad.oracle_backends`: a captioner, embedder and LLM that read
# the ground truth; notebook 40 explains them), so only the method's own steps differ.
# `lavad.options_table` runs them and `lavad.options_statement` says, from the table, what
# each option changed. The oracle LLM answers the same whatever the decoding or the budget,
# so the LLM options show their effect on the steps around the model only; with a real LLM,
# sampling moves the scores from run to run.

# %%
from vadnb.data import load_campus

campus_test = load_campus().subset("test")
llm_options = {k: v for k, v in lavad.OPTIONS.items()
               if not v or {"llm_decoding", "summary_max_new_tokens"} & set(v)}
options = lavad.options_table(campus_test, llm_options)
print(lavad.options_statement(options))
options

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
# One row per position. `parsed` says whether the score reply held a readable `[x]`.

# %%
summaries = seg[["centre_frame", "time_s", "summary", "score_reply", "parsed", "raw_score"]]
summaries.to_csv(out / "summaries.csv", index=False)
summaries.head(10)

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
(out / "parse_report.json").write_text(json.dumps(report, indent=2))
report

# %% [markdown]
# ## How the LLM handled the prompts
#
# The next cell measures this run's LLM (with `PROFILE="cpu"`, a real small model,
# SmolLM2-135M-Instruct): how many score replies could be read, how spread the scores are,
# and, asking the first `PROBE_POSITIONS` score prompts again live, how many replies were
# cut at the method's token budget before the model ended its turn.

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
(out / "llm_probe.json").write_text(json.dumps(probe, indent=2))
print(f"LLM {probe['llm']}: {probe['positions_parsed']} of {probe['positions']} score replies "
      f"of the run were readable")
if len(read):
    print(f"readable scores span {probe['score_min']:.2f} to {probe['score_max']:.2f} "
          f"(std {probe['score_std']:.3f}, {probe['distinct_scores']} distinct values)")
print(f"asked again: {probe['parsed']} of {probe['asked']} parsed; {probe['truncated']} cut at "
      f"the {probe['max_new_tokens']}-token budget ({probe['truncated_unparsed']} of them "
      f"unreadable); mean new tokens {probe['mean_new_tokens']}")
for reply in probe["replies"][:3]:
    print("  reply:", repr(reply))

# %% [markdown]
# The LLM's scores over time (before refinement), with the positions whose reply could not
# be read marked in red: their value was interpolated. The line under the figure says what
# the shaded ground-truth band holds for this clip.

# %%
labels = None
try:
    from vadnb.data import load_campus

    bench = load_campus()
    name = Path(VIDEO).stem
    if name in set(bench.videos.name):
        labels = bench.frame_labels(name)
except (ImportError, FileNotFoundError, ValueError, KeyError):
    pass
fig = plots.plot_scores(lavad.frame_scores_of(det, "raw_score"), fps=det.fps, labels=labels,
                        warning=det.warning or None, label="LLM score",
                        title=f"LAVAD raw scores · {Path(VIDEO).name}")
bad = seg[~seg.parsed]
fig.axes[0].plot(bad.time_s, bad.raw_score, "rx", label="interpolated")
fig.axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
fig.savefig(out / "scores.png", dpi=80, bbox_inches="tight")
plt.show()
print(lavad.truth_statement(labels, det.fps))

# %% [markdown]
# ## Try your own prompt
#
# Change `MY_SCORE_CONTEXT` (a parameter at the top) and run the next cell. Only the score
# prompt changed, so the captions, embeddings and summaries come from the cache; the LLM is
# asked again for the scores only.

# %%
mine = lavad.run(VIDEO, profile=env.profile, score_context=MY_SCORE_CONTEXT, **LAVAD_OVERRIDES)
print(mine.model_calls.to_string(index=False) if mine.model_calls["calls"].sum()
      else "no model call: every answer came from the cache")
compare = pd.DataFrame({"summary": seg.summary, "paper prompt": seg.raw_score,
                        "my prompt": mine.segments.raw_score})
compare.head(10)

# %% [markdown]
# ## Free text or choices: making a small LLM answer
#
# A small LLM often writes no readable `[x]` at all: it echoes the candidate list or chats.
# `score_decoding="choices"` (vadnb's option; the paper parses free text, the default) asks
# instead which of the 11 allowed replies `[0]`, `[0.1]`, ..., `[1.0]` the model itself finds
# most likely (`llm.batch(..., choices=LAVAD_SCORE_CHOICES)`), so every reply parses. With
# `PROFILE = "cpu"` the next cell runs both on a few positions of the first anomalous campus
# clip with *perfect perception*: the oracle captioner and embedder (`lavad.oracle_backends`)
# state what happens, and the real SmolLM2-135M-Instruct summarises and scores those
# descriptions. It prints the parse rate of each decoding.

# %%
from vadnb.models.base import LAVAD_SCORE_CHOICES

if env.profile == "cpu":
    from vadnb.data import load_campus

    campus_test = load_campus().subset("test")
    choice_llm = vadnb.models.load("llm", profile="cpu")
    backends = {**lavad.oracle_backends(campus_test), "llm": choice_llm}  # real LLM, true captions
    clip = campus_test.videos[campus_test.videos.is_anomalous].path.iloc[0]
    settings = {"stride": 50, "summary_max_new_tokens": 24, **LAVAD_OVERRIDES}
    decodings = {}
    for decoding in ("free", "choices"):
        d = lavad.run(clip, backends=backends, score_decoding=decoding, **settings)
        decodings[decoding] = {"positions": d.extras["positions"],
                               "parsed": d.extras["positions"] - d.extras["parse_failures"],
                               "replies": [str(r) for r in d.segments.score_reply]}
    choice_llm.release()
    print(f"a real small LLM ({choice_llm.name}) scoring true descriptions of {Path(clip).name}:")
    for decoding, r in decodings.items():
        print(f"  score_decoding={decoding!r:10} {r['parsed']} of {r['positions']} score replies "
              f"parsed; first reply {r['replies'][0]!r:.60}")
    (out / "choices.json").write_text(json.dumps({"llm": choice_llm.name, **decodings}, indent=2))
else:
    print(f"This comparison needs PROFILE = 'cpu' (the real SmolLM2-135M); this run's profile "
          f"is {env.profile!r}. The choices path with this profile's LLM:")
    choice_llm = vadnb.models.load("llm", profile=env.profile)
    asked = list(dict.fromkeys(seg.summary))[:3]
    chosen = choice_llm.batch([lavad.score_messages(s, cfg) for s in asked],
                              choices=LAVAD_SCORE_CHOICES)
    choice_llm.release()
    if choice_llm.meaningless:
        print("(tiny profile: a random-weight LLM, so the choices below are MEANINGLESS; "
              "they only show the mechanics)")
    for summary, reply in zip(asked, chosen):
        best = sorted(reply.logprobs.items(), key=lambda kv: -kv[1])[:3]
        print(f"  {str(reply):6} <- {summary!r:.50}  top log-probs: "
              + ", ".join(f"{k} {v:.2f}" for k, v in best))

# %% [markdown]
# ## Summary
#
# - Two LLM calls per position: a **summary** of the temporal description (last line kept)
#   and a **score** for the summary, read from `[x]`.
# - Unreadable replies are counted and **interpolated**; the report says how many.
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
