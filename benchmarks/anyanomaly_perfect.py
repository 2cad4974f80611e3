"""AnyAnomaly on the campus test split with perfect perception (``oracle_backends``): the
C-VAD mean frame AUC and AP (scikit-learn) of a Config, to measure what a named option
changes. Usage: ``python benchmarks/anyanomaly_perfect.py [field=value ...]`` (values as
Python literals), e.g. ``prompt_style='vadnb' parser='vadnb'``."""

from __future__ import annotations

import ast
import sys

import numpy as np

from vadnb import anyanomaly, metrics
from vadnb.data import load_campus

DESCRIPTIONS = {"Vehicle": "a vehicle driving on the grass", "Running": "a person running",
                "Fallen": "a person lying on the ground", "Object left": "a box left on the ground"}


def measure(**overrides) -> tuple[float, float]:
    """C-VAD mean (AUC, AP) over the campus classes for ``Config(**overrides)``."""
    test = load_campus().subset("test")
    videos = test.videos.set_index("name")
    cfg = anyanomaly.Config(**overrides)
    oracle = anyanomaly.oracle_backends(test, DESCRIPTIONS, cfg)
    runs = {n: anyanomaly.run(videos.loc[n, "path"], config=cfg, backends=oracle,
                              prompts=list(DESCRIPTIONS.values()), progress=False)
            for n in videos.index}
    aucs, aps = [], []
    for c, d in DESCRIPTIONS.items():
        labels = {n: test.frame_labels(n) * (videos.loc[n, "label"] == c) for n in runs}
        scores = {n: anyanomaly.prompt_scores(runs[n], d) for n in runs}
        aucs.append(metrics.frame_auc(list(labels.values()), list(scores.values())))
        aps.append(metrics.frame_ap(list(labels.values()), list(scores.values())))
    return float(np.mean(aucs)), float(np.mean(aps))


if __name__ == "__main__":
    kw = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}
    auc, ap = measure(**kw)
    print(f"{kw or 'defaults'}: C-VAD mean AUC {auc:.3f}, AP {ap:.3f}")
