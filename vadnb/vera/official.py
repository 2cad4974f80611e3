"""Readers of VERA's released files (step-1 scores, segment features) run through the suite's
steps 2 and 3, and VERA's own XD-Violence AP script (notebook 70)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..result import Detection
from .. import metrics
from ..metrics import segments_to_frames
from .core import Config, refine_answers, smooth_segments
from .run import validated


def load_initial_scores(path: str | os.PathLike) -> pd.DataFrame:
    """One video's released step-1 scores (``generate_initial_score.py``'s JSON keyed by
    segment start frame, each ``{"start", "end", "score"}``) as a table sorted by frame.
    Raises ValueError naming the file and the entry on a malformed file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"initial-score file not found: {p}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{p} is not valid JSON ({err}); expected VERA's layout "
                         '{"0": {"start": 0, "end": 150, "score": 1}, "16": {...}}') from err
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{p}: expected a non-empty JSON object keyed by segment start frame")
    rows = []
    for key, entry in data.items():
        try:
            frame = int(str(key))
        except ValueError:
            raise ValueError(f"{p}: key {key!r} is not a frame number") from None
        if not isinstance(entry, dict) or not {"start", "end", "score"} <= set(entry):
            raise ValueError(f"{p}: entry {key!r} must be an object with 'start', 'end' and "
                             f"'score', got {entry!r}")
        score = entry["score"]
        if isinstance(score, list) and len(score) == 1:  # a one-element batch
            score = score[0]
        try:
            score = float(score)
        except (TypeError, ValueError):
            raise ValueError(f"{p}: entry {key!r} has score {entry['score']!r}; expected 0 or 1")
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"{p}: entry {key!r} has score {score}; expected 0 or 1")
        rows.append({"centre_frame": frame, "window_start": float(entry["start"]),
                     "window_end": float(entry["end"]), "score": score})
    return pd.DataFrame(rows).sort_values("centre_frame", kind="stable").reset_index(drop=True)


def from_initial_scores(scores: str | os.PathLike | pd.DataFrame,
                        features: str | os.PathLike | np.ndarray, *,
                        num_frames: int | None = None, fps: float = 30.0,
                        video: str | None = None, config: Config | None = None,
                        **overrides: Any) -> Detection:
    """VERA's steps 2 and 3 on the paper's step-1 ``scores`` (JSON or table) and ``features``
    (``vision_features/<video>.npy`` or an array, a row per segment); ``num_frames`` defaults
    to the official expansion (the last segment runs to its window end)."""
    cfg = validated(config, overrides)
    table = scores if isinstance(scores, pd.DataFrame) else load_initial_scores(scores)
    source = str(scores) if not isinstance(scores, pd.DataFrame) else "table"
    where = str(features) if not isinstance(features, np.ndarray) else "features"
    emb = np.load(features, allow_pickle=False) if not isinstance(features, np.ndarray) \
        else features
    if emb.ndim != 2 or len(emb) != len(table):
        raise ValueError(f"{where}: {emb.shape} features for {len(table)} segments of {source}; "
                         "expected one feature row per segment")
    centres = table["centre_frame"].to_numpy(dtype=np.int64)
    expected = np.arange(len(table), dtype=np.int64) * cfg.stride
    if not np.array_equal(centres, expected):
        raise ValueError(f"{source}: segments start at {centres[:4].tolist()}...; expected "
                         f"every {cfg.stride} frames from 0 (set stride=...)")
    if num_frames is None:
        last = table.iloc[-1]
        num_frames = int(cfg.stride * (len(table) - 1) + int(last["window_end"]
                                                             - last["centre_frame"]))
    out = refine_answers(list(table["score"]), emb, int(num_frames), cfg)
    segments = pd.DataFrame({
        "start_frame": centres, "end_frame": np.minimum(centres + cfg.stride, num_frames),
        "centre_frame": centres, "time_s": centres / fps, "raw_score": table["score"],
        "ensemble_score": out["ensemble"], "score": out["smoothed"],
        "explanation": "released step-1 score (no reply)"})
    return Detection(video=str(video or source), method="vera", profile="paper",
                     frame_scores=out["frame_scores"], fps=float(fps), segments=segments,
                     extras={"source": source, "neighbours": out["neighbours"],
                             "position_prior": cfg.position_prior, "smoothing": cfg.smoothing,
                             "round_decimals": cfg.round_decimals})


def xd_violence_frame_scores(scores: Sequence[float], features: np.ndarray, num_frames: int,
                             stride: int = 16) -> np.ndarray:
    """One video's frame scores as ``compute_AP_XD_Violence.py`` computes them: ``int(0.15 n)``
    neighbours (all when ``n <= 4`` or 0), the official kernel unrounded, to frames, a sigmoid
    rounded to one decimal, then the last frame and ``(num_frames - 1) % stride`` more trimmed."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    emb = np.asarray(features, dtype=np.float64)
    if emb.ndim != 2 or len(emb) != len(s) or len(s) == 0:
        raise ValueError(f"{emb.shape} features for {len(s)} segment scores; expected one "
                         "feature row per segment")
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = unit @ unit.T
    top = int(0.15 * len(s)) if len(s) > 4 else len(s)
    idx = np.argsort(sims, axis=1, kind="stable")[:, -top or None:]  # top 0: all of them
    near = np.take_along_axis(sims, idx, axis=1) * 10.0
    w = np.exp(near - near.max(axis=1, keepdims=True))
    refined = (w / w.sum(axis=1, keepdims=True) * s[idx]).sum(axis=1)
    smoothed = smooth_segments(refined, 15, 10.0, "paper")
    frames = np.asarray(segments_to_frames(smoothed, int(num_frames), segment_length=stride),
                        dtype=np.float64)
    frames = np.round(1.0 / (1.0 + np.exp(-frames)), 1)[:-1]
    mod = (int(num_frames) - 1) % stride
    return frames[:-mod] if mod else frames


def xd_violence_ap(labels: dict[str, np.ndarray], scores: dict[str, np.ndarray]) -> float:
    """VERA's XD-Violence AP: the trapezoid area of all frames (trimmed as the scores are)."""
    return metrics.frame_ap(labels, scores, variant="trapezoid")
