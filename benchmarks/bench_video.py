"""How much does sampling save? read_frames(fps=1) against decoding every frame.

Both read the file sequentially (the only exact way; see notebook 10): sampling still has to
*grab* every frame, but converts only the sampled ones to images. This script times, on one
video:

- probe (cold): the first, counting pass (cached afterwards);
- read_frames(fps=1), with the probe cached;
- every frame: decoding and converting all frames (streamed with iter_frames, so memory stays
  small);

and prints the times and their ratio.

    python benchmarks/bench_video.py                 # campus test clip, else OpenCV's vtest.avi
    python benchmarks/bench_video.py my_video.mp4 --repeat 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vadnb import video  # noqa: E402
from vadnb.cache import Cache  # noqa: E402

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def default_video(workdir: Path) -> Path:
    """The first campus test clip, else OpenCV's sample vtest.avi, else a generated clip."""
    try:
        from vadnb.data import load_campus

        return Path(load_campus().subset("test").videos.path.iloc[0])
    except Exception as err:  # noqa: BLE001 - any missing data means: use the next option
        print(f"(campus data not available: {type(err).__name__}: {err})")
    if VTEST.exists():
        return VTEST
    print("(no sample video found: generating a 20 s clip at 30 fps, 320x240)")
    return video.write_test_video(workdir / "generated.mp4", num_frames=600, fps=30,
                                  size=(320, 240))


def best_of(repeat: int, fn) -> tuple[float, object]:
    """The fastest of ``repeat`` runs (seconds), and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("video", nargs="?", help="video file (default: see module docstring)")
    parser.add_argument("--fps", type=float, default=1.0, help="sampling rate (default 1)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (best kept)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        path = Path(args.video) if args.video else default_video(workdir)
        cache = Cache(workdir / "cache")  # a fresh cache, so the first probe is really cold
        t_probe, info = best_of(1, lambda: video.probe(path, cache=cache))
        t_fps, sampled = best_of(args.repeat,
                                 lambda: video.read_frames(path, fps=args.fps, cache=cache))

        def every_frame() -> int:
            return sum(len(c) for c in video.iter_frames(path, chunk=64, cache=cache))

        t_all, n_all = best_of(args.repeat, every_frame)

    print(f"video : {path}")
    print(f"        {info.num_frames} frames (header claims {info.header_frames}), "
          f"{info.fps:.2f} fps, {info.width}x{info.height}, {info.duration_s:.1f} s, "
          f"decoder {info.backend}")
    rows = [("probe (cold, counts frames)", info.num_frames, t_probe),
            (f"read_frames(fps={args.fps:g})", len(sampled), t_fps),
            ("every frame (decode + convert)", n_all, t_all)]
    print(f"{'what':<32}{'frames':>8}{'seconds':>10}{'ms/frame':>10}")
    for name, n, t in rows:
        print(f"{name:<32}{n:>8}{t:>10.3f}{1000 * t / max(n, 1):>10.2f}")
    ratio = t_all / t_fps if t_fps > 0 else float("inf")
    print(f"every frame / read_frames(fps={args.fps:g}): {ratio:.1f}x")
    return {"probe_s": t_probe, "fps_s": t_fps, "all_s": t_all, "ratio": ratio}


if __name__ == "__main__":
    main()
