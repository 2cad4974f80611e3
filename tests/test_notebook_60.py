"""Notebook 60 (AnyAnomaly) runs headless on the tiny profile and writes what it promises.

Shrunk for speed: 72-frame segments, two descriptions, the Vehicle class against one
normal video, 4 new tokens per reply.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import run_notebook

from vadnb.detect import TINY_WARNING

pytestmark = pytest.mark.notebook

PROMPTS = ["a vehicle driving on the grass", "a person falling"]


def test_notebook_60_writes_views_segments_and_metrics(tmp_path):
    pytest.importorskip("vadnb.data")
    from vadnb.data import load_campus

    try:
        bench = load_campus()
    except FileNotFoundError as err:
        pytest.skip(f"campus data not built: {err}")
    out = tmp_path / "out"
    nb = run_notebook("60_context_vqa_anyanomaly", out, PROFILE="tiny", PROMPTS=PROMPTS,
                      EVAL_CLASSES=["Vehicle"], MAX_NORMAL_VIDEOS=1, SEGMENT_LENGTH=72,
                      MAX_NEW_TOKENS=4)

    test = bench.subset("test").videos
    vehicle = test[test["label"] == "Vehicle"].iloc[0]
    n = int(vehicle["num_frames"])
    segs = pd.read_csv(out / "segments.csv")
    n_segments = -(-n // 72)
    assert len(segs) == n_segments * len(PROMPTS)
    assert sorted(segs["prompt"].unique()) == sorted(PROMPTS)
    assert (segs["start_frame"] <= segs["key_frame"]).all()
    assert (segs["key_frame"] < segs["end_frame"]).all()
    assert (segs["centre_frame"] == segs["key_frame"]).all()
    assert segs["end_frame"].max() == n
    for col in ("score_key", "score_position", "score_temporal", "score"):
        assert segs[col].between(0, 1).all()
    fused = 0.6 * segs.score_key + 0.3 * segs.score_position + 0.1 * segs.score_temporal
    np.testing.assert_allclose(segs["score"], fused, atol=1e-9)

    # the key frame written is the very frame of the best segment of the first description
    from vadnb import video

    # (the best score; ties go to the segment with more anomalous frames)
    labels = bench.subset("test").frame_labels(vehicle["name"])
    first = segs[segs["prompt"] == PROMPTS[0]].copy()
    first["truth"] = [labels[a:b].mean() for a, b in zip(first.start_frame, first.end_frame)]
    best = first.sort_values(["score", "truth"], ascending=False, kind="stable").iloc[0]
    key_png = cv2.imread(str(out / "key_frame.png"))[..., ::-1]
    frame = video.read_frames(vehicle["path"], indices=[int(best["key_frame"])]).images[0]
    assert key_png.shape == frame.shape
    assert np.abs(key_png.astype(int) - frame.astype(int)).mean() < 1.0
    grid = cv2.imread(str(out / "grid.png"))
    assert grid.shape[:2] == (448, 448)
    assert cv2.imread(str(out / "heatmap.png")) is not None

    m = json.loads((out / "metrics.json").read_text())
    assert m["profile"] == "tiny" and m["meaningless"] and m["warning"] == TINY_WARNING
    assert [r["class"] for r in m["per_class"]] == ["Vehicle"]
    row = m["per_class"][0]
    assert row["videos"] == 1 and row["description"] == "a vehicle driving on the grass"
    assert 0.0 <= row["auc"] <= 1.0 and 0.0 <= row["ap"] <= 1.0
    assert m["demo"]["replies"] == n_segments * len(PROMPTS) * 3

    # the per-class numbers agree with scikit-learn on the same runs, served from the cache
    # the notebook filled (doubles with the tiny models' names: any model call would fail)
    from sklearn.metrics import average_precision_score, roc_auc_score

    from vadnb import anyanomaly
    from vadnb.models.scripted import ScriptedClip, ScriptedVLM

    def refuse(*args):
        raise AssertionError("the notebook's runs should all be cached")

    doubles = {"clip": ScriptedClip(refuse, refuse, name=m["clip"]),
               "vlm": ScriptedVLM(refuse, name=m["vlm"])}
    normal = test[test["label"] == "Normal"].iloc[0]
    desc = "a vehicle driving on the grass"
    cfg = anyanomaly.Config(segment_length=72, max_new_tokens=4)
    ys, ss = [], []
    for v in (vehicle, normal):
        det = anyanomaly.run(v["path"], config=cfg, backends=doubles, prompts=[desc])
        ys.append(bench.subset("test").frame_labels(v["name"]))
        ss.append(anyanomaly.prompt_scores(det, desc))
    y, sc = np.concatenate(ys), np.concatenate(ss)
    assert row["auc"] == pytest.approx(roc_auc_score(y, sc))
    assert row["ap"] == pytest.approx(average_precision_score(y, sc))

    # every printed number from tiny models comes with a short tag; the banner says why, once
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "mean AUC" in text and text.count("(tiny models: meaningless)") >= 3
    banners = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if o.get("metadata", {}).get("vadnb", {}).get("kind") == "banner"]
    assert len(banners) == 1 and "Tiny profile" in banners[0]["data"]["text/html"]
