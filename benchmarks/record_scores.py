"""Record every method's frame scores, or compare two records: a restructuring must change no score.

    VADNB_CACHE=$(mktemp -d) python benchmarks/record_scores.py record BEFORE.npz   # at the old commit
    VADNB_CACHE=$(mktemp -d) python benchmarks/record_scores.py record AFTER.npz    # at the new one
    python benchmarks/record_scores.py compare BEFORE.npz AFTER.npz                 # exit 1 on a change

A record holds, for the first two campus test clips, the frame scores of every method with the
tiny profile (meaningless numbers, but a fixed function of the code: the tiny models are built
from fixed seeds) and of LAVAD with its perfect-perception backends, and of AnomalyCLIP after a
two-epoch training on the campus train split. Use a fresh cache folder for each record, so
the scores are computed by the code under test and not read back from an older run.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

os.environ.setdefault("VADNB_PROFILE", "tiny")

#: the methods run with ``vadnb.detect`` and the settings each needs
DETECT = [("classical", {}), ("lavad", {}), ("vera", {}),
          ("anyanomaly", {"prompts": ["a person falling down"]}), ("flashback", {})]


def record(path: str) -> None:
    warnings.filterwarnings("ignore")
    import vadnb
    from vadnb import anomalyclip, lavad
    from vadnb.data import load_campus

    bench = load_campus()
    test = bench.subset("test")
    clips = list(test.videos.path)[:2]
    out: dict[str, np.ndarray] = {}
    for method, settings in DETECT:
        for i, clip in enumerate(clips):
            det = vadnb.detect(clip, method=method, profile="tiny", **settings)
            out[f"{method}/{i}"] = np.asarray(det.frame_scores)
    oracle = lavad.oracle_backends(test)
    for i, clip in enumerate(clips):
        out[f"lavad-oracle/{i}"] = np.asarray(lavad.run(clip, backends=oracle).frame_scores)
    model, _ = anomalyclip.train(bench, "train", profile="tiny", epochs=2, progress=False)
    for i, clip in enumerate(clips):
        det = anomalyclip.run(clip, checkpoint=model, profile="tiny")
        out[f"anomalyclip/{i}"] = np.asarray(det.frame_scores)
    np.savez(path, **out)
    print(f"recorded {len(out)} score arrays in {path}")


def compare(before: str, after: str) -> int:
    a, b = np.load(before), np.load(after)
    keys = sorted(set(a.files) | set(b.files))
    changed = [k for k in keys if k not in a.files or k not in b.files
               or not np.array_equal(a[k], b[k])]
    print(f"{len(keys) - len(changed)} of {len(keys)} score arrays identical"
          + (f"; changed: {', '.join(changed)}" if changed else ""))
    return 1 if changed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("record").add_argument("out")
    cmp = sub.add_parser("compare")
    cmp.add_argument("before")
    cmp.add_argument("after")
    args = parser.parse_args()
    if args.command == "record":
        record(args.out)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
