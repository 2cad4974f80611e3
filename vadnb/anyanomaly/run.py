"""``anyanomaly.run``: :func:`.core.pipeline` on the runtime, its arrays into a Detection."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np
import pandas as pd

from ..cache import Cache
from ..result import Detection
from ..runtime import Roles, Runtime
from ..stages import configure
from . import core
from .core import Config

ROLES = {"clip": "clip-b32", "vlm": "vlm-3b"}  # CLIP ViT-B/32 and Qwen2.5-VL-3B in real profiles


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: Mapping[str, Any] | None = None, cache: Cache | str | None = None,
        prompts: Sequence[str] | str | None = None, progress: bool = True,
        **overrides: Any) -> Detection:
    """Score every frame of ``video`` for the anomalies described in ``prompts``: one segment
    row per segment and description (view scores, fused ``score``, reasons)."""
    cfg = configure(Config, config, {**overrides, **({} if prompts is None else
                                                   {"prompts": prompts})}, "AnyAnomaly")
    if not cfg.prompts:
        raise ValueError("AnyAnomaly needs anomaly descriptions: pass "
                         "prompts=['a person falling', ...] (non-empty text)")
    rt = Runtime(Roles(profile, entries=ROLES, models={"clip": cfg.clip_model,
                                                       "vlm": cfg.vlm_model},
                       backends=backends), cache)
    v = rt.video(video)
    out = core.pipeline(rt, v, cfg)  # progress bars: the runtime's (hidden inside another)
    rt.release()
    log = out["log"]
    extras = {
        "prompts": list(cfg.prompts), "parse_failures": log.failed, "parse_total": log.total,
        "parse_truncated": log.truncated, "parse_summary": log.summary(),
        "parse_examples": list(log.examples), "prompt_frame_scores": out["prompt_frame_scores"],
        "window_scores": {p: out["window_scores"][i].astype(np.float32)
                          for i, p in enumerate(cfg.prompts)},
        "windows": out["windows"], "config": {f.name: getattr(cfg, f.name) for f in fields(cfg)}}
    return Detection(video=str(v.path), method="anyanomaly",
                     profile=rt.roles.detection_profile(["clip", "vlm"]),
                     frame_scores=out["frame_scores"], fps=v.fps,
                     segments=_segments_table(cfg, out, fps=v.fps),
                     model_calls=rt.model_calls(), extras=extras)


def parse_reason(reply: str) -> str:
    """The one-sentence reason: the text after "Reason:", else the whole reply, tidied."""
    text = reply or ""
    m = re.search(r"reason\s*[:\-]\s*", text, flags=re.IGNORECASE)
    if m:
        text = text[m.end():]
    return " ".join(text.split())[:300]


def _segments_table(cfg: Config, out: dict[str, Any], fps: float) -> pd.DataFrame:
    """One row per segment and description, the best first (``explanation_at`` shows it)."""
    reasons = np.vectorize(parse_reason, otypes=[object])(out["replies"])
    rows, fps = [], fps if fps > 0 else 1.0
    for s, (a, b) in enumerate(out["bounds"]):
        for p, prompt in enumerate(cfg.prompts):
            k, sc, why = int(out["keys"][p, s]), out["filled"][p, s], reasons[p, s]
            rows.append({
                "start_frame": int(a), "end_frame": int(b), "centre_frame": k,
                "time_s": k / fps, "prompt": prompt, "key_frame": k,
                "context_frames": " ".join(str(int(f)) for f in out["contexts"][p, s]),
                "window": int(out["best"][p, s]),
                "score_key": sc[0], "score_position": sc[1], "score_temporal": sc[2],
                **{f"parsed_{v}": bool(np.isfinite(out["raw"][p, s, i]))
                   for i, v in enumerate(("key", "position", "temporal"))},
                "score": float(out["fused"][p, s]),
                "reason_key": why[0], "reason_position": why[1], "reason_temporal": why[2],
                "explanation": (f"{prompt}: key frame {sc[0]:.2f} ({why[0]}); position "
                                f"{sc[1]:.2f} ({why[1]}); temporal {sc[2]:.2f} ({why[2]})"),
            })
    return (pd.DataFrame(rows)
            .sort_values(["start_frame", "score"], ascending=[True, False], kind="stable")
            .reset_index(drop=True))
