#!/usr/bin/env python
"""How fast Flashback's respond runs here, and how many model calls it makes next to the others.

Prints, measured in this one run on this machine:

1. respond's throughput in video seconds per wall second on the campus test clips with the
   profile's models (tiny by default: decode, embed each 1 s segment with the embedder's
   video side, retrieve, score, smooth). The memory (the hand-written one unless
   ``--memory`` says otherwise) is built before the clock starts: recall is paid once,
   not per video. Cold = empty cache; warm = the same run again (no model call);
2. retrieval alone (matmul, top-k, softmax share) per segment against a synthetic memory
   of ``--memory-size`` random captions of ``--dim`` dimensions (the paper's scale is
   200,000 captions of 1024 dims: pass it if the machine has ~1 GB to spare);
3. model calls per minute of 30 fps video for every registered method, from the cost
   models in the registry (recall's LLM calls are once per memory, not per video).

Usage::

    python benchmarks/bench_flashback.py
    python benchmarks/bench_flashback.py --profile colab --memory llm
    python benchmarks/bench_flashback.py --memory-size 200000 --dim 1024
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd


def respond_throughput(profile: str, memory: str, max_videos: int | None) -> None:
    from vadnb import flashback
    from vadnb.flashback import lesson
    from vadnb.data import load_campus
    from vadnb.models import load_stats, reset_load_stats
    from vadnb.video import decode_stats, reset_decode_stats

    test = load_campus().subset("test").videos
    if max_videos:
        test = test.head(max_videos)
    seconds = float((test["num_frames"] / test["fps"]).sum())
    with tempfile.TemporaryDirectory() as cache:
        # recall (or the hand-written memory) before the clock: paid once, not per video
        lesson.respond(test["path"].iloc[0], profile=profile, memory=memory,
                                 cache=cache)
        for label in ("cold", "warm"):
            if label == "cold":  # the segments' embeddings are not cached yet
                flashback_cache_only_memory(cache)
            reset_load_stats()
            reset_decode_stats()
            t0 = time.perf_counter()
            dets = [flashback.run(p, profile=profile, memory=memory, cache=cache)
                    for p in test["path"]]
            wall = time.perf_counter() - t0
            calls = pd.concat([d.model_calls for d in dets])
            print(f"respond {label}: {len(dets)} clips, {seconds:.1f} s of video in {wall:.2f} s "
                  f"wall = {seconds / wall:.2f} video s per wall s; embedder items "
                  f"{int(calls['items'].sum())}, cached {int(calls['cached'].sum())}; frames "
                  f"decoded {decode_stats()['frames_decoded']}; model loads "
                  f"{int(load_stats()['loads'].sum()) if len(load_stats()) else 0}"
                  f" (profile {dets[0].profile})")


def flashback_cache_only_memory(cache: str) -> None:
    """Drop the cached segment embeddings, keep the memory (its file and text embeddings)."""
    import shutil
    from pathlib import Path

    from vadnb.cache import Cache

    store = Cache(cache)
    # the memory file lives apart from the runtime's stage, so it is read, not rebuilt
    stage = Path(store.root) / "stages" / "runtime.embedder"
    if stage.exists():
        shutil.rmtree(stage)


def retrieval_speed(memory_size: int, dim: int, segments: int = 2000) -> None:
    from vadnb.flashback import core

    rng = np.random.default_rng(0)
    half = memory_size // 2
    zn = rng.normal(size=(half, dim)).astype(np.float32)
    za = rng.normal(size=(memory_size - half, dim)).astype(np.float32)
    segs = rng.normal(size=(segments, dim)).astype(np.float32)
    z, flags = core.memory_matrix(zn, za, 1.0)
    t0 = time.perf_counter()
    for i in range(0, segments, 64):
        idx, sims = core.retrieve(segs[i:i + 64], z, 10)
        core.segment_scores(sims, flags[idx], 100.0)
    per = (time.perf_counter() - t0) / segments
    print(f"retrieval: {memory_size} captions x {dim} dims, {per * 1e3:.2f} ms per segment "
          f"= {0.5 / per:.1f} video s per wall s at a 0.5 s hop (numpy, this CPU)")


def calls_table(fps: float = 30.0) -> None:
    from vadnb import registry, scale

    rows = [{"method": m, "role": r["role"], "kind": r["kind"],
             "calls per minute": round(r["calls"], 1)}
            for m in registry.names() for r in scale.calls_per_minute(m, fps=fps)]
    table = pd.DataFrame(rows)
    total = table.groupby("method")["calls per minute"].sum().sort_values()
    print(f"\nmodel calls per minute of {fps:g} fps video (registry cost models):")
    print(table.to_string(index=False))
    print("\ntotal per method:")
    print(total.to_string())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--memory", default="handwritten")
    ap.add_argument("--max-videos", type=int, default=None)
    ap.add_argument("--memory-size", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=1024)
    args = ap.parse_args()
    respond_throughput(args.profile, args.memory, args.max_videos)
    retrieval_speed(args.memory_size, args.dim)
    calls_table()


if __name__ == "__main__":
    main()
