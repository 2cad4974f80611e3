"""How many vadnb functions one tiny run of a method executes (cold cache), in which files, and
what it decoded (decoder opens: one forward pass is 1; the probe's own pass is cached first).

    VADNB_CACHE=$(mktemp -d) python benchmarks/trace_functions.py [METHOD]   # default: lavad

A reader's measure of how much code stands between a method's steps and its result: every
distinct vadnb function entered (threads included) while ``vadnb.detect`` scores the first
campus test clip with the tiny profile.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings

os.environ.setdefault("VADNB_PROFILE", "tiny")
warnings.filterwarnings("ignore")

import vadnb  # noqa: E402
from vadnb import video  # noqa: E402
from vadnb.data import load_campus  # noqa: E402


def main(method: str = "lavad") -> None:
    package = os.path.dirname(vadnb.__file__)
    seen: set[tuple[str, str]] = set()

    def record(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(package) \
                and not code.co_name.startswith("<"):
            seen.add((os.path.relpath(code.co_filename, package), code.co_name))

    clip = load_campus().subset("test").videos.path.iloc[0]
    video.probe(clip)
    video.reset_decode_stats()
    sys.setprofile(record)
    threading.setprofile(record)
    try:
        vadnb.detect(clip, method=method, profile="tiny")
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    files = sorted({f for f, _ in seen})
    print(f"{method}: {len(seen)} vadnb functions in {len(files)} files; decoded "
          f"{video.decode_stats()}")
    for f in files:
        print(f"  {f:28s} {sum(1 for g, _ in seen if g == f)}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
