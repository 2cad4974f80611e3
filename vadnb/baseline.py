"""A classical baseline with no learned model (method "classical"): notebook 80's reference row.

It runs on any CPU in seconds. Each frame becomes :data:`FACTS` a person can read (moving area,
largest blob, its flatness, flow speed, still change against a slow background, HOG people:
off by default, its window needs people taller than the campus clips show). The score is the
largest robust z-score (median, MAD of the video itself or of normal ``reference`` videos)
over facts, squashed to [0, 1] and smoothed over about a second.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated, Any

import cv2
import numpy as np
import pandas as pd
from pydantic import Field

from .cache import Cache, file_digest, get_cache
from .result import Detection
from .stages import config_dataclass, configure, gaussian_smooth
from .video import VideoError, iter_frames, probe

__all__ = ["Config", "frame_facts", "frame_views", "fit_reference", "fact_zscores", "score_steps",
           "run", "FACTS"]

FACTS = ("fg_area", "blob_area", "blob_flatness", "speed", "static_area", "people")

_EXPLAIN = {"fg_area": "much more of the scene is moving than usual",
            "blob_area": "a large moving object",
            "blob_flatness": "a wide, low shape (someone lying down?)",
            "speed": "something moves much faster than usual",
            "static_area": "something new has stayed still in the scene",
            "people": "more people than usual"}


# Limits cap sizes where a larger value would only exhaust memory or time.
@config_dataclass(frozen=True)
class Config:
    """Parameters of the classical baseline (no paper: it is this suite's reference row)."""

    width: Annotated[int, Field(ge=16, le=4096)] = 320
    """Frames are processed at this width (aspect kept): enough for blobs and flow, fast."""
    history_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    """MOG2 background memory in seconds: moving things older than this become background."""
    long_history_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """The slow background's memory: a new still object fades into it over about this long."""
    init_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    """The slow background starts as the per-pixel median of the first seconds."""
    static_threshold: Annotated[int, Field(ge=0, le=255)] = 30
    """Grey-level difference from the slow background that counts as a change."""
    min_blob_frac: Annotated[float, Field(ge=0, lt=1)] = 0.002
    """Blobs smaller than this fraction of the frame are noise."""
    people_every: Annotated[int, Field(ge=0, le=100_000)] = 0
    """Run the HOG people detector every n-th frame (0 = off; it is the slow part)."""
    people_upscale: Annotated[float, Field(gt=0, le=8)] = 2.0
    """Upscale frames by this much before HOG, so people fill its 64x128 window."""
    smooth_s: Annotated[float, Field(ge=0, le=600)] = 1.0
    """Gaussian smoothing of the score, sigma in seconds."""
    z_scale: Annotated[float, Field(gt=0)] = 6.0
    """score = 1 - exp(-z / z_scale) for z > 0: z = 6 (six MADs above normal) gives 0.63."""
    warmup_s: Annotated[float, Field(ge=0, le=3600)] = 2.0
    """The background models need this long to settle; facts before it are not trusted."""


def _blobs(mask: np.ndarray, min_area: int) -> tuple[float, float]:
    """The largest blob's share of the frame, and the flattest blob's width / height."""
    stats = cv2.connectedComponentsWithStats(mask, connectivity=8)[2][1:]  # 0: background
    stats = stats[stats[:, cv2.CC_STAT_AREA] >= min_area].astype(float)
    if not len(stats):
        return 0.0, 0.0
    flat = np.max(stats[:, cv2.CC_STAT_WIDTH] / np.maximum(stats[:, cv2.CC_STAT_HEIGHT], 1.0))
    return float(stats[:, cv2.CC_STAT_AREA].max()) / mask.size, float(flat)


def frame_facts(video: str | os.PathLike, config: Config | None = None) -> pd.DataFrame:
    """One row of facts per frame of ``video`` (see the module docstring)."""
    return _scan(video, config or Config(), ())[0]


def frame_views(video: str | os.PathLike, frames: list[int] | tuple[int, ...],
                config: Config | None = None) -> dict[int, dict[str, np.ndarray]]:
    """What the baseline sees at ``frames`` (working width): ``"frame"``, ``"moving"`` (0/1),
    ``"speed"`` (pixels per second, half resolution) and ``"still_change"`` (0/1)."""
    return _scan(video, config or Config(), tuple(int(f) for f in frames))[1]


def _frames_and_background(video: str | os.PathLike, size: tuple[int, int], init_frames: int
                           ) -> tuple[Iterator[tuple[int, np.ndarray]], np.ndarray]:
    """Every ``(index, rgb)`` frame of ``video``, and the slow background it starts from: the
    per-pixel grey median of the first ``init_frames`` (float32, updated in place later)."""
    frames = ((int(idx), rgb) for chunk in iter_frames(video, size=size)
              for idx, rgb in zip(chunk.indices, chunk.images))
    head = list(itertools.islice(frames, init_frames))
    if not head:
        raise VideoError(f"video has 0 decodable frames: {video}")
    bg = np.median(np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for _, f in head]), axis=0)
    return itertools.chain(head, frames), bg.astype(np.float32)


