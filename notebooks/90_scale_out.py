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
# # 90 · Beyond one GPU: running a whole benchmark
#
# The earlier chapters scored a handful of campus clips. A real benchmark is another
# matter: UCF-Crime's test set is **1.11 million frames** (about 10 hours of video) and
# XD-Violence's **2.34 million** (27 hours). This notebook is about organising such a run so
# that it finishes, survives interruptions, and uses every GPU you can get.
#
# In this notebook you will learn:
# - how a full benchmark run is organised: one call, `vadnb.scale.run_dataset`, that scores
#   every video, writes per-video scores as it goes, resumes where it stopped, and
#   evaluates the whole split at the end;
# - what each method *costs*: model calls per minute of video by model role, and the
#   GPU-hours that makes for UCF-Crime and XD-Violence (with the assumptions spelled out);
# - how to run the same thing on **Ray**: locally here, on a cluster with one address;
# - how to hand the LLM / VLM to a **model server** (vLLM or any OpenAI-compatible
#   server), which batches requests from all your workers on its own GPUs.
#
# Where it sits: after the four methods (`20`–`70`) and their comparison (`80`). It uses the
# campus benchmark (`00`) and the metrics (`40`); nothing here changes what a method
# computes, only where and how often it runs.

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vadnb/vadnb/blob/main/notebooks/90_scale_out.ipynb)
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
        keep_on_drive("90")

# %% tags=["parameters"]
PROFILE = None             # "tiny" (CPU, random models), "colab" (T4), "paper"; None: $VADNB_PROFILE or auto
OUTPUT_DIR = "outputs/90"  # cost_table.csv, gpu_hours.csv, run_summary.json, run/ (the run folder)
METHOD = "classical"       # the method of the demo run: "classical" (no model, fast) or a model method
EXECUTOR = "ray"           # "ray" (a local Ray here, or RAY_ADDRESS) or "local" (this process)
RAY_ADDRESS = None         # None: start Ray on this machine; "auto" or "ray://head:10001": a cluster
ACTORS = 2                 # workers in the Ray actor pool (each loads the models once)
GPUS_PER_ACTOR = 0         # 1 on a GPU cluster: one model copy per GPU
MAX_VIDEOS = None          # None: every campus test clip (6); a number: that many
OVERRIDES = {}             # Config fields of METHOD, e.g. {"stride": 48} or {"vlm_model": "openai:...@..."}
SERVED_URL = None          # base URL of an OpenAI-compatible server (".../v1") to try the served backend
SERVED_MODEL = None        # the model name that server serves (e.g. "Qwen/Qwen2.5-3B-Instruct")

# %%
import json
import time
from pathlib import Path

import pandas as pd
from IPython.display import display

import vadnb
from vadnb import data, scale
from vadnb.data import load_campus
from vadnb.detect import TINY_WARNING

env = vadnb.setup(PROFILE)
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)

# %%
from vadnb import lesson

lesson.references("90")
lesson.banner(env, real="the classical baseline" if METHOD == "classical" else "")

# %% [markdown]
# ## How a full benchmark run is organised
#
# A run is the **videos of one split** × **one method** × **one model profile**. It has to
# cope with three facts of life: it takes hours to days, something will interrupt it, and
# you will want to look at partial results. So `run_dataset` works like this:
#
# 1. list the split's videos (`Benchmark.subset("test")`);
# 2. **skip** every video whose scores are already in the run folder (resume);
# 3. score the others one by one, each method's expensive stages **cached** by video
#    content, settings and model, so a video interrupted half-way redoes little;
# 4. write each video's results **the moment it is done**: `frame_scores/<video>.parquet`
#    (video, frame, score) and `segments/<video>.csv` (the explanations);
# 5. at the end, evaluate the split: `per_video.csv` and `summary.json` (micro AUC/AP over
#    all frames, the profile, the `meaningless` flag, model calls per role, wall time).
#
# The folder also records *what* it holds (`run.json`: dataset, method, profile,
# settings): resuming with other settings is refused instead of silently mixing two runs.
#
# With `executor="ray"` step 3 runs on a pool of Ray **actors**: the list of videos becomes
# a Ray Data dataset, each actor loads the method's models **once** (with `num_gpus` per
# actor) and scores the videos it is handed, and the results stream back to this notebook,
# which writes them. One video is the unit of work: inside a video the methods already
# batch their frames.

