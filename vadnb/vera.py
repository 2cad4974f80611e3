"""VERA: verbalized learning of guiding questions, then scoring with them (notebook 70).

VERA never changes a model weight. It "trains" a *prompt*: a short list of guiding
questions that a frozen vision-language model (VLM) asks itself before it answers
"is this video anomalous?". Two roles are played by the same frozen VLM:

* the **learner** looks at 8 frames of a training video, answers the current questions,
  and ends with ``Output: 1`` (anomaly) or ``Output: 0`` (normal);
* the **optimizer** sees the same frames, the learner's predictions, the true video-level
  labels and the questions, and writes "New Prompt Questions".

Every few steps the questions are scored on a held-out *validation* split and the set with
the best validation accuracy is kept (:func:`learn_questions`). Test videos are never used
for that choice: the function refuses them.

Inference (:func:`run`) asks the VLM, with the learned questions, about a 10 s window of
8 frames around every 16th frame, then refines the 0/1 answers with a retrieval ensemble
over the video's own segments, smooths them over time and repeats them to frames.

>>> import vadnb
>>> det = vadnb.detect("clip.mp4", method="vera", questions="learned_questions.json")  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .cache import Cache, file_digest, get_cache
from .detect import Detection
from .metrics import segments_to_frames
from .models.base import Reply, call_stats, calls_since, is_truncated
from .stages import (Difference, ParseLog, centre_frames, configure, gaussian_smooth,
                     knn_softmax, parse_binary_label, window_indices)

__all__ = [
    "Config",
    "LearnResult",
    "DEFAULT_QUESTIONS_PATH",
    "default_questions",
    "load_questions",
    "save_questions",
    "learner_prompt",
    "optimizer_prompt",
    "parse_questions",
    "parse_label",
    "even_frame_indices",
    "neighbour_count",
    "retrieval_ensemble",
    "paper_kernel",
    "smooth_segments",
    "round_scores",
    "position_prior",
    "refine_answers",
    "learn_questions",
    "plot_history",
    "run",
    "run_many",
    "load_initial_scores",
    "from_initial_scores",
    "oracle_backends",
    "perfect_perception",
    "learning_summary",
    "inference_summary",
    "auc_note",
    "CAMPUS_QUESTIONS",
    "PAPER_STEP3",
    "DIFFERENCES",
]

#: The hand-written starting questions shipped with the suite.
DEFAULT_QUESTIONS_PATH = Path(__file__).resolve().parents[1] / "data" / "vera_questions.json"

# Bump when a prompt's wording changes, so cached answers to the old wording are not reused.
PROMPT_VERSION = "vera-prompts-2"

#: Step 3 as the paper's code computes it (``compute_auc.py``), one keyword away:
#: ``vera.run(video, **vera.PAPER_STEP3)``. The defaults stay the corrected variant.
PAPER_STEP3: dict[str, Any] = {"smoothing": "paper", "round_decimals": 1,
                               "position_prior": True}


@dataclass
class Config:
    """VERA's settings, with the public code's defaults.

    The paper (CVPR 2025) uses InternVL2-8B as learner and optimizer and reports frame-level
    ROC-AUC 86.55 on UCF-Crime (with the position prior) and 88.26 on XD-Violence. Its code
    answers with greedy decoding and up to 1024 new tokens, and resizes every frame to
    448 x 448 before the VLM sees it. Where vadnb departs from that code, :data:`DIFFERENCES`
    says so; the paper's step 3 is :data:`PAPER_STEP3`.
    """

    vlm_model: str | None = None
    """Model playing both learner and optimizer (None: the profile's VLM)."""
    embedder_model: str | None = None
    """Model embedding each segment's clip for the retrieval ensemble (None: the profile's)."""

    # --- verbalized learning (training) ---
    batch_size: int = 2
    """Training videos per optimizer step."""
    train_frames: int = 8
    """Frames per training video, sampled evenly over the whole video."""
    image_size: int = 448
    """Side in pixels of every frame given to the VLM: frames are resized to a
    ``image_size`` x ``image_size`` square, 448 as in VERA's code (one 448 px tile per frame
    for InternVL2). This bounds the image tokens per call whatever the video's resolution."""
    max_questions: int = 5
    """The optimizer's new list is cut to this many questions."""
    steps: int | None = None
    """Optimizer steps; None means ``epochs`` passes over the training videos."""
    epochs: int = 1
    """Passes over the training videos when ``steps`` is None."""
    validate_every: int = 1
    """Score the current questions on the validation split every this many steps (the
    initial and the final question sets are always scored)."""
    seed: int = 0
    """Seed of the training-video shuffle (one shuffle per epoch)."""
    show_replies: bool = False
    """Also show the optimizer each learner reply (vadnb's option; the paper's optimizer
    sees only the predictions and the targets)."""

    # --- inference ---
    stride: int = 16
    """One VLM query per this many frames (a segment)."""
    window_s: float = 10.0
    """Seconds of video around each segment's centre frame that the VLM sees."""
    window_frames: int = 8
    """Frames sampled evenly from that window."""
    ensemble_fraction: float = 0.15
    """Retrieval ensemble: each segment averages its ``floor(fraction * #segments)`` most
    similar segments of the same video (at least 1; the segment itself is its own nearest)."""
    temperature: float = 0.1
    """Softmax temperature over the neighbours' cosine similarities."""
    smooth_taps: int = 15
    """Length of the Gaussian smoothing kernel, in segments."""
    smooth_sigma: float = 10.0
    """Width (sigma) of that kernel, in segments; the kernel is normalised to sum 1."""
    smoothing: str = "centred"
    """``"centred"``: the kernel sampled at whole-segment offsets around its centre, ends
    padded by reflection (unbiased at the ends). ``"paper"``: the official code's kernel,
    sampled at ``linspace(-ceil(taps/2), floor(taps/2), taps)`` (off-centre), convolved with
    zero padding (scores pulled toward 0 near both ends of every video)."""
    round_decimals: int | None = None
    """Round every smoothed segment score to this many decimals (the paper's code: 1)."""
    position_prior: bool = False
    """Multiply frame scores by a bump centred on the video's middle. This is a prior about
    the UCF-Crime test set (its anomalies sit mostly mid-video) that the published UCF
    number uses; it is not part of the method and is off by default."""
    vlm_batch_size: int = 8
    """VLM requests per batched call (and per resumable cache entry)."""
    max_new_tokens: int = 1024
    """Token budget of every VLM reply (1024 as in the paper's code: five answered
    questions and a reasoning section need it). Replies cut at the budget are counted."""


#: Allowed range of each numeric Config field, checked by ``vadnb.stages.configure`` when
#: the method starts (types are checked from the annotations).
LIMITS = {"batch_size": ">= 1", "train_frames": ">= 1", "image_size": "[16, 4096]",
          "max_questions": ">= 1", "steps": ">= 0", "epochs": ">= 1", "validate_every": ">= 1",
          "seed": ">= 0", "stride": ">= 1", "window_s": "> 0", "window_frames": ">= 1",
          "ensemble_fraction": "[0, 1]", "temperature": "> 0", "smooth_taps": ">= 1",
          "smooth_sigma": "> 0", "vlm_batch_size": ">= 1", "max_new_tokens": ">= 1"}


# ----------------------------------------------------------------------------------------
# questions: defaults, JSON files, prompts, parsing
# ----------------------------------------------------------------------------------------

def _check_questions(questions: Any, source: str) -> list[str]:
    if isinstance(questions, str) or not isinstance(questions, Sequence):
        raise ValueError(f"{source}: expected a list of question strings, got "
                         f"{type(questions).__name__}")
    out = [str(q).strip() for q in questions]
    if not out or any(not q for q in out):
        raise ValueError(f"{source}: need at least one non-empty question; "
                         "write them as a JSON list of strings")
    return out


def load_questions(path: str | os.PathLike) -> list[str]:
    """Questions from a JSON file: ``{"questions": [...], "meta": {...}}`` or a plain list."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"questions file not found: {p}; save one with "
                                "vadnb.vera.save_questions(questions, path)")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{p} is not valid JSON ({err}); expected "
                         '{"questions": ["...?", ...]}') from err
    if isinstance(data, dict):
        if "questions" not in data:
            raise ValueError(f'{p}: no "questions" key; expected {{"questions": ["...?", ...]}}')
        data = data["questions"]
    return _check_questions(data, str(p))


def save_questions(questions: Sequence[str], path: str | os.PathLike, **meta: Any) -> Path:
    """Write questions (and any JSON-able ``meta``: val_acc, step, model...) to a JSON file."""
    qs = _check_questions(list(questions), "save_questions")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps({"questions": qs, "meta": meta}, indent=2, default=str) + "\n")
    os.replace(tmp, p)
    return p


def default_questions() -> list[str]:
    """The suite's hand-written starting questions (``data/vera_questions.json``)."""
    return load_questions(DEFAULT_QUESTIONS_PATH)


def _numbered(questions: Sequence[str]) -> str:
    return "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))


_MODEL_DESCRIPTION = (
    "You classify videos into two classes. The input is a sequence of frames of one video, "
    "in time order, and you decide whether the video contains an anomaly. Your output is an "
    "integer class label from the set {0, 1}: 0 stands for a normal video and 1 for an "
    "abnormal video. Answer the prompt questions first.")


def _question_block(questions: Sequence[str]) -> str:
    return ("Looking at the video frames, answer each of these questions and give a "
            "one-sentence explanation:\n"
            f"{_numbered(questions)}\n"
            "From these answers, settle the question 'Is there any anomaly in the video?' "
            "with either 'Yes, there is an anomaly' or 'No, there is no anomaly'.")


def learner_prompt(questions: Sequence[str], num_frames: int = 8) -> str:
    """The learner's (and inference's) prompt, in the structure of VERA's learner
    instruction: the model's role and task, the guiding questions, the input, and a strict
    reply format that ends with ``Output:`` and the 0/1 label (notebook 70)."""
    return (
        "You are the model.\n"
        "** Model description **\n"
        f"{_MODEL_DESCRIPTION}\n"
        "** Prompt questions **\n"
        f"{_question_block(questions)}\n"
        "** Input **\n"
        f"The {num_frames} attached images are the frames of the video, in time order.\n"
        "Reply strictly in this format:\n"
        "Answers to Prompt Questions: [your answer to each prompt question]\n"
        "Output:\n"
        "[only the integer class label, 0 or 1; make any assumption you need]\n"
        "Write nothing else.")


def optimizer_prompt(questions: Sequence[str], predictions: Sequence[int | None],
                     targets: Sequence[int], replies: Sequence[str] | None = None,
                     frames_per_video: int = 8, max_questions: int = 5) -> str:
    """The optimizer's prompt, in the structure of VERA's optimizer instruction.

    Its parts: the optimizer's role and goal; the batch of videos (their frames go with
    the prompt as images, ``frames_per_video`` per video, in order); the learner's
    description; the current questions; the learner's predictions and the targets (and,
    only when ``replies`` is given, what the learner wrote); then the task: keep the
    questions if the learner does well, otherwise improve them, with questions based on
    features seen in the input videos, reasoning step by step before a "New Prompt
    Questions:" list of at most ``max_questions`` (notebook 70).
    """
    n = len(targets)
    videos = "; ".join(f"video {i + 1}: images {i * frames_per_video + 1}-"
                       f"{(i + 1) * frames_per_video}" for i in range(n))
    said = ", ".join("?" if p is None else str(int(p)) for p in predictions)
    lines = [
        "You are the optimizer of a model. Your goal is to find the prompt questions that best "
        "help the model detect anomalies in videos. The model answered the Current Prompt "
        "Questions below to predict the class label of each input video, and you are given "
        "the target labels. Improve the Current Prompt Questions so that the model's "
        "predictions get better.",
        f"** Inputs: a batch of {n} videos drawn at random **",
        f"The attached images are their frames, in time order ({videos}).",
        "** Model description **",
        _MODEL_DESCRIPTION,
        "** Current Prompt Questions **",
        _question_block(questions),
        "** The model's predictions **",
        f"[{said}]" + (" (? = no readable answer)" if None in list(predictions) else ""),
        "** The targets **",
        f"[{', '.join(str(int(t)) for t in targets)}]",
    ]
    if replies is not None:
        lines.append("** The model's replies **")
        lines += [f"Video {i + 1}: \"{' '.join(str(r).split())[:300]}\""
                  for i, r in enumerate(replies)]
    lines += [
        "If the model does well, you may keep the current prompt questions. If it does not, "
        "improve on the Current Prompt Questions so that the classification error goes down "
        "on this batch and on the next batch of random videos. Write no more than "
        f"{max_questions} New Prompt Questions. Think step by step and reply strictly in "
        "this format:",
        "Reasoning:",
        "[explicit and detailed: work out yourself how to improve the Current Prompt "
        "Questions, using the features you see in the videos; you have no computer to help]",
        "New Prompt Questions:",
        f"[your new prompt questions, at most {max_questions}, one per line; each must be "
        "based on features seen in the input videos]",
        "Write nothing else.",
    ]
    return "\n".join(lines)


# Item markers: a number ("1.", "1)", "(1)", "1:"), "Q1:" / "Question 1:", or a bullet.
_NUM = r"\(?\d{1,2}[.):]\)?"
_QNUM = r"q(?:uestion)?\s*\d{1,2}\s*[:.)]"
_BOLD = r"(?:\*\*)?"
# an item at the start of a line (bold markers allowed: "**1.**", "**Q1:**")
_LINE_ITEM = re.compile(rf"^\s*{_BOLD}(?:{_NUM}|{_QNUM}|[-*•]){_BOLD}\s+(.+?)\s*$", re.I)
# a numbered marker inside a line, after the end of the previous item: "...? 2. Is ..."
_INLINE_SPLIT = re.compile(rf"(?<=[?.!;])\s+{_BOLD}(?:{_NUM}|{_QNUM}){_BOLD}\s+", re.I)
_INLINE_FIRST = re.compile(rf"^\s*{_BOLD}(?:{_NUM}|{_QNUM}){_BOLD}\s+", re.I)


def _clean_item(text: str) -> str:
    return text.strip().strip("*`\"'").strip()


def _is_question_like(q: str) -> bool:
    return len(re.findall(r"[A-Za-z]{2,}", q)) >= 3 and len(q) <= 400


def parse_questions(reply: str, max_questions: int = 5) -> list[str] | None:
    """The guiding questions in an optimizer reply, or None when it holds none.

    Reads what follows the last "New Prompt Questions" heading; without the heading, only
    lines ending with "?" count (so reasoning text is not learned). Accepted layouts: a
    numbered list ("1.", "1)", "(1)", "**1.**"), bullets ("-", "*", "•"), "Q1:" or
    "Question 1:" items, an inline list ("1. Is A? 2. Is B?" on one line) and plain lines
    or sentences ending with "?". An item counts when it has at least three words made of
    letters, so a model's gibberish ("1. ##@@", "2. a") is rejected rather than learned.
    Duplicates are dropped and at most ``max_questions`` are kept (notebook 70).
    """
    text = str(reply or "")
    at = text.lower().rfind("new prompt questions")
    heading = at >= 0
    if heading:
        text = text[at + len("new prompt questions"):].lstrip(" :*#\t")
    candidates: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("```"):
            continue
        # an inline list: split it at its numbered markers
        parts = _INLINE_SPLIT.split(line)
        if len(parts) > 1:
            candidates += [_INLINE_FIRST.sub("", p) for p in parts]
            continue
        m = _LINE_ITEM.match(line)
        if m:
            candidates.append(m.group(1))
        elif line.count("?") > 1:  # several plain questions on one line
            candidates += [s + "?" for s in re.split(r"(?<=\?)\s+", line.rstrip("?"))]
        elif line.endswith("?") or heading:
            candidates.append(line)
    found: list[str] = []
    for q in (_clean_item(c) for c in candidates):
        if q.endswith("??"):
            q = q.rstrip("?") + "?"
        if not heading and not q.endswith("?"):
            continue
        if not _is_question_like(q) or q.lower() in {f.lower() for f in found}:
            continue
        found.append(q)
    return found[:max_questions] or None


_LIST_NUMBER = re.compile(r"(?m)^\s*\(?[01][.):]\)?\s+\S")


def parse_label(reply: str) -> int | None:
    """The learner's 0/1 label: the first 0 or 1 after the last "Output", else the last
    standalone 0/1 that is not list numbering ("1. Is anyone..."), else the reply's own
    verdict ("there is an anomaly" / "there is no anomaly"), else a leading yes/no.
    None when nothing fits (notebook 70)."""
    t = str(reply or "")
    idx = t.lower().rfind("output")
    if idx >= 0:
        m = re.search(r"(?<![\w.])([01])(?![\w]|\.\d)", t[idx + len("output"):])
        if m:
            return int(m.group(1))
    masked = _LIST_NUMBER.sub(lambda m: " " * len(m.group(0)), t)
    masked = re.sub(r"(?i)\b(?:q(?:uestion)?|frame|image|video)\s*\d+", " ", masked)
    ms = re.findall(r"(?<![\w.])([01])(?![\w]|\.\d)", masked)
    if ms:
        return int(ms[-1])
    low = masked.lower()
    if "there is no anomaly" in low:
        return 0
    if "there is an anomaly" in low:
        return 1
    return parse_binary_label(masked)


def _explanation(reply: str) -> str:
    """The reply without its final "Output: x" line, on one line, at most 400 characters."""
    text = re.sub(r"(?is)\boutput\s*:?\s*\[?[01]\b.*$", "", str(reply or "")).strip()
    text = " ".join((text or str(reply or "")).split())
    return text[:400] if text else "(empty reply)"


# ----------------------------------------------------------------------------------------
# the numeric steps of inference (pure functions, tested against the official computation)
# ----------------------------------------------------------------------------------------

def even_frame_indices(num_frames: int, n: int) -> np.ndarray:
    """``n`` frames spread evenly over the whole video: the middle of each of n equal parts."""
    if num_frames <= 0:
        raise ValueError(f"video has {num_frames} frames; nothing to sample")
    return np.floor((np.arange(n) + 0.5) * num_frames / n).astype(np.int64)


def neighbour_count(num_segments: int, fraction: float = 0.15) -> int:
    """How many neighbours the retrieval ensemble averages: ``floor(fraction * n)``, at
    least 1 (the segment itself)."""
    return max(1, int(math.floor(fraction * num_segments + 1e-9)))


def retrieval_ensemble(embeddings: np.ndarray, scores: np.ndarray, fraction: float = 0.15,
                       temperature: float = 0.1) -> tuple[np.ndarray, int]:
    """VERA step 2: each segment's score becomes the softmax-weighted mean of the scores of
    its ``n = max(1, floor(fraction * #segments))`` most cosine-similar segments (itself
    included), weights ``softmax(similarity / temperature)``. Returns ``(refined, n)``.

    The neighbours come from :func:`vadnb.stages.knn_softmax` (shared with LAVAD's
    refinement, notebook 40)."""
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
                    variant: str = "centred") -> np.ndarray:
    """VERA step 3: a normalised Gaussian (``taps`` long, ``sigma`` wide) over the segments.

    ``variant="centred"`` (default): a symmetric kernel, ends padded by reflection.
    ``variant="paper"``: the official code's :func:`paper_kernel`, zero-padded "same"
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
    """Round every value to ``decimals`` (None: unchanged), as Python's ``round`` does."""
    s = np.asarray(scores, dtype=np.float64)
    if decimals is None:
        return s
    return np.array([round(float(v), int(decimals)) for v in s.ravel()], dtype=np.float64)


