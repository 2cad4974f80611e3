"""vadnb.video against the decode limit: ffmpeg's own decode, a bare OpenCV grab loop, PyAV.

On one video (``video``, default OpenCV's sample ``vtest.avi``), timed on the same file:

- the limits: ``ffmpeg -benchmark -i f -f null -`` (if the ffmpeg binary exists), a bare
  OpenCV ``grab()`` loop, a bare PyAV decode loop, and OpenCV doing ``read_frames(fps)``'s
  work (grab every frame, retrieve the sampled ones as RGB);
- ``probe`` (cold: a fresh cache each run), ``read_frames(fps=...)``, ``iter_frames`` (every
  frame, in chunks of 64) and ``read_frames()`` (every frame in one array: its peak memory
  against the array's size);

and on a 10-minute video (``--long``, default: ``video`` looped with ``ffmpeg -stream_loop`` or
a PyAV remux, else a synthetic clip): ``read_frames(indices=4 frames)`` against seeking with
PyAV by hand (seek to the key frame before each frame, decode forward).

Every measurement runs ``--repeat`` times in a fresh subprocess (``--no-subprocess``: in this
one; module imports are done before the clock starts) and is reported as min / median / max
seconds and the subprocess's peak RSS above what it used before the measurement. The ratios against the targets of issue 17 are printed at the end,
all measured in this one run:

- probe and read_frames(fps=1) <= 1.3x the grab loop;
- read_frames(4 indices) <= 3x PyAV seeking;
- read_frames() peak memory <= 1.2x its output.

    python benchmarks/bench_video.py                  # vtest.avi (apt install opencv-doc)
    python benchmarks/bench_video.py my.mp4 --repeat 5
    python benchmarks/bench_video.py --quick          # 1-minute long video, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vadnb import video  # noqa: E402
from vadnb.cache import Cache  # noqa: E402

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
TARGETS = {"probe / grab loop": 1.3, "read_frames(fps) / grab loop": 1.3,
           "4 indices / PyAV seeking": 3.0, "read_frames() peak / output": 1.2}


# --------------------------------------------------------------------------- videos
def default_video(workdir: Path) -> Path:
    """OpenCV's sample vtest.avi, else a generated 20 s clip."""
    if VTEST.exists():
        return VTEST
    print("(vtest.avi not found, `apt-get install opencv-doc` provides it: generating a 20 s "
          "clip at 25 fps, 320x240)")
    return video.write_test_video(workdir / "generated.mp4", num_frames=500, fps=25,
                                  size=(320, 240))


def long_video(src: Path, workdir: Path, seconds: float) -> Path:
    """``src`` looped to ``seconds`` (stream copy: no re-encoding), or a synthetic clip."""
    info = video.probe(src, cache=Cache(workdir / "cache-loop"))
    loops = max(1, math.ceil(seconds / info.duration_s))
    frames = int(round(seconds * info.fps))
    dst = workdir / f"long{src.suffix}"
    if shutil.which("ffmpeg"):
        run = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop",
                              str(loops - 1), "-i", str(src), "-map", "0:v:0", "-c", "copy",
                              "-frames:v", str(frames), str(dst)], capture_output=True)
        if run.returncode == 0 and dst.exists():
            return dst
        print(f"(ffmpeg -stream_loop failed: {run.stderr.decode()[-300:]})")
    try:
        return _remux_loop(src, dst, loops, frames)
    except Exception as err:  # noqa: BLE001 - any failure: synthesise instead
        print(f"(PyAV remux failed: {type(err).__name__}: {err}; synthesising)")
    return _synthetic(workdir / "long.mp4", seconds)