def _count_people(hog: cv2.HOGDescriptor, gray: np.ndarray, upscale: float) -> float:
    big = cv2.resize(gray, None, fx=upscale, fy=upscale)
    return float(len(hog.detectMultiScale(big, winStride=(8, 8), padding=(8, 8), scale=1.1)[0]))


def _flow_speed(prev: np.ndarray | None, gray: np.ndarray, moving: np.ndarray,
                small: tuple[int, int], fps: float) -> tuple[float, np.ndarray]:
    """Moving pixels' 95th-percentile flow speed (px/s) and speed map at ``small`` size."""
    speed = 0.0
    mag = np.zeros((small[1], small[0]), np.float32)
    if prev is not None and moving.any():
        flow = cv2.calcOpticalFlowFarneback(cv2.resize(prev, small), cv2.resize(gray, small),
                                            None, 0.5, 2, 9, 2, 5, 1.1, 0)
        mag = np.linalg.norm(flow, axis=2)
        m = cv2.resize(moving.astype(np.uint8), small, interpolation=cv2.INTER_NEAREST) > 0
        if m.any():
            speed = float(np.percentile(mag[m], 95)) * fps
        mag = np.where(m, mag * fps, 0.0).astype(np.float32)
    return speed, mag


def _scan(video: str | os.PathLike, cfg: Config,
          views_at: tuple[int, ...]) -> tuple[pd.DataFrame, dict[int, dict[str, np.ndarray]]]:
    """The facts of every frame of ``video``, and the views of the frames in ``views_at``."""
    info = probe(video)
    size = (cfg.width, int(round(info.height * cfg.width / info.width / 2) * 2))
    small = (size[0] // 2, size[1] // 2)  # the optical flow runs at half size
    fps = info.fps or 10.0
    short = cv2.createBackgroundSubtractorMOG2(history=max(2, int(cfg.history_s * fps)),
                                               detectShadows=False)
    hog = cv2.HOGDescriptor() if cfg.people_every > 0 else None
    if hog is not None:
        hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    min_area = max(4, int(cfg.min_blob_frac * size[0] * size[1]))
    rate = 1.0 / max(cfg.long_history_s * fps, 1.0)
    frames, bg = _frames_and_background(video, size, max(1, int(cfg.init_s * fps)))
    rows: list[dict[str, Any]] = []
    views: dict[int, dict[str, np.ndarray]] = {}
    prev, people = None, 0.0
    for idx, rgb in frames:
        if views_at and idx > max(views_at):  # the views are all taken
            break
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        fg = cv2.morphologyEx(short.apply(rgb), cv2.MORPH_OPEN, kernel)
        moving = fg > 0
        near_motion = cv2.dilate(fg, kernel, iterations=2) > 0
        changed = np.abs(gray.astype(np.float32) - bg) > cfg.static_threshold
        static = cv2.morphologyEx((changed & ~near_motion).astype(np.uint8), cv2.MORPH_OPEN, kernel)
        # learn the background slowly, and only where nothing moves
        still = ~near_motion
        bg[still] += rate * (gray[still] - bg[still])
        blob_area, flat = _blobs(fg, min_area)
        speed, mag = _flow_speed(prev, gray, moving, small, fps)
        if idx in views_at:
            views[idx] = {"frame": rgb.copy(), "moving": moving.astype(np.uint8),
                          "speed": mag, "still_change": static.astype(np.uint8)}
        if hog is not None and idx % cfg.people_every == 0:  # else the last count stands
            people = _count_people(hog, gray, cfg.people_upscale)
        rows.append({"frame": idx, "fg_area": float(moving.mean()), "blob_area": blob_area,
                     "blob_flatness": flat, "speed": speed, "static_area": float(static.mean()),
                     "people": people})
        prev = gray
    missing = sorted(set(views_at) - set(views))
    if missing:
        raise ValueError(f"frames {missing} are not in {video} ({rows[-1]['frame'] + 1} "
                         "frames were read): ask for frames of the video")
    return pd.DataFrame(rows), views


# the smallest spread per fact: one that never varies in normal footage still needs a scale
_MIN_SPREAD = pd.Series({"fg_area": 1e-3, "blob_area": 1e-3, "blob_flatness": 0.1,
                         "speed": 1.0, "static_area": 1e-3, "people": 0.5})


def fit_reference(facts: pd.DataFrame | list[pd.DataFrame],
                  warmup_frames: int = 0) -> pd.DataFrame:
    """Median and robust spread (1.4826 * MAD, at least ``_MIN_SPREAD``) of every fact."""
    frames = facts if isinstance(facts, list) else [facts]
    table = pd.concat([f.iloc[warmup_frames:] if len(f) > warmup_frames else f for f in frames])
    med = table[list(FACTS)].median()
    mad = (table[list(FACTS)] - med).abs().median() * 1.4826
    return pd.DataFrame({"median": med, "spread": np.maximum(mad, _MIN_SPREAD[list(FACTS)])})


def fact_zscores(facts: pd.DataFrame, reference: pd.DataFrame,
                 warmup_frames: int = 0) -> np.ndarray:
    """How far each fact of each frame lies above normal, in robust spreads (frames x facts):
    clipped at 0 (only *more* is suspicious), faded in over the first ``warmup_frames``."""
    values = facts[list(FACTS)].to_numpy(dtype=np.float64)
    med, spread = reference.loc[list(FACTS), ["median", "spread"]].to_numpy().T
    z = np.clip((values - med) / spread, 0, None)
    ramp = min(warmup_frames, len(z))
    z[:ramp] *= np.linspace(0, 1, ramp)[:, None]
    return z


def _facts_cached(video: str | os.PathLike, cfg: Config, cache: Cache) -> pd.DataFrame:
    parts = {"video": file_digest(video), "config": asdict(cfg), "opencv": cv2.__version__}
    # check: an entry that is not a table of every fact (equal 1-D columns) is not ours
    cols = cache.memo("classical.facts", parts,
                      lambda: {k: v.to_numpy() for k, v in frame_facts(video, cfg).items()},
                      check=lambda cols: pd.DataFrame({k: cols[k] for k in FACTS}))
    return pd.DataFrame(cols)


def _score_inputs(video: str | os.PathLike, cfg: Config, store: Cache,
                  reference: list[str | os.PathLike] | None
                  ) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, float]:
    """The video's facts, the reference statistics, the z-scores and the frame rate."""
    fps = probe(video).fps or 10.0
    facts = _facts_cached(video, cfg, store)
    warm = int(cfg.warmup_s * fps)
    normal = [_facts_cached(r, cfg, store) for r in reference] if reference else facts
    ref = fit_reference(normal, warm)
    return facts, ref, fact_zscores(facts, ref, warm), fps


