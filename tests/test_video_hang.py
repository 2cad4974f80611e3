"""No read ever hangs after ``vadnb.setup()``.

A Python log callback in PyAV (what ``av.logging.set_level(<level>)`` installs) makes FFmpeg's
frame threads take the GIL to log while the main thread holds it inside ``container.close()``:
a deadlock that left kernels idle for good in ``_Reader.close``. Before the fix, 40 single-frame
reads in a fresh process hung in about 1 run of 3, so 12 runs catch it with near certainty.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

from conftest import REPO

RUNS = int(os.environ.get("VADNB_HANG_RUNS", "12"))  # more for a stress run: VADNB_HANG_RUNS=60
DEADLINE_S = 60  # one run takes ~3 s on 2 cores; a hung one never ends

_READS = textwrap.dedent("""
    import glob, vadnb
    from vadnb import video
    vadnb.setup(quiet=True)
    clips = sorted(glob.glob("data/campus/videos/test_*.mp4"))
    assert clips, "no campus test clips"
    for i in range(40):
        frames = video.read_frames(clips[i % len(clips)], indices=[5 + i])
        assert frames.indices.tolist() == [5 + i]
    print("ok")
""")


def _one_run(_: int) -> str:
    try:
        done = subprocess.run([sys.executable, "-c", _READS], cwd=REPO, capture_output=True,
                              text=True, timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        return "hung"
    return "ok" if done.returncode == 0 and "ok" in done.stdout else f"failed: {done.stderr[-500:]}"


def test_setup_installs_no_python_log_callback():
    import av.logging

    import vadnb

    av.logging.set_level(av.logging.ERROR)  # a Python callback, as the old setup() installed
    try:
        vadnb.setup(quiet=True)
        assert av.logging.get_level() is None  # PyAV's default: FFmpeg's log is dropped in C
    finally:
        av.logging.set_level(None)


def test_reads_after_setup_never_hang_in_fresh_processes():
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(_one_run, range(RUNS)))
    assert outcomes == ["ok"] * RUNS, outcomes
