"""AnyAnomaly: customizable video anomaly detection (C-VAD), taught in notebook 60.

The user *types* the anomaly ("a van driving on the grass", "a person falling") and a
vision-language model (VLM) is asked, segment by segment, whether that is what it sees.
A VLM looking at one frame misses small objects and motion, so AnyAnomaly gives it three
views of every 24-frame segment:

1. **key frame**: the segment's frame most similar to the description under CLIP;
2. **position context**: the key frame with a CLIP heat map multiplied onto it (WinCLIP
   style windows at three scales), so the regions matching the description stay bright;
3. **temporal context**: the best-matching window cut out of 4 frames spread over the
   segment, tiled as a 2x2 grid that reads left-to-right, top-to-bottom in time.

Each view gets one VLM call asking for a score in [0, 1] and a one-sentence reason. Per
description, the three scores are fused (0.6 key + 0.3 position + 0.1 temporal), repeated
over the segment's frames and smoothed with a Gaussian (sigma 15 frames); the maximum over
the descriptions is then min-max normalised per video.

What differs from the public code, and why:

- The original tunes the fusion weights and sigma on the *test* labels. Here the defaults
  are used untuned, and :func:`tune_fusion` tunes only on a validation split (it refuses
  test data).
- Replies that contain no score are counted and interpolated from neighbouring segments
  (the original silently reads them as 0).
- VLM decoding is greedy (the original samples at temperature 0.1), so runs repeat.
- Key frames and window maps use the same prompt-template ensemble; the softmax over class
  names always includes a "normal scene" class, so a single description works too.
- With several descriptions, each description's three answers are fused first and the
  maximum is taken afterwards (the original takes the maximum per view, which can add a
  key-frame answer about one description to a grid answer about another); the maximum is
  normalised once, so a description that never matches is not stretched to look like one
  that does.

>>> import vadnb
>>> det = vadnb.detect("video.mp4", method="anyanomaly", prompts=["a person falling"])  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import stages
from .cache import Cache, file_digest, get_cache
from .detect import Detection
from .models.base import call_stats, calls_since, profile_of
from .stages import configure

__all__ = [
    "Config",
    "TEMPLATES",
    "run",
    "segment_bounds",
    "context_frames",
    "window_boxes",
    "window_probabilities",
    "heat_map",
    "masked_frame",
    "best_window",
    "grid_image",
    "text_embeddings",
    "select_key_frames",
    "build_prompt",
    "parse_score",
    "parse_reason",
    "fuse",
    "fused_frame_scores",
    "minmax",
    "segment_views",
    "prompt_scores",
    "tune_fusion",
    "FusionTuning",
]

# Our own small prompt-template ensemble: each class name is put into every template, the
# CLIP text embeddings are averaged and re-normalised (the WinCLIP / CLIP zero-shot recipe).
TEMPLATES: tuple[str, ...] = (
    "a photo of {}.",
    "a surveillance camera frame showing {}.",
    "a blurry photo of {}.",
    "a cropped photo of {}.",
    "a low resolution photo of {}.",
    "a photo of {}, seen from above.",
)

_STAGE_VERSION = 1  # bump when a stage's computation changes, so stale cache entries go unused


@dataclass
class Config:
    """AnyAnomaly's settings, with the defaults of the paper and its public code.

    Paper (Ahn et al., 2025, Qwen2.5-VL-3B, training-free): C-ShT AUC 85.72 (baseline without
    context 78.01), C-Ave 90.27; on the usual benchmarks Avenue 87.3, ShanghaiTech 79.7,
    UBnormal 74.5. Those numbers used fusion weights and sigma tuned on the test labels.
    """

    prompts: list[str] = field(default_factory=list)
    """The anomaly descriptions to look for ("a person falling"); the score is their max."""
    segment_length: int = 24
    """Frames per segment; segments do not overlap and each gets one set of VLM calls."""
    clip_model: str | None = None
    """CLIP for key frames and window maps; None = the profile's ``clip-b32`` (ViT-B/32, as
    the paper); or anything ``vadnb.models.load`` accepts as ``model=``."""
    vlm_model: str | None = None
    """The VLM; None = the profile's ``vlm-3b`` (Qwen2.5-VL-3B-Instruct, as the newer code)."""
    context_frames: int = 4
    """Frames in the temporal context (the 2x2 grid)."""
    context_spacing: int = 6
    """Frames between context frames: with 24-frame segments the 4 frames share the key
    frame's offset in each 6-frame quarter, so they span the segment and include the key."""
    position_size: int = 240
    """The key frame is resized to this square size (px) before cutting windows."""
    window_sizes: tuple[int, ...] = (48, 80, 240)
    """Window side lengths (px at ``position_size``): 48 -> 5x5, 80 -> 3x3, 240 -> 1x1."""
    window_stride: int | None = None
    """Step between windows (px); None = the window size (non-overlapping tiles)."""
    templates: tuple[str, ...] = TEMPLATES
    """Prompt templates, each with one ``{}`` for the class name, averaged in CLIP space."""
    normal_class: str = "a normal scene where nothing unusual happens"
    """The extra class the softmax compares each description with."""
    softmax_scale: float = 100.0
    """Multiplies the cosine similarities before the softmax (CLIP's logit scale)."""
    weights: tuple[float, float, float] = (0.6, 0.3, 0.1)
    """Fusion weights for the key-frame, position and temporal scores (untuned defaults)."""
    sigma: float = 15.0
    """Gaussian smoothing, in frames, applied after repeating each segment score over its
    frames (so the axis is frames at the video's own rate)."""
    normalise: bool = True
    """Min-max normalise each video's frame scores to [0, 1] (as the paper does)."""
    max_new_tokens: int = 50
    """VLM reply length; decoding is greedy (deterministic)."""
    grid_cell: int = 224
    """Side (px) of each cell of the 2x2 temporal grid."""
    vlm_batch_size: int = 12
    """VLM requests per ``vlm.batch`` call, each call's replies cached as soon as it returns
    (the backend splits a call further to fit its memory)."""
    clip_batch_size: int = 64
    """Images per CLIP call."""

    def __post_init__(self) -> None:
        if isinstance(self.prompts, str):
            self.prompts = [self.prompts]
        self.prompts = [str(p).strip() for p in self.prompts]
        self.window_sizes = tuple(int(w) for w in self.window_sizes)
        self.templates = tuple(self.templates)
        self.weights = tuple(float(w) for w in self.weights)  # type: ignore[assignment]


