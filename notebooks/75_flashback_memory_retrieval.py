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
# # 75 · Anomaly detection as retrieval: a memory of captions (Flashback)
#
# Flashback (arXiv 2505.15205) scores video without calling a language model while it
# watches. Once, before any video, an LLM writes a **memory** of short scene captions in
# pairs, one normal and one anomalous ("recall"). Then every second of video is embedded in
# the same space as those captions, its nearest captions are retrieved, and the share of
# anomalous ones among them is the score ("respond"). The retrieved captions are the
# explanation.
#
# In this notebook you will learn:
# - how recall asks an LLM for structured JSON, and why every reply is validated, counted
#   and retried rather than trusted;
# - how respond turns one nearest-neighbour search per segment into frame scores: 1 s
#   segments with a 0.5 s hop, the top-k captions, a softmax-weighted anomalous share, the
#   mean over covering segments and a five-tap smoothing;
# - why the method is causal (each score needs only the video so far) and cheap: count its
#   model calls per minute of video against the other methods.
#
# Where it sits: after `70_verbalized_learning_vera` and before notebook 80, which compares
# the methods. It uses the campus benchmark of `00_setup_and_data` and the frame-level
# metrics of `40_score_refinement_and_evaluation`.

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vadnb/vadnb/blob/main/notebooks/75_flashback_memory_retrieval.ipynb)
#
# **On Colab**: choose a GPU first (Runtime › Change runtime type › **T4 GPU**), then run
# the cells in order; the next cell installs the suite (a minute or two) and is safe to re-run.
# With `PROFILE = "colab"` this notebook downloads, once: Qwen/Qwen2.5-3B-Instruct (llm, ~6.2
# GB) and imagebind_huge (embedder, ~4.5 GB; weights CC BY-NC-SA 4.0: non-commercial use
# only): ~10.7 GB in all (sizes approximate). The `tiny` profile (the default without a GPU)
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
        keep_on_drive("75")

# %% tags=["parameters"]
PROFILE = None             # "tiny" (CPU, meaningless scores), "colab" (T4), "paper"; None: $VADNB_PROFILE
OUTPUT_DIR = "outputs/75"  # perfect_perception.csv, memory_space.png, metrics.json, memory.json/.safetensors
MEMORY = "auto"            # "auto", "llm" (recall now), "handwritten", or a saved memory file
CALLS = 8                  # recall: LLM calls (the paper: 1000)
PAIRS_PER_CALL = 25        # recall: caption pairs per call (the paper: 100)
MAX_TEST_VIDEOS = None     # None: every test video of the campus benchmark

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

import vadnb
from vadnb import flashback, metrics
from vadnb.data import load_campus
from vadnb.detect import TINY_WARNING
from vadnb.flashback import core, memory
from vadnb.flashback import lesson as fb_lesson
from vadnb.plots import plot_detection

env = vadnb.setup(PROFILE)
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)

# %%
from vadnb import lesson

lesson.references("75")
lesson.banner(env)

# %% [markdown]
# The pipeline at a glance: recall runs once (its memory is saved and reused for every
# video); respond runs per segment.

# %%
from vadnb.plots import pipeline

pipeline("flashback");

# %% [markdown]
# ## Recall: asking an LLM for a memory, and not trusting the reply
#
# The LLM gets one instruction and is asked, once per seed, for a batch of pairs in this
# JSON form. Pairing matters: each normal scene has an anomalous twin, so the memory covers
# both sides of every kind of place.

# %%
print(memory.SYSTEM_PROMPT)
print()
print(memory.recall_messages(PAIRS_PER_CALL, seed=0)[1]["content"])

# %% [markdown]
# A language model does not always do what it is told. Here is a pretend LLM (a Python
# function playing the llm role) that answers its first call in prose and the others in
# JSON. Recall reads every reply on arrival: the prose is **counted** as malformed and asked
# again, with the error shown to the model; nothing is silently dropped. If *every* call
# stays malformed, recall stops with an error that names the counts: a second pretend LLM,
# which only ever writes prose, shows it. That is what the tiny profile's random LLM would
# do, which is why the tiny profile uses a memory written by a person.