def _score(top: np.ndarray, cfg: Config, fps: float) -> np.ndarray:
    """A frame's largest z-score squashed to [0, 1], then smoothed over ``smooth_s``."""
    raw = 1.0 - np.exp(-top / cfg.z_scale)
    return np.clip(gaussian_smooth(raw, sigma=max(cfg.smooth_s * fps, 1e-3)), 0, 1)


def score_steps(video: str | os.PathLike, *, reference: list[str | os.PathLike] | None = None,
                config: Config | None = None, cache: Cache | str | None = None) -> pd.DataFrame:
    """Each step from facts to score, one row per frame: ``z <fact>``, ``max z``, ``raw``
    (``1 - exp(-max z / z_scale)``) and ``score`` (exactly :func:`run`'s ``frame_scores``)."""
    cfg = config or Config()
    _, _, z, fps = _score_inputs(video, cfg, get_cache(cache), reference)
    table = pd.DataFrame(z, columns=[f"z {f}" for f in FACTS])
    table["max z"] = z.max(axis=1)
    table["raw"] = 1.0 - np.exp(-table["max z"] / cfg.z_scale)
    table["score"] = _score(table["max z"].to_numpy(), cfg, fps)
    return table


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: dict | None = None, cache: Cache | str | None = None,
        reference: list[str | os.PathLike] | None = None, **overrides: Any) -> Detection:
    """Score every frame of ``video`` by how far its facts fall from normal footage
    (``reference`` videos of the same camera, or the video itself; no model is used)."""
    cfg = configure(Config, config, overrides, "classical")
    facts, ref, z, fps = _score_inputs(video, cfg, get_cache(cache), reference)
    values = facts[list(FACTS)].to_numpy(dtype=np.float64)
    scores = _score(z.max(axis=1), cfg, fps)
    return Detection(video=str(video), method="classical", profile="none",
                     frame_scores=scores.astype(np.float32), fps=fps,
                     segments=_explained_seconds(scores, z, values, ref, fps),
                     extras={"facts": {k: np.round(values[:, i], 5).tolist()
                                       for i, k in enumerate(FACTS)},
                             "reference": ("given normal videos" if reference
                                           else "the video itself")})