# --------------------------------------------------------------------------- segments, windows


def segment_bounds(num_frames: int, segment_length: int = 24) -> np.ndarray:
    """``[S, 2]`` start (inclusive) and end (exclusive) frames of non-overlapping segments.

    The last segment is shorter when the video length is not a multiple of the length.
    """
    if num_frames <= 0:
        raise ValueError(f"video has {num_frames} frames; nothing to score")
    if segment_length <= 0:
        raise ValueError(f"segment_length must be positive, got {segment_length}")
    starts = np.arange(0, num_frames, segment_length, dtype=np.int64)
    return np.stack([starts, np.minimum(starts + segment_length, num_frames)], axis=1)


def context_frames(key: int, start: int, end: int, n: int = 4, spacing: int = 6) -> np.ndarray:
    """The ``n`` temporal-context frames of a segment ``[start, end)`` with key frame ``key``.

    As in the public code: the frames at the key frame's offset within each ``spacing``-frame
    block (``start + key_offset % spacing + k * spacing``), so with 24 frames, 4 frames and
    spacing 6 they cover the whole segment in time order and include the key frame. Frames
    past a short last segment's end are clipped to its last frame.
    """
    if not start <= key < end:
        raise ValueError(f"key frame {key} outside its segment [{start}, {end})")
    phase = (key - start) % spacing
    idx = start + phase + spacing * np.arange(n, dtype=np.int64)
    return np.minimum(idx, end - 1)


def window_boxes(size: int = 240, window_sizes: Sequence[int] = (48, 80, 240),
                 stride: int | None = None) -> pd.DataFrame:
    """Every window, one row each: ``scale`` (index into ``window_sizes``), ``row``, ``col``,
    ``x0, y0, x1, y1`` (px in the ``size`` x ``size`` frame, end exclusive).

    Windows of side ``w`` start at ``0, s, 2s, ...`` while they fit (``s`` = ``stride`` or
    ``w``): at 240 px, 48 -> 5x5 = 25 tiles, 80 -> 3x3 = 9, 240 -> 1, i.e. 35 windows.
    Rows come scale by scale, then row-major (top-left first).
    """
    rows = []
    for scale, w in enumerate(window_sizes):
        if not 0 < w <= size:
            raise ValueError(f"window size {w} must be between 1 and the frame size {size}")
        step = int(stride or w)
        starts = np.arange(0, size - w + 1, step)
        for r, y in enumerate(starts):
            for c, x in enumerate(starts):
                rows.append({"scale": scale, "row": r, "col": c, "x0": int(x), "y0": int(y),
                             "x1": int(x + w), "y1": int(y + w)})
    return pd.DataFrame(rows, columns=["scale", "row", "col", "x0", "y0", "x1", "y1"])