# %%
from vadnb.models.scripted import ScriptedLLM  # noqa: E402
from vadnb.runtime import Roles, Runtime  # noqa: E402


def pretend_llm(messages):
    seed = int(messages[1]["content"].split("Seed: ")[1].rstrip("."))
    if seed == 0 and len(messages) == 2:
        return "Here are some scenes: people walk; a car crashes."
    return json.dumps({"descriptions": [
        {"normal": {"category": "Normal", "description": "people walk on a path"},
         "anomalous": {"category": "RoadAccidents", "description": f"a car crashes, take {seed}"}}]})


demo_rt = Runtime(Roles(backends={"llm": ScriptedLLM(pretend_llm)}))
demo_pairs, demo_counts = memory.recall(demo_rt, flashback.Config(calls=3, pairs_per_call=1))
kept, dedup = memory.deduplicate(demo_pairs)
lesson.say(f"Recall counted {demo_counts['malformed_replies']} malformed reply(ies) out of "
           f"{demo_counts['replies']}, and {demo_counts['failed_calls']} call(s) that stayed "
           f"malformed; de-duplication removed {dedup['normal_duplicates']} repeated normal "
           f"caption(s) and {dedup['anomalous_duplicates']} anomalous one(s).")

prose_only = Runtime(Roles(backends={"llm": ScriptedLLM(lambda m: "Sure! People walk.",
                                                        name="pretend-prose-only")}))
try:  # an LLM that never answers in JSON: recall stops and names the counts
    memory.recall(prose_only, flashback.Config(calls=2, pairs_per_call=1))
except memory.RecallError as err:
    print("An LLM that never writes JSON:", err)

# %% [markdown]
# The memory this notebook uses comes from `MEMORY`: on a real profile the LLM writes it
# (`CALLS` x `PAIRS_PER_CALL` pairs; the paper's scale is `flashback.PAPER_MEMORY`, 1000 x 100,
# which is a benchmark job, not a lesson); on the tiny profile it is the small memory **a
# person wrote** (`data/flashback_memory_handwritten.json`, labelled so in the file and in
# the recipe of everything made from it). These are its first pairs:

# %%
handwritten, _, _ = memory.parse_reply(memory.HANDWRITTEN_PATH.read_text())
with pd.option_context("display.max_colwidth", None):  # whole captions, not cut at 50 characters
    display(pd.DataFrame([{"normal": n[0], "anomalous": a[0], "category": a[1]}
                          for n, a in handwritten[:6]]))

# %% [markdown]
# ## Respond with perfect perception (meaningful on a laptop)
#
# To see what respond's own steps can do, we replace the embedder with one that *reads the
# ground truth* of the campus clips (`fb_lesson.oracle_backends`: a teaching device, not a
# model). A normal frame points one way, an anomalous frame another way plus a direction
# for its class; captions are placed by their words. The memory is the hand-written one.

