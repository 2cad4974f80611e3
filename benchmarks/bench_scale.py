"""What does scaling out cost on one small machine? Local vs Ray, and the served client.

Measured in one run:

1. **Local vs Ray** on the campus test split: ``run_dataset(..., executor="local")`` against
   ``executor="ray"`` (a local Ray with 2 CPUs, an actor pool of ``--actors``), each in a
   fresh output folder and a fresh stage cache, so both do all the work. Ray's start-up is
   timed apart. On 2 shared cores Ray cannot win: it shows its fixed cost (worker
   processes, each importing the models) that a cluster pays once per run.
2. **The served client's overhead per call**: the tiny LLM called directly, against the
   same LLM behind the local OpenAI-compatible test server (``tests/served_support``)
   called through ``vadnb.models.served``; and an echo model (no model work at all) that
   shows the HTTP + JSON cost alone.

    python benchmarks/bench_scale.py                        # classical, every test clip
    python benchmarks/bench_scale.py --method vera --profile tiny --videos 2 --calls 30
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the local test server: tests/served_support

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from vadnb import scale  # noqa: E402 - after the path and environment set-up
from vadnb.data import load_campus  # noqa: E402

FAST = {"vera": {"stride": 48, "max_new_tokens": 8},
        "lavad": {"stride": 48, "summary_max_new_tokens": 8, "score_max_new_tokens": 6}}


def local_vs_ray(method: str, profile: str | None, videos: int | None, actors: int,
                 work: Path) -> dict[str, float]:
    test = load_campus().subset("test")
    names = list(test.videos["name"])[: videos or None]
    overrides = FAST.get(method, {}) if profile == "tiny" else {}
    common = dict(videos=names, progress=False, **overrides)
    t0 = time.perf_counter()
    scale.run_dataset(test, method, profile, out_dir=work / "local", cache=work / "c-local",
                      **common)
    local_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scale.start_ray(num_cpus=2)
    ray_start_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scale.run_dataset(test, method, profile, executor="ray", actors=actors,
                      out_dir=work / "ray", cache=work / "c-ray", **common)
    ray_s = time.perf_counter() - t0
    import numpy as np
    import ray

    ray.shutdown()
    a = scale.read_frame_scores(work / "local")
    b = scale.read_frame_scores(work / "ray")
    same = sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    return {"videos": len(names), "local_s": local_s, "ray_start_s": ray_start_s,
            "ray_s": ray_s, "ratio": ray_s / local_s, "same_scores": same}


def served_overhead(calls: int) -> dict[str, float]:
    from served_support.server import TestServer
    from vadnb import models
    from vadnb.models.scripted import ScriptedLLM
    from vadnb.models.served import ServedLLM

    llm = models.load("llm", profile="tiny")
    echo = ScriptedLLM(lambda m: m[-1]["content"], name="echo")
    msgs = [{"role": "user", "content": "A person walks across the car park."}]
    llm(msgs, max_new_tokens=8)  # warm-up
    with TestServer({"tiny:llm": llm, "echo": echo}) as server:
        served = ServedLLM("tiny:llm", server.url)
        served_echo = ServedLLM("echo", server.url)
        served(msgs, max_new_tokens=8)
        served_echo(msgs)

        def per_call(fn) -> float:
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            return (time.perf_counter() - t0) / calls

        direct_s = per_call(lambda: llm(msgs, max_new_tokens=8))
        served_s = per_call(lambda: served(msgs, max_new_tokens=8))
        echo_s = per_call(lambda: served_echo(msgs))
    return {"calls": calls, "direct_ms": 1e3 * direct_s, "served_ms": 1e3 * served_s,
            "overhead_ms": 1e3 * (served_s - direct_s), "echo_ms": 1e3 * echo_s}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="classical")
    parser.add_argument("--profile", default=None, help="model profile (default: tiny for model methods)")
    parser.add_argument("--videos", type=int, default=None, help="first N test clips (default: all)")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--calls", type=int, default=50, help="calls per served-overhead timing")
    args = parser.parse_args(argv)
    profile = args.profile or (None if args.method == "classical" else "tiny")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        os.environ.setdefault("VADNB_CACHE", str(Path(tmp) / "suite-cache"))
        ray_res = local_vs_ray(args.method, profile, args.videos, args.actors, Path(tmp))
        print(f"{args.method} on {ray_res['videos']} campus test clips (2 CPUs): "
              f"local {ray_res['local_s']:.1f} s, Ray {ray_res['ray_s']:.1f} s "
              f"(+ {ray_res['ray_start_s']:.1f} s to start Ray) -> Ray/local wall time "
              f"{ray_res['ratio']:.2f}; same scores: {ray_res['same_scores']}")
        srv = served_overhead(args.calls)
        print(f"served client, {srv['calls']} calls each: tiny LLM direct {srv['direct_ms']:.1f} ms/call, "
              f"through the test server {srv['served_ms']:.1f} ms/call -> overhead "
              f"{srv['overhead_ms']:.1f} ms/call (echo model, HTTP+JSON only: {srv['echo_ms']:.1f} ms/call)")
    return {"ray": ray_res, "served": srv}


if __name__ == "__main__":
    main()
