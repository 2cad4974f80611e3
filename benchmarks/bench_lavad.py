#!/usr/bin/env python
"""How much model work LAVAD costs here, next to the published configuration.

For one video, prints model calls (items) per minute of video for each role, next to
what the published LAVAD pipeline does per minute at the same frame rate:

- captioner: 5 BLIP-2 captioners on *every* frame = 5 x fps x 60 captions per minute;
- llm: 2 prompts (summary, score) per 16-frame position = 2 x fps x 60 / 16;
- embedder: 10 image + 1 video embeddings per position = 11 x fps x 60 / 16.

Then runs the pipeline a second time in the same process with the same (fresh) cache
folder and prints the cold vs warm run time: the warm run should make no model call.

Usage::

    python benchmarks/bench_lavad.py                      # first campus test clip, tiny
    python benchmarks/bench_lavad.py my.mp4 --profile colab
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
    args = parser.parse_args(argv)

    from vadnb import lavad
    from vadnb.cache import Cache

    with tempfile.TemporaryDirectory(prefix="bench-lavad-") as tmp:
        tmp_path = Path(tmp)
        video = Path(args.video) if args.video else default_video(tmp_path)
        cache = Cache(tmp_path / "cache")
        t0 = time.perf_counter()
        cold = lavad.run(video, profile=args.profile, cache=cache)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = lavad.run(video, profile=args.profile, cache=cache)
        t_warm = time.perf_counter() - t0

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
    return table


if __name__ == "__main__":
    main()