# %%
bench = load_campus()
test = bench.subset("test").videos
if MAX_TEST_VIDEOS:  # keep both kinds: an AUC needs normal and anomalous frames
    k = int(MAX_TEST_VIDEOS)
    test = pd.concat([test[test["is_anomalous"]].head(k - k // 2),
                      test[~test["is_anomalous"]].head(k // 2)])
oracle = fb_lesson.oracle_backends(bench)
example = test[test["is_anomalous"]].iloc[0] if test["is_anomalous"].any() else test.iloc[0]
mem, resp = fb_lesson.respond(example["path"], backends=oracle, memory="handwritten")
truth = bench.frame_labels(example["name"])
seg_truth = [truth[s:s + resp["length"]].mean() >= 0.5 for s in resp["starts"]]
ax = fb_lesson.plot_memory_space(mem, resp["embeddings"], seg_truth,
                                 title=f"{example['name']}: memory and segments (oracle)")
ax.figure.savefig(out / "memory_space.png", dpi=120, bbox_inches="tight")
plt.show()
share = resp["flags"].mean(axis=1)  # per segment: the anomalous share of its top-k captions
seg_truth = np.asarray(seg_truth, bool)
lesson.say(f"Among its {resp['flags'].shape[1]} nearest captions, an anomalous segment of this "
           f"clip has on average {share[seg_truth].mean():.0%} anomalous ones "
           f"({seg_truth.sum()} segments), a normal segment {share[~seg_truth].mean():.0%} "
           f"({(~seg_truth).sum()} segments).")

# %% [markdown]
# Each cross is one 1-second segment. Its score is the softmax-weighted share of anomalous
# captions among its top-k nearest (`top_k`, 10 by default); the picture is a 2-D shadow of
# that neighbourhood. Here is respond, step by step, as the package runs it:

# %%
lesson.show_source(core.pipeline)

# %% [markdown]
# Every score comes with its explanation: the first three retrieved captions and their
# similarities. The highest-scoring segment of this clip and the lowest-scoring one:

# %%
det_oracle = flashback.run(example["path"], backends=oracle, memory="handwritten")
ranked = det_oracle.segments.sort_values("score", ascending=False)
for what, seg in (("highest", ranked.iloc[0]), ("lowest", ranked.iloc[-1])):
    print(f"{what} score {seg['score']:.2f}, frames {seg['start_frame']}-{seg['end_frame'] - 1}:")
    print("  " + seg["explanation"].replace(" | ", "\n  "))

# %%
plot_detection(det_oracle, labels=truth,
               title=f"Flashback with perfect perception (oracle embedder): {example['name']}")
plt.show()

# %% [markdown]
# The same oracle over every test clip, under vadnb's defaults, the research code's choices
# (tail frames scored 0, 30 fps assumed whatever the video) and a few ablations. These are
# an **upper bound of the method's steps with this memory**, not of any model.

# %%
perfect = fb_lesson.perfect_perception(bench)
perfect.to_csv(out / "perfect_perception.csv", index=False)
perfect

# %%
default, others = perfect.iloc[0], perfect.iloc[1:]
worst = others.loc[others["ap"].idxmin()]
lesson.say(f"With perfect perception the defaults reach frame AUC {default['auc']:.4f} and AP "
           f"{default['ap']:.4f} (1 would be perfect). The variant that loses the most AP is "
           f"'{worst['variant']}': AP {worst['ap']:.4f}, AUC {worst['auc']:.4f}.")

# %% [markdown]
# ## Respond is causal
#
# A segment's score needs only its own frames, and a frame's final score needs only the
# segments that cover it plus two frames of smoothing. `core.OnlineScorer` takes segment
# scores as they arrive and hands back each frame as soon as its score can no longer
# change; the registry records the method's latency in seconds of video.

# %%
from vadnb import registry  # noqa: E402

starts = resp["starts"]
hop = int(starts[1] - starts[0]) if len(starts) > 1 else 1
online = core.OnlineScorer(int(resp["length"]), hop)
streamed = [online.feed(s)[1] for s in resp["segment_scores"]]
streamed.append(online.finish(det_oracle.num_frames)[1])
same = np.allclose(np.concatenate(streamed), det_oracle.frame_scores, atol=1e-6)
lesson.say(f"Streaming the segments one by one gives the same frame scores as the whole "
           f"video at once: {same}. Registered latency: {registry.get('flashback').latency_s} s "
           "of video (plus two frames).")

# %% [markdown]
# ## The real run on this profile
#
# Now the profile's own models: the embedder (ImageBind in the real profiles), and the LLM
# for recall when `MEMORY` asks for it. On the `tiny` profile the embedder is a random-init
# model, so **every number below is meaningless** and carries the warning.

# %%
tiny = env.meaningless
dets = {n: vadnb.detect(p, method="flashback", profile=env.profile, memory=MEMORY, calls=CALLS,
                        pairs_per_call=PAIRS_PER_CALL)
        for n, p in zip(test["name"], test["path"])}
first = next(iter(dets.values()))
labels = {n: bench.frame_labels(n) for n in dets}
auc = metrics.frame_auc(labels, {n: d.frame_scores for n, d in dets.items()})
ap = metrics.frame_ap(labels, {n: d.frame_scores for n, d in dets.items()})
recipe = first.extras["memory_recipe"]
lesson.say(f"{len(dets)} test video(s); memory from {recipe['source']} with "
           f"{first.extras['memory_size']['normal']} normal and "
           f"{first.extras['memory_size']['anomalous']} anomalous captions; frame AUC "
           f"{auc:.3f}, AP {ap:.3f}" + (f". {TINY_WARNING}" if tiny else "."))
lesson.save_metrics(out / "metrics.json", {
    "auc": auc, "ap": ap, "test_videos": len(dets), "meaningless": tiny,
    "warning": TINY_WARNING if tiny else None, "memory_source": recipe["source"],
    "memory_size": first.extras["memory_size"],
    "perfect_perception": {"note": lesson.PERFECT_PERCEPTION, "auc": default["auc"],
                           "ap": default["ap"], "variants": perfect}})
first.model_calls

# %% [markdown]
# The memory is a file you can share: the captions, their embeddings and the recipe that
# made them (for an LLM's memory: the LLM, prompt, seeds and embedder; for the hand-written
# one: the file's hash and the embedder). Loading it with another embedder is refused,
# since its vectors would live in another space: the cell tries it with the oracle's.

# %%
shared, _ = fb_lesson.respond(example["path"], profile=env.profile, memory=MEMORY, calls=CALLS,
                              pairs_per_call=PAIRS_PER_CALL)
saved = shared.save(out / "memory")
print(saved.name, "+", saved.with_suffix(".safetensors").name)
print(json.dumps(shared.recipe, indent=1)[:600])
try:  # the oracle's embedder is another space: the saved memory must be refused
    flashback.run(example["path"], backends=oracle, memory=str(saved))
except ValueError as err:
    print("\nLoading it with the oracle's embedder:", err)
else:
    print("\nThe oracle's embedder accepted this memory: the recipes match")

# %% [markdown]
# ## What it costs
#
# Model calls per minute of 30 fps video, from each method's cost model in the registry
# (recall's LLM calls are paid once for every video, so they are not in the table).

# %%
from vadnb import scale  # noqa: E402

cost = pd.DataFrame([{"method": m, "role": r["role"], "calls per minute": r["calls"]}
                     for m in registry.names() for r in scale.calls_per_minute(m, fps=30.0)])
cost.groupby("method")["calls per minute"].sum().sort_values().to_frame()

# %% [markdown]
# ## What differs from the research code, and why
#
# The table is `flashback.DIFFERENCES`, the one list the code keeps; the last column names
# the setting that restores the research code's behaviour where there is one.

# %%
from IPython.display import Markdown  # noqa: E402

from vadnb.stages import differences_markdown  # noqa: E402

Markdown(differences_markdown(flashback.DIFFERENCES))

# %% [markdown]
# ## Summary
#
# - Recall: an LLM writes paired normal/anomalous captions once; every reply is validated,
#   malformed ones are counted and retried, duplicates are counted and removed, and the
#   memory is saved with its recipe.
# - Respond: each 1 s segment retrieves its top-k captions; the softmax-weighted anomalous
#   share is its score; frames average the segments that cover them, then a five-tap
#   smoothing. No LLM runs at this stage, and the retrieved captions explain every score.
# - It is causal: scores can be produced as segments arrive, one segment of delay.
# - Where its defaults depart from the research code (the off-by-one fixed, the video's own
#   frame rate, the tail frames, de-duplication), `flashback.DIFFERENCES` says why and names
#   the setting that restores the code's behaviour.
#
# ## Exercises
#
# 1. Run the perfect-perception table with `anomalous_scale` 0.7, 0.8, 0.9 and 1.0. Why must
#    alpha be chosen on a dataset other than the one you report?
# 2. Add three anomalous captions about a kind of anomaly the campus clips show to a copy of
#    the hand-written memory. How do the explanations of those segments change?
# 3. Set `top_k=1`. What does the segment score become, and what happens to ties?
# 4. Stream a video through `core.OnlineScorer` and measure, in frames, when each frame's
#    score is final. Compare with the registered latency.

# %% [markdown]
# *The words used here are defined once, in the [glossary](https://github.com/vadnb/vadnb/blob/main/README.md#glossary).*