# %% [markdown]
# ## What a run costs, before you start it
#
# Counting calls is exact; timing them is not. The table below counts **model calls per
# minute of video** from each method's Config defaults (the same formulas as the papers'
# code, with this suite's fixes) and checks them against REFERENCE's anchors: for 30 fps,
# LAVAD makes 225 LLM calls per minute (a summary and a score per position, one every 16
# frames) and, as published, 9,000 captions (5 captioners × every frame; this suite
# captions only the 1 in 16 frames that are used); VERA makes 112.5 VLM calls (8 frames each); AnyAnomaly
# makes 225 VLM calls per typed description (3 views of each 24-frame segment).

# %%
costs = scale.cost_table(["classical", "lavad-published", "lavad", "anomalyclip", "vera",
                          "anyanomaly"], fps=30.0)
costs.to_csv(out / "cost_table.csv", index=False)
costs[["method", "role", "kind", "calls", "formula"]].round(1)

# %% [markdown]
# **From calls to GPU-hours.** Multiply by seconds per call. We have no GPU here, so these
# are **assumptions**, stated in one place (`vadnb.scale.SECONDS_PER_CALL`): a T4 in fp16
# with the `colab` models, an A100 with the `paper` models, with the batching the backends
# do. Replace them with your own measurements: `vadnb.models.call_stats()` reports
# calls and seconds for every run.

# %%
assumptions = pd.DataFrame(scale.SECONDS_PER_CALL)
assumptions.index.name = "seconds per call"
assumptions

# %% [markdown]
# The GPU-hours to score each benchmark's test set (training not included; AnyAnomaly with
# one typed description; the classical baseline runs on CPUs):

# %%
rows = []
for bench, size in scale.BENCHMARK_SIZES.items():
    table = scale.cost_table(list(costs.method.unique()), fps=size["fps"])
    for profile in ("colab", "paper"):
        hours = scale.gpu_hours(table, size["frames"], size["fps"], profile)
        rows += [{"benchmark": bench, "frames": size["frames"], "fps": size["fps"],
                  "profile": profile, "method": m, "gpu_hours": h} for m, h in hours.items()]
gpu = pd.DataFrame(rows)
gpu.to_csv(out / "gpu_hours.csv", index=False)
gpu.pivot_table(index="method", columns=["benchmark", "profile"], values="gpu_hours",
                sort=False).round(1)

# %% [markdown]
# Read it as orders of magnitude, not promises. Two lessons hold whatever the exact
# seconds: LAVAD as published spends most of its time **captioning frames it never uses**,
# and the LLM / VLM calls dominate every language-based method, which is why they are the
# part worth handing to a model server (below). Ten GPUs divide the hours by ten only if
# the work is spread over them: that is what the next section is for.

# %% [markdown]
# ## What to reproduce, and how it is measured
#
# Before spending those GPU-hours, know what the number at the end should be. Each paper
# evaluated its method on some benchmarks, with a protocol of its own: which split, which
# metric, which variant of average precision its code computed ("step" is scikit-learn's
# `average_precision_score`; "trapezoid" is the area `auc(recall, precision)` that LAVAD's
# and VERA's scripts report, a few points apart when scores are tied), and which class
# metrics. The `reported` column is the paper's number, transcribed, not measured here;
# `load` is the call that builds that evaluation set from your download (notebook 00 shows
# each layout). Run `run_dataset(bench, method, profile="paper", ...)` on it and compare.

