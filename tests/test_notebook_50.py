"""Notebook 50 (AnomalyCLIP) runs headless on the tiny profile and writes what it promises.

Shrunk for speed: 2 epochs, every 4th frame, a 16-wide temporal model.
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

ORACLE_EPOCHS = 12


def test_notebook_50_trains_evaluates_and_writes_artifacts(tmp_path):
    from vadnb import anomalyclip, models
    from vadnb.data import load_campus

    try:
        bench = load_campus()
    except FileNotFoundError as err:
        pytest.skip(f"campus data not built: {err}")
    out = tmp_path / "out"
    nb = run_notebook("50_anomalyclip", out, PROFILE="tiny", EPOCHS=2, FEATURE_STRIDE=4,
                      EMB_SIZE=16, BATCH_SIZE=8, ORACLE_EPOCHS=ORACLE_EPOCHS)

    train = bench.subset("train").videos
    curves = pd.read_csv(out / "loss_curves.csv")
    for col in ("epoch", "step", *anomalyclip.LOSS_TERMS, "total", "lr"):
        assert col in curves
    larger = max(train["is_anomalous"].sum(), (~train["is_anomalous"]).sum())
    steps = larger // min(4, larger)  # official: floor(larger group / half batch)
    assert curves["epoch"].tolist() == [e for e in range(2) for _ in range(steps)]
    # official per-epoch schedule, 1 warm-up epoch: epoch 0 at lr 0, then the full rate
    assert (curves.loc[curves["epoch"] == 0, "lr"] == 0).all()
    assert (curves.loc[curves["epoch"] == 1, "lr"] > 0).all()
    options = pd.read_csv(out / "oracle_options.csv", index_col=0)
    assert list(options.index) == ["official defaults", 'lr_schedule="per_step"',
                                   "drop_last=False", "smooth_within_videos=True"]
    oracle = json.loads((out / "oracle_metrics.json").read_text())
    assert options.loc["official defaults", "frame AUC"] == pytest.approx(oracle["auc"])

    meta = json.loads((out / "anomalyclip.json").read_text())
    classes = sorted(c for c in bench.classes if c != "Normal")
    assert sorted(meta["class_names"]) == classes
    assert meta["config"]["feature_stride"] == 4 and meta["config"]["epochs"] == 2

    m = json.loads((out / "metrics.json").read_text())
    assert m["profile"] == "tiny" and m["meaningless"] and m["warning"] == TINY_WARNING
    assert 0.0 <= m["auc"] <= 1.0 and 0.0 <= m["ap"] <= 1.0
    test = bench.subset("test").videos
    tested = sorted(set(test.loc[test["is_anomalous"], "label"]))
    assert [r["class"] for r in m["per_class"]] == tested

    # the reported AUC is what the saved checkpoint gives on the test split
    clip = models.load("clip", profile="tiny")
    model = anomalyclip.load_checkpoint(out / "anomalyclip.safetensors", clip=clip, device="cpu")
    again = anomalyclip.evaluate(model, bench, "test", backends={"clip": clip})
    assert again.auc == pytest.approx(m["auc"], abs=1e-6)
    assert again.predicted_classes == m["predicted_classes"]

    image = cv2.imread(str(out / "latent_space.png"))
    assert image is not None and image.shape[0] > 300

    for key in ("class_auc", "class_ap", "top1_video", "top5_video",
                "paper_threshold_tuned_on_test", "paper_top1_frame"):
        assert key in m

    # computed statements about this run's latent space, one per class
    separation = pd.read_csv(out / "separation.csv")
    assert sorted(separation["class"]) == classes
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "frame AUC" in text and TINY_WARNING in text
    assert "What this run's directions separate" in markdown
    for row in separation.itertuples():
        assert f"{row.separation:+.1f} normal-frame standard deviations" in markdown

    # the differences table is rendered from the module's one list
    assert anomalyclip.DIFFERENCES[0].what.replace("|", "\\|") in markdown

    # perfect perception: the method's own steps on oracle features, labelled as a bound
    oracle = json.loads((out / "oracle_metrics.json").read_text())
    assert "upper bound" in oracle["label"] and oracle["epochs"] == ORACLE_EPOCHS
    assert "PERFECT PERCEPTION" in text
    # the options table says, computed, which rows equal the official defaults' row
    same = [n for n in options.index[1:]
            if np.allclose(options.loc[n], options.iloc[0], atol=5e-4)]
    assert f"{len(same)} of 3 options give the official defaults' steps, AUC and AP" in text
    assert all(n in text for n in same)
    # perfect features: the classes are recognised and the anomalies found (tiny: chance)
    assert oracle["class_auc"] > 0.9 and oracle["top1_video"] == 1.0, oracle
    assert oracle["auc"] > 0.65, oracle["auc"]

    # see it work first (issue 25): the perfect-perception pass and its latent-space picture
    # come before the profile's CLIP is trained, and its separation lines are computed
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    first_oracle = next(i for i, s in enumerate(sources) if "anomalyclip.oracle_clip(" in s)
    first_tiny = next(i for i, s in enumerate(sources) if "backends={\"clip\": clip}" in s
                      and "anomalyclip.train(" in s)
    assert first_oracle < first_tiny
    assert cv2.imread(str(out / "latent_space_oracle.png")) is not None
    assert "What the learned directions separate, with perfect perception" in markdown
    assert markdown.index("with perfect perception") < markdown.index("What this run's directions")