def _remux_loop(src: Path, dst: Path, loops: int, frames: int) -> Path:
    """Copy ``src``'s video packets ``loops`` times one after the other (no re-encoding)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s = inp.streams.video[0]
        o = out.add_stream_from_template(s)
        offset, written = 0, 0
        for _ in range(loops):
            inp.seek(0)
            last = 0
            for packet in inp.demux(s):
                if packet.dts is None or written >= frames:
                    continue
                packet.pts = (packet.pts if packet.pts is not None else packet.dts) + offset
                packet.dts += offset
                last = max(last, packet.pts + (packet.duration or 1))
                packet.stream = o
                out.mux(packet)
                written += 1
            offset = last
    return dst


def _synthetic(path: Path, seconds: float, fps: int = 10, size: tuple[int, int] = (320, 240)
               ) -> Path:
    """A moving gradient, MPEG-4 in MP4, a key frame every 250 frames."""
    import av
    import numpy as np

    w, h = size
    ramp = np.add.outer(np.arange(h), np.arange(w)).astype(np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.gop_size = 250
        for i in range(int(seconds * fps)):
            img = np.stack([ramp + (i % 256), ramp - (i % 256), ramp * 2], -1)
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


# --------------------------------------------------------------------------- measurements
def _rss_now() -> int:
    """Resident memory of this process now (bytes)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _pyav_seek_read(path: Path, wanted: list[int]) -> list[Any]:
    """PyAV by hand: for each frame, seek to the key frame before it and decode forward.

    A frame is found by its pts, computed from the index and the nominal rate (right for
    constant-rate files, which the looped benchmark video is)."""
    import av

    images = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        start = s.start_time or 0
        rate = s.average_rate
        for i in wanted:
            target = start + int(round(i / rate / s.time_base))
            c.seek(target, backward=True, any_frame=False, stream=s)
            for frame in c.decode(s):
                if frame.pts is not None and frame.pts >= target:
                    images.append(frame.to_ndarray(format="rgb24"))
                    break
    return images


def measure(name: str, path: Path, cache_dir: Path, fps: float, wanted: list[int]) -> dict:
    """Run one measurement once, in this process: seconds, frames, peak RSS above the start."""
    import cv2
    import numpy as np

    import av  # noqa: F401  (module imports are outside every timing: a one-off cost)

    cache = Cache(cache_dir)
    if name not in ("ffmpeg", "grab", "pyav_decode", "probe", "pyav_seek"):
        video.probe(path, cache=cache)  # the probe is cached for every read measurement
    video.reset_decode_stats()
    before = _rss_now()
    start = time.perf_counter()
    frames, output = 0, 0
    if name == "ffmpeg":
        run = subprocess.run(["ffmpeg", "-nostdin", "-benchmark", "-i", str(path), "-f", "null",
                              "-"], capture_output=True, text=True)
        wall = time.perf_counter() - start
        found = [float(v) for v in __import__("re").findall(r"rtime=([\d.]+)s", run.stderr)]
        return {"seconds": found[-1] if found else wall, "frames": 0, "rss": 0, "output": 0}
    if name == "grab":
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        while cap.grab():
            frames += 1
        cap.release()
    elif name == "grab_retrieve":  # OpenCV doing read_frames(fps)'s work: grab all, retrieve some
        wanted_set = set(video.sample_indices(video.frame_times(path, cache=cache), fps).tolist())
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        images, i = [], 0
        while cap.grab():
            if i in wanted_set:
                images.append(cv2.cvtColor(cap.retrieve()[1], cv2.COLOR_BGR2RGB))
            i += 1
        cap.release()
        frames = len(images)
    elif name == "pyav_decode":
        import av

        with av.open(str(path)) as c:
            c.streams.video[0].thread_type = "AUTO"
            frames = sum(1 for _ in c.decode(video=0))
    elif name == "probe":
        frames = video.probe(path, cache=cache).num_frames
    elif name == "fps":
        frames = len(video.read_frames(path, fps=fps, cache=cache))
    elif name == "iter":
        frames = sum(len(c) for c in video.iter_frames(path, chunk=64, cache=cache))
    elif name == "all":
        got = video.read_frames(path, cache=cache)
        frames, output = len(got), got.images.nbytes
    elif name == "indices":
        got = video.read_frames(path, indices=wanted, cache=cache)
        frames = len(got)
        np.save(cache_dir / "indices.npy", got.images)
    elif name.startswith("touch"):  # allocate and write an array of the output's size
        info = video.probe(path, cache=cache)
        h, w = info.height, info.width
        count = (len(video.sample_indices(video.frame_times(path, cache=cache), fps))
                 if name.startswith("touch_fps") else info.num_frames)
        before = _rss_now()
        start = time.perf_counter()
        if name.endswith("_numpy"):  # numpy's default: transparent huge pages for large arrays
            block = np.ones((count, h, w, 3), np.uint8)
        else:  # what read_frames allocates (4 KiB pages), touched the same way
            block = video._output(count, (h, w))
            block.fill(1)
        frames, output = count, block.nbytes
    elif name == "pyav_seek":
        got = _pyav_seek_read(path, wanted)
        frames = len(got)
        np.save(cache_dir / "pyav_seek.npy", np.stack(got))
    else:
        raise ValueError(f"unknown measurement {name!r}")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "frames": frames, "rss": max(_peak_rss() - before, 0),
            "output": output, "stats": video.decode_stats()}