# %%
protocols = data.protocol_table()
protocols.to_csv(out / "protocols.csv", index=False)
protocols

# %% [markdown]
# ## A run on Ray, here
#
# `ray.init()` without an address starts a small Ray "cluster" inside this machine
# (127.0.0.1 only, no dashboard). Ray is an optional dependency
# (`pip install "ray[data]"`); without it the run falls back to the local executor.

# %%
executor = EXECUTOR
if executor == "ray":
    try:
        import ray  # noqa: F401
    except ImportError:
        print('Ray is not installed (pip install "ray[data]"): using the local executor')
        executor = "local"

test = load_campus().subset("test")
names = list(test.videos["name"])[:MAX_VIDEOS]
print(f"{len(names)} clips, method {METHOD!r}, executor {executor!r}")

started = time.perf_counter()
run = scale.run_dataset(test, METHOD, env.profile, executor=executor, ray_address=RAY_ADDRESS,
                        actors=ACTORS, gpus_per_actor=GPUS_PER_ACTOR, videos=names,
                        out_dir=out / "run", **OVERRIDES)
first_s = time.perf_counter() - started
run

# %% [markdown]
# One row per video (a normal clip alone has no AUC: it has no anomalous frame):

# %%
run.per_video.round(3)

# %% [markdown]
# **Resume.** Run the same call again: every video is found in the run folder, nothing is
# scored, and the summary is recomputed from the saved files. Delete one
# `frame_scores/<video>.parquet` and only that video is scored again.

# %%
started = time.perf_counter()
again = scale.run_dataset(test, METHOD, env.profile, executor=executor, ray_address=RAY_ADDRESS,
                          videos=names, out_dir=out / "run", progress=False, **OVERRIDES)
print(f"first run {first_s:.1f} s; resumed run {time.perf_counter() - started:.1f} s, "
      f"scored {again.summary['scored_now']} videos, found {again.summary['resumed']} done")

# %%
summary = lesson.save_metrics(out / "run_summary.json", {
    **run.summary, "first_run_s": round(first_s, 2),
    "resumed_run": {k: again.summary[k] for k in ("scored_now", "resumed")}})
print(json.dumps({k: summary[k] for k in ("dataset", "method", "profile", "executor",
                                          "videos", "frames", "auc", "ap", "meaningless")}))
if executor == "ray" and RAY_ADDRESS is None:  # stop the local Ray: its processes hold memory
    import ray

    ray.shutdown()
lesson.say(f"Of the first run's {first_s:.1f} s, scoring the videos took "
           f"{summary['video_seconds']:.1f} s; the rest was the {executor} executor starting "
           "up and handing the videos around.")

# %% [markdown]
# The line above splits the first run's time. On a laptop, Ray's fixed cost can outweigh
# the work: it starts worker processes and each imports the models
# (`benchmarks/bench_scale.py` measures it against the plain loop). That cost is paid once
# per run; on a cluster of GPUs it buys one model copy per GPU, all busy.

# %% [markdown]
# ## Pointing it at a cluster
#
# On the machines of the cluster (same Python environment, the videos on storage every
# node can read):
#
# ```bash
# ray start --head --port=6379                  # on the head node
# ray start --address=<head-ip>:6379            # on every other node
# ```
#
# Then, from a machine that can reach the head, only the address changes, plus one GPU
# per actor and as many actors as GPUs:
#
# ```python
# run = scale.run_dataset("ucf_crime", "vera", "paper", root="/data/UCF_Crime",
#                         executor="ray", ray_address="ray://<head-ip>:10001",
#                         actors=8, gpus_per_actor=1, out_dir="/shared/runs/ucf-vera")
# ```
#
# The results come back to the calling machine and are written there, so an interrupted
# run resumes from that folder. The cache folder (`VADNB_CACHE`) is passed to the workers:
# put it on shared storage too, and a restarted actor finds the stages it already did.

