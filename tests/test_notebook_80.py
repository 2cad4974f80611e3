"""Notebook 80 (comparing the methods) runs headless on the tiny profile and writes a
leaderboard whose numbers can be recomputed from the scores it saved."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from conftest import run_notebook

from vadnb import metrics
from vadnb.detect import TINY_WARNING

pytestmark = pytest.mark.notebook

METHODS = ["classical", "lavad", "anomalyclip", "vera", "anyanomaly", "flashback"]
# the smallest settings that still run every stage of every method
OVERRIDES = {
    "lavad": {"stride": 64, "frames_per_window": 2, "summary_max_new_tokens": 4,
              "score_max_new_tokens": 4},
    "vera": {"image_size": 32, "max_new_tokens": 8, "stride": 64, "window_frames": 2},
    "anyanomaly": {"segment_length": 72, "max_new_tokens": 4, "window_sizes": [240]},
    "classical": {"width": 160, "people_every": 10},
    "anomalyclip": {"feature_stride": 4, "emb_size": 16, "batch_size": 8},
}
# the model roles whose calls each method must report (a fresh cache: every call is made)
ROLES = {"lavad": {"captioner", "embedder", "llm"}, "anomalyclip": {"clip"},
         "vera": {"vlm", "embedder"}, "anyanomaly": {"clip", "vlm"},
         "flashback": {"embedder"}}  # tiny: the hand-written memory, no LLM call


@pytest.fixture(scope="module")
def campus():
    data = pytest.importorskip("vadnb.data")
    return data.load_campus()


def test_notebook_80_leaderboard_matches_saved_scores(tmp_path, campus):
    test = campus.subset("test")
    # MAX_VIDEOS=2 keeps the first normal and the first anomalous clip of the split
    first = test.videos.groupby("is_anomalous").head(1)
    own_video = first[first.is_anomalous].path.iloc[0]
    nb = run_notebook("80_compare_methods", tmp_path, PROFILE="tiny", METHODS=METHODS, MAX_VIDEOS=2,
                 EPOCHS=1, FRESH_CACHE=True, OVERRIDES=OVERRIDES, VIDEO=str(own_video),
                 ANYANOMALY_PROMPTS=["a person running"])

    summary = json.loads((tmp_path / "metrics.json").read_text())
    names = summary["videos"]
    assert sorted(names) == sorted(first.name)
    assert summary["profile"] == "tiny" and summary["warning"] == TINY_WARNING
    labels = {n: test.frame_labels(n) for n in names}
    table = test.videos.set_index("name")
    minutes = sum(len(labels[n]) / table.fps[n] for n in names) / 60
    assert summary["minutes"] == pytest.approx(minutes)

    full = pd.read_csv(tmp_path / "leaderboard.csv")
    # the model rows first, then one upper-bound row per method with an oracle (issue 25)
    assert list(full["kind"]) == ["this run"] * len(METHODS) \
        + ["upper bound (perfect perception)"] * (len(METHODS) - 1)
    board = full[full["kind"] == "this run"].set_index("method")
    assert list(board.index) == METHODS
    assert (board["status"] == "ok").all()
    assert list(summary["methods"]) == METHODS

    for method in METHODS:
        row, saved = board.loc[method], summary["methods"][method]
        meaningless = method != "classical"  # only the classical baseline uses no tiny model
        assert saved["meaningless"] is meaningless and bool(row["meaningless"]) is meaningless
        assert row["profile"] == ("none" if method == "classical" else "tiny")
        scores = {n: np.load(tmp_path / "detections" / method / n / "frame_scores.npy")
                  for n in names}
        auc, ap = metrics.frame_auc(labels, scores), metrics.frame_ap(labels, scores)
        assert saved["auc"] == pytest.approx(auc, abs=1e-9)
        assert saved["ap"] == pytest.approx(ap, abs=1e-9)
        assert row["frame_auc"] == pytest.approx(auc, abs=1e-9)
        per_class = metrics.per_class(labels, scores, dict(zip(test.videos.name, test.videos.label)))
        for c, a in zip(per_class["class"], per_class["auc"]):
            if not math.isnan(a):
                assert row[f"auc {c}"] == pytest.approx(a, abs=1e-9)

        # calls per minute of video, by role, from the saved model_calls (LAVAD's run_many
        # gives every clip the calls of the whole batch: counted once)
        if method == "lavad":
            a, b = (pd.read_csv(tmp_path / "detections" / method / n / "model_calls.csv")
                    for n in names)
            pd.testing.assert_frame_equal(a, b)
        tables = [pd.read_csv(tmp_path / "detections" / method / n / "model_calls.csv")
                  for n in (names[:1] if method == "lavad" else names)] \
            if method != "classical" else []
        used = pd.concat(tables).groupby("role")[["calls", "items", "cached"]].sum() if tables \
            else pd.DataFrame(columns=["calls", "items", "cached"])
        assert set(used.index) == ROLES.get(method, set())
        assert set(saved["calls_per_minute"]) == set(used.index)
        for role, n in used.iterrows():
            # even a fresh cache can answer a role from another method's identical requests
            # (VERA's window embeddings are LAVAD's): the work is what was computed or cached
            assert n["calls"] <= n["items"] and n["items"] + n["cached"] > 0
            assert row[f"calls/min {role}"] == pytest.approx(n["calls"] / minutes)
            assert saved["calls_per_minute"][role] == pytest.approx(n["calls"] / minutes)
            assert saved["items_per_minute"][role] == pytest.approx(n["items"] / minutes)
            assert saved["work_per_minute"][role] == pytest.approx((n["items"] + n["cached"]) / minutes)
        assert saved["seconds"] > 0

    # leaderboard.html paints exactly the meaningless rows red (one CSS rule lists their cells)
    html = (tmp_path / "leaderboard.html").read_text()
    red_rules = [rule for rule in re.findall(r"([^{}]*)\{([^}]*)\}", html) if "#fde8e8" in rule[1]]
    red_rows = {int(r) for selectors, _ in red_rules for r in re.findall(r"_row(\d+)_col", selectors)}
    assert red_rows == {i for i, m in enumerate(METHODS) if m != "classical"}
    assert TINY_WARNING in html and "tiny models: meaningless" in html
    for png in ("timelines.png", "timelines_perfect_perception.png", "your_video_timelines.png"):
        data = (tmp_path / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    said = pd.read_csv(tmp_path / "explanations.csv", keep_default_na=False)
    assert list(said["method"]) == METHODS and (said["explanation"] != "").all()
    # the words worth reading come first: every oracle method's at the same moment, in full
    perfect = pd.read_csv(tmp_path / "explanations_perfect_perception.csv", keep_default_na=False)
    assert list(perfect["method"]) == [m for m in METHODS if m != "classical"]
    assert (perfect["kind"] == "upper bound (perfect perception)").all()
    assert not perfect["meaningless"].any() and (perfect["explanation"] != "").all()
    texts = " ".join(o["data"]["text/markdown"] for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", [])
                     if o.get("metadata", {}).get("vadnb", {}).get("kind") == "computed")
    noise = said[said["meaningless"]]
    assert f"{len(noise)} of {len(said)} methods' words at this moment come from " \
        "random-init models" in texts
    # ... and the tiny models' words are shown cut to 40 characters, never in full
    from vadnb import lesson
    cell = next(c for c in nb.cells if c.cell_type == "code" and "lesson.brief" in c.source)
    shown = " ".join(o.get("data", {}).get("text/plain", "") for o in cell.outputs)
    for text in noise["explanation"]:
        assert lesson.brief(text, 40) in shown
        assert len(text) <= 40 or text not in shown
    # the stacked timelines share [0, 1]: a computed note counts each method's frames outside
    own_name = first[first.is_anomalous].name.iloc[0]
    outside = []
    for method in METHODS:
        s = np.load(tmp_path / "detections" / method / own_name / "frame_scores.npy")
        above, below = int((s > 1).sum()), int((s < 0).sum())
        if above or below:
            outside.append(method)
            first_part = f"{above} of {len(s)} frames scored above 1" if above \
                else f"{below} of {len(s)} frames below 0"
            assert f"{method}: {first_part}" in texts and "drawn at the edge of the axis" in texts
    if not outside:
        assert f"Every method's scores on {own_name} lie in [0, 1]" in texts
    assert (tmp_path / "anomalyclip.safetensors").exists()
    assert not list(tmp_path.glob("stage-cache-*"))  # the private cache was removed

    # the reader's own video went through every method; the model methods, given the same
    # clip with the same models, reproduce the scores of the leaderboard run
    own = first[first.is_anomalous].name.iloc[0]
    for method in METHODS:
        mine = np.load(tmp_path / "your_video" / method / "frame_scores.npy")
        assert len(mine) == len(labels[own])
        if method != "classical":  # its notion of "normal" differs: the video itself
            np.testing.assert_allclose(
                mine, np.load(tmp_path / "detections" / method / own / "frame_scores.npy"),
                atol=1e-6)


    # perfect perception: one flagged upper-bound row per method that has an oracle (all but
    # the classical baseline, which uses no learned model), recomputable from saved scores
    upper = full[full["kind"] == "upper bound (perfect perception)"].set_index("method")
    assert list(upper.index) == [m for m in METHODS if m != "classical"]
    assert (upper["profile"] == "scripted").all() and not upper["meaningless"].any()
    assert upper["note"].str.contains("upper bound of the method's steps").all()
    assert list(summary["perfect_perception"]) == list(upper.index)
    for method, row in upper.iterrows():
        scores = {n: np.load(tmp_path / "detections" / "perfect_perception" / method / n
                             / "frame_scores.npy") for n in names}
        assert row["frame_auc"] == pytest.approx(metrics.frame_auc(labels, scores), abs=1e-9)
        assert summary["perfect_perception"][method]["auc"] == pytest.approx(row["frame_auc"])
    assert "blue rows: upper bound of the method's steps" in html