def cut_windows(frame: np.ndarray, boxes: pd.DataFrame, size: int = 240) -> list[np.ndarray]:
    """Resize ``frame`` to ``size`` x ``size`` (as the public code does, ignoring the aspect)
    and cut out each box of :func:`window_boxes`."""
    import cv2

    sq = cv2.resize(np.asarray(frame), (size, size), interpolation=cv2.INTER_AREA)
    return [sq[b.y0:b.y1, b.x0:b.x1] for b in boxes.itertuples()]


def text_embeddings(clip: Any, class_names: Sequence[str],
                    templates: Sequence[str] = TEMPLATES) -> np.ndarray:
    """One L2-normalised CLIP text embedding per class name: the mean over the templates."""
    texts = [t.format(name) for name in class_names for t in templates]
    emb = np.asarray(clip.encode_text(texts), dtype=np.float64)
    emb = emb.reshape(len(class_names), len(templates), -1).mean(axis=1)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return emb.astype(np.float32)


def select_key_frames(frame_emb: np.ndarray, text_emb: np.ndarray,
                      bounds: np.ndarray) -> np.ndarray:
    """``[P, S]``: for each description and segment, the frame with the highest cosine
    similarity to the description (ties: the earliest frame)."""
    sims = np.asarray(text_emb, np.float64) @ np.asarray(frame_emb, np.float64).T  # [P, N]
    keys = np.zeros((sims.shape[0], len(bounds)), dtype=np.int64)
    for s, (a, b) in enumerate(bounds):
        keys[:, s] = a + np.argmax(sims[:, a:b], axis=1)
    return keys


def window_probabilities(window_emb: np.ndarray, class_emb: np.ndarray,
                         scale: float = 100.0) -> np.ndarray:
    """``[..., W, C]`` softmax over classes of ``scale * cosine(window, class)``.

    ``class_emb`` holds the user's descriptions and, last, the normal class; column ``p``
    of the result is how much each window looks like description ``p`` rather than the
    others or a normal scene.
    """
    logits = scale * (np.asarray(window_emb, np.float64) @ np.asarray(class_emb, np.float64).T)
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


def minmax(x: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] (min -> 0, max -> 1).

    A constant input has no contrast; it becomes all ones, which for a heat map means "keep
    the whole frame" (frame scores handle the constant case themselves, as zeros).
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi - lo < 1e-12:
        return np.ones_like(x)
    return (x - lo) / (hi - lo)


def heat_map(window_scores: np.ndarray, boxes: pd.DataFrame, height: int,
             width: int) -> np.ndarray:
    """WinCLIP-style heat map ``[height, width]`` in [0, 1] from one score per window.

    Each scale's scores form a small grid (5x5, 3x3, 1x1), upsampled bilinearly to the
    frame (``cv2.resize``, pixel-centre aligned, edges clamped); the scales are averaged and
    the result is min-max normalised.
    """
    import cv2

    scores = np.asarray(window_scores, dtype=np.float32).ravel()
    if len(scores) != len(boxes):
        raise ValueError(f"{len(scores)} window scores for {len(boxes)} windows")
    total = np.zeros((height, width), dtype=np.float64)
    scales = sorted(boxes["scale"].unique())
    for scale in scales:
        sel = (boxes["scale"] == scale).to_numpy()
        sub = boxes[sel]
        grid = np.zeros((sub["row"].max() + 1, sub["col"].max() + 1), dtype=np.float32)
        grid[sub["row"].to_numpy(), sub["col"].to_numpy()] = scores[sel]
        total += cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
    return minmax(total / len(scales))


