"""LAVAD: training-free video anomaly detection with captions and an LLM (notebooks 20-40).

Zanella et al., "Harnessing Large Language Models for Training-free Video Anomaly
Detection", CVPR 2024. No training at all: a captioner describes frames, an LLM reads the
descriptions and rates how suspicious the scene is, and vision-language embeddings tie the
text back to the frames. The pipeline, in the order :func:`run` executes it:

1. **Captions** (notebook 20). Positions are every ``stride``-th frame (0, 16, 32, ...):
   the *centre frames*. Only the centre frames are captioned. (The original code captions
   every frame but only ever reads the captions at ``idx % 16 == 0``; same result, 16x
   less work.)
2. **Caption cleaning** (notebook 20). The unique captions of the video form its *caption
   index* (text embeddings, L2-normalised). Around each centre frame, a ``window_s``-second
   window is sampled at ``frames_per_window`` evenly spread frames; each sampled frame is
   embedded with the *image* encoder and replaced by its nearest caption in the index. The
   retrieved captions, in time order, are the centre frame's *temporal description*.
3. **LLM** (notebook 30). A summary prompt turns the temporal description into a short
   summary (the reply's last line is kept); a score prompt asks for a rating in
   ``[0, 0.1, ..., 1.0]`` of that summary. Unparseable replies are counted and linearly
   interpolated from the neighbouring positions. Decoding is greedy, so identical prompts
   (frequent in static scenes) are asked once.
4. **Refinement** (notebook 40). The unique summaries of the video form its *summary index*
   (text embeddings). Each position's window is embedded as a *video*; its ``refine_k``
   nearest summaries vote with softmax(similarity / temperature) weights (a summary shared
   by several positions votes with the mean of their scores).
5. **To frames** (notebook 40). Each position's score covers its 16 frames
   ``[centre, centre + 16)`` (the "centre" frame is the centre of the *window*, and the
   first frame of its 16-frame segment, as in the original); the sequence is cut to the
   video's length. No smoothing.

Every model stage is cached (``vadnb.cache``) by the video's content hash, the stage's
parameters and the model's name, so a re-run makes no model calls and an interrupted run
resumes where it stopped. Model roles are loaded one at a time and released after their
stage, so a 16 GB GPU only ever holds one large model.

>>> import vadnb.lavad as lavad
>>> det = lavad.run("my_video.mp4", profile="tiny")          # doctest: +SKIP
>>> det.segments[["time_s", "summary", "raw_score", "score"]]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import metrics, stages
from .cache import Cache, file_digest, get_cache
from .detect import TINY_WARNING, Detection
from .models.base import Reply, call_stats, calls_since, is_truncated
from .stages import configure

__all__ = [
    "Config",
    "paper_config",
    "DIFFERENCES",
    "PAPER_CAPTIONERS",
    "SCORE_CONTEXTS",
    "window_frames",
    "clip_frames",
    "spatial_crops",
    "summary_scores",
    "load_released",
    "refine_from_neighbours",
    "run",
    "run_many",
    "evaluate",
    "summary_messages",
    "score_messages",
    "last_line",
    "clean_captions",
    "refine_scores",
    "to_frames",
    "parse_scores",
    "frame_scores_of",
    "rescore",
    "stage_tables",
    "oracle_backends",
    "Detection",
    "TINY_WARNING",
]

SUMMARY_PROMPT = (
    "Below is a temporal description of a scene: one caption per moment, in time order. "
    "Summarise in a few sentences what happened in the scene, based only on this "
    "description. Leave out details that do not matter."
)
SCORE_CONTEXT = (
    "Imagine you work for a law enforcement agency. How would you rate the scene described "
    "below on a scale from 0 to 1, where 0 is an ordinary, standard scene and 1 is a scene "
    "with suspicious activity?"
)
SCORE_FORMAT = (
    "Reply with a Python list holding exactly one value chosen from "
    "[0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] and no other text: "
    "the reply starts with '[' and ends with ']'."
)
#: The context the paper's code used for XD-Violence (no law-enforcement framing; "criminal"
#: added), in our words. UCF-Crime's is :data:`SCORE_CONTEXT`.
XD_VIOLENCE_SCORE_CONTEXT = (
    "How would you rate the scene described below on a scale from 0 to 1, where 0 is an "
    "ordinary, standard scene and 1 is a scene with suspicious or possibly criminal activity?"
)
SCORE_CONTEXTS = {"ucf-crime": SCORE_CONTEXT, "xd-violence": XD_VIOLENCE_SCORE_CONTEXT}

#: The five BLIP-2 captioners whose captions the paper pooled into UCF-Crime's caption index.
PAPER_CAPTIONERS = (
    "Salesforce/blip2-opt-6.7b-coco",
    "Salesforce/blip2-opt-6.7b",
    "Salesforce/blip2-flan-t5-xxl",
    "Salesforce/blip2-flan-t5-xl",
    "Salesforce/blip2-flan-t5-xl-coco",
)
#: The single captioner of the paper's XD-Violence run.
XD_VIOLENCE_CAPTIONER = "Salesforce/blip2-flan-t5-xxl"
VIDEO_CLIPS = ("imagebind", "pairs")


@dataclass
class Config:
    """LAVAD's settings, with the paper's defaults.

    Paper (CVPR 2024): BLIP-2 captioners (five of them), ImageBind embeddings,
    llama-2-13b-chat; UCF-Crime frame AUC 80.28, XD-Violence AP 62.01 / AUC 85.36, on
    2x A100 64 GB. Positions every 16 frames at the native frame rate (UCF-Crime 30 fps,
    XD-Violence 24 fps).

    Every difference from the official code, with its effect and the flag that restores
    the paper's behaviour, is listed once in :data:`DIFFERENCES` (notebooks 20-40 render
    it); :func:`paper_config` gives the paper's settings per dataset.
    """

    stride: int = 16
    """Frames between two scored positions, at the video's *native* rate. At 30 fps that
    is one position every 0.53 s; at 10 fps (the campus clips) one every 1.6 s. The score of a
    position covers its 16 frames."""

    window_s: float = 10.0
    """Length in seconds of the window around each centre frame that the cleaning and the
    refinement look at. Measured in seconds, not frames, so the method sees the same stretch
    of time at any frame rate: 300 frames at 30 fps, 100 frames at 10 fps. Clipped (not
    shifted) at the video's ends."""

    frames_per_window: int = 10
    """Frames sampled evenly (linspace) in each window: the length of a temporal description
    and the frames of the video embedding."""

    caption_k: int = 1
    """Nearest captions kept per window frame when cleaning (paper: 1, the single nearest)."""

    refine_k: int = 10
    """Nearest summaries (of the same video) that vote on a position's refined score."""

    temperature: float = 1.0
    """Softmax temperature of the refinement weights, applied to cosine similarities."""

    llm_temperature: float = 0.0
    """Sampling temperature of the LLM. The paper sampled (0.6, top_p 0.9); we decode
    greedily (0) so a run is reproducible and a cached reply is the reply you would get
    again. Sampling also makes identical prompts give different scores."""

    summary_max_new_tokens: int = 160
    """Token budget of a summary reply (a few sentences)."""

    score_max_new_tokens: int = 48
    """Token budget of a score reply. ``[0.7]`` needs about 5 tokens, but chat models often
    open with a sentence ("Sure! Based on the description, I would rate it [0.7]"), so the
    budget leaves room for one (the official code let the reply run to the context end).
    Replies cut at the budget are counted (``extras["parse_report"]``)."""

    summary_prompt: str = SUMMARY_PROMPT
    """Instruction placed above the temporal description (one caption per line)."""

    score_context: str = SCORE_CONTEXT
    """First part of the score prompt: the law-enforcement framing and the 0..1 scale."""

    score_format: str = SCORE_FORMAT
    """Second part of the score prompt: answer as a Python list with one value; the
    summary follows it."""

    captioner_model: str | None = None
    """Captioner to load (a model id); None = the profile's default."""

    captioner_models: tuple[str, ...] = ()
    """Captioner *pool*: when given, every model in it captions the centre frames and the
    caption index holds the unique captions of all of them (the paper pooled five BLIP-2
    captioners for UCF-Crime: :data:`PAPER_CAPTIONERS`, see :func:`paper_config`). The
    ``captions`` column shows the first model's captions. Empty = one captioner
    (``captioner_model``)."""

    video_clip: str = "imagebind"
    """How a window becomes the refinement's video embedding. ``"imagebind"`` (the official
    computation): ImageBind's video transform as LAVAD calls it reads a 2-frame clip (the
    first and last of the window's sampled frames) in 3 square spatial crops (left, centre,
    right; top/centre/bottom for portrait video) and averages the 3 embeddings.
    ``"pairs"``: the window's frames as consecutive 2-frame pairs, centre crop only."""

    llm_model: str | None = None
    """LLM to load; None = the profile's default."""

    embedder_model: str | None = None
    """Image/video/text embedder (ImageBind in the paper); None = the profile's default."""

    caption_batch_size: int = 16
    """Centre frames per captioner call (and per cached, resumable batch)."""

    window_batch_size: int = 16
    """Positions whose window frames are read and embedded together."""

    llm_batch_size: int = 8
    """Prompts per ``llm.batch`` call (and per cached, resumable batch)."""

    def __post_init__(self) -> None:
        for name in ("stride", "frames_per_window", "caption_k", "refine_k",
                     "caption_batch_size", "window_batch_size", "llm_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"Config.{name} must be at least 1, got {getattr(self, name)}")
        if not self.window_s > 0 or not np.isfinite(self.window_s):
            raise ValueError(f"Config.window_s must be a positive number of seconds, got "
                             f"{self.window_s}")
        if not self.temperature > 0 or not np.isfinite(self.temperature):
            raise ValueError(f"Config.temperature must be positive, got {self.temperature}")
        if self.video_clip not in VIDEO_CLIPS:
            raise ValueError(f"Config.video_clip must be one of {VIDEO_CLIPS}, got "
                             f"{self.video_clip!r}")
        for name in ("summary_max_new_tokens", "score_max_new_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"Config.{name} must be at least 1, got {getattr(self, name)}")
        if isinstance(self.captioner_models, str):
            raise ValueError("Config.captioner_models is a tuple of model ids, not one string; "
                             "use captioner_model for a single captioner")
        self.captioner_models = tuple(str(m) for m in self.captioner_models)


def paper_config(dataset: str = "ucf-crime", **overrides: Any) -> Config:
    """The paper's settings for ``dataset`` ("ucf-crime" or "xd-violence").

    UCF-Crime: the five BLIP-2 captioners pooled (:data:`PAPER_CAPTIONERS`) and the
    law-enforcement context; XD-Violence: BLIP-2 flan-t5-xxl alone and its own context
    (:data:`XD_VIOLENCE_SCORE_CONTEXT`). Both use llama-2-13b-chat; decoding stays greedy
    (the paper sampled at temperature 0.6: pass ``llm_temperature=0.6`` for that).
    """
    key = str(dataset).lower().replace("_", "-")
    if key not in SCORE_CONTEXTS:
        raise ValueError(f"no paper configuration for {dataset!r}; use one of "
                         f"{sorted(SCORE_CONTEXTS)}")
    base: dict[str, Any] = {"llm_model": "meta-llama/Llama-2-13b-chat-hf",
                            "embedder_model": "imagebind_huge",
                            "score_context": SCORE_CONTEXTS[key]}
    if key == "ucf-crime":
        base["captioner_models"] = PAPER_CAPTIONERS
    else:
        base["captioner_model"] = XD_VIOLENCE_CAPTIONER
    return Config(**{**base, **overrides})


#: Every way this module departs from the official code (lucazanella/lavad), with why and
#: the effect; notebooks 20, 30 and 40 render it (``stages.differences_markdown``). What is
#: *not* listed follows the official computation, and tests/test_lavad.py holds it against
#: transcriptions of it: window frames, caption index and cleaning, score parsing and
#: interpolation, the 2-frame / 3-crop video clip, the refinement weights, frame expansion.
DIFFERENCES: list[stages.Difference] = [
    stages.Difference(
        "Only the centre frames (every 16th) are captioned; the official code captions every "
        "frame.",
        "The official code only ever reads the captions at frames idx % 16 == 0.",
        "None on the output (identical captions are used); 16x fewer captioner calls."),
    stages.Difference(
        "One captioner by default (the profile's); the paper pooled five BLIP-2 captioners "
        "for UCF-Crime and used flan-t5-xxl alone for XD-Violence.",
        "Five 4-12 B captioners do not fit a Colab T4 session.",
        "Not measured here (needs the real models): fewer, less varied captions in the "
        "caption index.",
        "captioner_models=PAPER_CAPTIONERS, or paper_config('ucf-crime' | 'xd-violence')"),
    stages.Difference(
        "Greedy decoding (temperature 0); the paper sampled (temperature 0.6, top_p 0.9).",
        "A run is reproducible, a cached reply is the reply you would get again, and "
        "identical prompts (frequent in static scenes) are asked once.",
        "Not measured; sampling makes the same summary get different scores.",
        "llm_temperature=0.6"),
    stages.Difference(
        "Prompts in our own words, sent as one user message (instruction, then the "
        "captions one per line); the official sends the instruction as the system message "
        "and the captions joined by a newline and a space.",
        "Not every chat template accepts a system message (several small models reject "
        "it); the wording is ours by policy. Structure and content are the paper's.",
        "Not measured.",
        "summary_prompt=, score_context=, score_format= (any text)"),
    stages.Difference(
        "The summary kept is the reply's last non-empty line; the official keeps the text "
        "after the last newline, which is empty when a reply ends with a newline (and adds "
        "a full stop after the summary in the score prompt).",
        "An empty summary carries no information and would be scored as such.",
        "None for replies that do not end with a newline; otherwise vadnb keeps the summary "
        "the official code loses."),
    stages.Difference(
        "The score reply gets a budget of score_max_new_tokens (48) new tokens; the official "
        "let it run to the end of a 512-token context. Replies cut at the budget are "
        "counted apart from unparseable ones.",
        "Bounded cost per call; the budget leaves room for a preamble before the bracket.",
        "None when the model answers within 48 tokens; extras['score_truncated'] says how "
        "often it did not.",
        "score_max_new_tokens"),
    stages.Difference(
        "The score parser also reads '[ 0.3 ]' and '[.5]' (the official regex does not) "
        "and skips values outside [0, 1] (the official keeps '[7]' as a score of 7).",
        "Scores stay in [0, 1]; a readable answer is not thrown away over a space.",
        "Fewer parse failures; no score outside [0, 1]."),
    stages.Difference(
        "When no score reply of a video parses, every position gets 0.5; the official "
        "np.interp fails on an empty list.",
        "A run over a benchmark should not stop on one video.",
        "The video is scored as uninformative; extras['parse_failures'] counts it."),
    stages.Difference(
        "A window shorter than frames_per_window frames (a video shorter than that, or "
        "window_s * fps < 2) repeats its last frame to fill the window; the official returns "
        "the shorter window (or fails when it is empty).",
        "Every position has the same number of window frames.",
        "Only on videos of a few frames: repeated lines in their temporal descriptions."),
    stages.Difference(
        "The video clip's 3 square crops are cut from the decoded frame and then resized "
        "by the embedder (bicubic); ImageBind's video transform resizes the short side to "
        "224 (bilinear) and then crops.",
        "The embedder's encode_video takes frames; cropping first keeps the model code "
        "unchanged.",
        "Interpolation-level pixel differences only.",
        None),
    stages.Difference(
        "Frames are decoded from the video file at their exact indices; the official reads "
        "JPEG frames extracted beforehand with ffmpeg.",
        "No extraction step or disk space for frames; exact frame indices.",
        "JPEG compression changes pixels slightly; not measured."),
    stages.Difference(
        "Nearest neighbours by exact inner product in numpy (float32, top-k selection, ties "
        "to the lower index); the official uses a faiss IndexFlatIP.",
        "No faiss dependency; the same exact search.",
        "None beyond float rounding and the order of exact ties."),
    stages.Difference(
        "Reported AP: vadnb.metrics gives scikit-learn's average precision by default and "
        "the official trapezoid area under the PR curve with variant='trapezoid'; "
        "lavad.evaluate reports both.",
        "scikit-learn's AP is the standard estimator; the trapezoid is what LAVAD and "
        "XD-Violence report (metrics.REPORTED_AP).",
        "Higher with tied scores: on synthetic scores on LAVAD's 11-value grid "
        "(tests/test_metrics.py) the trapezoid is 4-5 points above sklearn's AP; notebook 40 "
        "prints both.",
        "metrics.frame_ap(..., variant='trapezoid')"),
    stages.Difference(
        "Video embedding alternative: video_clip='pairs' embeds all 10 window frames as 5 "
        "consecutive pairs with a centre crop (vadnb's earlier default).",
        "The official clip reads only the window's first and last frames, 10 s apart; "
        "'pairs' sees the whole window. Offered for comparison; the default is the "
        "official clip.",
        "Notebook 40's oracle section measures both on the campus split.",
        "video_clip='imagebind' (default) | 'pairs'"),
]


#: Allowed range of each numeric Config field, checked by ``vadnb.stages.configure`` when
#: the method starts (types are checked from the annotations).
LIMITS = {"stride": ">= 1", "window_s": "> 0", "frames_per_window": ">= 1", "caption_k": ">= 1",
          "refine_k": ">= 1", "temperature": "> 0", "llm_temperature": "[0, 2]",
          "summary_max_new_tokens": ">= 1", "score_max_new_tokens": ">= 1",
          "caption_batch_size": ">= 1", "window_batch_size": ">= 1", "llm_batch_size": ">= 1"}


# ---------------------------------------------------------------------------------------
# Pure steps: no model, no disk. Each is small enough to test by hand.
# ---------------------------------------------------------------------------------------

Messages = list[dict[str, str]]


def summary_messages(temporal_description: Sequence[str], config: Config | None = None) -> Messages:
    """The summary prompt: the instruction, then the captions one per line, in time order."""
    cfg = config or Config()
    body = "\n".join(str(c).strip() for c in temporal_description)
    return [{"role": "user", "content": f"{cfg.summary_prompt}\n\n{body}"}]


def score_messages(summary: str, config: Config | None = None) -> Messages:
    """The score prompt: context, then format, then the summary."""
    cfg = config or Config()
    return [{"role": "user",
             "content": f"{cfg.score_context}\n{cfg.score_format}\n\n{summary.strip()}"}]


def last_line(reply: str) -> str:
    """The last non-empty line of a reply: chat models often open with "Sure, here is a
    summary:" and put the summary on the last line; LAVAD keeps only that line."""
    lines = [ln.strip() for ln in (reply or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def parse_scores(replies: Sequence[str], truncated: Sequence[bool] | None = None,
                 ) -> tuple[np.ndarray, list[float | None], stages.ParseLog]:
    """Read ``[x]`` from each score reply; unparseable replies become missing and are filled
    by linear interpolation over the valid positions (ends: nearest valid value).

    ``truncated`` (one flag per reply; default: each reply's own ``Reply.truncated``) is
    counted apart, so a too-small token budget shows as such in the ParseLog.
    Returns ``(filled scores, parsed values with None for failures, ParseLog)``.
    """
    log = stages.ParseLog()
    flags = list(truncated) if truncated is not None else [None] * len(replies)
    if len(flags) != len(replies):
        raise ValueError(f"{len(flags)} truncation flags for {len(replies)} replies")
    parsed = [log.record(r, stages.parse_bracket_score(str(r)), truncated=f)
              for r, f in zip(replies, flags)]
    filled, _ = stages.interpolate_missing(parsed)
    return filled, parsed, log


def window_frames(centre: int, num_frames: int, fps: float, window_s: float = 10.0,
                  n: int = 10) -> np.ndarray:
    """The ``n`` frames of the ``window_s``-second window around ``centre``, as the
    official code picks them: the window is the frames ``[centre - W//2, centre + W//2)``
    with ``W = int(window_s * fps)``, clipped (not shifted) at the video's ends, and ``n``
    of them are taken at ``linspace(0, len - 1, n)`` rounded *down*. A window shorter than
    ``n`` frames gives all its frames, the last one repeated to fill ``n`` (notebook 20).

    Measured in seconds, so the method sees the same stretch of time at any frame rate:
    300 frames at 30 fps, 100 at 10 fps.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    half = int(window_s * fps) // 2
    lo = max(int(centre) - half, 0)
    hi = max(min(int(centre) + half, int(num_frames)), lo + 1)  # at least the centre frame
    length = hi - lo
    if length <= n:
        picked = np.arange(lo, hi, dtype=np.int64)
        return np.concatenate([picked, np.full(n - length, hi - 1, dtype=np.int64)])
    return lo + np.linspace(0, length - 1, n).astype(np.int64)


def clip_frames(window: np.ndarray, mode: str = "imagebind") -> np.ndarray:
    """The frames of a window that its video embedding reads: ImageBind's 2-frame clip
    (first and last sampled frame, ``"imagebind"``), or all of them (``"pairs"``)."""
    w = np.asarray(window, dtype=np.int64)
    if mode == "imagebind":
        return w[[0, -1]]
    if mode == "pairs":
        return w
    raise ValueError(f"unknown video_clip {mode!r}; use one of {VIDEO_CLIPS}")


def spatial_crops(image: np.ndarray) -> list[np.ndarray]:
    """The 3 square crops of ImageBind's video transform: left, centre, right (top, centre,
    bottom for a portrait frame), each the size of the short side. The official transform
    scales the short side to 224 first, then crops 224; here the embedder's own resize does
    the scaling after the crop (the same pixels, up to interpolation)."""
    h, w = image.shape[:2]
    side = min(h, w)
    offsets = [0, int(np.ceil((max(h, w) - side) / 2)), max(h, w) - side]
    if w >= h:
        return [np.ascontiguousarray(image[:, o:o + side]) for o in offsets]
    return [np.ascontiguousarray(image[o:o + side, :]) for o in offsets]


def summary_scores(summaries: Sequence[str], scores: Sequence[float]) -> tuple[list[str], np.ndarray]:
    """The summary index (unique summaries, first-seen order) and one score per summary:
    the score of the first position that wrote it, as the official index records it."""
    index = list(dict.fromkeys(summaries))
    first = {}
    for s, x in zip(summaries, scores):
        first.setdefault(s, float(x))
    return index, np.array([first[s] for s in index], dtype=np.float64)


def clean_captions(frame_embeddings: np.ndarray, caption_embeddings: np.ndarray,
                   captions: Sequence[str], k: int = 1) -> tuple[list[list[str]], np.ndarray]:
    """Replace each frame by its nearest caption(s) in the caption index.

    ``frame_embeddings`` is [P, n, D] (P positions x n window frames) and
    ``caption_embeddings`` [U, D], both L2-normalised, so the inner product is the cosine.
    Returns the temporal descriptions (P lists of n strings; with ``k > 1`` a frame's k
    captions are joined by "; ", best first) and the chosen caption ids [P, n, k].
    """
    f = np.asarray(frame_embeddings, dtype=np.float32)
    c = np.asarray(caption_embeddings, dtype=np.float32)
    if f.ndim != 3 or c.ndim != 2 or f.shape[2] != c.shape[1]:
        raise ValueError(f"expected frame embeddings [P, n, D] and caption embeddings [U, D], "
                         f"got {f.shape} and {c.shape}")
    p, n, d = f.shape
    _, idx, _ = stages.knn_softmax(f.reshape(p * n, d), c, np.arange(len(c)), k=k)
    idx = idx.reshape(p, n, -1)
    descriptions = [["; ".join(captions[j] for j in idx[i, t]) for t in range(n)]
                    for i in range(p)]
    return descriptions, idx


def refine_scores(video_embeddings: np.ndarray, summary_embeddings: np.ndarray,
                  summary_scores: Sequence[float], k: int = 10,
                  temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LAVAD's refinement: each position's score becomes the softmax(cos / temperature)
    weighted mean of the scores of its ``k`` nearest summaries (of the same video).

    Returns ``(refined [P], neighbour ids [P, k], weights [P, k])``.
    """
    return stages.knn_softmax(video_embeddings, summary_embeddings, summary_scores,
                              k=k, temperature=temperature)


def to_frames(position_scores: Sequence[float], num_frames: int, stride: int = 16) -> np.ndarray:
    """Repeat each position's score over its ``stride`` frames and cut to ``num_frames``."""
    return metrics.segments_to_frames(position_scores, num_frames, segment_length=stride)


def frame_scores_of(detection: Detection, column: str = "score") -> np.ndarray:
    """A detection's frame scores from one segments column: ``"score"`` (refined, the
    default and ``detection.frame_scores``) or ``"raw_score"`` (before refinement)."""
    stride = int(detection.extras.get("stride", 16))
    return to_frames(detection.segments[column].to_numpy(), detection.num_frames, stride)


def rescore(detection: Detection, refine_k: int | None = None,
            temperature: float | None = None) -> np.ndarray:
    """Frame scores of ``detection`` refined again with another ``refine_k`` or
    ``temperature``, from the embeddings it kept: no model call (notebook 40's ablation)."""
    ex = detection.extras
    if "neighbour_similarities" in ex:  # the paper's released results: neighbours only
        cfg = ex.get("config", {})
        k = int(refine_k if refine_k is not None else cfg.get("refine_k", 10))
        t = float(temperature if temperature is not None else 1.0)
        sims, vals = ex["neighbour_similarities"], ex["neighbour_scores"]
        if k > sims.shape[1]:
            raise ValueError(f"the release keeps {sims.shape[1]} neighbours per position; "
                             f"refine_k={k} needs the embeddings")
        refined = refine_from_neighbours(sims[:, :k], vals[:, :k], t)
        return to_frames(refined, detection.num_frames, int(ex.get("stride", 16)))
    if "video_embeddings" not in ex:
        raise ValueError("this detection has no embeddings (a Detection.load()ed one keeps "
                         "only the tables); re-run lavad.run: the cache makes it free")
    cfg = ex.get("config", {})
    k = int(refine_k if refine_k is not None else cfg.get("refine_k", 10))
    t = float(temperature if temperature is not None else cfg.get("temperature", 1.0))
    refined, _, _ = refine_scores(ex["video_embeddings"], ex["summary_embeddings"],
                                  ex["summary_scores"], k, t)
    return to_frames(refined, detection.num_frames, int(ex.get("stride", 16)))


def stage_tables(detection: Detection) -> dict[str, pd.DataFrame]:
    """Each stage's output of a LAVAD run as a table, to read or save.

    ``captions`` (one per centre frame), ``caption_index`` (unique captions and how many
    centre frames said them), ``cleaning`` (every window frame and the caption it
    retrieved), ``llm`` (summary, score reply, parsed or not, score) and ``refinement``
    (each position's neighbours in the summary index, with weights and scores).
    """
    seg, ex = detection.segments, detection.extras
    if "window_frames" not in ex:
        raise ValueError("this detection has no intermediate results (a Detection.load()ed "
                         "one keeps only the tables); re-run lavad.run: the cache makes it free")
    counts = seg["captions"].value_counts()
    cleaning = [{"centre_frame": int(c), "window_frame": int(f), "caption": cap}
                for c, frames, desc in zip(seg["centre_frame"], ex["window_frames"],
                                           seg["temporal_description"])
                for f, cap in zip(frames, desc.split("\n"))]
    refinement = [{"centre_frame": int(c), "rank": r, "summary": ex["summary_index"][j],
                   "weight": float(w), "summary_score": float(ex["summary_scores"][j])}
                  for c, idx, ws in zip(seg["centre_frame"], ex["neighbours"], ex["weights"])
                  for r, (j, w) in enumerate(zip(idx, ws))]
    return {
        "captions": seg[["centre_frame", "time_s", "captions"]].rename(
            columns={"captions": "caption"}),
        "caption_index": pd.DataFrame({"caption": ex["caption_index"],
                                       "centre_frames": [int(counts.get(c, 0))
                                                         for c in ex["caption_index"]]}),
        "cleaning": pd.DataFrame(cleaning),
        "llm": seg[["centre_frame", "summary", "score_reply", "parsed", "raw_score"]].copy(),
        "refinement": pd.DataFrame(refinement),
    }


def oracle_backends(benchmark: Any) -> dict[str, Any]:
    """Captioner, embedder and LLM that *read the ground truth*: LAVAD with perfect perception.

    A teaching device (notebook 40): every frame of ``benchmark``'s videos is looked up by a
    hash of its pixels. The captioner says "something unusual: <class>" on anomalous frames
    and "people walk along a path" otherwise; the embedder maps anomalous frames and captions
    to one direction and normal ones to another; the LLM's summary says in how many of the
    described moments something unusual happens, and its score is that share. What is left
    of the ground truth in the final scores is what LAVAD's windows, refinement and frame
    expansion keep. Works only on frames of ``benchmark``'s videos.
    """
    import hashlib
    import re

    from .models.scripted import ScriptedCaptioner, ScriptedEmbedder, ScriptedLLM
    from .video import read_frames

    truth: dict[str, str] = {}
    for name, path, label in zip(benchmark.videos.name, benchmark.videos.path,
                                 benchmark.videos.label):
        y = benchmark.frame_labels(name)
        for i, image in enumerate(read_frames(path).images[:len(y)]):
            # the frame and the 3 square crops the video embedding reads of it
            for view in [image] + spatial_crops(image):
                key = hashlib.sha1(np.ascontiguousarray(view).tobytes()).hexdigest()
                if y[i] or key not in truth:
                    truth[key] = str(label) if y[i] else "Normal"

    def what(image: np.ndarray) -> str:
        key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
        if key not in truth:
            raise ValueError("the oracle only knows the frames of the benchmark it was built "
                             "from; run it on those videos")
        return truth[key]

    def caption(image: np.ndarray) -> str:
        label = what(image)
        return "people walk along a path" if label == "Normal" else f"something unusual: {label}"

    def image_vector(image: np.ndarray) -> np.ndarray:
        return np.array([0.0, 1.0]) if what(image) == "Normal" else np.array([1.0, 0.0])

    def text_vector(text: str) -> np.ndarray:
        m = re.search(r"In (\d+) of (\d+) moments", text)
        if m:
            k, n = int(m.group(1)), int(m.group(2))
            return np.array([k, n - k], dtype=float)
        return np.array([1.0, 0.0]) if "unusual" in text else np.array([0.0, 1.0])

    def reply(messages: Messages) -> str:
        content = messages[-1]["content"]
        m = re.search(r"In (\d+) of (\d+) moments", content)
        if m:  # a score prompt: the share of unusual moments
            return f"[{round(int(m.group(1)) / int(m.group(2)), 1)}]"
        if "unusual" not in content and "people walk" not in content:
            return "[0]"  # a score prompt for a summary without anything unusual
        lines = [ln for ln in content.split("\n\n", 1)[-1].split("\n") if ln.strip()]
        k = sum("unusual" in ln for ln in lines)
        kinds = sorted({ln.split(": ", 1)[1] for ln in lines if "unusual" in ln})
        return (f"Here is a summary:\nIn {k} of {len(lines)} moments something unusual "
                f"happens{': ' + ', '.join(kinds) if kinds else ''}.")

    return {"captioner": ScriptedCaptioner(caption, name="oracle-captioner"),
            "embedder": ScriptedEmbedder(image_vector, text_vector, name="oracle-embedder"),
            "llm": ScriptedLLM(reply, name="oracle-llm")}


# ---------------------------------------------------------------------------------------
# Models: loaded lazily, one role at a time.
# ---------------------------------------------------------------------------------------


class _Roles:
    """The backends a run uses: given ones are used as they are (never released); missing
    ones are loaded from the profile on first use and released by :meth:`done`."""

    def __init__(self, backends: dict[str, Any] | None, profile: str | None, cfg: Config):
        self.given = dict(backends or {})
        self.profile = profile
        self.cfg = cfg
        self.loaded: dict[str, Any] = {}
        self._resolved: str | None = None

    def resolved_profile(self) -> str:
        if self._resolved is None:
            from .models.profiles import resolve_profile

            self._resolved = resolve_profile(self.profile)
        return self._resolved

    def model_field(self, role: str) -> str | None:
        """The Config's model for ``role``; ``captioner.i`` is the i-th pooled captioner."""
        base, _, i = role.partition(".")
        if base == "captioner" and self.cfg.captioner_models:
            return self.cfg.captioner_models[int(i or 0)]
        return getattr(self.cfg, f"{base}_model")

    def key(self, role: str) -> str:
        """What identifies the model in cache keys, known without loading it."""
        if role in self.given:
            return str(self.given[role].name)
        if self.model_field(role):
            return str(self.model_field(role))
        try:  # the profile table's model id: the name the loaded backend will carry
            from .models.profiles import model_spec

            return str(model_spec(role, self.resolved_profile()).model)
        except (ImportError, KeyError, ValueError):
            return f"{self.resolved_profile()}:default"

    def get(self, role: str) -> Any:
        if role in self.given:
            return self.given[role]
        if role not in self.loaded:
            try:
                from .models import load
            except ImportError as err:  # pragma: no cover - models under construction
                raise RuntimeError(
                    f"vadnb.models.load is not available to load the {role}; pass "
                    f"backends={{'{role}': ...}} (e.g. a vadnb.models.scripted double)") from err
            self.loaded[role] = load(role.partition(".")[0], profile=self.resolved_profile(),
                                     model=self.model_field(role))
        return self.loaded[role]

    def done(self, role: str) -> None:
        backend = self.loaded.pop(role, None)
        if backend is not None:
            backend.release()

    def profiles(self, roles: Sequence[str]) -> str:
        """The Detection's profile: "tiny" if any role is tiny, else the common profile,
        else "custom"."""
        names = {self.given[r].profile if r in self.given else self.resolved_profile()
                 for r in roles}
        if "tiny" in names or any(getattr(self.given.get(r), "meaningless", False) for r in roles):
            return "tiny"
        return names.pop() if len(names) == 1 else "custom"


# ---------------------------------------------------------------------------------------
# The cached stages, run stage by stage over a list of videos.
# ---------------------------------------------------------------------------------------


@dataclass
class _Video:
    """Everything the stages learn about one video, filled in as they run."""

    path: Path
    digest: str
    num_frames: int
    fps: float
    centres: np.ndarray
    windows: np.ndarray  # [P, n] frame indices
    captions: list[str] = field(default_factory=list)
    pooled_captions: list[list[str]] = field(default_factory=list)  # [captioner][position]
    caption_index: list[str] = field(default_factory=list)
    caption_embeddings: np.ndarray | None = None
    frame_embeddings: np.ndarray | None = None  # [P, n, D]
    video_embeddings: np.ndarray | None = None  # [P, D]
    caption_ids: np.ndarray | None = None  # [P, n, k]
    descriptions: list[list[str]] = field(default_factory=list)
    summary_replies: list[str] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)
    score_replies: list[str] = field(default_factory=list)


def _open(video: str | os.PathLike, cfg: Config, cache: Cache) -> _Video:
    from .video import VideoError, probe

    path = Path(video)
    if not path.exists():
        raise VideoError(f"video not found: {path} (check the path, or pass a benchmark "
                         "video's 'path' column)")
    info = probe(path, cache=cache)
    if info.num_frames <= 0:
        raise VideoError(f"video has 0 decodable frames: {path}")
    if not info.fps or info.fps <= 0:
        raise VideoError(f"video reports no frame rate: {path}; re-encode it with one, e.g. "
                         "`ffmpeg -i in.mp4 -r 30 out.mp4`")
    centres = stages.centre_frames(info.num_frames, cfg.stride)
    windows = np.stack([window_frames(int(c), info.num_frames, info.fps, cfg.window_s,
                                      cfg.frames_per_window) for c in centres])
    return _Video(path, file_digest(path), int(info.num_frames), float(info.fps), centres,
                  windows)


class _FrameStream:
    """The frames of one video at ascending indices, decoded in a single forward pass.

    A stage asks for its batches in ascending order (``take``); the decoder is opened on
    the first request (a fully cached stage opens nothing) and only moves forward. Frames a
    later batch still needs are kept until ``release_below`` passes them, so overlapping
    windows cost no second decode and memory stays bounded by what the next batches need.
    """

    def __init__(self, path: Path, wanted: np.ndarray, cache: Cache):
        self.path, self.cache = path, cache
        self.wanted = np.unique(np.asarray(wanted, dtype=np.int64))
        self.buffer: dict[int, np.ndarray] = {}
        self.chunks: Any = None
        self.done_upto = -1  # every wanted frame <= this has been decoded

    def take(self, indices: Sequence[int], release_below: int | None = None
             ) -> dict[int, np.ndarray]:
        from .video import iter_frames

        need = np.unique(np.asarray(indices, dtype=np.int64))
        if self.chunks is None:
            start = int(need[0])
            self.chunks = iter_frames(self.path, indices=self.wanted[self.wanted >= start],
                                      cache=self.cache, chunk=16)
            self.done_upto = start - 1
        missing = [int(i) for i in need if i not in self.buffer]
        if missing and missing[0] <= self.done_upto:
            raise RuntimeError(f"{self.path}: frame {missing[0]} was asked after the stream "
                               "passed it; batches must come in ascending order")
        while missing and self.done_upto < missing[-1]:
            frames = next(self.chunks)
            for i, img in zip(frames.indices.tolist(), frames.images):
                self.buffer[int(i)] = img.copy()  # a view would keep its whole chunk alive
            self.done_upto = int(frames.indices[-1])
        out = {int(i): self.buffer[int(i)] for i in need}
        cut = int(need[-1]) + 1 if release_below is None else int(release_below)
        for i in [i for i in self.buffer if i < cut]:
            del self.buffer[i]
        return out

    def close(self) -> None:
        if self.chunks is not None:
            self.chunks.close()
            self.chunks = None


def _captioner_roles(cfg: Config) -> list[str]:
    """``captioner`` and, for a pool, ``captioner.1`` ... (one role per pooled model)."""
    return ["captioner"] + [f"captioner.{i}" for i in range(1, len(cfg.captioner_models))]


def _stage_captions(videos: list[_Video], roles: _Roles, cfg: Config, cache: Cache) -> None:
    """Stage 1: one caption per centre frame and captioner (batched, resumable, one
    decoding pass per captioner that misses the cache)."""
    for role in _captioner_roles(cfg):
        for v in videos:
            parts = {"video": v.digest, "captioner": roles.key(role), "stride": cfg.stride}
            stream = _FrameStream(v.path, v.centres, cache)

            def caption(batch: list[int], stream: _FrameStream = stream, role: str = role
                        ) -> list[str]:
                images = stream.take(batch)
                return [str(c) for c in roles.get(role)([images[i] for i in batch])]

            try:
                out = [str(c) for c in cache.map(f"lavad.captions", parts,
                                                 [int(c) for c in v.centres], caption,
                                                 batch_size=cfg.caption_batch_size,
                                                 desc=f"captions {v.path.name}")]
            finally:
                stream.close()
            v.pooled_captions.append(out)
        roles.done(role)
    for v in videos:
        v.captions = v.pooled_captions[0]


def _stage_embeddings(videos: list[_Video], roles: _Roles, cfg: Config, cache: Cache) -> None:
    """Stage 2: caption index (text), window frames (image) and clips (video) embeddings.

    The frame embeddings are computed once per distinct window frame (one pass, ascending);
    the clip embeddings once per position (a second pass), as :func:`clip_frames` and
    :func:`spatial_crops` say.
    """
    emb = roles.key("embedder")
    for v in videos:
        # pooled index: at each centre frame, each captioner's caption, first-seen order
        v.caption_index = list(dict.fromkeys(
            c for pos in zip(*v.pooled_captions) for c in pos))
        v.caption_embeddings = np.asarray(cache.memo(
            "lavad.caption_index", {"embedder": emb, "captions": v.caption_index},
            lambda v=v: roles.get("embedder").encode_text(v.caption_index)), dtype=np.float32)

        frames = np.unique(v.windows)
        parts = {"video": v.digest, "embedder": emb}
        stream = _FrameStream(v.path, frames, cache)

        def embed_frames(batch: list[int], stream: _FrameStream = stream) -> list[np.ndarray]:
            images = stream.take(batch)
            out = roles.get("embedder").encode_image([images[i] for i in batch])
            return list(np.asarray(out, dtype=np.float32))

        try:
            vecs = cache.map("lavad.frame_embeddings", parts, frames.tolist(), embed_frames,
                             batch_size=4 * cfg.window_batch_size,
                             desc=f"frames {v.path.name}")
        finally:
            stream.close()
        row = {int(f): i for i, f in enumerate(frames)}
        table = np.stack([np.asarray(x, dtype=np.float32) for x in vecs])
        v.frame_embeddings = table[np.vectorize(row.__getitem__)(v.windows)]

        clips = np.stack([clip_frames(w, cfg.video_clip) for w in v.windows])
        position = {int(c): i for i, c in enumerate(v.centres)}
        parts = {"video": v.digest, "embedder": emb, "stride": cfg.stride,
                 "window_s": cfg.window_s, "n": cfg.frames_per_window,
                 "clip": cfg.video_clip}
        stream = _FrameStream(v.path, clips, cache)

        def embed_clips(batch: list[int], stream: _FrameStream = stream, clips=clips
                        ) -> list[np.ndarray]:
            rows = [position[c] for c in batch]
            later = rows[-1] + 1
            # frames below the next position's first clip frame are not needed again
            keep = int(clips[later:].min()) if later < len(clips) else None
            images = stream.take(clips[rows].ravel(), release_below=keep)
            return list(_embed_clips(roles.get("embedder"), [clips[r] for r in rows], images,
                                     cfg.video_clip))

        try:
            out = cache.map("lavad.clip_embeddings", parts, [int(c) for c in v.centres],
                            embed_clips, batch_size=cfg.window_batch_size,
                            desc=f"clips {v.path.name}")
        finally:
            stream.close()
        v.video_embeddings = np.stack([np.asarray(o, dtype=np.float32) for o in out])
        v.descriptions, v.caption_ids = clean_captions(
            v.frame_embeddings, v.caption_embeddings, v.caption_index, cfg.caption_k)
    roles.done("embedder")


def _embed_clips(model: Any, clips: list[np.ndarray], images: dict[int, np.ndarray],
                 mode: str) -> np.ndarray:
    """One unit-norm video embedding per clip (see :attr:`Config.video_clip`)."""
    if mode == "pairs":
        return np.asarray(model.encode_video([[images[int(i)] for i in c] for c in clips]),
                          dtype=np.float32)
    crops = {int(i): spatial_crops(images[int(i)]) for c in clips for i in c}
    inputs = [[crops[int(i)][k] for i in c] for c in clips for k in range(3)]
    vecs = np.asarray(model.encode_video(inputs), dtype=np.float64).reshape(len(clips), 3, -1)
    mean = vecs.mean(axis=1)  # ImageBind averages its clips' (unit) embeddings
    return (mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
            ).astype(np.float32)


def _reply(value: Any) -> Reply:
    """A cached reply back as a :class:`Reply` (text and truncated flag)."""
    if isinstance(value, dict):
        return Reply(str(value.get("text", "")), bool(value.get("truncated", False)))
    return Reply(str(value))


def _llm_map(stage: str, prompts: list[str], build: Callable[[str], Messages],
             max_new_tokens: int, roles: _Roles,
             cfg: Config, cache: Cache, extra: dict[str, Any]) -> dict[str, Reply]:
    """Ask the LLM once per unique prompt input (batched, resumable); input -> reply.

    The cache keeps each reply's text *and* whether it was cut at ``max_new_tokens``."""
    unique = list(dict.fromkeys(prompts))
    parts = {"llm": roles.key("llm"), "temperature": cfg.llm_temperature,
             "max_new_tokens": max_new_tokens, "reply": "text+truncated", **extra}

    def ask(batch: list[str]) -> list[dict[str, Any]]:
        llm = roles.get("llm")
        replies = llm.batch([build(x) for x in batch], max_new_tokens=max_new_tokens,
                            temperature=cfg.llm_temperature)
        # the Reply itself, not str(r): a failed reply (a served model's empty answer) keeps
        # its mark, so the cache refuses the batch and a re-run asks again
        return [{"text": r, "truncated": is_truncated(r)} for r in replies]

    replies = cache.map(stage, parts, unique, ask, batch_size=cfg.llm_batch_size,
                        desc=stage.split(".")[-1])
    return {x: _reply(r) for x, r in zip(unique, replies)}


def _stage_llm(videos: list[_Video], roles: _Roles, cfg: Config, cache: Cache) -> None:
    """Stage 3: summary then score per position. Identical prompts are asked once (with
    greedy decoding they would get the identical reply). Batches are formed per video, so
    a video's cached replies are found again whatever other videos share the run."""
    for v in videos:
        texts = ["\n".join(d) for d in v.descriptions]
        summary_replies = _llm_map(
            "lavad.summaries", texts, lambda t: summary_messages(t.split("\n"), cfg),
            cfg.summary_max_new_tokens, roles, cfg, cache, {"prompt": cfg.summary_prompt})
        v.summary_replies = [summary_replies[t] for t in texts]
        v.summaries = [last_line(r) for r in v.summary_replies]
        score_replies = _llm_map(
            "lavad.scores", v.summaries, lambda x: score_messages(x, cfg),
            cfg.score_max_new_tokens, roles, cfg, cache,
            {"context": cfg.score_context, "format": cfg.score_format})
        v.score_replies = [score_replies[x] for x in v.summaries]
    roles.done("llm")


def _stage_summary_index(videos: list[_Video], roles: _Roles, cache: Cache) -> list[np.ndarray]:
    """Stage 4a: text embeddings of each video's unique summaries."""
    out = []
    for v in videos:
        index = list(dict.fromkeys(v.summaries))
        out.append(np.asarray(cache.memo(
            "lavad.summary_index", {"embedder": roles.key("embedder"), "summaries": index},
            lambda index=index: roles.get("embedder").encode_text(index)), dtype=np.float32))
    roles.done("embedder")
    return out


def _finish(v: _Video, summary_embeddings: np.ndarray, cfg: Config, profile: str,
            model_calls: pd.DataFrame) -> Detection:
    """Stages 4b and 5 (no model): parse, interpolate, refine, expand to frames."""
    raw, parsed, log = parse_scores(v.score_replies)
    n_missing = log.failed
    summary_cut = sum(is_truncated(r) for r in v.summary_replies)

    index, per_summary = summary_scores(v.summaries, raw)
    refined, neighbours, weights = refine_scores(v.video_embeddings, summary_embeddings,
                                                 per_summary, cfg.refine_k, cfg.temperature)

    starts = v.centres
    ends = np.minimum(starts + cfg.stride, v.num_frames)
    segments = pd.DataFrame({
        "start_frame": starts,
        "end_frame": ends,
        "centre_frame": v.centres,
        "time_s": v.centres / v.fps,
        "captions": v.captions,
        "temporal_description": ["\n".join(d) for d in v.descriptions],
        "summary": v.summaries,
        "score_reply": v.score_replies,
        "parsed": [p is not None for p in parsed],
        "raw_score": raw,
        "score": refined,
    })
    segments["explanation"] = [f"{s} (LLM score {r:.1f}, refined {f:.2f})"
                               for s, r, f in zip(v.summaries, raw, refined)]
    extras: dict[str, Any] = {
        "stride": cfg.stride,
        "window_s": cfg.window_s,
        "frames_per_window": cfg.frames_per_window,
        "positions": len(v.centres),
        "parse_failures": n_missing,
        "parse_report": log.summary(),
        "parse_failure_examples": list(log.examples),
        "score_truncated": log.truncated,
        "summary_truncated": int(summary_cut),
        "captioners": len(v.pooled_captions),
        "n_unique_captions": len(v.caption_index),
        "n_unique_summaries": len(index),
        "n_llm_prompts": len(dict.fromkeys("\n".join(d) for d in v.descriptions)) + len(index),
        "n_llm_calls": int(model_calls.loc[model_calls["role"] == "llm", "calls"].sum())
        if not model_calls.empty else 0,
        "config": dataclasses.asdict(cfg),
        # arrays for the notebooks (not written by Detection.save)
        "caption_index": list(v.caption_index),
        "pooled_captions": [list(c) for c in v.pooled_captions],
        "caption_embeddings": v.caption_embeddings,
        "window_frames": v.windows,
        "window_caption_ids": v.caption_ids,
        "frame_embeddings": v.frame_embeddings,
        "video_embeddings": v.video_embeddings,
        "summary_index": index,
        "summary_embeddings": summary_embeddings,
        "summary_scores": per_summary,
        "neighbours": neighbours,
        "weights": weights,
        "raw_frame_scores": to_frames(raw, v.num_frames, cfg.stride),
    }
    return Detection(video=str(v.path), method="lavad", profile=profile,
                     frame_scores=to_frames(refined, v.num_frames, cfg.stride), fps=v.fps,
                     segments=segments, model_calls=model_calls, extras=extras)


def run_many(videos: Sequence[str | os.PathLike], *, config: Config | None = None,
             profile: str | None = None, backends: dict[str, Any] | None = None,
             cache: Cache | str | os.PathLike | None = None,
             **overrides: Any) -> list[Detection]:
    """Run LAVAD on several videos, stage by stage, so each model is loaded once.

    Same arguments as :func:`run`. ``model_calls`` of each Detection holds the calls of
    the whole batch of videos (the stages are shared).
    """
    cfg = configure(Config, config, overrides, "LAVAD")
    store = get_cache(cache)
    roles = _Roles(backends, profile, cfg)
    before = call_stats()
    opened = [_open(v, cfg, store) for v in videos]
    from .progress import bar as progress_bar

    # one bar for the whole run (no bar per video and stage inside it)
    bar = progress_bar(total=4, desc=f"LAVAD on {len(opened)} videos", disable=len(opened) < 2)
    try:
        _stage_captions(opened, roles, cfg, store)
        bar.update(1)
        _stage_embeddings(opened, roles, cfg, store)
        bar.update(1)
        _stage_llm(opened, roles, cfg, store)
        bar.update(1)
        summary_embeddings = _stage_summary_index(opened, roles, store)
        bar.update(1)
    finally:
        bar.close()
        for role in list(roles.loaded):
            roles.done(role)
    calls = calls_since(before)
    prof = roles.profiles(_captioner_roles(cfg) + ["embedder", "llm"])
    return [_finish(v, e, cfg, prof, calls) for v, e in zip(opened, summary_embeddings)]


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: dict[str, Any] | None = None, cache: Cache | str | os.PathLike | None = None,
        **overrides: Any) -> Detection:
    """Score every frame of ``video`` with LAVAD.

    ``profile`` picks the models ("tiny", "colab", "paper", "auto"; default
    ``$VADNB_PROFILE``); ``backends`` maps a role ("captioner", "embedder", "llm") to a
    backend you built (e.g. a ``vadnb.models.scripted`` double); other keyword arguments
    override :class:`Config` fields (``stride=8``, ``llm_model="..."``). ``cache`` is a
    :class:`vadnb.cache.Cache` or a folder (default: the shared cache).

    Returns a :class:`~vadnb.detect.Detection` whose ``segments`` table holds, per
    position, the centre frame's caption, its temporal description, the summary, the LLM's
    reply and score (``raw_score``) and the refined ``score``; ``extras`` holds parse
    failures, model-call counts and the intermediate embeddings.
    """
    return run_many([video], config=config, profile=profile, backends=backends, cache=cache,
                    **overrides)[0]


def evaluate(detections: dict[str, Detection], labels: dict[str, np.ndarray],
             classes: dict[str, str] | None = None) -> dict[str, Any]:
    """Frame-level micro AUC and AP of the raw (LLM) and refined scores over all videos.

    ``labels`` maps each video name to its 0/1 frame labels (``Benchmark.frame_labels``);
    ``classes`` (name -> class, "Normal" for normal videos) adds a per-class table.
    ``ap_*`` is scikit-learn's average precision, ``ap_*_trapezoid`` the trapezoid area
    that LAVAD and XD-Violence report (``metrics.ap_name`` labels them).
    The result says whether the scores are meaningless (tiny profile).
    """
    missing = sorted(set(labels) - set(detections))
    if missing:
        raise ValueError(f"no detection for {missing[:5]}; run LAVAD on every labelled video")
    raw = {n: frame_scores_of(detections[n], "raw_score") for n in labels}
    refined = {n: np.asarray(detections[n].frame_scores) for n in labels}
    profiles = {d.profile for d in detections.values()}
    out: dict[str, Any] = {
        "videos": len(labels),
        "frames": int(sum(len(y) for y in labels.values())),
        "auc_raw": metrics.frame_auc(labels, raw),
        "ap_raw": metrics.frame_ap(labels, raw),
        "auc_refined": metrics.frame_auc(labels, refined),
        "ap_refined": metrics.frame_ap(labels, refined),
        "ap_raw_trapezoid": metrics.frame_ap(labels, raw, variant="trapezoid"),
        "ap_refined_trapezoid": metrics.frame_ap(labels, refined, variant="trapezoid"),
        "profile": profiles.pop() if len(profiles) == 1 else "mixed",
        "meaningless": any(d.meaningless for d in detections.values()),
    }
    if classes is not None:
        out["per_class_raw"] = metrics.per_class(labels, raw, classes)
        out["per_class_refined"] = metrics.per_class(labels, refined, classes)
    return out


# ---------------------------------------------------------------------------------------
# The paper's released intermediate results (captions, summaries, scores) as Detections.
# ---------------------------------------------------------------------------------------

#: Frame rates of the benchmarks whose results the paper released.
RELEASED_FPS = {"ucf_crime": 30.0, "xd_violence": 24.0}


def refine_from_neighbours(similarities: np.ndarray, neighbour_scores: np.ndarray,
                           temperature: float = 1.0) -> np.ndarray:
    """The refinement's last step from the neighbours alone: softmax(sim / temperature)
    over each position's neighbours, times their scores (the official ``src/eval.py``
    weighting, with ``temperature=1``). Both arrays are [P, k], neighbours best first."""
    sims = np.asarray(similarities, dtype=np.float64)
    vals = np.asarray(neighbour_scores, dtype=np.float64)
    if sims.shape != vals.shape or sims.ndim != 2:
        raise ValueError(f"expected similarities and scores of one shape [P, k], got "
                         f"{sims.shape} and {vals.shape}")
    w = stages._softmax(sims / temperature, axis=1)
    return (w * vals).sum(axis=1)


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON file of LAVAD's release ({err})") from err


def _pick(root: Path, pattern: str, what: str, choose: str | None, flag: str) -> Path | None:
    """The one folder matching ``pattern`` under ``root`` (``choose`` filters by name)."""
    found = sorted(p for p in root.glob(pattern) if p.is_dir())
    if choose is not None:
        found = [p for p in found if choose in p.relative_to(root).as_posix()]
    if not found:
        return None
    if len(found) > 1:
        names = [p.relative_to(root).as_posix() for p in found]
        raise ValueError(f"{root}: several {what} folders {names}; pick one with {flag}=...")
    return found[0]


def _by_frame(mapping: dict[str, Any], path: Path) -> list[tuple[int, Any]]:
    try:
        return sorted((int(k), v) for k, v in mapping.items())
    except (TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: expected an object keyed by frame index "
                         f"('0', '16', ...), as LAVAD writes it") from err


def _neighbours(mapping: dict[str, Any], centres: list[int], path: Path) -> np.ndarray:
    """{centre: {rank: value}} -> [P, k] in rank order."""
    rows = []
    for c in centres:
        entry = mapping.get(str(c))
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: no neighbours for centre frame {c}")
        rows.append([entry[str(r)] for r in range(len(entry))])
    return np.asarray(rows, dtype=np.float64)


def load_released(root: str | os.PathLike, videos: Sequence[str] | None = None, *,
                  index_name: str | None = None, experiment: str | None = None,
                  fps: float | None = None, stride: int = 16) -> dict[str, Detection]:
    """LAVAD's released intermediate results as one :class:`Detection` per video.

    ``root`` is one dataset folder of the paper's release (``ucf_crime/`` or
    ``xd_violence/``, from the links in the official README), laid out as the official
    scripts write it::

        annotations/test.txt | anomaly_test.txt        video rows: path start end label
        captions/clean/<index>/<video>.json            {centre: {frame: caption}}
        captions/summary/<llm>/<index>/<video>.json    {centre: summary}
        scores/raw/<llm>/<index>/<experiment>/<video>.json      {centre: score}
        scores/refined/<llm>/<index>/<experiment>/<video>.json  {centre: {rank: score}}
        similarity/clean_summary/<llm>/<index>/<video>.json     {centre: {rank: cosine}}

    Summaries and raw scores are required; the refinement files, when present, give the
    refined ``score`` (softmax over the neighbours' similarities, :func:`refine_from_neighbours`)
    and let :func:`rescore` re-weight it; otherwise ``score`` is the raw score. Frame counts
    come from the annotation file (else from the last centre frame + ``stride``).
    ``index_name`` / ``experiment`` pick among several folders; ``videos`` restricts the
    names (default: every video with a summary file). Profile "paper", no model calls.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"LAVAD release folder not found: {base} (unzip the "
                                "dataset's archive from the official README there)")
    summary_dir = _pick(base, "captions/summary/*/*", "summary", index_name, "index_name")
    raw_dir = _pick(base, "scores/raw/*/*/*", "raw score", experiment, "experiment")
    if summary_dir is None or raw_dir is None:
        raise FileNotFoundError(
            f"{base}: expected captions/summary/<llm>/<index>/ and "
            "scores/raw/<llm>/<index>/<experiment>/ (LAVAD's release layout)")
    clean_dir = _pick(base, "captions/clean/*", "clean caption", index_name, "index_name")
    refined_dir = _pick(base, "scores/refined/*/*/*", "refined score", experiment, "experiment")
    sim_dir = _pick(base, "similarity/clean_summary/*/*", "similarity", index_name,
                    "index_name")
    key = base.name.lower().replace("-", "_")
    rate = float(fps or RELEASED_FPS.get(key, 0) or 30.0)
    lengths: dict[str, int] = {}
    for ann in ("test.txt", "anomaly_test.txt"):
        path = base / "annotations" / ann
        if path.exists():
            for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    lengths[Path(parts[0]).name] = int(parts[2]) - int(parts[1]) + 1
                except (IndexError, ValueError) as err:
                    raise ValueError(f"{path}, line {n}: expected 'path start end label'") \
                        from err
    names = list(videos) if videos is not None else sorted(
        p.stem for p in summary_dir.glob("*.json"))
    out: dict[str, Detection] = {}
    for name in names:
        spath, rpath = summary_dir / f"{name}.json", raw_dir / f"{name}.json"
        for path in (spath, rpath):
            if not path.exists():
                raise FileNotFoundError(f"{path}: missing for video {name!r}")
        summaries = _by_frame(_read_json(spath), spath)
        raw_map = {c: float(x) for c, x in _by_frame(_read_json(rpath), rpath)}
        centres = [c for c, _ in summaries]
        if set(raw_map) != set(centres):
            raise ValueError(f"{rpath}: its centre frames differ from {spath}'s")
        raw = np.array([raw_map[c] for c in centres])
        descriptions = [""] * len(centres)
        if clean_dir is not None and (clean_dir / f"{name}.json").exists():
            cpath = clean_dir / f"{name}.json"
            clean = _read_json(cpath)
            descriptions = ["\n".join(v for _, v in _by_frame(clean.get(str(c), {}), cpath))
                            for c in centres]
        extras: dict[str, Any] = {"stride": stride, "positions": len(centres),
                                  "released": True, "source": str(base),
                                  "config": {"refine_k": 10, "temperature": 1.0}}
        score = raw
        if refined_dir is not None and sim_dir is not None \
                and (refined_dir / f"{name}.json").exists() and (sim_dir / f"{name}.json").exists():
            npath, mpath = refined_dir / f"{name}.json", sim_dir / f"{name}.json"
            nscores = _neighbours(_read_json(npath), centres, npath)
            sims = _neighbours(_read_json(mpath), centres, mpath)
            score = refine_from_neighbours(sims, nscores)
            extras.update(neighbour_scores=nscores, neighbour_similarities=sims)
            extras["config"]["refine_k"] = int(sims.shape[1])
        num_frames = lengths.get(name, centres[-1] + stride)
        starts = np.asarray(centres, dtype=np.int64)
        segments = pd.DataFrame({
            "start_frame": starts, "end_frame": np.minimum(starts + stride, num_frames),
            "centre_frame": starts, "time_s": starts / rate,
            "temporal_description": descriptions, "summary": [t for _, t in summaries],
            "raw_score": raw, "score": score,
            "explanation": [f"{t} (LLM score {r:.1f}, refined {f:.2f})"
                            for (_, t), r, f in zip(summaries, raw, score)]})
        extras["raw_frame_scores"] = to_frames(raw, num_frames, stride)
        out[name] = Detection(video=name, method="lavad", profile="paper",
                              frame_scores=to_frames(score, num_frames, stride), fps=rate,
                              segments=segments, model_calls=pd.DataFrame(), extras=extras)
    return out


# ---------------------------------------------------------------------------------------
# Figures and computed statements for notebooks 20-40 (logic here, one call per cell).
# ---------------------------------------------------------------------------------------


def drawable(text: str, font: str | None = None) -> str:
    """``text`` with every character matplotlib's font cannot draw replaced by "?", so a
    figure never shows missing-glyph boxes (tiny models write random Unicode)."""
    from matplotlib import font_manager

    path = font_manager.findfont(font_manager.FontProperties(family=font or "DejaVu Sans"))
    charmap = _charmap(path)
    out: list[str] = []
    for c in str(text):
        ok = ord(c) in charmap or c in "\n "
        if ok or not out or out[-1] != "\ufffd":
            out.append(c if ok else "\ufffd")
    # one "?" for each run of characters the font cannot draw
    return "".join(out).replace("\ufffd", "?")


_CHARMAPS: dict[str, set[int]] = {}


def _charmap(path: str) -> set[int]:
    if path not in _CHARMAPS:
        from matplotlib.ft2font import FT2Font

        _CHARMAPS[path] = set(FT2Font(path).get_charmap())
    return _CHARMAPS[path]


def plot_contact_sheet(detection: Detection, rows: Sequence[int], cols: int = 5,
                       width_in: float = 12.0) -> Any:
    """Window frames of the positions ``rows`` with the caption each retrieved.

    Each position takes a header line (centre frame, raw caption) and
    ``frames_per_window / cols`` lines of ``cols`` frames; captions are wrapped at 9 pt and
    cleaned of characters the font lacks (:func:`drawable`). Returns the matplotlib figure
    (notebook 20).
    """
    import textwrap

    import matplotlib.pyplot as plt

    from .video import read_frames

    seg, ex = detection.segments, detection.extras
    windows = ex["window_frames"]
    frames = read_frames(detection.video, indices=np.unique(windows[list(rows)]))
    image_of = dict(zip(frames.indices.tolist(), frames.images))
    n = windows.shape[1]
    lines = -(-n // cols)
    h, w = frames.images.shape[1:3]
    image_in = width_in / cols * h / w
    caption_in, header_in = 0.5, 0.35
    ratios = ([header_in] + [image_in + caption_in] * lines) * len(rows)
    fig = plt.figure(figsize=(width_in, sum(ratios) + 0.5))
    grid = fig.add_gridspec(len(ratios), cols, height_ratios=ratios, left=0.01, right=0.99,
                            bottom=0.01, top=1 - 0.5 / (sum(ratios) + 0.5), wspace=0.04,
                            hspace=0.0)
    for r, row in enumerate(rows):
        top = r * (lines + 1)
        head = fig.add_subplot(grid[top, :])
        head.axis("off")
        raw = textwrap.shorten(drawable(seg["captions"].iloc[row] or "(empty)"), 90,
                               placeholder="...")
        head.text(0, 0.5, f"position {row} · centre frame {seg['centre_frame'].iloc[row]} · "
                  f"raw caption: {raw}", fontsize=10, fontweight="bold", va="center")
        described = seg["temporal_description"].iloc[row].split("\n")
        for t in range(min(n, lines * cols)):
            cell = grid[top + 1 + t // cols, t % cols].subgridspec(
                2, 1, height_ratios=[caption_in, image_in], hspace=0.0)
            label = fig.add_subplot(cell[0])
            label.axis("off")
            text = textwrap.wrap(drawable(described[t] or "(empty)"), 26)[:2]
            label.text(0.5, 0.1, "\n".join(text), fontsize=9, ha="center", va="bottom")
            ax = fig.add_subplot(cell[1])
            ax.axis("off")
            f = int(windows[row][t])
            ax.imshow(image_of[f])
            ax.text(0.02, 0.04, f"frame {f}", transform=ax.transAxes, fontsize=8,
                    color="white", backgroundcolor=(0, 0, 0, 0.5))
    title = "window frames and the caption each retrieved"
    if detection.meaningless:
        title += "  [tiny models: meaningless]"
    fig.suptitle(title, fontsize=11)
    return fig


def similarity_statement(similarity: np.ndarray, captions: Sequence[str]) -> str:
    """What an image x caption similarity matrix shows, measured (notebook 20): how many
    captions are ever the nearest, how far the winner stands above the runner-up, and
    whether some columns are (nearly) constant over the frames."""
    sim = np.asarray(similarity, dtype=np.float64)
    best = sim.argmax(axis=1)
    chosen = len(np.unique(best))
    ordered = np.sort(sim, axis=1)
    margin = float((ordered[:, -1] - ordered[:, -2]).mean()) if sim.shape[1] > 1 else float("nan")
    spread = sim.std(axis=0)
    flat = int((spread < 1e-3).sum())
    text = (f"{sim.shape[0]} window frames x {sim.shape[1]} captions: {chosen} caption(s) "
            f"are the nearest of some frame; the nearest caption leads the runner-up by "
            f"{margin:.3f} on average (cosine).")
    if flat:
        text += (f" {flat} of {sim.shape[1]} columns barely change from frame to frame "
                 f"(std < 0.001): the image embeddings hardly differ between these frames, "
                 f"so the same captions win every row.")
    else:
        text += (f" Column spread over the frames: {spread.min():.3f} to {spread.max():.3f} "
                 "(std of the cosine).")
    return text


def truth_statement(labels: np.ndarray | None, fps: float) -> str:
    """What the shaded ground-truth band of a score plot holds, measured (notebook 30)."""
    if labels is None:
        return "No ground truth is known for this video: nothing is shaded."
    y = np.asarray(labels).astype(bool)
    if not y.any():
        return "This clip has no anomalous frame: nothing is shaded."
    edges = np.flatnonzero(np.diff(np.r_[0, y.astype(int), 0]))
    spans = ", ".join(f"{a / fps:.1f}-{b / fps:.1f} s" for a, b in zip(edges[::2], edges[1::2]))
    return f"Shaded: the ground-truth anomalous frames ({int(y.sum())} frames: {spans})."


# --------------------------------------------------------------------------- the declaration
# What detect, compare, scale, plots, lesson and data.protocols know about LAVAD
# (vadnb.registry): declared once, read by all of them.

from .lesson import Reference  # noqa: E402
from .registry import register  # noqa: E402


def _cost(fps: float, captioners: int = 1, published: bool = False, **_: Any
          ) -> list[tuple[str, str, float, str]]:
    """Model calls per minute of video with the Config defaults (``published``: LAVAD as its
    code runs, 5 captioners on every frame, against this suite's captions at used frames)."""
    n, c = 60.0 * fps, Config()
    p = n / c.stride
    caption = ((5 * n, "5 captioners x every frame") if published else
               (captioners * p, f"{captioners} x frames/{c.stride}"))
    return [("captioner", "captioner", caption[0], caption[1]),
            ("llm", "llm", 2 * p, f"2 x frames/{c.stride} (summary + score)"),
            ("embedder", "embedder", c.frames_per_window * p,
             f"{c.frames_per_window} window frames x frames/{c.stride}"),
            ("embedder", "embedder_video", p, f"1 window video x frames/{c.stride}")]


register(
    "lavad", config=Config, run=run,
    roles={"captioner": "captioner", "embedder": "embedder", "llm": "llm"},
    cost=_cost, cost_variants={"lavad-published": {"published": True}}, keep_loaded=False,
    pipeline={
            "title": "LAVAD (training-free): captions -> LLM scores -> refinement",
            "stages": [
                ("frames", "video, native fps", "a centre frame\nevery 16 frames", "data"),
                ("caption", "captioner (BLIP-2)", "one caption per\ncentre frame", "model"),
                ("clean", "ImageBind image vs\ncaption text", "10 nearest captions\n= temporal description", "model"),
                ("summarise", "LLM", "one summary per\ncentre frame", "model"),
                ("score", "LLM", "score in [0, 1] per\ncentre frame", "model"),
                ("refine", "ImageBind video vs\nsummaries, K=10", "softmax-weighted\nscore per centre", "math"),
                ("to frames", "repeat x16", "frame scores", "out"),
            ],
        },
    reference=Reference("lavad", "Harnessing Large Language Models for Training-free Video Anomaly Detection",
        "Luca Zanella, Willi Menapace, Massimiliano Mancini, Yiming Wang, Elisa Ricci",
        "CVPR 2024", "2404.01014", "github.com/lucazanella/lavad"),
    protocols=[
        dict(benchmark="UCF-Crime", split="test (290)", metric="frame AUC",
            ap_variant="—", class_metrics="—", reported=80.28,
            load="load_ucf_crime(root).subset('test')"),
        dict(benchmark="XD-Violence", split="test (800)", metric="frame AP",
            ap_variant="trapezoid", class_metrics="—", reported=62.01,
            load="load_xd_violence(root).subset('test')"),
        dict(benchmark="XD-Violence", split="test (800)", metric="frame AUC",
            ap_variant="—", class_metrics="—", reported=85.36,
            load="load_xd_violence(root).subset('test')")],
)
