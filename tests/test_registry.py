"""A method declared once is found by detect, compare, run_dataset, plots, lesson, protocols."""

from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pytest

from vadnb import compare, data, lesson, plots, registry, scale

TOY = '''
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vadnb.detect import Detection
from vadnb.lesson import Reference
from vadnb.registry import register
from vadnb.video import probe


@dataclass
class Config:
    level: float = 0.25


def run(video, *, config=None, profile=None, backends=None, cache=None, **overrides):
    cfg = Config(**overrides) if config is None else config
    info = probe(video)
    scores = np.full(info.num_frames, cfg.level, dtype=np.float32)
    return Detection(video=str(video), method="toy", profile="none", frame_scores=scores,
                     fps=info.fps, segments=pd.DataFrame())


def _cost(fps, **_):
    return [("clip", "clip", 2 * fps, "two per second")]


register("toy", config=Config, run=run, roles={"clip": "clip"}, cost=_cost,
         pipeline={"title": "Toy: a constant", "stages": [("frames", "video", "frames", "data"),
                                                          ("score", "constant", "0.25", "out")]},
         reference=Reference("toy", "A Toy Detector", "A. Author", "Nowhere 2025", "0000.00000",
                             "github.com/example/toy"),
         protocols=[dict(benchmark="campus (bundled)", split="test (6)", metric="frame AUC",
                         ap_variant="step", class_metrics="—", reported=None,
                         load="load_campus()")])
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "toy_vad.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toy_vad")
    yield module
    registry.unregister("toy")
    sys.modules.pop("toy_vad", None)


def test_a_toy_method_is_found_everywhere(toy, tmp_path):
    detect = importlib.import_module("vadnb.detect")
    assert detect.METHODS["toy"] == "toy_vad"
    det = detect.detect(data.load_campus().table["path"].iloc[0], "toy", level=0.5)
    assert det.method == "toy" and np.all(det.frame_scores == 0.5)
    assert compare.availability("toy") == "ok"
    assert compare.ROLES["toy"] == {"clip": "clip"}  # loaded once for all clips
    assert scale.METHOD_ROLES["toy"] == {"clip": "clip"}
    run = scale.run_dataset("campus", "toy", out_dir=tmp_path / "run", videos=None,
                            preload=False, progress=False, level=0.25)
    assert run.summary["method"] == "toy" and run.summary["videos"] == 6
    assert all(np.all(s == 0.25) for s in run.frame_scores().values())
    rows = scale.calls_per_minute("toy", fps=10.0)
    assert [(r["role"], r["calls"]) for r in rows] == [("clip", 20.0)]
    assert "toy" in set(scale.cost_table(fps=10.0, profiles=("colab",))["method"])
    assert plots.PIPELINES["toy"]["title"] == "Toy: a constant"
    plots.pipeline("toy")
    assert "A Toy Detector" in lesson.references_markdown("toy")
    table = data.protocol_table("toy")
    assert list(table["benchmark"]) == ["campus (bundled)"]


def test_unregistered_toy_is_gone_and_builtins_stay(toy):
    registry.unregister("toy")
    detect = importlib.import_module("vadnb.detect")
    assert "toy" not in detect.METHODS and "toy" not in plots.PIPELINES
    with pytest.raises(ValueError, match="no protocol rows"):
        data.protocol_table("toy")
    with pytest.raises(ValueError, match="built-in"):
        registry.unregister("lavad")
    assert set(registry.BUILTIN) <= set(detect.METHODS)


def test_a_module_that_forgets_to_register_is_named(tmp_path, monkeypatch):
    (tmp_path / "silent_vad.py").write_text("def run(video): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._modules["silent"] = "silent_vad"
    try:
        with pytest.raises(RuntimeError, match="silent_vad does not register method 'silent'"):
            registry.get("silent")
    finally:
        registry._modules.pop("silent")
        sys.modules.pop("silent_vad", None)