def _explained_seconds(scores: np.ndarray, z: np.ndarray, values: np.ndarray,
                       ref: pd.DataFrame, fps: float) -> pd.DataFrame:
    """One segment per second: its peak frame, and the fact that stands out most there."""
    # plain numpy arrays, not pandas lookups per second: a warm run is arithmetic alone
    med, spread = ref.loc[list(FACTS), ["median", "spread"]].to_numpy().T
    top, which = z.max(axis=1), z.argmax(axis=1)
    seg_len = max(1, int(round(fps)))
    rows = []
    for start in range(0, len(scores), seg_len):
        end = min(start + seg_len, len(scores))
        peak = start + int(np.argmax(scores[start:end]))
        k = int(which[peak])
        fact, ratio = FACTS[k], values[peak, k] / max(med[k], spread[k])
        text = (f"{_EXPLAIN[fact]} ({fact} {ratio:.1f}x normal)" if top[peak] > 1
                else "nothing stands out from normal footage")
        rows.append({"start_frame": start, "end_frame": end, "centre_frame": peak,
                     "time_s": peak / fps, "score": float(scores[start:end].max()),
                     "main_fact": fact, "z": float(top[peak]), "explanation": text})
    return pd.DataFrame(rows)


from .registry import protocol, register  # noqa: E402

register("classical", config=Config, run=run, protocols=[
    protocol("campus (bundled)", "test (6)", "frame AUC, AP", None, "load_campus()",
             ap_variant="step", class_metrics="per class AUC")])
