#!/usr/bin/env python
"""How much model work LAVAD costs here, next to the published configuration.

For one video, prints model calls (items) per minute of video for each role, next to
what the published LAVAD pipeline does per minute at the same frame rate:

- captioner: 5 BLIP-2 captioners on *every* frame = 5 x fps x 60 captions per minute;
- llm: 2 prompts (summary, score) per 16-frame position = 2 x fps x 60 / 16;
- embedder: 10 image + 1 video embeddings per position = 11 x fps x 60 / 16.

Then runs the pipeline a second time in the same process with the same (fresh) cache
folder and prints the cold vs warm run time, frames decoded (``vadnb.video.decode_stats``)
and model loads (``vadnb.models.load_stats``): the warm run must make no model call, load
no model and decode nothing; the cold run decodes at most (passes) x (video frames).

``--cleaning-minutes M`` also times the caption cleaning (top-k retrieval) on synthetic
embeddings of an M-minute 30 fps video whose captions are all distinct (the worst case).

Usage::

    python benchmarks/bench_lavad.py                      # first campus test clip, tiny
    python benchmarks/bench_lavad.py my.mp4 --profile colab
    python benchmarks/bench_lavad.py --cleaning-minutes 10 60
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd


def default_video(folder: Path) -> Path:
    """The first campus test clip, or a generated 30 s clip when the data is missing."""
    try:
        from vadnb.data import load_campus

        return Path(load_campus().subset("test").videos.path.iloc[0])
    except Exception as err:  # noqa: BLE001 - any reason the data is missing
        from vadnb.video import write_test_video

        print(f"campus data not available ({err}); using a generated clip")
        return write_test_video(folder / "bench.mp4", num_frames=300, fps=10, size=(160, 120))


def published_per_minute(fps: float, stride: int = 16) -> dict[str, float]:
    """Model items per minute of video in the published LAVAD configuration."""
    positions = fps * 60 / stride
    return {"captioner": 5 * fps * 60, "llm": 2 * positions, "embedder": 11 * positions}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("video", nargs="?", help="video file (default: first campus test clip)")
    parser.add_argument("--profile", default="tiny", help="model profile (default: tiny)")
    parser.add_argument("--cleaning-minutes", type=float, nargs="*", default=[],
                        help="also time caption cleaning for videos of these lengths")
    args = parser.parse_args(argv)

    from vadnb import lavad
    from vadnb.cache import Cache
    from vadnb.models import load_stats, reset_load_stats
    from vadnb.video import decode_stats, reset_decode_stats

    def counters() -> tuple[int, int]:
        loads = load_stats()
        return decode_stats()["frames_decoded"], int(loads["loads"].sum()) if len(loads) else 0

    with tempfile.TemporaryDirectory(prefix="bench-lavad-") as tmp:
        tmp_path = Path(tmp)
        video = Path(args.video) if args.video else default_video(tmp_path)
        cache = Cache(tmp_path / "cache")
        reset_decode_stats()
        reset_load_stats()
        t0 = time.perf_counter()
        cold = lavad.run(video, profile=args.profile, cache=cache)
        t_cold = time.perf_counter() - t0
        decoded_cold, loads_cold = counters()
        reset_decode_stats()
        reset_load_stats()
        t0 = time.perf_counter()
        warm = lavad.run(video, profile=args.profile, cache=cache)
        t_warm = time.perf_counter() - t0
        decoded_warm, loads_warm = counters()

    minutes = cold.num_frames / cold.fps / 60
    published = published_per_minute(cold.fps, int(cold.extras["stride"]))
    items = cold.model_calls.groupby("role")["items"].sum()
    rows = []
    for role, ref in published.items():
        ours = float(items.get(role, 0)) / minutes
        rows.append({"role": role, "this pipeline / min": round(ours, 1),
                     "published / min": round(ref, 1), "ratio": round(ours / ref, 3)})
    table = pd.DataFrame(rows)
    print(f"video: {video.name}, {cold.num_frames} frames at {cold.fps:g} fps "
          f"({minutes * 60:.1f} s), profile {cold.profile}")
    if cold.meaningless:
        print(f"({cold.warning})")
    print(table.to_string(index=False))
    print("embedder here counts image + video + text items (caption and summary indexes); "
          "the published count is image + video only")
    print("llm here asks each distinct prompt once (greedy decoding): static scenes repeat "
          "descriptions and summaries")
    warm_calls = int(warm.model_calls["calls"].sum()) if not warm.model_calls.empty else 0
    print(f"cold run {t_cold:.2f} s, warm run {t_warm:.2f} s: cold/warm = "
          f"{t_cold / max(t_warm, 1e-9):.1f}x; warm-run model calls: {warm_calls}")
    passes = 3 + max(1, len(cold.extras["config"]["captioner_models"]))
    print(f"frames decoded: cold {decoded_cold} = {decoded_cold / cold.num_frames:.2f} x the "
          f"video (bound: {passes} passes: probe, captions, window frames, clips), warm "
          f"{decoded_warm}; model loads: cold {loads_cold}, warm {loads_warm}")
    for minutes in args.cleaning_minutes:
        bench_cleaning(minutes)
    return table


def bench_cleaning(minutes: float, fps: float = 30.0, dim: int = 1024) -> None:
    """Caption cleaning on synthetic unit embeddings: every centre frame's caption distinct."""
    import numpy as np

    from vadnb import lavad

    positions = int(minutes * 60 * fps / 16)
    rng = np.random.default_rng(0)
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    captions = unit(rng.standard_normal((positions, dim), dtype=np.float32))
    frames = unit(rng.standard_normal((positions, 10, dim), dtype=np.float32))
    t0 = time.perf_counter()
    lavad.clean_captions(frames, captions, [str(i) for i in range(positions)], k=1)
    seconds = time.perf_counter() - t0
    print(f"caption cleaning, {minutes:g} min at {fps:g} fps: {positions} positions x 10 frames "
          f"against {positions} distinct captions (D={dim}): {seconds:.2f} s, "
          f"{seconds / minutes:.3f} s per video minute")


if __name__ == "__main__":
    main()
