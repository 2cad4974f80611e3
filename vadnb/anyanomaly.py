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

Each view gets one VLM call with the same question (a score in [0, 1] and a one-sentence
reason); the grid's question adds one line saying that the grid reads in time order. Per
description, the three scores are fused (0.6 key + 0.3 position + 0.1 temporal), repeated
over the segment's frames and smoothed with a Gaussian (sigma 15 frames); a video's score
is the maximum over the descriptions. Scores are not rescaled per video: the official code
min-max normalises once over all test videos together, which leaves the AUC unchanged
(:func:`official_frame_scores` reproduces that computation exactly).

Frames are streamed: the video is decoded once for CLIP on every frame and once more, a
few segments at a time, for the key and context frames (at most ``view_max_side`` px), so
memory stays flat however long the video is. A fully cached re-run loads no model and
decodes nothing. Every departure from the official code is listed in :data:`DIFFERENCES`.

>>> import vadnb
>>> det = vadnb.detect("video.mp4", method="anyanomaly", prompts=["a person falling"])  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import (AfterValidator, BeforeValidator, Field, StringConstraints,
                      model_validator)

from . import stages
from .cache import Cache, file_digest, get_cache
from .detect import Detection
from .models.base import call_stats, calls_since, is_truncated, profile_of
from .stages import SEQUENCE, Difference, ModelId, config_dataclass, configure

