"""VERA's inference (Ye, Liu, He; CVPR 2025; notebook 70), top to bottom: a frozen VLM
answers its learned guiding questions (:mod:`.learn`) about a window around every
``stride``-th frame, three numeric steps refine the 0/1 answers; :func:`pipeline` composes
them, and :mod:`.run` builds the runtime that owns models, frames and cache."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from ..metrics import segments_to_frames
from ..runtime import Ask, Runtime, VideoRef
from ..lavad.video_clip import embed_clips, mean_unit
from ..stages import (ModelId, centre_frames, config_dataclass, gaussian_smooth,
                      interpolate_missing, knn_softmax)
from . import prompts
from .prompts import feature_requests, read_label, window

#: Step 3 exactly as ``compute_auc.py`` evaluates UCF-Crime: the defaults (the official
#: kernel, zero padding, one decimal) plus the dataset's position prior:
#: ``vera.run(video, **vera.PAPER_STEP3)``.
PAPER_STEP3: dict[str, Any] = {"smoothing": "paper", "round_decimals": 1,
                               "position_prior": True}
#: vadnb's step 3, a named option: a centred kernel, ends padded by reflection, no rounding
#: (``vera.run(video, **vera.VADNB_STEP3)``; its measured effect is in :data:`DIFFERENCES`).
VADNB_STEP3: dict[str, Any] = {"smoothing": "centred", "round_decimals": None}


# Limits: generous for real use, there to turn a typo into an error instead of an
# out-of-memory crash (frames per call 256, pixels 4096, tokens 32768, batches 512).
@config_dataclass
class Config:
    """VERA's settings, with the public code's defaults.

    The paper (CVPR 2025) uses InternVL2-8B as learner and optimizer and reports frame-level
    ROC-AUC 86.55 on UCF-Crime (with the position prior) and 88.26 on XD-Violence. Its code
    answers with greedy decoding and up to 1024 new tokens, and resizes every frame to
    448 x 448 before the VLM sees it. Where vadnb departs from that code, :data:`DIFFERENCES`
    says so; vadnb's step 3 is :data:`VADNB_STEP3`, the paper's UCF evaluation
    :data:`PAPER_STEP3`.
    """

    vlm_model: ModelId | None = None
    """Model playing both learner and optimizer (None: the profile's VLM)."""
    embedder_model: ModelId | None = None
    """Model embedding each segment's clip for the retrieval ensemble (None: the profile's)."""

    # --- verbalized learning (training) ---
    batch_size: Annotated[int, Field(ge=1, le=512)] = 2
    """Training videos per optimizer step."""
    train_frames: Annotated[int, Field(ge=1, le=256)] = 8
    """Frames per training video, sampled evenly over the whole video."""
    image_size: Annotated[int, Field(ge=16, le=4096)] = 448
    """Side in pixels of every frame given to the VLM: frames are resized to a
    ``image_size`` x ``image_size`` square, 448 as in VERA's code (one 448 px tile per frame
    for InternVL2). This bounds the image tokens per call whatever the video's resolution."""
    max_questions: Annotated[int, Field(ge=1, le=100)] = 5
    """The optimizer's new list is cut to this many questions."""
    steps: Annotated[int | None, Field(ge=0, le=100_000)] = None
    """Optimizer steps; None means ``epochs`` passes over the training videos."""
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 1
    """Passes over the training videos when ``steps`` is None."""
    validate_every: Annotated[int, Field(ge=1, le=100_000)] = 1
    """Score the current questions on the validation split every this many steps (the
    initial and the final question sets are always scored)."""
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    """Seed of the training-video shuffle (one shuffle per epoch)."""
    label_reading: Literal["official", "tolerant"] = "official"
    """How a learner reply becomes 0/1. ``"official"``: as the official code reads it where
    it reads it: at inference the reply's last character (``== '1'``), in training and
    validation ``'0'`` after the last ``'Output'`` (unreadable reads 1). ``"tolerant"``
    (vadnb's option): the first 0/1 after the last "Output", then fallbacks; an unreadable
    reply is wrong in training and filled from its neighbours at inference (counted)."""
    show_replies: bool = False
    """Also show the optimizer each learner reply (vadnb's option; the paper's optimizer
    sees only the predictions and the targets)."""

    # --- inference ---
    stride: Annotated[int, Field(ge=1, le=10_000)] = 16
    """One VLM query per this many frames (a segment)."""
    window_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    """Seconds of video around each segment's centre frame that the VLM sees."""
    window_frames: Annotated[int, Field(ge=1, le=256)] = 8
    """Frames sampled evenly from that window."""
    ensemble_fraction: Annotated[float, Field(ge=0, le=1)] = 0.15
    """Retrieval ensemble: each segment averages its ``floor(fraction * #segments)`` most
    similar segments of the same video (at least 1; the segment itself is its own nearest)."""
    temperature: Annotated[float, Field(gt=0)] = 0.1
    """Softmax temperature over the neighbours' cosine similarities."""
    smooth_taps: Annotated[int, Field(ge=1, le=10_001)] = 15
    """Length of the Gaussian smoothing kernel, in segments."""
    smooth_sigma: Annotated[float, Field(gt=0)] = 10.0
    """Width (sigma) of that kernel, in segments; the kernel is normalised to sum 1."""
    smoothing: Literal["centred", "paper"] = "paper"
    """``"paper"`` (default, the official code): the kernel sampled at
    ``linspace(-ceil(taps/2), floor(taps/2), taps)`` (off-centre), convolved with zero
    padding (scores pulled toward 0 near both ends of every video). ``"centred"`` (vadnb's
    option, :data:`VADNB_STEP3`): the kernel sampled at whole-segment offsets around its
    centre, ends padded by reflection (unbiased at the ends)."""
    round_decimals: Annotated[int | None, Field(ge=0, le=15)] = 1
    """Round every smoothed segment score to this many decimals as numpy rounds (the
    official code: 1; None keeps full precision, vadnb's option)."""
    position_prior: bool = False
    """Multiply frame scores by a bump centred on the video's middle. This is a prior about
    the UCF-Crime test set (its anomalies sit mostly mid-video) that the published UCF
    number uses; it is not part of the method and is off by default."""
    segment_features: Literal["lavad", "window"] = "lavad"
    """What the retrieval ensemble compares. ``"lavad"`` (default, the official README):
    LAVAD's ImageBind clip feature of the segment, the first and last of 10 frames of
    LAVAD's 10 s window, in 3 square crops, averaged. ``"window"`` (vadnb's option): the
    embedder's video encoding of the ``window_frames`` frames the VLM saw (448 px)."""
    vlm_batch_size: Annotated[int, Field(ge=1, le=512)] = 8
    """VLM requests per batched call (and per resumable cache entry)."""
    max_new_tokens: Annotated[int, Field(ge=1, le=32_768)] = 1024
    """Token budget of every VLM reply (1024 as in the paper's code: five answered
    questions and a reasoning section need it). Replies cut at the budget are counted."""


# ----------------------------------------- steps 2 and 3: pure functions on one video's answers

def neighbour_count(num_segments: int, fraction: float = 0.15) -> int:
    """How many neighbours the retrieval ensemble averages: ``floor(fraction * n)``, at
    least 1 (the segment itself)."""
    return max(1, int(math.floor(fraction * num_segments + 1e-9)))


def retrieval_ensemble(embeddings: np.ndarray, scores: np.ndarray, fraction: float = 0.15,
                       temperature: float = 0.1) -> tuple[np.ndarray, int]:
    """VERA step 2: each segment's score becomes the softmax-weighted mean of the scores of
    its ``n = max(1, floor(fraction * #segments))`` most cosine-similar segments (itself
    included), weights ``softmax(similarity / temperature)`` (:func:`vadnb.stages.knn_softmax`,
    as LAVAD's refinement). Returns ``(refined, n)``."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or len(emb) != len(scores):
        raise ValueError(f"{len(emb)} segment embeddings for {len(scores)} scores")
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    n = neighbour_count(len(scores), fraction)
    refined, _, _ = knn_softmax(emb, emb, scores, k=n, temperature=temperature)
    return np.asarray(refined, dtype=np.float64), n


def paper_kernel(taps: int = 15, sigma: float = 10.0) -> np.ndarray:
    """The smoothing kernel of VERA's code: a Gaussian sampled at ``taps`` points spread
    from ``-ceil(taps/2)`` to ``floor(taps/2)`` (for 15 taps: -8 to 7, off-centre, spacing
    15/14), normalised to sum 1."""
    if taps < 1 or sigma <= 0:
        raise ValueError(f"need taps >= 1 and sigma > 0, got {taps}, {sigma}")
    x = np.linspace(-((taps + 1) // 2), taps // 2, taps)
    g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def smooth_segments(scores: np.ndarray, taps: int = 15, sigma: float = 10.0,
                    variant: str = "paper") -> np.ndarray:
    """VERA step 3: a normalised Gaussian (``taps`` long, ``sigma`` wide) over the segments.

    ``variant="centred"``: a symmetric kernel, ends padded by reflection (vadnb's option).
    ``variant="paper"`` (default): the official code's :func:`paper_kernel`, zero-padded "same"
    convolution; like that code, a video with fewer segments than taps keeps the first
    values of the kernel-long result.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if variant == "centred":
        return gaussian_smooth(s, sigma=sigma, taps=taps)
    if variant != "paper":
        raise ValueError(f"smoothing must be 'centred' or 'paper', got {variant!r}")
    if len(s) == 0:
        return s
    return np.convolve(s, paper_kernel(taps, sigma), mode="same")[:len(s)]


def round_scores(scores: np.ndarray, decimals: int | None) -> np.ndarray:
    """Round every value to ``decimals`` (None: unchanged) as numpy does, like the official
    ``round(np.float64, 1)``: half to even after scaling, so 0.35 -> 0.4 (Python's ``round``
    on a float gives 0.3)."""
    s = np.asarray(scores, dtype=np.float64)
    return s if decimals is None else np.round(s, int(decimals))


def position_prior(num_frames: int) -> np.ndarray:
    """``exp(-0.5 ((t - c) / c)^2)`` with ``c = floor(n/2)``, for frame t of n: 1 mid-video,
    0.61 at the ends (VERA's code). A UCF-Crime prior (anomalies mostly mid-video), not
    part of the method: :class:`Config` keeps it off unless ``position_prior=True``."""
    c = max(1, int(num_frames) // 2)
    t = np.arange(num_frames, dtype=np.float64)
    return np.exp(-0.5 * ((t - c) / c) ** 2)


def refine_answers(labels: Sequence[float | None], embeddings: np.ndarray, num_frames: int,
                   cfg: Config) -> dict[str, Any]:
    """Steps 2 and 3 on one video's 0/1 answers (None: unreadable, filled from neighbours).

    Returns ``raw`` (filled answers), ``ensemble`` (step 2), ``smoothed`` (step 3, rounded),
    ``frame_scores`` (each segment's score over its ``stride`` frames, times the position
    prior when asked), ``neighbours`` and ``unparseable``."""
    raw, missing = interpolate_missing([None if v is None else float(v) for v in labels])
    refined, n = retrieval_ensemble(embeddings, raw, cfg.ensemble_fraction, cfg.temperature)
    smoothed = round_scores(smooth_segments(refined, cfg.smooth_taps, cfg.smooth_sigma,
                                            cfg.smoothing), cfg.round_decimals)
    frames = np.asarray(segments_to_frames(smoothed, int(num_frames), segment_length=cfg.stride),
                        dtype=np.float64)
    if cfg.position_prior:
        frames = frames * position_prior(int(num_frames))
    return {"raw": raw, "ensemble": refined, "smoothed": smoothed, "frame_scores": frames,
            "neighbours": n, "unparseable": missing}


# --------------------------------------------------------------------------------- the pipeline

def pipeline(runs: Sequence[tuple[Runtime, VideoRef]], questions: Sequence[str],
             cfg: Config) -> list[dict[str, Any]]:
    """VERA's inference on each ``(runtime, video)`` of ``runs`` (runtimes sharing one set
    of roles, so each model is loaded once, stage by stage). Per video: the segments'
    ``centres``, the VLM's ``replies``, their ``labels`` and :func:`refine_answers`' output."""
    centres = [centre_frames(v.num_frames, cfg.stride) for _, v in runs]
    windows = [[window(v, c, cfg) for c in cs] for (_, v), cs in zip(runs, centres)]
    for (rt, v), cs, ws in zip(runs, centres, windows):  # every frame, decoded in one pass
        rt.plan(ws, [feature_requests(v, c, w, cfg) for c, w in zip(cs, ws)])

    # 1. the VLM answers the guiding questions about every segment's window: 0 or 1
    prompt = prompts.learner_prompt(questions, cfg.window_frames)
    replies = [rt.map("vlm", [Ask(w, prompt, max_new_tokens=cfg.max_new_tokens) for w in ws],
                      batch_size=cfg.vlm_batch_size, desc="VERA answers")
               for (rt, _), ws in zip(runs, windows)]
    labels = [[read_label(r, cfg.label_reading, "inference") for r in rs]
              for rs in replies]
    for rt, _ in runs:
        rt.release("vlm")

    # 2. embed every segment (the retrieval ensemble's similarities), crops averaged
    embeddings = [mean_unit(embed_clips(rt, [feature_requests(v, c, w, cfg) for c, w in zip(cs, ws)],
                                        cfg.vlm_batch_size, "VERA embeddings"))
                  for (rt, v), cs, ws in zip(runs, centres, windows)]
    for rt, _ in runs:
        rt.release("embedder")

    # 3. retrieval ensemble, smoothing, rounding, segments to frames, position prior
    return [{"centres": cs, "replies": rs, "labels": ls,
             **refine_answers(ls, e, v.num_frames, cfg)}
            for (_, v), cs, rs, ls, e in zip(runs, centres, replies, labels, embeddings)]
