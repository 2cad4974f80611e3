"""From the VLM's replies to frame scores: parse a score, fuse the three views, spread each
segment's score over its frames and smooth (steps 8-9 of :func:`.core.pipeline`)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from .. import stages
from ..models.base import is_truncated
from .views import minmax


def official_score(reply: str) -> float | None:
    """The official parser (``utils.extract_score``): the first unsigned decimal anywhere, as
    written ("80%" is 80.0), or None (the official then reads 0)."""
    m = re.search(r"\d+(?:\.\d+)?", reply or "")
    return float(m.group(0)) if m else None


def parse_score(reply: str) -> float | None:
    """vadnb's parser: the first number after "score", else the first in [0, 1] anywhere, in
    [0, 1] ("80%" and "8/10" are 0.8), or None."""
    text = reply or ""
    m = re.search(r"score\W*", text, flags=re.IGNORECASE)
    if m:
        v = stages.parse_first_number(text[m.end():])
        if v is not None:
            return v
    return stages.parse_first_number(text)


def fuse(key: np.ndarray, position: np.ndarray, temporal: np.ndarray,
         weights: Sequence[float] = (0.6, 0.3, 0.1)) -> np.ndarray:
    """``a * key + b * position + g * temporal``, element-wise."""
    a, b, g = (float(w) for w in weights)
    return (a * np.asarray(key, np.float64) + b * np.asarray(position, np.float64)
            + g * np.asarray(temporal, np.float64))


def smooth(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing, edges reflected, cut at ``int(4 * sigma + 0.5)`` frames each side."""
    frames = np.asarray(frames, dtype=np.float64)
    if not sigma or sigma <= 0:
        return frames.copy()
    return stages.gaussian_smooth(frames, sigma, taps=2 * int(4 * float(sigma) + 0.5) + 1)


def fused_frame_scores(segment_scores: np.ndarray, num_frames: int, segment_length: int = 24,
                       sigma: float = 15.0, normalise: bool = False) -> np.ndarray:
    """Segment scores repeated over their frames, smoothed, :func:`normalised` if asked."""
    from ..metrics import segments_to_frames
    frames = smooth(segments_to_frames(segment_scores, num_frames,
                                       segment_length=segment_length), sigma)
    return normalised(frames) if normalise else frames


def parse_scores(replies: np.ndarray, parser: str = "official",
                 ) -> tuple[np.ndarray, np.ndarray, stages.ParseLog]:
    """Replies ``[P, S, 3]`` -> ``(raw scores with NaN gaps, filled, parse log)``; a gap reads 0
    with ``parser="official"``, is interpolated over the segments with ``"vadnb"``."""
    if parser not in ("official", "vadnb"):
        raise ValueError(f"unknown parser {parser!r}; use 'official' or 'vadnb'")
    read = official_score if parser == "official" else parse_score
    log = stages.ParseLog()
    raw = np.full(replies.shape, np.nan)
    for idx in np.ndindex(*replies.shape):
        r = replies[idx]
        value = log.record(r, read(r), truncated=is_truncated(r))
        raw[idx] = np.nan if value is None else value
    if parser == "official":
        return raw, np.nan_to_num(raw, nan=0.0), log
    filled = np.apply_along_axis(lambda x: stages.interpolate_missing(x)[0], 1, raw)
    return raw, filled, log


def normalised(x: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a constant sequence becomes all zeros (nothing stands out)."""
    return np.zeros_like(x) if np.ptp(x) < 1e-12 else minmax(x)
