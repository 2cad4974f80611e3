"""VERA's public run: the runtime, the checked Config, :func:`core.pipeline`, a Detection."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import numpy as np
import pandas as pd

from ..cache import Cache, get_cache
from ..result import Detection
from ..models.base import is_truncated
from ..runtime import Roles, Runtime
from ..stages import ParseLog, configure
from . import core
from .core import Config
from .prompts import explanation, resolve_questions


def validated(config: Config | None, overrides: dict[str, Any]) -> Config:
    """``config`` with ``overrides``, every field checked (errors name the field)."""
    return configure(Config, config, overrides, "VERA")


def run_many(videos: Sequence[str | os.PathLike], *, config: Config | None = None,
             profile: str | None = None, backends: dict[str, Any] | None = None,
             cache: Cache | str | None = None, questions: Any = None,
             **overrides: Any) -> list[Detection]:
    """:func:`run` over several videos, stage by stage, so one model is held at a time."""
    cfg = validated(config, overrides)
    qs = resolve_questions(questions)
    roles = Roles(profile, models={"vlm": cfg.vlm_model, "embedder": cfg.embedder_model},
                  backends=backends)
    store = get_cache(cache)
    runs = [(rt, rt.video(p)) for rt, p in ((Runtime(roles, store), p) for p in videos)]
    try:
        results = core.pipeline(runs, qs, cfg)
    finally:
        roles.release()
    profile_name = roles.detection_profile(["vlm", "embedder"])
    return [_detection(v, rt.model_calls(), out, cfg, qs, profile_name)
            for (rt, v), out in zip(runs, results)]


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: dict[str, Any] | None = None, cache: Cache | str | None = None,
        questions: Any = None, **overrides: Any) -> Detection:
    """Score every frame of ``video`` with VERA and the guiding ``questions`` (a list, a JSON
    file, a :class:`LearnResult`, None: the shipped set). Unreadable answers are filled from
    their neighbours (``extras["unparseable"]``; cut ones in ``extras["truncated"]``)."""
    return run_many([video], config=config, profile=profile, backends=backends, cache=cache,
                    questions=questions, **overrides)[0]


def _detection(v: Any, calls: pd.DataFrame, out: dict[str, Any], cfg: Config,
               qs: list[str], profile: str) -> Detection:
    log = ParseLog()
    for reply, label in zip(out["replies"], out["labels"]):
        log.record(reply, label)
    centres, replies = out["centres"], out["replies"]
    segments = pd.DataFrame({
        "start_frame": centres, "end_frame": np.minimum(centres + cfg.stride, v.num_frames),
        "centre_frame": centres, "time_s": centres / v.fps,
        "raw_score": [np.nan if x is None else float(x) for x in out["labels"]],
        "ensemble_score": out["ensemble"], "score": out["smoothed"],
        "answer": [str(r) for r in replies], "truncated": [is_truncated(r) for r in replies],
        "explanation": [explanation(r) for r in replies],
    })
    return Detection(
        video=str(v.path), method="vera", profile=profile,
        frame_scores=out["frame_scores"], fps=v.fps, segments=segments, model_calls=calls,
        extras={"questions": qs, "unparseable": log.failed, "answers": log.total,
                "truncated": log.truncated, "truncated_unparseable": log.truncated_failed,
                "neighbours": out["neighbours"], "position_prior": cfg.position_prior,
                "smoothing": cfg.smoothing, "round_decimals": cfg.round_decimals,
                "config": {f.name: getattr(cfg, f.name) for f in fields(cfg)}})