def position_prior(num_frames: int) -> np.ndarray:
    """``exp(-0.5 ((t - c) / c)^2)`` with ``c = floor(n/2)``, for frame t of n: 1 mid-video,
    0.61 at the ends (as in VERA's code).

    A UCF-Crime dataset prior (its anomalies sit mostly mid-video), not part of VERA's
    method; :class:`Config` keeps it off unless ``position_prior=True``.
    """
    c = max(1, int(num_frames) // 2)
    t = np.arange(num_frames, dtype=np.float64)
    return np.exp(-0.5 * ((t - c) / c) ** 2)


def refine_answers(labels: Sequence[float | None], embeddings: np.ndarray, num_frames: int,
                   config: Config | None = None, **overrides: Any) -> dict[str, Any]:
    """VERA's steps 2 and 3 on one video's step-1 answers (one 0/1 per segment; None for
    an unreadable answer, filled from its neighbours).

    Returns ``raw`` (filled answers), ``ensemble`` (after step 2), ``smoothed`` (per
    segment, after step 3 and rounding), ``frame_scores`` (repeated over each segment's
    ``stride`` frames, with the position prior when asked), ``neighbours`` and
    ``unparseable``. Used by :func:`run` and by :func:`from_initial_scores`.
    """
    from .stages import interpolate_missing

    cfg = _config(config, overrides)
    raw, missing = interpolate_missing([None if v is None else float(v) for v in labels])
    refined, n = retrieval_ensemble(embeddings, raw, cfg.ensemble_fraction, cfg.temperature)
    smoothed = round_scores(smooth_segments(refined, cfg.smooth_taps, cfg.smooth_sigma,
                                            cfg.smoothing), cfg.round_decimals)
    frames = segments_to_frames(smoothed, int(num_frames), segment_length=cfg.stride)
    frames = np.asarray(frames, dtype=np.float64)
    if cfg.position_prior:
        frames = frames * position_prior(int(num_frames))
    return {"raw": raw, "ensemble": refined, "smoothed": smoothed, "frame_scores": frames,
            "neighbours": n, "unparseable": missing}


# ----------------------------------------------------------------------------------------
# plumbing: config, lazily loaded models, frames, cached VLM calls
# ----------------------------------------------------------------------------------------

def _config(config: Config | None, overrides: dict[str, Any]) -> Config:
    cfg = configure(Config, config, overrides, "VERA")
    for name in ("batch_size", "train_frames", "image_size", "max_questions", "epochs",
                 "validate_every", "stride", "window_frames", "smooth_taps", "vlm_batch_size",
                 "max_new_tokens"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"Config.{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.steps is not None and cfg.steps < 0:
        raise ValueError(f"Config.steps must be >= 0 or None, got {cfg.steps}")
    if cfg.smoothing not in ("centred", "paper"):
        raise ValueError(f"Config.smoothing must be 'centred' or 'paper', got {cfg.smoothing!r}")
    return cfg


class _Roles:
    """The models a run uses, loaded only when a stage misses the cache.

    Given backends are used as they are and never released. A missing role is loaded from
    the profile on first use; :meth:`release` frees it, so the VLM and the embedder are
    never held on the GPU together.
    """

    def __init__(self, cfg: Config, profile: str | None, backends: dict[str, Any] | None):
        self.cfg, self.profile = cfg, profile
        self.given = dict(backends or {})
        self.loaded: dict[str, Any] = {}

    def _resolved(self) -> str:
        from .models.profiles import resolve_profile

        return resolve_profile(self.profile)

    def key(self, role: str) -> str:
        """The model's name for cache keys, known without loading it (the same name the
        loaded backend will carry)."""
        if role in self.given:
            return str(self.given[role].name)
        model = getattr(self.cfg, f"{role}_model")
        if model is None:
            from .models.profiles import model_spec

            model = model_spec(role, self._resolved()).model
        model = str(model)
        if model.startswith("tiny:"):
            from .models.tiny import TINY_VERSION

            model = f"{model}@v{TINY_VERSION}"
        return model

    def profile_of(self, roles: Sequence[str]) -> str:
        names = set()
        for role in roles:
            if role in self.given:
                b = self.given[role]
                names.add("tiny" if getattr(b, "meaningless", False)
                          else str(getattr(b, "profile", "custom")))
            elif getattr(self.cfg, f"{role}_model"):
                names.add("tiny" if self.key(role).startswith("tiny:") else "custom")
            else:
                names.add(self._resolved())
        return "tiny" if "tiny" in names else (names.pop() if len(names) == 1 else "custom")

    def get(self, role: str) -> Any:
        if role in self.given:
            return self.given[role]
        if role not in self.loaded:
            for other in list(self.loaded):  # one loaded model on the device at a time
                self.release(other)
            from . import models

            self.loaded[role] = models.load(role, profile=self.profile,
                                            model=getattr(self.cfg, f"{role}_model"))
        return self.loaded[role]

    def release(self, role: str) -> None:
        backend = self.loaded.pop(role, None)
        if backend is not None:
            backend.release()

    def release_all(self) -> None:
        for role in list(self.loaded):
            self.release(role)


_probes: dict[str, Any] = {}


def _probe(path: str) -> Any:
    from .video import probe

    key = file_digest(path)
    if key not in _probes:
        _probes[key] = probe(path)
    return _probes[key]


def _read(path: str, indices: np.ndarray, size: int) -> list[np.ndarray]:
    from .video import read_frames

    order = np.unique(indices)
    frames = read_frames(path, indices=order, size=(size, size))
    where = {int(i): k for k, i in enumerate(frames.indices)}
    return [frames.images[where[int(i)]] for i in indices]


def _vlm_batch(vlm: Any, requests: list[tuple[list[np.ndarray], str]],
               cfg: Config) -> list[Reply]:
    """One batched VLM call; the token budget is passed when the backend takes it."""
    params = inspect.signature(vlm.batch).parameters
    takes = "max_new_tokens" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {"max_new_tokens": cfg.max_new_tokens} if takes else {}
    replies = list(vlm.batch(requests, **kwargs))
    if len(replies) != len(requests):
        raise RuntimeError(f"{vlm.name} returned {len(replies)} replies for {len(requests)} "
                           "requests")
    return [r if isinstance(r, Reply) else Reply(str(r)) for r in replies]  # keeps a failed mark


def _store(replies: Sequence[Reply]) -> list[dict[str, Any]]:
    """Replies as cache values: the text with its truncated flag beside it."""
    return [{"text": r, "truncated": is_truncated(r)} for r in replies]  # failed: not cached


def _load(values: Sequence[Any]) -> list[Reply]:
    return [Reply(v["text"], truncated=bool(v["truncated"])) if isinstance(v, dict)
            else Reply(str(v)) for v in values]


class _FrameStream:
    """The frames of one video, decoded in a single forward pass while requests move forward.

    Inference asks for the windows of segment after segment; their frames only move forward
    in the video, so one sequential decode serves them all, and frames behind the current
    request are dropped (memory stays at about one window's worth). A request that goes back
    restarts the decode, which is slow but still exact.
    """

    def __init__(self, path: str, needed: np.ndarray, size: int, chunk: int = 64):
        self.path, self.size, self.chunk = path, (size, size), chunk
        self.needed = np.unique(np.asarray(needed, dtype=np.int64))
        self._restart()

    def _restart(self) -> None:
        from .video import iter_frames

        self._chunks = iter_frames(self.path, indices=self.needed, size=self.size,
                                   chunk=self.chunk)
        self._buffer: dict[int, np.ndarray] = {}
        self._floor = 0  # frames below this index were dropped
        self._last = -1  # highest frame index decoded so far

    def get(self, indices: Sequence[int]) -> list[np.ndarray]:
        wanted = [int(i) for i in indices]
        if min(wanted) < self._floor:
            self._restart()
        while max(wanted) > self._last:
            frames = next(self._chunks)
            for i, image in zip(frames.indices, frames.images):
                self._buffer[int(i)] = image
            self._last = int(frames.indices[-1])
        out = [self._buffer[i] for i in wanted]
        self._floor = min(wanted)
        for i in [i for i in self._buffer if i < self._floor]:
            del self._buffer[i]
        return out


# ----------------------------------------------------------------------------------------
# verbalized learning
# ----------------------------------------------------------------------------------------

@dataclass
class LearnResult:
    """What :func:`learn_questions` found.

    questions: the chosen set (best validation accuracy); history: one row per question
    set: ``step``, ``questions``, ``source`` (initial, optimizer, or kept because the
    optimizer's reply was unreadable), ``train_acc`` (on the batch it was used for),
    ``val_acc`` (NaN when not validated at that step), ``optimizer_reply`` (what the
    optimizer wrote after seeing this set's results) and ``chosen``; learner_parse /
    optimizer_parse: replies that could not be read.
    """

    questions: list[str]
    initial_questions: list[str]
    history: pd.DataFrame
    best_step: int
    best_val_acc: float
    profile: str
    model: str
    learner_parse: ParseLog = field(default_factory=ParseLog)
    optimizer_parse: ParseLog = field(default_factory=ParseLog)

    @property
    def meaningless(self) -> bool:
        from .models.profiles import MEANINGLESS_PROFILES

        return self.profile in MEANINGLESS_PROFILES

    def save_history(self, path: str | os.PathLike) -> Path:
        """Write the history as CSV, each question set as a JSON list in one cell."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.history.assign(questions=self.history["questions"].map(json.dumps)).to_csv(
            p, index=False)
        return p

    def save(self, path: str | os.PathLike) -> Path:
        """Write the chosen questions with their validation accuracy, step and model."""
        return save_questions(self.questions, path, step=self.best_step,
                              val_acc=self.best_val_acc, model=self.model, profile=self.profile,
                              meaningless=self.meaningless)


def _video_table(videos: Any, what: str) -> pd.DataFrame:
    """A Benchmark, a DataFrame (path + is_anomalous or label) or [(path, 0/1), ...]."""
    if hasattr(videos, "videos") and isinstance(videos.videos, pd.DataFrame):
        table = videos.videos.copy()
    elif isinstance(videos, pd.DataFrame):
        table = videos.copy()
    else:
        rows = [{"path": str(p), "is_anomalous": int(y)} for p, y in videos]
        table = pd.DataFrame(rows, columns=["path", "is_anomalous"])
    if "path" not in table:
        raise ValueError(f"{what} videos need a 'path' column")
    if "is_anomalous" not in table:
        if "label" not in table:
            raise ValueError(f"{what} videos need an 'is_anomalous' (0/1) or 'label' column")
        table["is_anomalous"] = table["label"].astype(str).str.lower() != "normal"
    if "split" in table and (table["split"].astype(str) == "test").any():
        bad = [Path(p).name for p in table.loc[table["split"].astype(str) == "test", "path"]]
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise ValueError(
            f"{what} videos include {len(bad)} from the test split ({shown}). "
            "VERA chooses its questions on validation accuracy; tuning on test videos would "
            "make the test score meaningless. Pass bench.subset('train') and bench.subset('val').")
    if table.empty:
        raise ValueError(f"no {what} videos: VERA needs at least one")
    table["path"] = table["path"].astype(str)
    table["target"] = table["is_anomalous"].astype(bool).astype(int)
    table["digest"] = [file_digest(p) for p in table["path"]]
    return table.reset_index(drop=True)


def _ask_learner(roles: _Roles, table: pd.DataFrame, questions: list[str], cfg: Config,
                 cache: Cache, desc: str) -> list[Reply]:
    """The learner's replies for these videos (cached per video, questions and model,
    with each reply's truncated flag)."""
    paths = dict(zip(table["digest"], table["path"]))
    prompt = learner_prompt(questions, cfg.train_frames)

    def compute(digests: list[str]) -> list[dict[str, Any]]:
        requests = []
        for d in digests:
            idx = even_frame_indices(_probe(paths[d]).num_frames, cfg.train_frames)
            requests.append((_read(paths[d], idx, cfg.image_size), prompt))
        return _store(_vlm_batch(roles.get("vlm"), requests, cfg))

    parts = {"model": roles.key("vlm"), "questions": questions, "frames": cfg.train_frames,
             "sampling": "even-whole-video", "image_size": cfg.image_size,
             "prompt": PROMPT_VERSION, "max_new_tokens": cfg.max_new_tokens}
    return _load(cache.map("vera.learner", parts, list(table["digest"]), compute,
                           batch_size=cfg.vlm_batch_size, desc=desc))


def _accuracy(replies: Sequence[Reply], targets: Sequence[int],
              log: ParseLog) -> tuple[float, list]:
    preds = [log.record(r, parse_label(r)) for r in replies]
    # an unreadable reply is a wrong prediction: it never counts as correct
    correct = [p is not None and p == t for p, t in zip(preds, targets)]
    return float(np.mean(correct)), preds


def _batches(n_videos: int, cfg: Config, steps: int) -> list[np.ndarray]:
    """Which training videos each step sees: one fresh shuffle per epoch, cut in batches."""
    out: list[np.ndarray] = []
    epoch = 0
    while len(out) < steps:
        order = np.random.default_rng(cfg.seed + epoch).permutation(n_videos)
        out += [order[i:i + cfg.batch_size] for i in range(0, n_videos, cfg.batch_size)]
        epoch += 1
    return out[:steps]


def _optimizer_step(roles: _Roles, train: pd.DataFrame, batch: np.ndarray,
                    questions: list[str], cfg: Config, cache: Cache,
                    step: int) -> dict[str, Any]:
    rows = train.iloc[batch]
    replies = _ask_learner(roles, rows, questions, cfg, cache, desc=f"learner step {step}")
    log = ParseLog()
    train_acc, preds = _accuracy(replies, list(rows["target"]), log)
    images: list[np.ndarray] = []
    for path in rows["path"]:
        images += _read(path, even_frame_indices(_probe(path).num_frames, cfg.train_frames),
                        cfg.image_size)
    prompt = optimizer_prompt(questions, preds, list(rows["target"]),
                              replies if cfg.show_replies else None, cfg.train_frames,
                              cfg.max_questions)
    reply = _vlm_batch(roles.get("vlm"), [(images, prompt)], cfg)[0]
    new = parse_questions(reply, cfg.max_questions)
    return {"questions_in": questions, "replies": list(replies),
            "replies_truncated": [is_truncated(r) for r in replies],
            "predictions": [-1 if p is None else int(p) for p in preds],
            "train_acc": train_acc, "learner_failed": log.failed,
            "optimizer_reply": reply, "optimizer_truncated": is_truncated(reply),
            "parsed": new is not None,
            "questions_out": new if new is not None else questions}


def learn_questions(train: Any, val: Any, *, config: Config | None = None,
                    profile: str | None = None, backends: dict[str, Any] | None = None,
                    cache: Cache | str | None = None,
                    questions: Sequence[str] | str | os.PathLike | None = None,
                    **overrides: Any) -> LearnResult:
    """Verbalized learning: improve the guiding questions without touching any weight.

    ``train`` and ``val`` are Benchmarks (e.g. ``bench.subset("train")``), DataFrames with
    ``path`` and ``is_anomalous`` (or ``label``), or lists of ``(path, 0/1)``. Videos of the
    test split are refused. Each step the learner answers a batch of training videos with the
    current questions and the optimizer (the same VLM) proposes new ones; every
    ``validate_every`` steps the questions are scored on ``val``; the set with the best
    validation accuracy wins (the earliest on ties). An unreadable learner reply counts as a
    wrong prediction; an optimizer reply without questions keeps the previous questions
    (both counted, with the replies cut at the token budget counted apart).

    ``questions`` are the starting set (a list or a JSON file; None: the shipped set).
    Every finished step is cached, so an interrupted run continues from the last one, and
    a fully cached run loads no model. A VLM loaded here is released before returning.
    """
    cfg = _config(config, overrides)
    train_t, val_t = _video_table(train, "training"), _video_table(val, "validation")
    shared = set(train_t["digest"]) & set(val_t["digest"])
    if shared:
        raise ValueError(f"{len(shared)} video(s) are in both the training and the validation "
                         "videos; validation must be held out")
    roles = _Roles(cfg, profile, backends)
    store = get_cache(cache)
    start = _resolve_questions(questions)
    steps = cfg.steps if cfg.steps is not None else cfg.epochs * math.ceil(
        len(train_t) / cfg.batch_size)
    run_key = {"model": roles.key("vlm"), "prompt": PROMPT_VERSION, "initial": start,
               "train": list(zip(train_t["digest"], train_t["target"])),
               "batch_size": cfg.batch_size, "frames": cfg.train_frames,
               "image_size": cfg.image_size, "max_questions": cfg.max_questions,
               "seed": cfg.seed, "max_new_tokens": cfg.max_new_tokens,
               "show_replies": cfg.show_replies}
    learner_log, optimizer_log = ParseLog(), ParseLog()
    rows: list[dict[str, Any]] = []
    current, source = start, "initial"

    def validate(qs: list[str], step: int) -> float:
        replies = _ask_learner(roles, val_t, qs, cfg, store, desc=f"validation step {step}")
        return _accuracy(replies, list(val_t["target"]), learner_log)[0]

    from tqdm.auto import tqdm

    try:
        for step, batch in enumerate(tqdm(_batches(len(train_t), cfg, steps),
                                          desc="VERA steps", disable=steps <= 1)):
            due = step % cfg.validate_every == 0
            val_acc = validate(current, step) if due else float("nan")
            record = store.memo("vera.step", {**run_key, "step": step},
                                lambda: _optimizer_step(roles, train_t, batch, current, cfg,
                                                        store, step))
            cut = record.get("replies_truncated") or [False] * len(record["replies"])
            for reply, pred, flag in zip(record["replies"], record["predictions"], cut):
                learner_log.record(reply, None if pred < 0 else pred, truncated=flag)
            optimizer_log.record(record["optimizer_reply"], True if record["parsed"] else None,
                                 truncated=bool(record.get("optimizer_truncated", False)))
            rows.append({"step": step, "questions": list(current), "source": source,
                         "train_acc": float(record["train_acc"]), "val_acc": val_acc,
                         "optimizer_reply": record["optimizer_reply"]})
            current = list(record["questions_out"])
            source = "optimizer" if record["parsed"] else "kept (optimizer reply unreadable)"
        rows.append({"step": steps, "questions": list(current), "source": source,
                     "train_acc": float("nan"), "val_acc": validate(current, steps),
                     "optimizer_reply": ""})
    finally:
        roles.release_all()

    history = pd.DataFrame(rows, columns=["step", "questions", "source", "train_acc", "val_acc",
                                          "optimizer_reply"])
    best = int(history["val_acc"].fillna(-1.0).to_numpy().argmax())  # first best: earliest
    history["chosen"] = history.index == best
    chosen = history.iloc[best]
    return LearnResult(questions=list(chosen["questions"]), initial_questions=start,
                       history=history, best_step=int(chosen["step"]),
                       best_val_acc=float(chosen["val_acc"]), profile=roles.profile_of(["vlm"]),
                       model=roles.key("vlm"), learner_parse=learner_log,
                       optimizer_parse=optimizer_log)


def plot_history(history: pd.DataFrame, warning: str | None = None, ax: Any = None) -> Any:
    """The validation curve of :func:`learn_questions`: validation accuracy per validated
    step, training-batch accuracy, and a star on the chosen set. ``warning`` (e.g. the tiny
    profile's) is written across the axes. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
    else:
        fig = ax.figure
    validated = history.dropna(subset=["val_acc"])
    ax.plot(validated["step"], validated["val_acc"], "o-", label="validation accuracy")
    ax.plot(history["step"], history["train_acc"], "s--", alpha=0.6,
            label="training-batch accuracy")
    best = history[history["chosen"]]
    ax.plot(best["step"], best["val_acc"], "*", ms=16, color="C3", label="chosen")
    ax.set(xlabel="step", ylabel="accuracy", ylim=(-0.05, 1.05), title="VERA question sets")
    ax.set_xticks(history["step"])
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if warning:
        import textwrap

        ax.text(0.5, 0.55, "\n".join(textwrap.wrap(f"⚠ {warning}", 60)), transform=ax.transAxes,
                ha="center", va="center", color="C3", fontsize=9)
    return fig


# ----------------------------------------------------------------------------------------
# inference
# ----------------------------------------------------------------------------------------

def _resolve_questions(questions: Any) -> list[str]:
    if questions is None:
        return default_questions()
    if isinstance(questions, LearnResult):
        return list(questions.questions)
    if isinstance(questions, (str, os.PathLike)):
        return load_questions(questions)
    return _check_questions(list(questions), "questions")


#: Segments per cache entry of the embeddings (cheap calls; VLM answers are stored per
#: ``vlm_batch_size`` call, the resumable unit of the expensive stage).
_ENTRY = 64


@dataclass
class _Video:
    """One video's plan: its segments, their windows, and the cache-key parts."""

    path: str
    num_frames: int
    fps: float
    centres: np.ndarray
    windows: dict[int, np.ndarray]
    parts: dict[str, Any]
    streams: dict[str, _FrameStream] = field(default_factory=dict)

    def clips(self, batch: list[int], stage: str, size: int) -> list[list[np.ndarray]]:
        """The window frames of these segments (one decoding pass per stage)."""
        if stage not in self.streams:
            every = np.concatenate([self.windows[int(c)] for c in self.centres])
            self.streams[stage] = _FrameStream(self.path, every, size)
        return [self.streams[stage].get(self.windows[c]) for c in batch]


def _plan(path: str, cfg: Config) -> _Video:
    info = _probe(path)
    n_frames, fps = int(info.num_frames), float(info.fps)
    centres = centre_frames(n_frames, cfg.stride)
    windows = {int(c): window_indices(int(c), n_frames, fps, cfg.window_s, cfg.window_frames)
               for c in centres}
    parts = {"video": file_digest(path), "window_s": cfg.window_s,
             "window_frames": cfg.window_frames, "image_size": cfg.image_size, "fps": fps}
    return _Video(path, n_frames, fps, centres, windows, parts)


def _chunked(fn: Any, items: list[Any], size: int) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(items), size):
        out += list(fn(items[i:i + size]))
    return out


def _answers(v: _Video, qs: list[str], roles: _Roles, cfg: Config, store: Cache,
             desc: str) -> list[Reply]:
    """Step 1: the VLM's reply for every segment's window (cached, truncation kept)."""
    prompt = learner_prompt(qs, cfg.window_frames)

    def compute(batch: list[int]) -> list[dict[str, Any]]:
        vlm = roles.get("vlm")
        return _store(_vlm_batch(
            vlm, [(c, prompt) for c in v.clips(batch, "answers", cfg.image_size)], cfg))

    parts = {**v.parts, "model": roles.key("vlm"), "questions": qs, "prompt": PROMPT_VERSION,
             "max_new_tokens": cfg.max_new_tokens}
    # one cache entry per VLM call: a run stopped after k calls asks only the rest again
    return _load(store.map("vera.answers", parts, [int(c) for c in v.centres], compute,
                           batch_size=cfg.vlm_batch_size, desc=desc))


def _embeddings(v: _Video, roles: _Roles, cfg: Config, store: Cache, desc: str) -> np.ndarray:
    """Step 2's input: one embedding per segment's window (cached)."""
    def compute(batch: list[int]) -> list[np.ndarray]:
        embedder = roles.get("embedder")
        return _chunked(lambda b: list(np.asarray(embedder.encode_video(
            v.clips(b, "embeddings", cfg.image_size)), dtype=np.float32)),
            batch, cfg.vlm_batch_size)

    parts = {**v.parts, "model": roles.key("embedder")}
    return np.stack(store.map("vera.embeddings", parts, [int(c) for c in v.centres], compute,
                              batch_size=_ENTRY, desc=desc))


def _detection(v: _Video, replies: list[Reply], embeddings: np.ndarray, cfg: Config,
               qs: list[str], profile: str, calls: pd.DataFrame) -> Detection:
    log = ParseLog()
    labels = [log.record(r, parse_label(r)) for r in replies]
    out = refine_answers(labels, embeddings, v.num_frames, cfg)
    segments = pd.DataFrame({
        "start_frame": v.centres,
        "end_frame": np.minimum(v.centres + cfg.stride, v.num_frames),
        "centre_frame": v.centres,
        "time_s": v.centres / v.fps,
        "raw_score": [np.nan if x is None else float(x) for x in labels],
        "ensemble_score": out["ensemble"],
        "score": out["smoothed"],
        "answer": [str(r) for r in replies],
        "truncated": [is_truncated(r) for r in replies],
        "explanation": [_explanation(r) for r in replies],
    })
    return Detection(
        video=v.path, method="vera", profile=profile,
        frame_scores=out["frame_scores"], fps=v.fps, segments=segments, model_calls=calls,
        extras={"questions": qs, "unparseable": log.failed, "answers": log.total,
                "truncated": log.truncated, "truncated_unparseable": log.truncated_failed,
                "neighbours": out["neighbours"], "position_prior": cfg.position_prior,
                "smoothing": cfg.smoothing, "round_decimals": cfg.round_decimals,
                "config": {f.name: getattr(cfg, f.name) for f in fields(cfg)}})


def _sum_calls(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return call_stats().iloc[0:0]
    keys = ["role", "model", "profile"]
    return (pd.concat(frames).groupby(keys, as_index=False)[["calls", "items", "seconds"]]
            .sum())


def run_many(videos: Sequence[str | os.PathLike], *, config: Config | None = None,
             profile: str | None = None, backends: dict[str, Any] | None = None,
             cache: Cache | str | None = None,
             questions: Sequence[str] | str | os.PathLike | LearnResult | None = None,
             progress: bool = True, **overrides: Any) -> list[Detection]:
    """:func:`run` over several videos, stage by stage: every video's answers with the VLM,
    then (the VLM released, when it was loaded here) every video's embeddings with the
    embedder, then steps 2 and 3. One progress bar per stage (``progress=False``: none);
    a fully cached re-run loads no model and decodes nothing (notebook 70)."""
    from tqdm.auto import tqdm

    cfg = _config(config, overrides)
    qs = _resolve_questions(questions)
    roles = _Roles(cfg, profile, backends)
    store = get_cache(cache)
    plans = [_plan(str(p), cfg) for p in videos]
    calls: list[list[pd.DataFrame]] = [[] for _ in plans]
    many = len(plans) > 1 and progress

    def stage(fn: Any, desc: str) -> list[Any]:
        results = []
        for i, v in enumerate(tqdm(plans, desc=desc, disable=not many)):
            before = call_stats()
            results.append(fn(v, desc if not many else f"{desc} ({Path(v.path).name})"))
            calls[i].append(calls_since(before))
        return results

    try:
        answers = stage(lambda v, d: _answers(v, qs, roles, cfg, store, d), "VERA answers")
        roles.release("vlm")
        embeddings = stage(lambda v, d: _embeddings(v, roles, cfg, store, d),
                           "VERA embeddings")
    finally:
        roles.release_all()
        for v in plans:
            v.streams.clear()
    profile_name = roles.profile_of(["vlm", "embedder"])
    return [_detection(v, a, e, cfg, qs, profile_name, _sum_calls(c))
            for v, a, e, c in zip(plans, answers, embeddings, calls)]


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: dict[str, Any] | None = None, cache: Cache | str | None = None,
        questions: Sequence[str] | str | os.PathLike | LearnResult | None = None,
        **overrides: Any) -> Detection:
    """Score every frame of ``video`` with VERA and the given guiding questions.

    ``questions``: a list, a JSON file written by :func:`save_questions`, a
    :class:`LearnResult`, or None for the shipped starting set. Steps: (1) the VLM answers
    0/1 for a ``window_s`` window of ``window_frames`` frames around every ``stride``-th
    frame; (2) retrieval ensemble over the video's segments; (3) Gaussian smoothing,
    repeat to frames, and the optional position prior (:func:`refine_answers`). An
    unreadable answer is filled from its neighbours (counted in ``extras["unparseable"]``;
    answers cut at the token budget in ``extras["truncated"]``). Models are loaded only
    for a stage that misses the cache, one at a time.
    """
    return run_many([video], config=config, profile=profile, backends=backends, cache=cache,
                    questions=questions, **overrides)[0]


# ----------------------------------------------------------------------------------------
# the paper's released step-1 scores (generate_initial_score.py's JSON files)
# ----------------------------------------------------------------------------------------

def load_initial_scores(path: str | os.PathLike) -> pd.DataFrame:
    """One video's released step-1 scores, as VERA's ``generate_initial_score.py`` writes
    them: a JSON object keyed by each segment's first frame (``"0"``, ``"16"``, ...), each
    value ``{"start": window start, "end": window end, "score": 0 or 1}``.

    Returns a DataFrame with ``centre_frame``, ``window_start``, ``window_end``, ``score``,
    sorted by frame. Raises ValueError naming the file and the entry on a malformed file.
    """
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
    """VERA's steps 2 and 3 on the paper's own step-1 results.

    ``scores``: a released per-video JSON (see :func:`load_initial_scores`) or its table;
    ``features``: the per-segment vision features that ``compute_auc.py`` reads
    (``vision_features/<video>.npy``, one row per segment) or an array. ``num_frames``
    defaults to what the official code expands to: ``stride`` frames per segment and, for
    the last one, its window end minus its start frame. Pass ``**PAPER_STEP3`` to compute
    step 3 as the paper did. Returns a Detection (profile "paper"; no model is called).
    """
    cfg = _config(config, overrides)
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


# ----------------------------------------------------------------------------------------
# perfect perception: doubles that know the campus truth (notebook 70)
# ----------------------------------------------------------------------------------------

#: One guiding question per campus anomaly class, and the words that show a question asks
#: about that class (what the oracle learner listens for).
CAMPUS_QUESTIONS: dict[str, str] = {
    "Fallen": "Is someone lying on the ground after a fall?",
    "Running": "Is someone running away or chasing another person?",
    "Vehicle": "Is a car or bike moving where only people walk?",
    "Object left": "Is a bag or object left behind on its own?",
}
_CAMPUS_WORDS: dict[str, tuple[str, ...]] = {
    "Fallen": ("fall", "lying"),
    "Running": ("run", "chas"),
    "Vehicle": ("car", "bike", "bicycle", "vehicle"),
    "Object left": ("bag", "left behind", "object left", "unattended", "leaving an object"),
}


def _listed(prompt: str, heading: str) -> list[str]:
    """The numbered questions that follow ``heading`` in one of VERA's prompts."""
    text = prompt.split(heading, 1)[-1]
    out = []
    for line in text.splitlines()[1:]:
        m = re.match(r"^\d+\. (.+)$", line)
        if m:
            out.append(m.group(1))
        elif out:
            break
    return out


def oracle_backends(benchmark: Any, image_size: int = 448,
                    questions: dict[str, str] | None = None) -> dict[str, Any]:
    """A VLM and an embedder that *read the ground truth*: VERA with perfect perception.

    A teaching device (notebook 70), not a model. Every frame of ``benchmark``'s videos is
    recognised by a hash of its pixels at ``image_size`` (the size VERA sends). As the
    **learner**, the VLM says ``Output: 1`` exactly when one of the frames it sees shows an
    anomaly *and* one of the prompt's questions asks about that kind (so the questions
    matter); as the **optimizer**, it adds the question of each kind the learner missed
    (``questions``: kind -> question, default :data:`CAMPUS_QUESTIONS`), keeping the newest
    ones within the prompt's limit. The embedder maps anomalous frames to one direction and
    normal frames to another. What VERA then gets right is an upper bound of the method's
    own steps (learning loop, retrieval ensemble, smoothing), not of any model.
    """
    import hashlib

    from .models.scripted import ScriptedEmbedder, ScriptedVLM
    from .video import read_frames

    asks = dict(questions or CAMPUS_QUESTIONS)
    frame_kind: dict[str, str] = {}   # hash -> class shown in the frame ("Normal" if none)
    video_kind: dict[str, str] = {}   # hash -> class of the video the frame belongs to
    for name, path, label in zip(benchmark.videos.name, benchmark.videos.path,
                                 benchmark.videos.label):
        y = benchmark.frame_labels(name)
        images = read_frames(path, size=(image_size, image_size)).images
        for i, image in enumerate(images[:len(y)]):
            key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
            if y[i] or key not in frame_kind:
                frame_kind[key] = str(label) if y[i] else "Normal"
            if str(label) != "Normal" or key not in video_kind:
                video_kind[key] = str(label)

    def keys(images: Sequence[np.ndarray]) -> list[str]:
        out = [hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images]
        if any(k not in frame_kind for k in out):
            raise ValueError("the oracle only knows the frames of the benchmark it was built "
                             f"from, at {image_size} px; run it on those videos at that size")
        return out

    def named(kind: str, qs: Sequence[str]) -> bool:
        words = _CAMPUS_WORDS.get(kind, (kind.lower(),))
        return any(w in q.lower() for q in qs for w in words)

    def learner(images: list[np.ndarray], prompt: str) -> str:
        qs = _listed(prompt, "** Prompt questions **")
        seen = sorted({frame_kind[k] for k in keys(images)} - {"Normal"})
        hit = [k for k in seen if named(k, qs)]
        if hit:
            return (f"Answers to Prompt Questions: the frames show {', '.join(hit)}; yes, "
                    "there is an anomaly.\nOutput:\n1")
        return ("Answers to Prompt Questions: none of the questions points at anything in "
                "these frames; no, there is no anomaly.\nOutput:\n0")

    def optimizer(images: list[np.ndarray], prompt: str) -> str:
        qs = _listed(prompt, "** Current Prompt Questions **")
        n = len(re.findall(r"video \d+: images", prompt)) or 1
        limit = int((re.findall(r"at most (\d+)", prompt) or [5])[-1])
        preds = re.search(r"\*\* The model's predictions \*\*\n\[([^\]]*)\]", prompt)
        targets = re.search(r"\*\* The targets \*\*\n\[([^\]]*)\]", prompt)
        said = [p.strip() for p in preds.group(1).split(",")] if preds else []
        truth = [t.strip() for t in targets.group(1).split(",")] if targets else []
        per = max(1, len(images) // n)
        missed = []
        for i in range(n):
            chunk = keys(images[i * per:(i + 1) * per])
            kinds = {video_kind[k] for k in chunk} - {"Normal"}
            wrong = i < len(said) and i < len(truth) and said[i] != truth[i]
            for kind in sorted(kinds):
                if wrong and truth[i] == "1" and kind in asks and not named(kind, qs):
                    missed.append(asks[kind])
        new = list(dict.fromkeys(qs + missed))[-limit:]
        reason = (f"The model missed {len(missed)} anomalous video(s); add a question about "
                  "each." if missed else "The model does well; keep the questions.")
        return (f"Reasoning:\n{reason}\nNew Prompt Questions:\n" +
                "\n".join(f"{i}. {q}" for i, q in enumerate(new, 1)))

    def reply(images: list[np.ndarray], prompt: str) -> str:
        return optimizer(images, prompt) if "New Prompt Questions:" in prompt and \
            "** Current Prompt Questions **" in prompt else learner(images, prompt)

    def vector(image: np.ndarray) -> np.ndarray:
        kind = frame_kind[keys([image])[0]]
        return np.array([0.0, 1.0]) if kind == "Normal" else np.array([1.0, 0.0])

    return {"vlm": ScriptedVLM(reply, name="oracle-vlm"),
            "embedder": ScriptedEmbedder(image_fn=vector, name="oracle-embedder")}


# ----------------------------------------------------------------------------------------
# what a run did, in words computed from the run (notebook 70)
# ----------------------------------------------------------------------------------------

def _tiny_tag(meaningless: bool) -> str:
    from .detect import TINY_WARNING

    return f"\n⚠ {TINY_WARNING}" if meaningless else ""


def learning_summary(result: LearnResult) -> str:
    """What :func:`learn_questions` did, in sentences computed from its result."""
    h = result.history
    kept = int((h["source"].iloc[1:] != "optimizer").sum())
    steps = max(len(h) - 1, 0)
    chosen = h[h["chosen"]].iloc[0]
    lines = [f"chosen: the question set of step {result.best_step} ({chosen['source']}), "
             f"validation accuracy {result.best_val_acc:.2f}",
             f"learner replies: {result.learner_parse.summary()} (an unreadable reply counts "
             "as a wrong prediction)",
             f"optimizer replies: {result.optimizer_parse.summary()}; {kept} of {steps} "
             "step(s) kept the previous questions because the reply held none"]
    if steps and kept == steps:
        lines.append("no optimizer reply held questions, so every step reused the starting "
                     "set: nothing was learned, and nothing was learned from noise")
    return "\n".join(lines) + _tiny_tag(result.meaningless)


def inference_summary(detections: Any) -> str:
    """Answers, unreadable answers and cut answers over these Detections, in words."""
    dets = list(detections)
    answers = sum(int(d.extras.get("answers", 0)) for d in dets)
    bad = sum(int(d.extras.get("unparseable", 0)) for d in dets)
    cut = sum(int(d.extras.get("truncated", 0)) for d in dets)
    text = (f"{len(dets)} video(s), {answers} answers: {bad} unreadable (filled from their "
            f"neighbours), {cut} cut at the token budget")
    if answers and bad == answers:
        text += ("; every answer was unreadable, so every segment holds the fill value 0.5 "
                 "and the scores carry no information")
    return text + _tiny_tag(any(d.meaningless for d in dets))


def auc_note(detections: Any, auc: float) -> str:
    """Why the AUC is what it is: constant scores give 0.5 by construction, else the
    number of distinct score values behind it."""
    dets = list(detections)
    scores = np.concatenate([np.asarray(d.frame_scores, dtype=np.float64) for d in dets])
    distinct = len(np.unique(np.round(scores, 9)))
    if distinct == 1:
        text = (f"AUC {auc:.3f}: every frame has the same score, so the ranking is a tie and "
                "the AUC is 0.5 by construction")
    else:
        text = f"AUC {auc:.3f} from {distinct} distinct frame-score values"
    return text + _tiny_tag(any(d.meaningless for d in dets))


def perfect_perception(benchmark: Any, oracle: dict[str, Any] | None = None, *,
                       image_size: int = 448, steps: int = 6,
                       questions: Sequence[str] = ("Is there fire or smoke?",),
                       cache: Cache | str | None = None) -> pd.DataFrame:
    """VERA with perfect perception on ``benchmark``: learning from ``questions`` with the
    oracle of :func:`oracle_backends`, then inference on the test split with the learned
    questions, under vadnb's step 3, the paper's step 3 and its parts, and without steps 2
    and 3. An upper bound of the method's own steps on these videos, not of any model.

    One row per variant: ``variant``, ``settings``, ``val_acc`` (of the chosen questions),
    ``questions`` (how many were learned), ``test_auc``, ``test_ap``.
    """
    from . import metrics

    oracle = oracle or oracle_backends(benchmark, image_size=image_size)
    result = learn_questions(benchmark.subset("train"), benchmark.subset("val"),
                             backends=oracle, questions=list(questions), steps=steps,
                             image_size=image_size, cache=cache)
    test = benchmark.subset("test").videos
    labels = {n: benchmark.frame_labels(n) for n in test["name"]}
    variants = [
        ("vadnb (default)", {}),
        ("paper's kernel", {"smoothing": "paper"}),
        ("rounded to 1 decimal", {"round_decimals": 1}),
        ("paper's step 3 (PAPER_STEP3)", dict(PAPER_STEP3)),
        ("answers only (no steps 2-3)", {"ensemble_fraction": 0.0, "smooth_taps": 1}),
    ]
    rows = []
    for name, settings in variants:
        # the answers and embeddings are cached after the first variant: no more bars
        dets = run_many(list(test["path"]), backends=oracle, questions=result,
                        image_size=image_size, cache=cache, progress=not rows, **settings)
        scores = {n: d.frame_scores for n, d in zip(test["name"], dets)}
        rows.append({"variant": name,
                     "settings": ", ".join(f"{k}={v!r}" for k, v in settings.items()) or "-",
                     "val_acc": result.best_val_acc, "questions": len(result.questions),
                     "test_auc": metrics.frame_auc(labels, scores),
                     "test_ap": metrics.frame_ap(labels, scores)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------
# what differs from the official code (rendered in notebook 70)
# ----------------------------------------------------------------------------------------

#: Every way vadnb's VERA departs from the official code (vera-framework/VERA:
#: training.py, generate_initial_score.py, compute_auc.py, the two instruction files).
DIFFERENCES: list[Difference] = [
    Difference(
        what="Choosing the questions: the official training writes the validation accuracy "
             "and the current questions to a text file every 100 steps and a person picks a "
             "set; vadnb keeps the set with the best validation accuracy (earliest on ties), "
             "scoring every `validate_every` steps, and refuses test videos.",
        why="A choice made by looking at results is easy to make on the wrong split; "
            "automatic choice on validation keeps the test score honest.",
        effect="None on the loop itself; removes a manual step."),
    Difference(
        what="Reading the learner's label: the official code reads 0 when a '0' appears "
             "anywhere after the last 'Output' and 1 otherwise, so an unreadable reply counts "
             "as an anomaly; vadnb reads the first 0/1 after the last 'Output' (then a "
             "standalone 0/1 that is not list numbering, then 'there is (no) anomaly'), and "
             "an unreadable reply is a wrong prediction in training and validation and is "
             "filled from its neighbours at inference (counted in both cases).",
        why="Counting an unreadable reply as 'anomaly' hides a model that cannot follow "
            "the format and inflates recall.",
        effect="None for replies that end with 'Output: 0/1'; not measured otherwise."),
    Difference(
        what="Reading the optimizer's questions: the official code keeps the raw text after "
             "'New Prompt Questions' (its first 5 lines, verbatim, blank lines and code "
             "fences included) and keeps the old questions only when the heading is missing; "
             "vadnb extracts the items (numbered, bullets, 'Q1:', inline lists), drops "
             "gibberish and duplicates, keeps at most `max_questions`, and keeps the old set "
             "(counted) when no question is found.",
        why="Raw lines can carry reasoning or formatting into the next prompt; an "
            "unreadable reply should not replace working questions.",
        effect="Identical for a clean numbered list; not measured otherwise."),
    Difference(
        what="Prompts: vadnb's own wording with the official structure (learner: role, task, "
             "questions, input, strict format ending in 'Output:'; optimizer: role and goal, "
             "inputs, model description, current questions, predictions, targets, keep-or-"
             "improve, questions based on features of the input videos, step-by-step "
             "reasoning, at most five questions). Frames travel as images through the "
             "backend's chat template instead of 'Frame1: <image>' placeholders.",
        why="The code is written fresh (no copied prose); image placement is the "
            "backend's job for every VLM family.",
        effect="Not measured; wording changes replies of a real VLM somewhat."),
    Difference(
        what="The optimizer can also be shown each learner reply (`show_replies=True`); "
             "off by default, as in the official code, where it sees only predictions and "
             "targets.",
        why="An option to study how much the reasons help the optimizer.",
        effect="None by default.", flag="show_replies"),
    Difference(
        what="Training frames: the official code takes frames floor(i * n / 8) (the start of "
             "each eighth of the video); vadnb takes the middle of each eighth.",
        why="Symmetric sampling: the official one always shows frame 0 and never the last "
            "eighth.",
        effect="Frames shifted by n/16; not measured."),
    Difference(
        what="Inference windows: the official code uses +/-150 frames (30 fps hard-coded) and "
             "8 frames from arange(start, end, (end - start) / 8) (left-aligned, end "
             "excluded); vadnb uses +/- window_s * fps / 2 at the video's own rate and 8 "
             "frames evenly from the first to the last frame of the window "
             "(`stages.window_indices`, shared with LAVAD).",
        why="A window measured in seconds means the same at any frame rate (XD-Violence is "
            "24 fps, the campus clips 10 fps).",
        effect="On 30 fps video the same span, frames up to 1/8 window apart; not measured."),
    Difference(
        what="Retrieval ensemble on short videos: the official top_n = int(0.15 * n) is 0 "
             "below 7 segments (112 frames), and its argsort[:, -0:] then averages over every "
             "segment; vadnb uses at least 1 neighbour (the segment itself). Ties between "
             "equal similarities are broken by index (stable) in vadnb, arbitrarily in the "
             "official argsort.",
        why="Averaging a whole short video is an accident of slicing, not the method.",
        effect="Only videos under 112 frames; identical above (parity test)."),
    Difference(
        what="Smoothing kernel: the official Gaussian is sampled at linspace(-8, 7, 15) "
             "(off-centre, spacing 15/14) and convolved with zero padding, which pulls the "
             "first and last ~7 segments of every video toward 0 (and misaligns videos "
             "shorter than 15 segments); vadnb samples it at -7..7 and pads by reflection.",
        why="An off-centre kernel shifts scores in time, and zero padding lowers the scores "
            "at both ends of every video.",
        effect="Segment scores near the ends differ by up to ~half. On short clips whose "
               "anomaly sits mid-clip, zero padding acts like a position prior and raises "
               "AUC; notebook 70's perfect-perception table measures it on the campus clips.",
        flag='smoothing="paper"'),
    Difference(
        what="Rounding: the official code rounds each smoothed segment score to one decimal "
             "before expanding to frames; vadnb keeps full precision.",
        why="Rounding creates ties (11 values), which changes AUC and AP.",
        effect="Small, either way; measured in notebook 70's perfect-perception table.",
        flag="round_decimals=1"),
    Difference(
        what="Position prior: the official UCF-Crime evaluation always multiplies frame "
             "scores by exp(-0.5((t - c)/c)^2), c = floor(n/2); vadnb has it off by default.",
        why="It is knowledge about the UCF-Crime test set (anomalies mid-video), not part "
            "of the method.",
        effect="Raises UCF-Crime AUC in the paper; lowers it on videos whose anomaly is "
               "near an end.", flag="position_prior=True"),
    Difference(
        what="Segment embeddings: the official evaluation reads precomputed per-segment "
             "vision features (vision_features/<video>.npy; their extractor is not in the "
             "repository); vadnb embeds each window's frames with the embedder's video "
             "encoder (ImageBind in the real profiles). `from_initial_scores` accepts the "
             "released features.",
        why="The extractor is not public; ImageBind is the suite's video embedder.",
        effect="Unknown: the official features cannot be reproduced."),
    Difference(
        what="Models and frames: the paper uses InternVL2-8B (its own hub code, bf16, one "
             "448 px tile per frame, ImageNet normalisation); vadnb uses the profile's VLM "
             "(Qwen2.5-VL in the colab profile) with frames resized to `image_size` (448) "
             "and that model's own processor.",
        why="InternVL2's remote code does not run with the installed transformers; the "
            "newer official script uses Qwen2-VL.",
        effect="Not measured here (no GPU)."),
    Difference(
        what="Training schedule: the official code runs 10 epochs with a Lightning shuffle "
             "and validates every 100 steps; vadnb runs `steps` (or `epochs`) with a seeded "
             "shuffle per epoch, caches every step and resumes after an interruption.",
        why="Reproducible and resumable on a Colab session.",
        effect="Same loop; shorter by default (set steps/epochs for the paper's length)."),
    Difference(
        what="Starting questions: the official training starts from two generic questions "
             "(a suspicious person or object; unusual behaviour); vadnb starts from the five "
             "hand-written questions of data/vera_questions.json, or any set passed as "
             "`questions=`.",
        why="A start that names the common kinds of anomaly shortens the (expensive) "
            "loop on a small benchmark.",
        effect="Not measured; pass the official two to start where the paper started."),
    Difference(
        what="Token budget: 1024 new tokens and greedy decoding, as the official code; "
             "vadnb also counts replies cut at the budget apart from unreadable ones.",
        why="A cut reply loses its 'Output' line; counting it tells a small budget from a "
            "model that cannot follow the format.",
        effect="None on scores."),
]