__all__ = [
    "Config",
    "DATASET_WINDOWS",
    "DIFFERENCES",
    "TEMPLATES",
    "run",
    "segment_bounds",
    "context_frames",
    "window_boxes",
    "cut_windows",
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
    "smooth",
    "fused_frame_scores",
    "minmax",
    "official_fusion",
    "official_frame_scores",
    "segment_views",
    "prompt_scores",
    "oracle_backends",
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

#: Window sides (px at 240 x 240) per benchmark, as the official configuration sets them:
#: ShanghaiTech's large scale is 120 px (a 2x2 grid), Avenue's the whole frame (1x1).
DATASET_WINDOWS: dict[str, tuple[int, int, int]] = {
    "shanghaitech": (48, 80, 120),
    "avenue": (48, 80, 240),
}

_STAGE_VERSION = 2  # bump when a stage's computation changes, so stale cache entries go unused


def _prompt_list(value: Any) -> Any:
    """One description given as a string is a list of one; a tuple is a list."""
    return [value] if isinstance(value, str) else list(value) if isinstance(value, tuple) \
        else value


def _distinct(prompts: list[str]) -> list[str]:
    if len(set(prompts)) != len(prompts):
        raise ValueError("must not repeat a description")
    return prompts


def _one_slot(template: str) -> str:
    try:
        ok = template.count("{}") == 1 and template.format("x") != template
    except (IndexError, KeyError, ValueError):
        ok = False
    if not ok:
        raise ValueError("must hold exactly one {} (where the class name goes) and no "
                         "other braces")
    return template


def _some_weight(weights: tuple[float, float, float]) -> tuple[float, float, float]:
    if not any(weights):
        raise ValueError("must not all be 0 (the fused score would be 0 everywhere)")
    return weights


def _grid_of_four(frames: int) -> int:
    if frames != 4:
        raise ValueError("must be 4 (the temporal context is a 2x2 grid)")
    return frames


# A description or class name is a phrase: 1000 characters is far more than one needs, and
# CLIP reads only its first 77 tokens anyway; without a cap a pasted text of 200,000
# characters makes CLIP's tokenizer allocate gigabytes.
_TEXT = Field(min_length=1, max_length=1000)
Prompt = Annotated[str, StringConstraints(strip_whitespace=True), _TEXT]
ClassName = Annotated[str, _TEXT]
Template = Annotated[str, _TEXT, AfterValidator(_one_slot)]
Weight = Annotated[float, Field(ge=0)]


# Limits: generous for real use, there to turn a typo into an error instead of an
# out-of-memory crash: pixels at 4096 (8192 for the read size), frames at 10,000, VLM
# batches at 512 requests, CLIP batches at 4096 images, 256 descriptions per run.
@config_dataclass
class Config:
    """AnyAnomaly's settings, with the defaults of the paper and its public code.

    Paper (Ahn et al., 2025, Qwen2.5-VL-3B, training-free): C-ShT AUC 85.72 (baseline without
    context 78.01), C-Ave 90.27; on the usual benchmarks Avenue 87.3, ShanghaiTech 79.7,
    UBnormal 74.5. Those numbers used fusion weights and sigma tuned on the test labels.
    Use :meth:`for_dataset` for a benchmark's own window sizes.
    """

    prompts: Annotated[list[Prompt], BeforeValidator(_prompt_list), Field(max_length=256),
                       AfterValidator(_distinct)] = field(default_factory=list)
    """The anomaly descriptions to look for ("a person falling"); the score is their max."""
    segment_length: Annotated[int, Field(ge=1, le=10_000)] = 24
    """Frames per segment; segments do not overlap and each gets one set of VLM calls."""
    clip_model: ModelId | None = None
    """CLIP for key frames and window maps; None = the profile's ``clip-b32`` (ViT-B/32, as
    the paper); or anything ``vadnb.models.load`` accepts as ``model=``."""
    vlm_model: ModelId | None = None
    """The VLM; None = the profile's ``vlm-3b`` (Qwen2.5-VL-3B-Instruct, as the newer code)."""
    context_frames: Annotated[int, AfterValidator(_grid_of_four)] = 4
    """Frames in the temporal context (the 2x2 grid)."""
    context_spacing: Annotated[int | None, Field(ge=1, le=10_000)] = None
    """Frames between context frames; None = ``segment_length // context_frames`` (the
    official rule: 6 for 24-frame segments, so the 4 frames share the key frame's offset in
    each quarter of the segment, span it and include the key frame)."""
    position_size: Annotated[int, Field(ge=16, le=4096)] = 240
    """The key frame is resized to this square size (px) before cutting windows."""
    window_sizes: Annotated[tuple[Annotated[int, Field(ge=1, le=4096)], ...], SEQUENCE,
                            Field(min_length=1, max_length=16)] = DATASET_WINDOWS["avenue"]
    """Window side lengths (px at ``position_size``): 48 -> 5x5, 80 -> 3x3, 240 -> 1x1
    (Avenue's and the official default); ShanghaiTech uses 120 -> 2x2 as the large scale
    (:data:`DATASET_WINDOWS`, :meth:`for_dataset`)."""
    window_stride: Annotated[int | None, Field(ge=1, le=4096)] = None
    """Step between windows (px); None = the window size (non-overlapping tiles)."""
    templates: Annotated[tuple[Template, ...], SEQUENCE,
                         Field(min_length=1, max_length=100)] = TEMPLATES
    """Prompt templates, each with one ``{}`` for the class name, averaged in CLIP space."""
    normal_class: ClassName | None = "a normal scene where nothing unusual happens"
    """An extra class the position softmax compares each description with (None: none;
    the official code has none and compares with the benchmark's other anomaly types)."""
    other_classes: Annotated[tuple[ClassName, ...], SEQUENCE, Field(max_length=1000)] = ()
    """More competing class names for the position softmax (the paper's variant: the
    benchmark's anomaly types, ``vadnb.data.CVAD_TYPES``)."""
    softmax_scale: Annotated[float, Field(gt=0)] = 100.0
    """Multiplies the cosine similarities before the position softmax (CLIP's logit scale;
    the official code uses 1)."""
    weights: Annotated[tuple[Weight, Weight, Weight], SEQUENCE,
                       AfterValidator(_some_weight)] = (0.6, 0.3, 0.1)
    """Fusion weights for the key-frame, position and temporal scores (untuned defaults)."""
    sigma: Annotated[float, Field(ge=0, le=10_000)] = 15.0
    """Gaussian smoothing, in frames, applied after repeating each segment score over its
    frames (so the axis is frames at the video's own rate); the kernel is cut at 4 sigma,
    as ``scipy.ndimage.gaussian_filter1d`` does."""
    normalise: bool = False
    """Min-max normalise each video's frame scores to [0, 1]. Off: the fused scores are
    already in [0, 1], and per-video rescaling stretches a normal video's small wobble to
    the full range (costing AUC). The official code normalises once over all test videos
    together (no effect on AUC); :func:`official_frame_scores` does that."""
    max_new_tokens: Annotated[int, Field(ge=1, le=32_768)] = 50
    """VLM reply length; decoding is greedy (deterministic)."""
    grid_cell: Annotated[int, Field(ge=16, le=4096)] = 224
    """Side (px) of each cell of the 2x2 temporal grid (the official grid: 112)."""
    view_max_side: Annotated[int, Field(ge=16, le=8192)] = 896
    """Key and context frames are read at most this many px on their longer side (aspect
    kept; ShanghaiTech's 856x480 and Avenue's 640x360 are read as they are), so memory
    per segment stays bounded for 1080p or 4K video."""
    vlm_batch_size: Annotated[int, Field(ge=1, le=512)] = 12
    """VLM requests per ``vlm.batch`` call; segments are streamed in batches of about
    this many requests and each batch's replies are cached as soon as it returns."""
    clip_batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    """Images per CLIP call."""

    @model_validator(mode="after")
    def _windows_fit(self) -> Config:
        if self.view_max_side < self.position_size // 4:
            raise ValueError(f"Config.view_max_side={self.view_max_side} is too small to cut "
                             f"windows (at least Config.position_size // 4 = "
                             f"{self.position_size // 4})")
        return self

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> Config:
        """The settings the official code uses on ``dataset`` ("shanghaitech" or "avenue"):
        its window sizes; other fields as given in ``overrides``."""
        key = str(dataset).lower().replace("_", "").replace("-", "")
        key = {"shtech": "shanghaitech", "sht": "shanghaitech", "cshtech": "shanghaitech",
               "cave": "avenue", "cuhkavenue": "avenue"}.get(key, key)
        if key not in DATASET_WINDOWS:
            raise ValueError(f"no AnyAnomaly settings for dataset {dataset!r}; "
                             f"known: {sorted(DATASET_WINDOWS)}")
        return cls(**{"window_sizes": DATASET_WINDOWS[key], **overrides})

    @property
    def spacing(self) -> int:
        """Frames between temporal-context frames (``context_spacing`` or the official rule)."""
        return int(self.context_spacing or max(1, self.segment_length // self.context_frames))


#: Every way vadnb's AnyAnomaly departs from the official code (SkiddieAhn/Paper-AnyAnomaly),
#: why, and what it changes; notebook 60 renders this list.
DIFFERENCES: list[Difference] = [
    Difference(
        "Fusion weights and sigma are used untuned (0.6/0.3/0.1, sigma 15); `tune_fusion` "
        "tunes them on a validation split and refuses test videos.",
        "The official evaluation grid-searches up to 66 weight triples x 29 sigmas on the test "
        "labels and reports the best test AUC: the maximum of many tries, not one honest try.",
        "Numbers here lack the optimism of a search on test; its size is not measured here.",
        "tune_fusion(..., split='val')"),
    Difference(
        "No min-max normalisation per video (`normalise=False`).",
        "The official code smooths and normalises once over the concatenation of all test "
        "videos, a single affine map that leaves AUC unchanged; per-video normalisation "
        "stretches each normal video's wobble to the full [0, 1].",
        "Per-video normalisation cost 0.96-0.99 -> 0.82-0.86 AUC on the real C-ShT label "
        "structure with synthetic scores (issue 12); without it the AUC is the official "
        "one up to the smoothing at video boundaries.",
        "official_frame_scores(detections)"),
    Difference(
        "Each video is smoothed on its own (edges reflected).",
        "The official Gaussian runs over the concatenated test set, so the end of one video "
        "bleeds into the start of the next; a video's scores should not depend on its "
        "neighbours in a file listing.",
        "Only frames within 4 sigma (60 frames) of a video boundary change.",
        "official_frame_scores(detections)"),
    Difference(
        "The last, shorter segment of a video is scored too.",
        "The official loader keeps only whole 24-frame segments and cuts each label array "
        "to the scored length, so up to 23 frames per video are never evaluated.",
        "Evaluation covers every frame; with the official protocol, pass "
        "`trim_labels=True` to `vadnb.metrics.cvad_auc`.",
        "official_frame_scores + cvad_auc(trim_labels=True)"),
    Difference(
        "A reply without a score is counted and filled in from neighbouring segments; the "
        "score is the number after 'Score', else the first number in [0, 1].",
        "The official parser takes the first number anywhere in the reply (a '2' in "
        "'row 2' included) and reads a reply without one as 0, i.e. 'surely normal'.",
        "Identical on well-formed replies; the parse log counts the others.",
        "official_frame_scores (reads unparsed replies as 0)"),
    Difference(
        "With several descriptions, each description's three views are fused first and "
        "the maximum over descriptions is taken afterwards.",
        "The official code takes the maximum per view over the descriptions, which can add "
        "a key-frame answer about one description to a grid answer about another.",
        "Identical with one description (every C-VAD single-type set).",
        "official_frame_scores (max per view)"),
    Difference(
        "The VLM gets the prompt and the image only, with no system message.",
        "The official chat starts with the system line 'You are a vision anomaly detector.'; "
        "vadnb's VLM backends take one prompt per image.",
        "Not measured.",
        None),
    Difference(
        "Greedy decoding.",
        "The official samples at temperature 0.1 with top_p 0.001 (practically greedy) and "
        "repetition penalty 1.05; greedy decoding repeats exactly.",
        "Not measured; expected small.",
        None),
    Difference(
        "CLIP text side: the same 6-template ensemble for the key frame, the windows and the "
        "temporal window choice, averaged after L2 normalisation.",
        "The official uses the bare description for the key frame and the grid window, and "
        "a 21-template ensemble (averaged before normalisation) for the position heat map.",
        "Not measured; the key frame may differ where two frames are close under CLIP.",
        "templates=(\"{}\",)"),
    Difference(
        "Position softmax: over the descriptions plus a 'normal scene' class, at CLIP's "
        "logit scale 100.",
        "The official softmax runs over the benchmark's anomaly-type names at scale 1 (raw "
        "cosines: nearly uniform before the min-max); a single custom description needs a "
        "competitor, and scale 100 gives a contrasted map.",
        "The heat map's contrast; not measured on the benchmarks.",
        "softmax_scale=1, normal_class=None, other_classes=CVAD_TYPES[dataset]"),
    Difference(
        "Windows go through the CLIP backend's own preprocessing.",
        "The official resizes each window to 224 px and feeds pixel values /255 without "
        "CLIP's mean/std normalisation, an input CLIP was not trained on.",
        "Not measured.",
        None),
    Difference(
        "The masked frame keeps the frame's resolution and the grid cells are 224 px "
        "(a 448 px grid); frames are read at most `view_max_side` px (896).",
        "The official masks a 224x224 copy of the key frame and tiles 112-px cells (a "
        "224-px grid), which halves the detail a VLM can see; capping the side bounds "
        "memory for HD video and leaves ShanghaiTech and Avenue untouched.",
        "Not measured.",
        "grid_cell=112"),
]


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
    the whole frame" (frame scores handle the constant case themselves, as zeros). A range
    below 1e-6 counts as constant: float32 rounding in the upsampling must not be
    stretched into a pattern.
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi - lo < 1e-6:
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
    """``window_scores`` ``[F, W]`` (context frames x windows, CLIP similarity of each
    window to the description): the window whose best score over the frames is highest
    (ties: the first window), as the official grid chooses it."""
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
_TEMPORAL = (" The image is a 2x2 grid of four moments of the same place in time order: "
             "read it left to right, top to bottom (top-left first, bottom-right last).")
_FORMAT = " Answer exactly as: Score: <a number between 0 and 1>. Reason: <one short sentence>."


def build_prompt(description: str, view: str) -> str:
    """The VLM prompt for one ``view`` ("key", "position" or "temporal") of a description.

    As in the paper's design, the key frame and the masked frame get the very same question;
    the grid's question adds one line saying how the grid reads in time.
    """
    if view not in ("key", "position", "temporal"):
        raise ValueError(f"unknown view {view!r}; use 'key', 'position' or 'temporal'")
    extra = _TEMPORAL if view == "temporal" else ""
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


def smooth(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a frame-score sequence, edges reflected, the kernel cut at
    ``int(4 * sigma + 0.5)`` frames each side (the support ``gaussian_filter1d`` uses)."""
    frames = np.asarray(frames, dtype=np.float64)
    if not sigma or sigma <= 0:
        return frames.copy()
    return stages.gaussian_smooth(frames, sigma, taps=2 * int(4 * float(sigma) + 0.5) + 1)


def fused_frame_scores(segment_scores: np.ndarray, num_frames: int, segment_length: int = 24,
                       sigma: float = 15.0, normalise: bool = False) -> np.ndarray:
    """Per-frame scores from per-segment scores: repeat each over its frames, smooth with a
    Gaussian of ``sigma`` frames (:func:`smooth`), and, if ``normalise``, min-max rescale
    this video alone (a constant video then becomes all zeros).
    """
    from .metrics import segments_to_frames

    frames = smooth(segments_to_frames(segment_scores, num_frames,
                                       segment_length=segment_length), sigma)
    if normalise:
        frames = np.zeros_like(frames) if np.ptp(frames) < 1e-12 else minmax(frames)
    return frames


def official_fusion(segment_views: Sequence[np.ndarray], segment_length: int = 24,
                    weights: Sequence[float] = (0.6, 0.3, 0.1), sigma: float = 15.0,
                    eps: float = 1e-8) -> list[np.ndarray]:
    """The official evaluation's scores, exactly: per video ``[S, 3]`` view scores (key,
    position, temporal) of its whole segments, each repeated over ``segment_length``
    frames; all videos concatenated; fused; smoothed once over the concatenation;
    min-max normalised over it (``eps`` added to the range, as the official does); then cut
    back into one array per video (``S * segment_length`` frames each).
    """
    views = [np.asarray(v, dtype=np.float64).reshape(-1, 3) for v in segment_views]
    if not views:
        raise ValueError("no videos to fuse")
    frames = np.concatenate([np.repeat(v, segment_length, axis=0) for v in views])
    fused = smooth(fuse(frames[:, 0], frames[:, 1], frames[:, 2], weights), sigma)
    fused = (fused - fused.min()) / (fused.max() - fused.min() + eps)
    cuts = np.cumsum([len(v) * segment_length for v in views])[:-1]
    return np.split(fused, cuts)


def official_frame_scores(detections: Mapping[str, Detection] | Sequence[Detection],
                          weights: Sequence[float] | None = None, sigma: float | None = None,
                          ) -> dict[str, np.ndarray]:
    """The paper's variant of a test set's frame scores, from vadnb detections.

    As the official code computes them: per segment and view the maximum over the
    descriptions (unparsed replies read as 0), whole segments only (each video's scores
    are ``num_frames // segment_length * segment_length`` long: evaluate with
    ``vadnb.metrics.cvad_auc(..., trim_labels=True)``), then :func:`official_fusion` over
    all videos in the order given. ``weights`` / ``sigma`` default to the detections' own.
    Returns ``{name: scores}`` (names: the dict's keys, else the video file stems).
    """
    if isinstance(detections, Mapping):
        names, dets = list(detections), list(detections.values())
    else:
        dets = list(detections)
        names = [Path(d.video).stem for d in dets]
    if not dets:
        raise ValueError("no detections")
    cfg0 = dets[0].extras.get("config", {})
    weights = tuple(weights if weights is not None else cfg0.get("weights", (0.6, 0.3, 0.1)))
    sigma = float(sigma if sigma is not None else cfg0.get("sigma", 15.0))
    length = int(cfg0.get("segment_length", 24))
    views = []
    for name, det in zip(names, dets):
        if det.method != "anyanomaly":
            raise ValueError(f"{name}: needs AnyAnomaly detections, got {det.method!r}")
        if int(det.extras.get("config", {}).get("segment_length", 24)) != length:
            raise ValueError(f"{name}: all detections need the same segment_length")
        seg = det.segments
        whole = det.num_frames // length
        per_view = []
        for v in ("key", "position", "temporal"):
            ok = seg.get(f"parsed_{v}", pd.Series(True, index=seg.index)).astype(bool)
            val = seg[f"score_{v}"].where(ok, 0.0)
            table = val.groupby(seg["start_frame"]).max().sort_index()
            per_view.append(table.to_numpy()[:whole])
        views.append(np.stack(per_view, axis=1))
    return dict(zip(names, official_fusion(views, length, weights, sigma)))


# --------------------------------------------------------------------------- the models


class _LazyBackend:
    """A model that is loaded on first use: its ``name`` and ``profile`` (what cache keys
    and the Detection need) are known without loading it, so a cached run loads nothing."""

    def __init__(self, variant: str, profile: str | None, model: str | None, name: str,
                 profile_name: str, meaningless: bool):
        self.variant, self._profile_arg, self._model = variant, profile, model
        self.name, self.profile, self.meaningless = name, profile_name, meaningless
        self._backend: Any = None

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    def _get(self) -> Any:
        if self._backend is None:
            from . import models

            backend = models.load(self.variant, profile=self._profile_arg, model=self._model)
            if backend.name != self.name:
                raise RuntimeError(f"{self.variant}: expected model {self.name!r}, loaded "
                                   f"{backend.name!r}; cache keys would not match")
            self._backend = backend
        return self._backend

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._get(), attr)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded yet"
        return f"{self.name} ({self.variant}, {self.profile}, {state})"


def _lazy(variant: str, profile: str | None, model: str | None) -> Any:
    """A :class:`_LazyBackend` when the model's name can be told without loading it,
    else the loaded model (served models: their name comes from the server spec)."""
    from . import models
    from .models.profiles import model_spec, resolve_profile

    if model is not None and str(model).startswith("openai:"):
        return models.load(variant, profile=profile, model=model)
    if model is None:
        profile_name = resolve_profile(profile, verbose=False)
        spec = model_spec(variant, profile_name)
        if spec.trust_remote_code:
            return models.load(variant, profile=profile)  # raises the clear opt-in error
        source = spec.model
    else:
        source, profile_name = str(model), "custom"
    if source.startswith("tiny:"):
        from .models.tiny import TINY_VERSION

        return _LazyBackend(variant, profile, model, f"{source}@v{TINY_VERSION}", "tiny", True)
    return _LazyBackend(variant, profile, model, source, profile_name, False)


def _load_backends(cfg: Config, profile: str | None,
                   backends: Mapping[str, Any] | None) -> tuple[Any, Any]:
    given = dict(backends or {})
    # AnyAnomaly's own variants: CLIP ViT-B/32 and Qwen2.5-VL-3B in the real profiles
    variant = {"clip": "clip-b32", "vlm": "vlm-3b"}
    for role in ("clip", "vlm"):
        if role not in given:
            given[role] = _lazy(variant[role], profile, getattr(cfg, f"{role}_model"))
    return given["clip"], given["vlm"]


# --------------------------------------------------------------------------- the pipeline


def _view_size(width: int, height: int, max_side: int) -> tuple[int, int] | None:
    """``(width, height)`` to read key/context frames at (longer side capped), or None."""
    if max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _frame_embeddings(video: Path, clip: Any, cache: Cache, digest: str, cfg: Config,
                      num_frames: int, progress: bool) -> np.ndarray:
    """CLIP image embedding of every frame (one streamed pass, cached)."""
    from .progress import bar as progress_bar
    from .video import iter_frames

    def compute() -> np.ndarray:
        parts = []
        bar = progress_bar(total=num_frames, desc="CLIP frames",
                           disable=not progress or num_frames <= cfg.clip_batch_size)
        for chunk in iter_frames(video, chunk=cfg.clip_batch_size, cache=cache):
            parts.append(np.asarray(clip.encode_image(list(chunk.images)), np.float32))
            bar.update(len(chunk))
        bar.close()
        return np.concatenate(parts)

    return cache.memo("anyanomaly.frame_embeddings",
                      {"video": digest, "clip": clip.name, "v": _STAGE_VERSION}, compute)


def _frames_by_batch(stream: Iterator[Any], wanted: list[np.ndarray]
                     ) -> Iterator[dict[int, np.ndarray]]:
    """Regroup a stream of frame chunks (ascending indices) into one dict per batch of
    ``wanted`` (ascending, disjoint), yielding each batch as soon as it is complete."""
    pending: dict[int, np.ndarray] = {}
    chunks = iter(stream)
    for need in wanted:
        last = int(need[-1])
        while last not in pending:
            chunk = next(chunks)
            pending.update((int(i), img) for i, img in zip(chunk.indices, chunk.images))
        yield {int(i): pending.pop(int(i)) for i in need}


def _segment_batches(num_segments: int, prompts: int, requests: int) -> list[np.ndarray]:
    per = max(1, requests // (3 * prompts))
    return [np.arange(a, min(a + per, num_segments)) for a in range(0, num_segments, per)]


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: Mapping[str, Any] | None = None, cache: Cache | str | None = None,
        prompts: Sequence[str] | str | None = None, progress: bool = True,
        **overrides: Any) -> Detection:
    """Score every frame of ``video`` for the anomalies described in ``prompts``.

    Args:
        video: the video file.
        config: a :class:`Config` (default: the paper's settings).
        profile: model profile for roles not given in ``backends`` ("tiny", "colab", ...).
        backends: ``{"clip": ..., "vlm": ...}`` models to use instead of loading them;
            missing ones are loaded only if a stage misses the cache.
        cache: a :class:`vadnb.cache.Cache` or folder (default: the suite's cache).
        prompts: one or more anomaly descriptions (or set ``config.prompts``).
        progress: show one progress bar per long stage (off inside a loop over videos).
        overrides: other Config fields, e.g. ``sigma=5``.

    Returns:
        A :class:`Detection`; ``segments`` has one row per segment and description with the
        three view scores, their fused ``score``, the reasons and an ``explanation``;
        ``extras`` holds per-description frame scores, the window scores and the parse log.
    """
    cfg = _config_from(config, prompts, overrides)

    from .video import probe

    path = Path(video)
    cache = get_cache(cache)
    info = probe(path, cache=cache)
    n = info.num_frames
    clip, vlm = _load_backends(cfg, profile, backends)
    digest = file_digest(path)
    calls_before = call_stats()

    bounds = segment_bounds(n, cfg.segment_length)
    P, S = len(cfg.prompts), len(bounds)
    boxes = window_boxes(cfg.position_size, cfg.window_sizes, cfg.window_stride)

    # 1. key frames: CLIP similarity of every frame to each description's template ensemble
    frame_emb = _frame_embeddings(path, clip, cache, digest, cfg, n, progress)
    if len(frame_emb) != n:
        raise RuntimeError(f"{path}: {len(frame_emb)} frame embeddings for {n} frames")
    class_names = list(cfg.prompts) + [c for c in cfg.other_classes if c not in cfg.prompts]
    if cfg.normal_class:
        class_names.append(cfg.normal_class)
    class_emb = cache.memo("anyanomaly.text_embeddings",
                           {"clip": clip.name, "classes": class_names,
                            "templates": list(cfg.templates), "v": _STAGE_VERSION},
                           lambda: text_embeddings(clip, class_names, cfg.templates))
    keys = select_key_frames(frame_emb, class_emb[:P], bounds)
    contexts = np.stack([[context_frames(int(keys[p, s]), int(a), int(b),
                                         cfg.context_frames, cfg.spacing)
                          for s, (a, b) in enumerate(bounds)] for p in range(P)])  # [P, S, F]

    # 2-3. window maps and the three VLM questions, a few segments at a time (streamed)
    key_scores, best, texts, truncated = _segment_stage(
        path, cfg, info, digest, cache, clip, vlm, bounds, keys, contexts, boxes, class_emb,
        progress)

    # 4. parse, interpolate failures, fuse, smooth, max over descriptions
    log = stages.ParseLog()
    raw = np.full((P, S, 3), np.nan)
    for idx in np.ndindex(P, S, 3):
        value = log.record(texts[idx], parse_score(texts[idx]), truncated=bool(truncated[idx]))
        if value is not None:
            raw[idx] = value
    filled = np.zeros_like(raw)
    for p in range(P):
        for v in range(3):
            filled[p, :, v], _ = stages.interpolate_missing(raw[p, :, v])
    reasons = np.vectorize(parse_reason, otypes=[object])(texts)
    seg_fused = fuse(filled[..., 0], filled[..., 1], filled[..., 2], cfg.weights)  # [P, S]
    per_prompt = {cfg.prompts[p]: fused_frame_scores(seg_fused[p], n, cfg.segment_length,
                                                     cfg.sigma, normalise=False)
                  for p in range(P)}
    top = np.max(np.stack(list(per_prompt.values())), axis=0)
    frame_scores = _normalised(top) if cfg.normalise else top

    segments = _segments_table(cfg, bounds, keys, contexts, best, raw, filled, seg_fused,
                               reasons, fps=info.fps)
    extras = {
        "prompts": list(cfg.prompts),
        "parse_failures": log.failed,
        "parse_total": log.total,
        "parse_truncated": log.truncated,
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


def _segment_stage(path: Path, cfg: Config, info: Any, digest: str, cache: Cache, clip: Any,
                   vlm: Any, bounds: np.ndarray, keys: np.ndarray, contexts: np.ndarray,
                   boxes: pd.DataFrame, class_emb: np.ndarray, progress: bool,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Window scores of the key frames ``[P, S, W]``, the grid's window ``[P, S]``, and the
    VLM's replies and truncation flags ``[P, S, 3]``.

    Segments go in batches of about ``vlm_batch_size`` requests. Each batch's window
    embeddings and replies are cached; the batches that miss are computed in one streamed
    pass over their frames (read at ``view_max_side``), each batch's frames dropped once it
    is done, so memory holds one batch whatever the video's length.
    """
    from .progress import bar as progress_bar
    from .video import iter_frames

    P, S = keys.shape
    views = ("key", "position", "temporal")
    size = _view_size(info.width, info.height, cfg.view_max_side)
    batches = _segment_batches(S, P, cfg.vlm_batch_size)
    needed = [np.unique(np.concatenate([keys[:, b].ravel(), contexts[:, b].ravel()]))
              for b in batches]
    win_common = {"video": digest, "clip": clip.name, "size": cfg.position_size,
                  "windows": list(cfg.window_sizes), "stride": cfg.window_stride,
                  "read_size": size, "v": _STAGE_VERSION}
    vlm_common = {**win_common, "vlm": vlm.name, "max_new_tokens": cfg.max_new_tokens,
                  "classes_emb": class_emb, "prompts": list(cfg.prompts),
                  "questions": [build_prompt("{d}", v) for v in views],
                  "cell": cfg.grid_cell}

    def win_parts(i: int) -> dict[str, Any]:
        return {**win_common, "frames": needed[i].tolist()}

    def vlm_parts(i: int) -> dict[str, Any]:
        b = batches[i]
        return {**vlm_common, "frames": needed[i].tolist(), "keys": keys[:, b].tolist(),
                "contexts": contexts[:, b].tolist()}

    missing = object()
    win = [cache.get("anyanomaly.window_embeddings", win_parts(i), missing)
           for i in range(len(batches))]
    replies = [cache.get("anyanomaly.vlm_replies", vlm_parts(i), missing)
               for i in range(len(batches))]
    todo = [i for i in range(len(batches)) if win[i] is missing or replies[i] is missing]
    cache.hits += len(batches) - len(todo)
    cache.misses += len(todo)

    key_scores = np.zeros((P, S, len(boxes)))
    best = np.zeros((P, S), dtype=np.int64)

    def scores_of(i: int) -> None:
        """Fill key_scores and best for batch i from its window embeddings."""
        emb = dict(zip(win[i]["frames"], np.asarray(win[i]["emb"], np.float64)))
        for s in batches[i]:
            for p in range(P):
                key_emb = emb[int(keys[p, s])]
                key_scores[p, s] = window_probabilities(key_emb, class_emb,
                                                        cfg.softmax_scale)[:, p]
                sims = np.stack([emb[int(f)] @ class_emb[p] for f in contexts[p, s]])
                best[p, s] = best_window(sims)

    for i in range(len(batches)):
        if win[i] is not missing:
            scores_of(i)

    if todo:
        stream = iter_frames(path, indices=np.concatenate([needed[i] for i in todo]),
                             size=size, chunk=max(len(needed[i]) for i in todo),
                             cache=cache)  # a chunk holds one batch's frames at most
        bar = progress_bar(total=len(todo), desc="AnyAnomaly: segments (CLIP windows + VLM)",
                           disable=not progress or len(todo) <= 1)
        for i, frames in zip(todo, _frames_by_batch(stream, [needed[i] for i in todo])):
            if win[i] is missing:
                order = sorted(frames)
                crops = [c for f in order for c in cut_windows(frames[f], boxes,
                                                               cfg.position_size)]
                step = cfg.clip_batch_size
                emb = np.concatenate([np.asarray(clip.encode_image(crops[k:k + step]),
                                                 np.float32)
                                      for k in range(0, len(crops), step)])
                win[i] = {"frames": order, "emb": emb.reshape(len(order), len(boxes), -1)}
                cache.put("anyanomaly.window_embeddings", win_parts(i), win[i])
                scores_of(i)
            if replies[i] is missing:
                requests = []
                for p in range(P):
                    for s in batches[i]:
                        k = frames[int(keys[p, s])]
                        heat = heat_map(key_scores[p, s], boxes, k.shape[0], k.shape[1])
                        grid = grid_image([frames[int(f)] for f in contexts[p, s]],
                                          boxes.iloc[int(best[p, s])], cfg.position_size,
                                          cfg.grid_cell)
                        for v, img in zip(views, (k, masked_frame(k, heat), grid)):
                            requests.append(([img], build_prompt(cfg.prompts[p], v)))
                out = list(vlm.batch(requests, max_new_tokens=cfg.max_new_tokens,
                                     temperature=0.0))
                if len(out) != len(requests):
                    raise RuntimeError(f"the VLM returned {len(out)} replies for "
                                       f"{len(requests)} requests")
                replies[i] = {"texts": list(out),  # Reply objects: failed ones are not cached
                              "truncated": [is_truncated(r) for r in out]}
                cache.put("anyanomaly.vlm_replies", vlm_parts(i), replies[i])
            bar.update(1)
        bar.close()

    texts = np.empty((P, S, 3), dtype=object)
    truncated = np.zeros((P, S, 3), dtype=bool)
    for i, b in enumerate(batches):
        t = np.array(replies[i]["texts"], dtype=object).reshape(P, len(b), 3)
        texts[:, b] = t
        truncated[:, b] = np.asarray(replies[i]["truncated"], bool).reshape(P, len(b), 3)
    return key_scores, best, texts, truncated


def _normalised(x: np.ndarray) -> np.ndarray:
    return np.zeros_like(x) if np.ptp(x) < 1e-12 else minmax(x)


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
    if not cfg.prompts:
        raise ValueError("AnyAnomaly needs anomaly descriptions: pass "
                         "prompts=['a person falling', ...] (non-empty text)")
    return cfg


def prompt_scores(detection: Detection, prompt: str) -> np.ndarray:
    """One description's frame scores from a multi-description detection, normalised the
    way the detection's own ``frame_scores`` are (per-type evaluation, notebook 60)."""
    per = detection.extras["prompt_frame_scores"]
    if prompt not in per:
        raise KeyError(f"{prompt!r} was not among this detection's prompts {list(per)}")
    s = np.asarray(per[prompt], dtype=np.float64)
    if not detection.extras.get("config", {}).get("normalise", False):
        return s
    return _normalised(s)


def segment_views(video: str | os.PathLike, detection: Detection, row: int | pd.Series,
                  ) -> dict[str, np.ndarray]:
    """The three images the VLM saw for one row of ``detection.segments``, rebuilt for
    display: ``key`` (frame), ``heat`` (heat map in [0, 1]), ``masked`` and ``grid``."""
    from .video import probe, read_frames

    seg = detection.segments
    r = seg.iloc[row] if isinstance(row, (int, np.integer)) else row
    boxes = detection.extras["windows"]
    cfg = detection.extras.get("config", {})
    size = int(cfg.get("position_size", 240))
    info = probe(video)
    read_size = _view_size(info.width, info.height, int(cfg.get("view_max_side", 896)))
    ctx = [int(f) for f in str(r["context_frames"]).split()]
    got = read_frames(video, indices=[int(r["key_frame"])] + ctx, size=read_size)
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
            raise ValueError(f"{d.video}: tune_fusion needs AnyAnomaly detections, "
                             f"got {d.method!r}")
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
    seg = det.segments
    per = []
    for _, g in seg.groupby("prompt", sort=False):
        g = g.sort_values("start_frame")
        fused = fuse(g["score_key"], g["score_position"], g["score_temporal"], weights)
        per.append(fused_frame_scores(fused, det.num_frames, length, sigma, normalise=False))
    top = np.max(np.stack(per), axis=0)
    return _normalised(top) if cfg.get("normalise", False) else top


# --------------------------------------------------------------------------- perfect perception


def oracle_backends(benchmark: Any, descriptions: Mapping[str, str],
                    config: Config | None = None) -> dict[str, Any]:
    """A CLIP and a VLM that *read the ground truth*: AnyAnomaly with perfect perception.

    A teaching device (notebook 60): every frame of ``benchmark``'s videos is looked up by a
    hash of its pixels. ``descriptions`` maps a class to the description typed for it. The
    CLIP double maps a frame of class c (and its whole-frame window) to c's direction, any
    other image (normal frames, smaller windows) elsewhere, and each description to its
    class's direction; the VLM double answers 1.0 when the image shows the described class
    and 0.0 otherwise (the grid: when any of its four frames does). The oracle knows *which
    frames* show an anomaly, not *where* in the frame: its heat maps are flat (the masked
    frame is the key frame itself) and its grid is cut from the whole-frame window. What is
    left of the ground truth in the final scores is what AnyAnomaly's own steps keep: one
    key frame per segment, the segment-wide score, the fusion and the smoothing. Works only
    on ``benchmark``'s frames, with ``config``'s settings (whose largest window must be the
    whole frame, as on Avenue and by default).
    """
    import hashlib

    import cv2

    from .models.scripted import ScriptedClip, ScriptedVLM
    from .video import probe, read_frames

    cfg = config or Config()
    if max(cfg.window_sizes) != cfg.position_size:
        raise ValueError("the oracle needs a whole-frame window: window_sizes must include "
                         f"{cfg.position_size} (got {cfg.window_sizes})")
    classes = sorted({str(c) for c in benchmark.videos["label"]} - {"Normal"})
    unknown = [c for c in classes if c not in descriptions]
    if unknown:
        raise ValueError(f"no description for classes {unknown}; pass descriptions for all")
    by_text = {str(d): str(c) for c, d in descriptions.items()}
    axis = {c: i for i, c in enumerate(classes)}
    dim = len(classes) + 2  # the classes, "normal", "anything else"

    def key_of(image: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()

    truth_of: dict[str, str] = {}  # frames and their whole-frame windows
    cell_truth: dict[str, str] = {}  # one cell of a grid cut from the whole-frame window
    whole = window_boxes(cfg.position_size, [cfg.position_size]).iloc[0]
    side = cfg.position_size

    def remember(table: dict[str, str], image: np.ndarray, truth: str) -> None:
        k = key_of(image)
        if truth != "Normal" or k not in table:  # identical frames: the anomaly wins
            table[k] = truth

    for name, path, label in zip(benchmark.videos["name"], benchmark.videos["path"],
                                 benchmark.videos["label"]):
        y = benchmark.frame_labels(name)
        info = probe(path)
        size = _view_size(info.width, info.height, cfg.view_max_side)
        for i, image in enumerate(read_frames(path, size=size).images[:len(y)]):
            truth = str(label) if y[i] else "Normal"
            remember(truth_of, image, truth)
            remember(truth_of, cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA),
                     truth)
            cell = grid_image([image] * 4, whole, side, cfg.grid_cell)
            remember(cell_truth, cell[:cfg.grid_cell, :cfg.grid_cell], truth)

    def image_vector(image: np.ndarray) -> np.ndarray:
        v = np.zeros(dim)
        truth = truth_of.get(key_of(image))
        v[axis[truth] if truth in axis else (dim - 2 if truth == "Normal" else dim - 1)] = 1.0
        return v

    def text_vector(text: str) -> np.ndarray:
        v = np.zeros(dim)
        hits = [c for d, c in by_text.items() if d in text]
        v[axis[hits[0]] if hits else dim - 2] = 1.0
        return v

    def seen(image: np.ndarray, cls: str) -> bool:
        c = cfg.grid_cell
        truth = truth_of.get(key_of(image))
        if truth is None and image.shape[:2] == (2 * c, 2 * c):
            # a grid: its cells come from the whole-frame window whenever CLIP found the
            # class in any of the four frames; any other window means it found it in none
            cells = [image[r:r + c, q:q + c] for r in (0, c) for q in (0, c)]
            return cls in [cell_truth.get(key_of(x)) for x in cells]
        if truth is None:
            raise ValueError("the oracle only knows the frames of the benchmark it was built "
                             "from; run it on those videos with the same config")
        return truth == cls

    def reply(images: list[np.ndarray], prompt: str) -> str:
        hits = [c for d, c in by_text.items() if f"show {d}?" in prompt]
        if not hits:
            return "Score: 0.0. Reason: not a description the oracle knows."
        if seen(images[0], hits[0]):
            return f"Score: 1.0. Reason: the ground truth says {hits[0]}."
        return "Score: 0.0. Reason: the ground truth says it is not there."

    return {"clip": ScriptedClip(image_vector, text_vector, name="oracle-clip"),
            "vlm": ScriptedVLM(reply, name="oracle-vlm")}


# --------------------------------------------------------------------------- the declaration
# What detect, compare, scale, plots, lesson and data.protocols know about AnyAnomaly
# (vadnb.registry): declared once, read by all of them.

from .lesson import Reference  # noqa: E402
from .registry import register  # noqa: E402


def _cost(fps: float, keywords: int = 1, **_: Any) -> list[tuple[str, str, float, str]]:
    """Model calls per minute of video with the Config defaults, for ``keywords`` texts."""
    n, c = 60.0 * fps, Config()
    s = n / c.segment_length
    windows = sum((c.position_size // w) ** 2 for w in c.window_sizes)
    return [("vlm", "vlm_1_image", 3 * keywords * s,
             f"3 views x {keywords} keyword(s) x frames/{c.segment_length}"),
            ("clip", "clip", n + c.context_frames * windows * s,
             (f"every frame + {c.context_frames} frames x {windows} windows x "
              f"frames/{c.segment_length}"))]


register(
    "anyanomaly", config=Config, run=run,
    roles={"clip": "clip-b32", "vlm": "vlm-3b"}, cost=_cost,
    pipeline={
            "title": "AnyAnomaly (zero-shot, user's text): context-aware VQA per segment",
            "stages": [
                ("frames", "segments of\n24 frames", "segment frames", "data"),
                ("key frame", "CLIP ViT-B/32 vs\nthe user's text", "best frame +\n4 context frames", "model"),
                ("contexts", "WinCLIP windows,\n2x2 time grid", "key / masked /\ngrid images", "model"),
                ("ask", "VLM (Qwen2.5-VL), 3\ncalls per keyword", "3 scores + reasons\nper segment", "model"),
                ("fuse", "0.6 / 0.3 / 0.1,\nGaussian, min-max", "segment score", "math"),
                ("to frames", "repeat x24,\nmax over keywords", "frame scores", "out"),
            ],
        },
    reference=Reference("anyanomaly", "AnyAnomaly: Zero-Shot Customizable Video Anomaly Detection with LVLM",
        "Sunghyun Ahn, Youngwan Jo, Kijung Lee, Sein Kwon, Inpyo Hong, Sanghyun Park",
        "WACV 2026", "2503.04504", "github.com/SkiddieAhn/Paper-AnyAnomaly"),
    protocols=[
        dict(benchmark="C-ShT", split="test (ShanghaiTech)",
            metric="frame AUC per anomaly type (C-VAD protocol), averaged", ap_variant="—",
            class_metrics="per type", reported=85.72,
            load="load_cvad(ground_truth_dir, dataset='shanghaitech', anomaly_type=...)"),
        dict(benchmark="C-Ave", split="test (Avenue)",
            metric="frame AUC per anomaly type (C-VAD protocol), averaged", ap_variant="—",
            class_metrics="per type", reported=90.27,
            load="load_cvad(ground_truth_dir, dataset='avenue', anomaly_type=...)"),
        dict(benchmark="Avenue", split="test (21)", metric="frame AUC",
            ap_variant="—", class_metrics="—", reported=87.3, load="load_avenue(root)"),
        dict(benchmark="ShanghaiTech", split="test (107)", metric="frame AUC",
            ap_variant="—", class_metrics="—", reported=79.7, load="load_shanghaitech(root)"),
        dict(benchmark="UBnormal", split="test", metric="frame AUC",
            ap_variant="—", class_metrics="—", reported=74.5, load="load_ubnormal(root)")],
)