# %% [markdown]
# ## Pointing it at a model server (vLLM)
#
# A model server keeps one copy of the LLM / VLM on its GPUs and batches the requests of
# every worker together (continuous batching): far more calls per second than each actor
# generating on its own. Start one, e.g. on a GPU machine:
#
# ```bash
# pip install vllm
# vllm serve Qwen/Qwen2.5-VL-3B-Instruct --port 8000 --max-model-len 16384
# ```
#
# and name it as the model of a role: `"openai:<model>@<base url>"`. The string goes
# wherever a model name goes (a method's `*_model` field, `models.load`), so CPU-only Ray
# actors can do the frames and embeddings while the server does the generation:
#
# ```python
# url = "http://gpu-box:8000/v1"
# run = scale.run_dataset("campus", "vera", "colab", executor="ray",
#                         vlm_model=f"openai:Qwen/Qwen2.5-VL-3B-Instruct@{url}")
# ```
#
# The served backend (`vadnb.models.served`) sends at most `max_concurrency` requests at a
# time, times each out, retries failures with exponential back-off, sends images as base64
# data URLs, and counts its calls like every other backend. With `SERVED_URL` and
# `SERVED_MODEL` set, the next cell asks your server one question.

# %%
if SERVED_URL and SERVED_MODEL:
    from vadnb import models
    from vadnb.models.served import redact  # a password in the URL is never saved

    llm = models.load("llm", model=f"openai:{SERVED_MODEL}@{SERVED_URL}")
    print(llm, "serves", llm.models())
    question = [{"role": "user", "content": "In one sentence: what is video anomaly detection?"}]
    answer = llm(question, max_new_tokens=40)
    print("reply:", answer)
    (out / "served_check.json").write_text(json.dumps(
        {"url": redact(SERVED_URL), "model": SERVED_MODEL, "question": question, "reply": answer,
         "meaningless": llm.meaningless}, indent=2))
    display(models.call_stats())
else:
    print("SERVED_URL / SERVED_MODEL not set: no server to try")

# %% [markdown]
# ## Summary
#
# - `vadnb.scale.run_dataset` organises a benchmark run: per-video Parquet scores written
#   as they come, resume by skipping finished videos, stage caches for the rest, and one
#   evaluation at the end (`per_video.csv`, `summary.json`, with the `meaningless` flag).
# - The same call runs locally or on Ray (`executor="ray"`): videos as a dataset, the
#   method's models in an actor pool, one address away from a cluster.
# - Costs can be counted before a run: calls per minute of video per role follow from each
#   method's settings; GPU-hours need seconds per call, which you should measure.
# - The LLM / VLM can live on a model server (`"openai:<model>@<url>"`), which batches the
#   requests of all workers.
#
# ## Exercises
#
# 1. Set `METHOD = "vera"`, `PROFILE = "tiny"` and `OVERRIDES = {"stride": 48}`. Compare
#    `run.summary["model_calls"]` with `scale.calls_per_minute("vera", fps=10)` scaled to the
#    clips' minutes. Why do they differ (hint: the stride)?
# 2. Interrupt a run (stop the kernel half-way), then run the cell again. Which videos
#    are scored the second time? Where did the cache save work inside a video?
# 3. Measure seconds per call on your GPU with `vadnb.models.call_stats()` after notebook
#    70 and put them into `scale.cost_table(..., seconds_per_call=...)`. How many T4-hours
#    would VERA need for XD-Violence?
# 4. Start `python -m tests.served_support.server --port 8000` (a stand-in server with
#    the tiny models), set `SERVED_URL = "http://127.0.0.1:8000/v1"` and
#    `SERVED_MODEL = "tiny:llm"`, and run the last code cell.
# 5. With two GPUs and a vLLM server on a third, how would you set `actors`,
#    `gpus_per_actor` and `vlm_model` for AnyAnomaly? What stays on the actors' GPUs?

# %% [markdown]
# *The words used here are defined once, in the [glossary](https://github.com/vadnb/vadnb/blob/main/README.md#glossary).*