def masked_frame(frame: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The key frame with the heat map multiplied onto every channel (the position context)."""
    return (np.asarray(frame, np.float64) * heat[..., None]).clip(0, 255).astype(np.uint8)


def best_window(window_scores: np.ndarray) -> int:
    """``window_scores`` ``[F, W]`` (context frames x windows): the window whose best score
    over the frames is highest (ties: the first window)."""
    return int(np.argmax(np.asarray(window_scores).max(axis=0)))


def grid_image(frames: Sequence[np.ndarray], box: Any, size: int = 240,
               cell: int = 224) -> np.ndarray:
    """A 2x2 grid (``2*cell`` px square) of the same window cut from 4 frames, in time order
    left-to-right, top-to-bottom. The box is in ``size``-px coordinates and is scaled to each
    frame's own resolution, so the crops keep the video's detail."""
    import cv2

    if len(frames) != 4:
        raise ValueError(f"the temporal grid needs 4 frames, got {len(frames)}")
    out = np.zeros((2 * cell, 2 * cell, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        f = np.asarray(f)
        h, w = f.shape[:2]
        x0, y0 = int(box.x0 * w / size), int(box.y0 * h / size)
        x1 = max(x0 + 1, int(round(box.x1 * w / size)))  # at least one pixel wide
        y1 = max(y0 + 1, int(round(box.y1 * h / size)))
        crop = cv2.resize(f[y0:y1, x0:x1], (cell, cell), interpolation=cv2.INTER_LINEAR)
        r, c = divmod(i, 2)
        out[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = crop
    return out


# --------------------------------------------------------------------------- prompts, replies

_TASK = (
    "Does this image show {d}? Rate it on a scale from 0 to 1: 1 means {d} is clearly "
    "present, 0 means it is not present at all, values in between mean it is partly "
    "visible or uncertain. If it is present anywhere, even small or off-centre, rate it high."
)
_POSITION = " Bright regions of the image are where it most likely is; dark regions are less relevant."
_TEMPORAL = (" The image is a 2x2 grid of four moments of the same place in time order: "
             "read it left to right, top to bottom (top-left first, bottom-right last).")
_FORMAT = " Answer exactly as: Score: <a number between 0 and 1>. Reason: <one short sentence>."


def build_prompt(description: str, view: str) -> str:
    """The VLM prompt for one ``view`` ("key", "position" or "temporal") of a description."""
    if view not in ("key", "position", "temporal"):
        raise ValueError(f"unknown view {view!r}; use 'key', 'position' or 'temporal'")
    extra = {"key": "", "position": _POSITION, "temporal": _TEMPORAL}[view]
    return _TASK.format(d=description) + extra + _FORMAT


def parse_score(reply: str) -> float | None:
    """The score in a VLM reply, in [0, 1], or None.

    The first number after the word "score" if there is one ("Score: 0.8 because ..."),
    else the first number in [0, 1] anywhere; "80%" and "8/10" count as 0.8
    (:func:`vadnb.stages.parse_first_number`).
    """
    text = reply or ""
    m = re.search(r"score\W*", text, flags=re.IGNORECASE)
    if m:
        v = stages.parse_first_number(text[m.end():])
        if v is not None:
            return v
    return stages.parse_first_number(text)


def parse_reason(reply: str) -> str:
    """The one-sentence reason: the text after "Reason:", else the whole reply, tidied."""
    text = reply or ""
    m = re.search(r"reason\s*[:\-]\s*", text, flags=re.IGNORECASE)
    if m:
        text = text[m.end():]
    return " ".join(text.split())[:300]


# --------------------------------------------------------------------------- fusion


def fuse(key: np.ndarray, position: np.ndarray, temporal: np.ndarray,
         weights: Sequence[float] = (0.6, 0.3, 0.1)) -> np.ndarray:
    """``a * key + b * position + g * temporal``, element-wise."""
    a, b, g = (float(w) for w in weights)
    return (a * np.asarray(key, np.float64) + b * np.asarray(position, np.float64)
            + g * np.asarray(temporal, np.float64))


def fused_frame_scores(segment_scores: np.ndarray, num_frames: int, segment_length: int = 24,
                       sigma: float = 15.0, normalise: bool = True) -> np.ndarray:
    """Per-frame scores from per-segment scores: repeat each over its frames, smooth with a
    Gaussian of ``sigma`` frames (:func:`vadnb.stages.gaussian_smooth`), min-max normalise.

    A video whose smoothed scores are constant gets all zeros (nothing stands out).
    """
    from .metrics import segments_to_frames

    frames = segments_to_frames(segment_scores, num_frames, segment_length=segment_length)
    if sigma and sigma > 0:
        frames = stages.gaussian_smooth(frames, sigma)
    if normalise:
        frames = np.zeros_like(frames) if np.ptp(frames) < 1e-12 else minmax(frames)
    return frames


# --------------------------------------------------------------------------- the pipeline


def _load_backends(cfg: Config, profile: str | None,
                   backends: Mapping[str, Any] | None) -> tuple[Any, Any]:
    given = dict(backends or {})
    missing = [r for r in ("clip", "vlm") if r not in given]
    if missing:
        from . import models

        if not hasattr(models, "load"):
            raise RuntimeError("vadnb.models.load is not available yet; pass "
                               "backends={'clip': ..., 'vlm': ...} (e.g. scripted doubles)")
        # AnyAnomaly's own variants: CLIP ViT-B/32 and Qwen2.5-VL-3B in the real profiles
        variant = {"clip": "clip-b32", "vlm": "vlm-3b"}
        for role in missing:
            given[role] = models.load(variant[role], profile=profile,
                                      model=getattr(cfg, f"{role}_model"))
    return given["clip"], given["vlm"]


def _frame_embeddings(video: Path, clip: Any, cache: Cache, digest: str, cfg: Config,
                      num_frames: int) -> np.ndarray:
    """CLIP image embedding of every frame (streamed in chunks, cached)."""
    from .progress import bar as progress_bar
    from .video import iter_frames

    def compute() -> np.ndarray:
        parts = []
        bar = progress_bar(total=num_frames, desc="CLIP frames",
                           disable=num_frames <= cfg.clip_batch_size)
        for chunk in iter_frames(video, chunk=cfg.clip_batch_size):
            parts.append(np.asarray(clip.encode_image(list(chunk.images)), np.float32))
            bar.update(len(chunk))
        bar.close()
        return np.concatenate(parts)

    return cache.memo("anyanomaly.frame_embeddings",
                      {"video": digest, "clip": clip.name, "v": _STAGE_VERSION}, compute)


def _window_embeddings(frames: dict[int, np.ndarray], clip: Any, cache: Cache, digest: str,
                       cfg: Config, boxes: pd.DataFrame) -> dict[int, np.ndarray]:
    """CLIP embedding ``[W, D]`` of every window of each needed frame (cached per frame)."""
    order = sorted(frames)

    def compute(batch: list[int]) -> list[np.ndarray]:
        crops = [c for i in batch for c in cut_windows(frames[i], boxes, cfg.position_size)]
        out = []
        for k in range(0, len(crops), cfg.clip_batch_size):
            out.append(np.asarray(clip.encode_image(crops[k:k + cfg.clip_batch_size]), np.float32))
        emb = np.concatenate(out).reshape(len(batch), len(boxes), -1)
        return list(emb)

    parts = {"video": digest, "clip": clip.name, "size": cfg.position_size,
             "windows": list(cfg.window_sizes), "stride": cfg.window_stride, "v": _STAGE_VERSION}
    per_batch = max(1, 256 // len(boxes))
    embs = cache.map("anyanomaly.window_embeddings", parts, order, compute,
                     batch_size=per_batch, desc="CLIP windows")
    return dict(zip(order, embs))


def _segments_table(cfg: Config, bounds: np.ndarray, keys: np.ndarray, contexts: np.ndarray,
                    best: np.ndarray, raw: np.ndarray, filled: np.ndarray,
                    seg_fused: np.ndarray, reasons: np.ndarray, fps: float) -> pd.DataFrame:
    """One row per segment and description: frames, the three scores, reasons, explanation.

    Within a segment the best-scoring description comes first, so
    :meth:`Detection.explanation_at` shows it.
    """
    rows = []
    fps = fps if fps > 0 else 1.0
    for s, (a, b) in enumerate(bounds):
        for p, prompt in enumerate(cfg.prompts):
            k = int(keys[p, s])
            sc = filled[p, s]
            why = reasons[p, s]
            rows.append({
                "start_frame": int(a), "end_frame": int(b), "centre_frame": k,
                "time_s": k / fps, "prompt": prompt, "key_frame": k,
                "context_frames": " ".join(str(int(f)) for f in contexts[p, s]),
                "window": int(best[p, s]),
                "score_key": sc[0], "score_position": sc[1], "score_temporal": sc[2],
                "parsed_key": bool(np.isfinite(raw[p, s, 0])),
                "parsed_position": bool(np.isfinite(raw[p, s, 1])),
                "parsed_temporal": bool(np.isfinite(raw[p, s, 2])),
                "score": float(seg_fused[p, s]),
                "reason_key": why[0], "reason_position": why[1], "reason_temporal": why[2],
                "explanation": (f"{prompt}: key frame {sc[0]:.2f} ({why[0]}); position "
                                f"{sc[1]:.2f} ({why[1]}); temporal {sc[2]:.2f} ({why[2]})"),
            })
    return (pd.DataFrame(rows)
            .sort_values(["start_frame", "score"], ascending=[True, False], kind="stable")
            .reset_index(drop=True))


def _config_from(config: Config | None, prompts: Sequence[str] | str | None,
                 overrides: dict[str, Any]) -> Config:
    """``config`` (or the defaults) with ``prompts`` and ``overrides`` applied, checked."""
    if prompts is not None:
        overrides = {**overrides, "prompts": prompts}
    cfg = configure(Config, config, overrides, "AnyAnomaly")
    if not cfg.prompts or any(not p for p in cfg.prompts):
        raise ValueError("AnyAnomaly needs anomaly descriptions: pass "
                         "prompts=['a person falling', ...] (non-empty text)")
    if len(set(cfg.prompts)) != len(cfg.prompts):
        raise ValueError(f"duplicate descriptions in prompts: {cfg.prompts}")
    if len(cfg.weights) != 3:
        raise ValueError("weights must be three numbers (key, position, temporal), "
                         f"got {cfg.weights}")
    return cfg


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: Mapping[str, Any] | None = None, cache: Cache | str | None = None,
        prompts: Sequence[str] | str | None = None, **overrides: Any) -> Detection:
    """Score every frame of ``video`` for the anomalies described in ``prompts``.

    Args:
        video: the video file.
        config: a :class:`Config` (default: the paper's settings).
        profile: model profile for roles not given in ``backends`` ("tiny", "colab", ...).
        backends: ``{"clip": ..., "vlm": ...}`` models to use instead of loading them.
        cache: a :class:`vadnb.cache.Cache` or folder (default: the suite's cache).
        prompts: one or more anomaly descriptions (or set ``config.prompts``).
        overrides: other Config fields, e.g. ``sigma=5``.

    Returns:
        A :class:`Detection`; ``segments`` has one row per segment and description with the
        three view scores, their fused ``score``, the reasons and an ``explanation``;
        ``extras`` holds per-description frame scores, the window scores and the parse log.
    """
    cfg = _config_from(config, prompts, overrides)

    from .video import probe, read_frames

    path = Path(video)
    info = probe(path)
    n = info.num_frames
    clip, vlm = _load_backends(cfg, profile, backends)
    cache = get_cache(cache)
    digest = file_digest(path)
    calls_before = call_stats()

    bounds = segment_bounds(n, cfg.segment_length)
    P = len(cfg.prompts)
    boxes = window_boxes(cfg.position_size, cfg.window_sizes, cfg.window_stride)

    # 1. key frames: CLIP similarity of every frame to each description's template ensemble
    frame_emb = _frame_embeddings(path, clip, cache, digest, cfg, n)
    if len(frame_emb) != n:
        raise RuntimeError(f"{path}: {len(frame_emb)} frame embeddings for {n} frames")
    class_names = list(cfg.prompts) + [cfg.normal_class]
    class_emb = cache.memo("anyanomaly.text_embeddings",
                           {"clip": clip.name, "classes": class_names,
                            "templates": list(cfg.templates), "v": _STAGE_VERSION},
                           lambda: text_embeddings(clip, class_names, cfg.templates))
    keys = select_key_frames(frame_emb, class_emb[:P], bounds)
    contexts = np.stack([[context_frames(int(keys[p, s]), int(a), int(b),
                                         cfg.context_frames, cfg.context_spacing)
                          for s, (a, b) in enumerate(bounds)] for p in range(P)])  # [P, S, F]

    # 2. window maps of the key and context frames (the key frame is one of its context frames)
    needed = np.unique(np.concatenate([keys.ravel(), contexts.ravel()]))
    got = read_frames(path, indices=needed)
    frames = {int(i): img for i, img in zip(got.indices, got.images)}
    win_emb = _window_embeddings(frames, clip, cache, digest, cfg, boxes)
    probs = {i: window_probabilities(e, class_emb, cfg.softmax_scale) for i, e in win_emb.items()}
    key_scores = np.stack([[probs[int(keys[p, s])][:, p] for s in range(len(bounds))]
                           for p in range(P)])                                      # [P, S, W]
    best = np.array([[best_window(np.stack([probs[int(f)][:, p] for f in contexts[p, s]]))
                      for s in range(len(bounds))] for p in range(P)])             # [P, S]

    # 3. three VLM questions per segment and description, batched and cached
    views = ("key", "position", "temporal")
    items = [{"prompt": cfg.prompts[p], "p": p, "segment": s, "view": v,
              "frames": [int(f) for f in (contexts[p, s] if v == "temporal" else [keys[p, s]])],
              "window": int(best[p, s]) if v == "temporal" else -1}
             for p in range(P) for s in range(len(bounds)) for v in views]

    def image_for(item: dict[str, Any]) -> np.ndarray:
        p, s = item["p"], item["segment"]
        if item["view"] == "key":
            return frames[item["frames"][0]]
        if item["view"] == "position":
            f = frames[item["frames"][0]]
            return masked_frame(f, heat_map(key_scores[p, s], boxes, f.shape[0], f.shape[1]))
        box = boxes.iloc[item["window"]]
        return grid_image([frames[i] for i in item["frames"]], box, cfg.position_size,
                          cfg.grid_cell)

    def ask(batch: list[dict[str, Any]]) -> list[str]:
        requests = [([image_for(it)], build_prompt(it["prompt"], it["view"])) for it in batch]
        return list(vlm.batch(requests, max_new_tokens=cfg.max_new_tokens, temperature=0.0))

    vlm_parts = {"video": digest, "vlm": vlm.name, "clip": clip.name,
                 "max_new_tokens": cfg.max_new_tokens, "templates": list(cfg.templates),
                 "normal": cfg.normal_class, "scale": cfg.softmax_scale,
                 "size": cfg.position_size, "windows": list(cfg.window_sizes),
                 "stride": cfg.window_stride, "cell": cfg.grid_cell,
                 "prompt": build_prompt("{d}", "temporal") + build_prompt("{d}", "position"),
                 "all_prompts": list(cfg.prompts), "v": _STAGE_VERSION}
    replies = cache.map("anyanomaly.vlm_replies", vlm_parts, items, ask,
                        batch_size=cfg.vlm_batch_size, desc="VLM questions")

    # 4. parse, interpolate failures, fuse, smooth, normalise, max over descriptions
    log = stages.ParseLog()
    raw = np.array([np.nan if (v := log.record(r, parse_score(r))) is None else v
                    for r in replies], dtype=np.float64).reshape(P, len(bounds), 3)
    filled = np.zeros_like(raw)
    for p in range(P):
        for v in range(3):
            filled[p, :, v], _ = stages.interpolate_missing(raw[p, :, v])
    reasons = np.array([parse_reason(r) for r in replies], dtype=object).reshape(P, len(bounds), 3)
    seg_fused = fuse(filled[..., 0], filled[..., 1], filled[..., 2], cfg.weights)  # [P, S]
    per_prompt = {cfg.prompts[p]: fused_frame_scores(seg_fused[p], n, cfg.segment_length,
                                                     cfg.sigma, normalise=False)
                  for p in range(P)}
    top = np.max(np.stack(list(per_prompt.values())), axis=0)
    frame_scores = (np.zeros_like(top) if np.ptp(top) < 1e-12 else minmax(top)) \
        if cfg.normalise else top

    segments = _segments_table(cfg, bounds, keys, contexts, best, raw, filled, seg_fused,
                               reasons, fps=info.fps)
    extras = {
        "prompts": list(cfg.prompts),
        "parse_failures": log.failed,
        "parse_total": log.total,
        "parse_summary": log.summary(),
        "parse_examples": list(log.examples),
        "prompt_frame_scores": per_prompt,
        "window_scores": {cfg.prompts[p]: key_scores[p].astype(np.float32) for p in range(P)},
        "windows": boxes,
        "config": {f.name: getattr(cfg, f.name) for f in fields(cfg)},
    }
    return Detection(video=str(path), method="anyanomaly", profile=profile_of(clip, vlm),
                     frame_scores=frame_scores, fps=float(info.fps), segments=segments,
                     model_calls=calls_since(calls_before), extras=extras)


def prompt_scores(detection: Detection, prompt: str) -> np.ndarray:
    """One description's frame scores from a multi-description detection, normalised the
    way the detection's own ``frame_scores`` are (per-class evaluation, notebook 60)."""
    per = detection.extras["prompt_frame_scores"]
    if prompt not in per:
        raise KeyError(f"{prompt!r} was not among this detection's prompts {list(per)}")
    s = np.asarray(per[prompt], dtype=np.float64)
    if not detection.extras.get("config", {}).get("normalise", True):
        return s
    return np.zeros_like(s) if np.ptp(s) < 1e-12 else minmax(s)


def segment_views(video: str | os.PathLike, detection: Detection, row: int | pd.Series,
                  ) -> dict[str, np.ndarray]:
    """The three images the VLM saw for one row of ``detection.segments``, rebuilt for
    display: ``key`` (frame), ``heat`` (heat map in [0, 1]), ``masked`` and ``grid``."""
    from .video import read_frames

    seg = detection.segments
    r = seg.iloc[row] if isinstance(row, (int, np.integer)) else row
    boxes = detection.extras["windows"]
    cfg = detection.extras.get("config", {})
    size = int(cfg.get("position_size", 240))
    ctx = [int(f) for f in str(r["context_frames"]).split()]
    got = read_frames(video, indices=[int(r["key_frame"])] + ctx)
    key = got.images[0]
    # the window scores are stored per segment in segment order; find this segment's index
    starts = np.sort(seg["start_frame"].unique())
    s = int(np.searchsorted(starts, int(r["start_frame"])))
    scores = detection.extras["window_scores"][r["prompt"]][s]
    heat = heat_map(scores, boxes, key.shape[0], key.shape[1])
    return {"key": key, "heat": heat, "masked": masked_frame(key, heat),
            "grid": grid_image(list(got.images[1:]), boxes.iloc[int(r["window"])], size,
                               int(cfg.get("grid_cell", 224)))}


# --------------------------------------------------------------------------- tuning


@dataclass
class FusionTuning:
    """Result of :func:`tune_fusion`: the best weights and sigma and every candidate's AUC."""

    weights: tuple[float, float, float]
    sigma: float
    auc: float
    table: pd.DataFrame


def _weight_grid(step: float = 0.1) -> list[tuple[float, float, float]]:
    k = int(round(1 / step))
    return [(a / k, b / k, (k - a - b) / k) for a in range(k + 1) for b in range(k + 1 - a)]


def tune_fusion(detections: Mapping[str, Detection] | Sequence[Detection],
                labels: Mapping[str, np.ndarray] | Sequence[np.ndarray], *, split: str,
                benchmark: Any = None, weights: Sequence[Sequence[float]] | None = None,
                sigmas: Sequence[float] = (1, 5, 10, 15, 25, 50)) -> FusionTuning:
    """Choose fusion weights and sigma by frame AUC on a **validation** split.

    ``detections`` and ``labels`` are the validation videos (dicts name -> ..., or lists in
    the same order); ``split`` names the split they come from and must not be the test
    split. With ``benchmark`` (a :class:`vadnb.data.Benchmark`), every video's split is
    looked up and any test video is refused too. The original code tunes on the test
    labels, which reports the best of many tries as if it were one honest try; notebook 60
    explains why that inflates the numbers. Grid: ``weights`` (default every (a, b, g) on a
    0.1 grid summing to 1) times ``sigmas``.
    """
    from .metrics import frame_auc

    if "test" in str(split).lower():
        raise ValueError(f"refusing to tune on the {split!r} split: tune weights and sigma on "
                         "a validation split and evaluate the chosen setting once on test")
    if isinstance(detections, Mapping):
        names = list(detections)
        dets = [detections[k] for k in names]
        ys = [np.asarray(labels[k]) for k in names]  # type: ignore[index]
    else:
        dets = list(detections)
        ys = [np.asarray(y) for y in labels]  # type: ignore[union-attr]
        names = [Path(d.video).stem for d in dets]
    if len(dets) != len(ys) or not dets:
        raise ValueError(f"{len(dets)} detections for {len(ys)} label arrays")
    marked = [d for d in dets if str(d.extras.get("split", "")).lower() == "test"]
    if marked:
        raise ValueError(f"refusing to tune on test videos: {[d.video for d in marked][:3]}")
    if benchmark is not None:
        vids = benchmark.videos
        by_name = dict(zip(vids["name"].astype(str), vids["split"].astype(str)))
        by_path = {Path(p).name: s for p, s in zip(vids["path"].astype(str), vids["split"])}
        for name, d in zip(names, dets):
            sp = by_name.get(str(name)) or by_path.get(Path(d.video).name)
            if sp is not None and "test" in str(sp).lower():
                raise ValueError(f"refusing to tune on {name!r}: the benchmark puts it in the "
                                 f"{sp!r} split; use validation videos only")
    for d in dets:
        if d.method != "anyanomaly":
            raise ValueError(f"{d.video}: tune_fusion needs AnyAnomaly detections, got {d.method!r}")
    rows = []
    cands = [tuple(float(x) for x in w) for w in (weights or _weight_grid())]
    for w, sigma in itertools.product(cands, sigmas):
        scores = [_rescore(d, w, float(sigma)) for d in dets]
        rows.append({"a": w[0], "b": w[1], "g": w[2], "sigma": float(sigma),
                     "auc": frame_auc(ys, scores)})
    table = pd.DataFrame(rows).sort_values("auc", ascending=False, kind="stable")
    top = table.iloc[0]
    return FusionTuning((top.a, top.b, top.g), float(top.sigma), float(top.auc),
                        table.reset_index(drop=True))


def _rescore(det: Detection, weights: Sequence[float], sigma: float) -> np.ndarray:
    """A detection's frame scores recomputed from its segment table with other settings."""
    cfg = det.extras.get("config", {})
    length = int(cfg.get("segment_length", 24))
    normalise = bool(cfg.get("normalise", True))
    seg = det.segments
    per = []
    for _, g in seg.groupby("prompt", sort=False):
        g = g.sort_values("start_frame")
        fused = fuse(g["score_key"], g["score_position"], g["score_temporal"], weights)
        per.append(fused_frame_scores(fused, det.num_frames, length, sigma, normalise=False))
    top = np.max(np.stack(per), axis=0)
    if not normalise:
        return top
    return np.zeros_like(top) if np.ptp(top) < 1e-12 else minmax(top)
