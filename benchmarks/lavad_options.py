"""LAVAD's official defaults beside vadnb's named options on the campus perfect-perception
inputs (lavad.oracle_backends): frame AUC / AP (vadnb.metrics via lavad.evaluate).

    PYTHONPATH=. python benchmarks/lavad_options.py
"""
from __future__ import annotations

import tempfile

import pandas as pd

import vadnb.lavad as lavad
from vadnb.data import load_campus

OPTIONS = {"official defaults": {}, "summary_max_new_tokens=160": {"summary_max_new_tokens": 160},
           "video_clip='pairs'": {"video_clip": "pairs"},
           "llm_decoding='paper'": {"llm_decoding": "paper"}}


def main() -> pd.DataFrame:
    bench = load_campus().subset("test")
    oracle, labels = lavad.oracle_backends(bench), {n: bench.frame_labels(n) for n in bench.videos.name}
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for name, over in OPTIONS.items():
            dets = dict(zip(bench.videos.name, lavad.run_many(list(bench.videos.path), backends=oracle,
                                                              cache=cache, **over)))
            res = lavad.evaluate(dets, labels)
            rows.append({"setting": name, "auc": res["auc_refined"], "ap": res["ap_refined"],
                         "ap_trapezoid": res["ap_refined_trapezoid"]})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    print(main().round(3).to_string(index=False))