def run_measurement(name: str, path: Path, workdir: Path, fps: float, wanted: list[int],
                    repeat: int, subprocesses: bool) -> dict:
    """``repeat`` runs of one measurement (each in a fresh subprocess unless told otherwise)."""
    runs = []
    for r in range(repeat):
        cache_dir = workdir / f"cache-{name}-{r}" if name == "probe" else workdir / "cache"
        cache_dir.mkdir(parents=True, exist_ok=True)
        if subprocesses:
            cmd = [sys.executable, __file__, "--measure", name, "--measure-path", str(path),
                   "--measure-cache", str(cache_dir), "--fps", str(fps),
                   "--measure-indices", ",".join(map(str, wanted))]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"measurement {name} failed:\n{out.stderr[-2000:]}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        else:
            runs.append(measure(name, path, cache_dir, fps, wanted))
    secs = [r["seconds"] for r in runs]
    return {"min_s": min(secs), "median_s": statistics.median(secs), "max_s": max(secs),
            "frames": runs[-1]["frames"],
            "peak_rss": max(r["rss"] for r in runs), "output": runs[-1]["output"],
            "stats": runs[-1].get("stats", {})}


# --------------------------------------------------------------------------- report
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("video", nargs="?", help="video file (default: vtest.avi)")
    parser.add_argument("--fps", type=float, default=1.0, help="sampling rate (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    parser.add_argument("--long", help="the long video for the 4-indices read (default: "
                                       "`video` looped to 10 minutes)")
    parser.add_argument("--quick", action="store_true",
                        help="a 1-minute long video and 1 run per measurement")
    parser.add_argument("--no-subprocess", action="store_true",
                        help="measure in this process (faster; peak RSS then less exact)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--measure-path", help=argparse.SUPPRESS)
    parser.add_argument("--measure-cache", help=argparse.SUPPRESS)
    parser.add_argument("--measure-indices", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure:  # a child process: one measurement, one JSON line
        wanted = [int(v) for v in args.measure_indices.split(",") if v]
        result = measure(args.measure, Path(args.measure_path), Path(args.measure_cache),
                         args.fps, wanted)
        print(json.dumps(result))
        return result

    repeat = 1 if args.quick else max(1, args.repeat)
    sub = not args.no_subprocess
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        path = Path(args.video) if args.video else default_video(workdir)
        info = video.probe(path, cache=Cache(workdir / "cache"))
        print(f"video : {path}")
        print(f"        {info.num_frames} frames (header claims {info.header_frames}), "
              f"{info.fps:.2f} fps, {info.width}x{info.height}, {info.duration_s:.1f} s, "
              f"decoder {info.backend}; {repeat} run(s) each"
              + (", each in a fresh subprocess" if sub else ", in this process"))
        has_ffmpeg = shutil.which("ffmpeg") is not None
        names = (["ffmpeg"] if has_ffmpeg else []) + [
            "grab", "grab_retrieve", "pyav_decode", "probe", "fps", "touch_fps", "iter", "all",
            "touch_all", "touch_all_numpy"]
        labels = {"ffmpeg": "ffmpeg -benchmark (decode limit)", "grab": "OpenCV grab loop",
                  "pyav_decode": "PyAV decode loop", "probe": "probe (cold)",
                  "fps": f"read_frames(fps={args.fps:g})", "iter": "iter_frames (every frame)",
                  "all": "read_frames() (every frame)",
                  "grab_retrieve": f"OpenCV grab + retrieve fps={args.fps:g} frames",
                  "touch_fps": "  allocate+touch read_frames(fps)'s size",
                  "touch_all": "  allocate+touch read_frames()'s size",
                  "touch_all_numpy": "  the same with np.ones (huge pages)"}
        res = {n: run_measurement(n, path, workdir, args.fps, [], repeat, sub) for n in names}

        long_path = Path(args.long) if args.long else long_video(
            path, workdir, 60.0 if args.quick else 600.0)
        long_info = video.probe(long_path, cache=Cache(workdir / "cache"))
        n = long_info.num_frames
        wanted = sorted({int(n * f) for f in (0.15, 0.4, 0.65, 0.9)})
        for name, label in (("indices", f"read_frames(indices={wanted})"),
                             ("pyav_seek", "PyAV seeking by hand")):
            res[name] = run_measurement(name, long_path, workdir, args.fps, wanted, repeat, sub)
            labels[name] = label
        same = None
        if (workdir / "cache" / "indices.npy").exists() and \
                (workdir / "cache" / "pyav_seek.npy").exists():
            import numpy as np

            same = bool(np.array_equal(np.load(workdir / "cache" / "indices.npy"),
                                       np.load(workdir / "cache" / "pyav_seek.npy")))

    print(f"{'what':<44}{'frames':>8}{'min s':>9}{'median s':>10}{'max s':>8}"
          f"{'peak RSS MB':>13}")
    for name, r in res.items():
        print(f"{labels[name]:<44}{r['frames']:>8}{r['min_s']:>9.3f}{r['median_s']:>10.3f}"
              f"{r['max_s']:>8.3f}{r['peak_rss'] / 2**20:>13.1f}")
    print(f"long video: {long_path.name}, {n} frames, {long_info.duration_s / 60:.1f} min; "
          f"frames decoded for the 4 indices: {res['indices']['stats'].get('frames_decoded')}; "
          f"same pixels as PyAV seeking: {same}")
    grab = res["grab"]["min_s"]
    ratios = {
        "probe / grab loop": res["probe"]["min_s"] / grab,
        "read_frames(fps) / grab loop": res["fps"]["min_s"] / grab,
        "4 indices / PyAV seeking": res["indices"]["min_s"] / res["pyav_seek"]["min_s"],
        "read_frames() peak / output": (res["all"]["peak_rss"] / res["all"]["output"]
                                        if res["all"]["output"] else float("nan")),
    }
    print("(the allocate+touch rows: what first touching that much memory costs on this "
          "machine, with read_frames' 4 KiB pages and with numpy's default huge pages; it is "
          "part of every read that returns those frames)")
    print("ratios (min times, this run):")
    for key, value in ratios.items():
        verdict = "ok" if value <= TARGETS[key] else "ABOVE TARGET"
        print(f"  {key:<34}{value:>7.2f}x   target <= {TARGETS[key]}x   {verdict}")
    if has_ffmpeg:
        limit = res["ffmpeg"]["min_s"]
        for name in ("probe", "iter", "all"):
            print(f"  {labels[name] + ' / ffmpeg':<34}{res[name]['min_s'] / limit:>7.2f}x")
    print(f"  {'read_frames(fps) / OpenCV grab+retrieve':<34}"
          f"{res['fps']['min_s'] / res['grab_retrieve']['min_s']:>7.2f}x   (the same work)")
    ratio = res["iter"]["min_s"] / res["fps"]["min_s"]
    print(f"every frame (iter_frames) / read_frames(fps={args.fps:g}): {ratio:.1f}x")
    return {"probe_s": res["probe"]["min_s"], "fps_s": res["fps"]["min_s"],
            "all_s": res["iter"]["min_s"], "ratio": ratio, "ratios": ratios,
            "results": res, "same_pixels": same}


if __name__ == "__main__":
    main()
