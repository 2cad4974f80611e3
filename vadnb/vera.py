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
from .models.base import call_stats, calls_since, profile_of
from .metrics import segments_to_frames
from .stages import (ParseLog, configure, centre_frames, gaussian_smooth, knn_softmax,
                     parse_binary_label, window_indices)

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
    "even_frame_indices",
    "retrieval_ensemble",
    "smooth_segments",
    "position_prior",
    "learn_questions",
    "plot_history",
    "run",
]

#: The hand-written starting questions shipped with the suite.
DEFAULT_QUESTIONS_PATH = Path(__file__).resolve().parents[1] / "data" / "vera_questions.json"

# Bump when a prompt's wording changes, so cached answers to the old wording are not reused.
PROMPT_VERSION = "vera-prompts-1"


@dataclass
class Config:
    """VERA's settings, with the public code's defaults.

    The paper (CVPR 2025) uses InternVL2-8B as learner and optimizer and reports frame-level
    ROC-AUC 86.55 on UCF-Crime (with the position prior) and 88.26 on XD-Violence.
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
    """Side in pixels of every frame given to the VLM (frames are resized to a square)."""
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
    position_prior: bool = False
    """Multiply frame scores by a bump centred on the video's middle. This is a prior about
    the UCF-Crime test set (its anomalies sit mostly mid-video) that the published UCF
    number uses; it is not part of the method and is off by default."""
    vlm_batch_size: int = 8
    """VLM requests per batched call (and per resumable cache entry)."""
    max_new_tokens: int = 256
    """Token budget of every VLM reply."""


#: Allowed range of each numeric Config field, checked by ``vadnb.stages.configure`` when
#: the method starts (types are checked from the annotations).
LIMITS = {"batch_size": ">= 1", "train_frames": ">= 1", "image_size": "[16, 4096]",
          "max_questions": ">= 1", "steps": ">= 0", "epochs": ">= 1", "validate_every": ">= 1",
          "seed": ">= 0", "stride": ">= 1", "window_s": "> 0", "window_frames": ">= 1",
          "ensemble_fraction": "(0, 1]", "temperature": "> 0", "smooth_taps": ">= 1",
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
    p.write_text(json.dumps({"questions": qs, "meta": meta}, indent=2, default=str) + "\n")
    return p


def default_questions() -> list[str]:
    """The suite's hand-written starting questions (``data/vera_questions.json``)."""
    return load_questions(DEFAULT_QUESTIONS_PATH)


def _numbered(questions: Sequence[str]) -> str:
    return "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))


def learner_prompt(questions: Sequence[str], num_frames: int = 8) -> str:
    """The learner's (and inference's) prompt: the guiding questions, then reasoning, then
    a last line ``Output: 1`` (anomaly) or ``Output: 0`` (normal)."""
    return (
        f"The {num_frames} images are frames of a surveillance video, in time order.\n"
        "Decide whether the video shows an anomaly: an unusual, dangerous or criminal event.\n"
        "First answer these guiding questions briefly:\n"
        f"{_numbered(questions)}\n"
        "Then explain your reasoning in one or two sentences. End with exactly one line:\n"
        "Output: 1 if the video shows an anomaly, Output: 0 if it is normal."
    )


def optimizer_prompt(questions: Sequence[str], predictions: Sequence[int | None],
                     targets: Sequence[int], replies: Sequence[str], frames_per_video: int = 8,
                     max_questions: int = 5) -> str:
    """The optimizer's prompt: the questions, each video's prediction, target and reply.

    The frames of the videos go with it as images, ``frames_per_video`` per video in order.
    """
    lines = []
    for i, (pred, target, reply) in enumerate(zip(predictions, targets, replies)):
        first = i * frames_per_video + 1
        said = "no readable answer" if pred is None else str(pred)
        short = " ".join(str(reply).split())[:300]
        lines.append(f"Video {i + 1} (images {first}-{first + frames_per_video - 1}): "
                     f"predicted {said}, correct label {target}. Its reply: \"{short}\"")
    correct = sum(p == t for p, t in zip(predictions, targets))
    return (
        "You improve the guiding questions that a video anomaly detector asks itself.\n"
        "Label 1 means the video shows an anomaly (unusual, dangerous or criminal event), "
        "0 means normal.\n"
        f"The detector used these questions:\n{_numbered(questions)}\n"
        "It looked at the attached frames and answered:\n" + "\n".join(lines) + "\n"
        f"It was right on {correct} of {len(targets)} videos.\n"
        "Write better guiding questions that would lead to the correct labels: general "
        "questions about what to look for in surveillance video, not about these videos. "
        f"Write at most {max_questions} questions.\n"
        "Reply with the heading \"New Prompt Questions:\" followed by a numbered list, "
        "one question per line."
    )


_ITEM = re.compile(r"^\s*(?:\*\*)?\(?(\d{1,2})[.):]\)?(?:\*\*)?\s+(.+?)\s*$")


def parse_questions(reply: str, max_questions: int = 5) -> list[str] | None:
    """The numbered questions after "New Prompt Questions" (anywhere if the heading is
    missing), at most ``max_questions``, duplicates dropped; None when there are none.

    An item counts when it has at least three words made of letters, so a model's
    gibberish ("1. ##@@", "2. a") is rejected rather than learned.
    """
    text = reply or ""
    at = text.lower().rfind("new prompt questions")
    if at >= 0:
        text = text[at + len("new prompt questions"):]
    found: list[str] = []
    for line in text.splitlines():
        m = _ITEM.match(line)
        if not m:
            continue
        q = m.group(2).strip().strip("*").strip()
        if len(re.findall(r"[A-Za-z]{2,}", q)) < 3 or len(q) > 400:
            continue
        if q.lower() not in {f.lower() for f in found}:
            found.append(q)
    return found[:max_questions] or None


def _explanation(reply: str) -> str:
    """The reply without its final "Output: x" line, on one line, at most 400 characters."""
    text = re.sub(r"(?is)\boutput\s*:?\s*[01]\b.*$", "", reply or "").strip()
    text = " ".join((text or reply or "").split())
    return text[:400] if text else "(empty reply)"


# ----------------------------------------------------------------------------------------
# the numeric steps of inference (pure functions, tested against hand computation)
# ----------------------------------------------------------------------------------------

def even_frame_indices(num_frames: int, n: int) -> np.ndarray:
    """``n`` frames spread evenly over the whole video: the middle of each of n equal parts."""
    if num_frames <= 0:
        raise ValueError(f"video has {num_frames} frames; nothing to sample")
    return np.floor((np.arange(n) + 0.5) * num_frames / n).astype(np.int64)


def retrieval_ensemble(embeddings: np.ndarray, scores: np.ndarray, fraction: float = 0.15,
                       temperature: float = 0.1) -> tuple[np.ndarray, int]:
    """VERA step 2: each segment's score becomes the softmax-weighted mean of the scores of
    its ``n = max(1, floor(fraction * #segments))`` most cosine-similar segments (itself
    included), weights ``softmax(similarity / temperature)``. Returns ``(refined, n)``."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    emb = np.asarray(embeddings, dtype=np.float64)
    if len(emb) != len(scores):
        raise ValueError(f"{len(emb)} segment embeddings for {len(scores)} scores")
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    n = max(1, int(math.floor(fraction * len(scores) + 1e-9)))
    refined, _, _ = knn_softmax(emb, emb, scores, k=n, temperature=temperature)
    return refined, n


def smooth_segments(scores: np.ndarray, taps: int = 15, sigma: float = 10.0) -> np.ndarray:
    """VERA step 3: a normalised Gaussian (``taps`` long, ``sigma`` wide) over the segments."""
    return gaussian_smooth(scores, sigma=sigma, taps=taps)


def position_prior(num_frames: int) -> np.ndarray:
    """``exp(-0.5 ((t - n/2) / (n/2))^2)`` for frame t of n: 1 mid-video, 0.61 at the ends.

    A UCF-Crime dataset prior (its anomalies sit mostly mid-video), not part of VERA's
    method; :class:`Config` keeps it off unless ``position_prior=True``.
    """
    n = float(num_frames)
    t = np.arange(num_frames, dtype=np.float64)
    return np.exp(-0.5 * ((t - n / 2) / (n / 2)) ** 2)


# ----------------------------------------------------------------------------------------
# plumbing: config, backends, frames, cached VLM calls
# ----------------------------------------------------------------------------------------

def _config(config: Config | None, overrides: dict[str, Any]) -> Config:
    cfg = configure(Config, config, overrides, "VERA")
    for name in ("batch_size", "train_frames", "image_size", "max_questions", "epochs",
                 "validate_every", "stride", "window_frames", "smooth_taps", "vlm_batch_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"Config.{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.steps is not None and cfg.steps < 0:
        raise ValueError(f"Config.steps must be >= 0 or None, got {cfg.steps}")
    return cfg


def _backends(cfg: Config, profile: str | None, backends: dict[str, Any] | None,
              roles: Sequence[str]) -> dict[str, Any]:
    got = dict(backends or {})
    for role in roles:
        if role not in got:
            from . import models

            got[role] = models.load(role, profile=profile, model=getattr(cfg, f"{role}_model"))
    return got


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


def _vlm_batch(vlm: Any, requests: list[tuple[list[np.ndarray], str]], cfg: Config) -> list[str]:
    """One batched VLM call; the token budget is passed when the backend takes it."""
    params = inspect.signature(vlm.batch).parameters
    takes = "max_new_tokens" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {"max_new_tokens": cfg.max_new_tokens} if takes else {}
    replies = list(vlm.batch(requests, **kwargs))
    if len(replies) != len(requests):
        raise RuntimeError(f"{vlm.name} returned {len(replies)} replies for {len(requests)} "
                           "requests")
    return [str(r) for r in replies]


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
        return self.profile == "tiny"

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


def _ask_learner(vlm: Any, table: pd.DataFrame, questions: list[str], cfg: Config,
                 cache: Cache, desc: str) -> list[str]:
    """The learner's replies for these videos (cached per video, questions and model)."""
    paths = dict(zip(table["digest"], table["path"]))
    prompt = learner_prompt(questions, cfg.train_frames)

    def compute(digests: list[str]) -> list[str]:
        requests = []
        for d in digests:
            idx = even_frame_indices(_probe(paths[d]).num_frames, cfg.train_frames)
            requests.append((_read(paths[d], idx, cfg.image_size), prompt))
        return _vlm_batch(vlm, requests, cfg)

    parts = {"model": vlm.name, "questions": questions, "frames": cfg.train_frames,
             "sampling": "even-whole-video", "image_size": cfg.image_size,
             "prompt": PROMPT_VERSION, "max_new_tokens": cfg.max_new_tokens}
    return cache.map("vera.learner", parts, list(table["digest"]), compute,
                     batch_size=cfg.vlm_batch_size, desc=desc)


def _accuracy(replies: list[str], targets: Sequence[int], log: ParseLog) -> tuple[float, list]:
    preds = [log.record(r, parse_binary_label(r)) for r in replies]
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


def _optimizer_step(vlm: Any, train: pd.DataFrame, batch: np.ndarray, questions: list[str],
                    cfg: Config, cache: Cache, step: int) -> dict[str, Any]:
    rows = train.iloc[batch]
    replies = _ask_learner(vlm, rows, questions, cfg, cache, desc=f"learner step {step}")
    log = ParseLog()
    train_acc, preds = _accuracy(replies, list(rows["target"]), log)
    images: list[np.ndarray] = []
    for path in rows["path"]:
        images += _read(path, even_frame_indices(_probe(path).num_frames, cfg.train_frames),
                        cfg.image_size)
    prompt = optimizer_prompt(questions, preds, list(rows["target"]), replies,
                              cfg.train_frames, cfg.max_questions)
    reply = _vlm_batch(vlm, [(images, prompt)], cfg)[0]
    new = parse_questions(reply, cfg.max_questions)
    return {"questions_in": questions, "replies": replies,
            "predictions": [-1 if p is None else int(p) for p in preds],
            "train_acc": train_acc, "learner_failed": log.failed,
            "optimizer_reply": reply, "parsed": new is not None,
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
    wrong prediction; an unreadable optimizer reply keeps the previous questions.

    ``questions`` are the starting set (a list or a JSON file; None: the shipped set).
    Every finished step is cached, so an interrupted run continues from the last one.
    """
    cfg = _config(config, overrides)
    train_t, val_t = _video_table(train, "training"), _video_table(val, "validation")
    shared = set(train_t["digest"]) & set(val_t["digest"])
    if shared:
        raise ValueError(f"{len(shared)} video(s) are in both the training and the validation "
                         "videos; validation must be held out")
    vlm = _backends(cfg, profile, backends, ["vlm"])["vlm"]
    store = get_cache(cache)
    start = _resolve_questions(questions)
    steps = cfg.steps if cfg.steps is not None else cfg.epochs * math.ceil(
        len(train_t) / cfg.batch_size)
    run_key = {"model": vlm.name, "prompt": PROMPT_VERSION, "initial": start,
               "train": list(zip(train_t["digest"], train_t["target"])),
               "batch_size": cfg.batch_size, "frames": cfg.train_frames,
               "image_size": cfg.image_size, "max_questions": cfg.max_questions,
               "seed": cfg.seed, "max_new_tokens": cfg.max_new_tokens}
    learner_log, optimizer_log = ParseLog(), ParseLog()
    rows: list[dict[str, Any]] = []
    current, source = start, "initial"

    def validate(qs: list[str], step: int) -> float:
        replies = _ask_learner(vlm, val_t, qs, cfg, store, desc=f"validation step {step}")
        return _accuracy(replies, list(val_t["target"]), learner_log)[0]

    from tqdm.auto import tqdm

    for step, batch in enumerate(tqdm(_batches(len(train_t), cfg, steps), desc="VERA steps",
                                      disable=steps <= 1)):
        due = step % cfg.validate_every == 0
        val_acc = validate(current, step) if due else float("nan")
        record = store.memo("vera.step", {**run_key, "step": step},
                            lambda: _optimizer_step(vlm, train_t, batch, current, cfg, store,
                                                    step))
        for reply, pred in zip(record["replies"], record["predictions"]):
            learner_log.record(reply, None if pred < 0 else pred)
        optimizer_log.record(record["optimizer_reply"], True if record["parsed"] else None)
        rows.append({"step": step, "questions": list(current), "source": source,
                     "train_acc": float(record["train_acc"]), "val_acc": val_acc,
                     "optimizer_reply": record["optimizer_reply"]})
        current = list(record["questions_out"])
        source = "optimizer" if record["parsed"] else "kept (optimizer reply unreadable)"
    rows.append({"step": steps, "questions": list(current), "source": source,
                 "train_acc": float("nan"), "val_acc": validate(current, steps),
                 "optimizer_reply": ""})

    history = pd.DataFrame(rows, columns=["step", "questions", "source", "train_acc", "val_acc",
                                          "optimizer_reply"])
    best = int(history["val_acc"].fillna(-1.0).to_numpy().argmax())  # first best: earliest
    history["chosen"] = history.index == best
    chosen = history.iloc[best]
    return LearnResult(questions=list(chosen["questions"]), initial_questions=start,
                       history=history, best_step=int(chosen["step"]),
                       best_val_acc=float(chosen["val_acc"]), profile=profile_of(vlm),
                       model=vlm.name, learner_parse=learner_log, optimizer_parse=optimizer_log)


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


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: dict[str, Any] | None = None, cache: Cache | str | None = None,
        questions: Sequence[str] | str | os.PathLike | LearnResult | None = None,
        **overrides: Any) -> Detection:
    """Score every frame of ``video`` with VERA and the given guiding questions.

    ``questions``: a list, a JSON file written by :func:`save_questions`, a
    :class:`LearnResult`, or None for the shipped starting set. Steps: (1) the VLM answers
    0/1 for a ``window_s`` window of ``window_frames`` frames around every ``stride``-th
    frame; (2) retrieval ensemble over the video's segments; (3) Gaussian smoothing,
    repeat to frames, and the optional position prior. An unreadable answer is filled from
    its neighbours (counted in ``extras["unparseable"]``).
    """
    cfg = _config(config, overrides)
    path = str(video)
    qs = _resolve_questions(questions)
    models = _backends(cfg, profile, backends, ["vlm", "embedder"])
    vlm, embedder = models["vlm"], models["embedder"]
    store = get_cache(cache)
    before = call_stats()

    info = _probe(path)
    n_frames, fps = int(info.num_frames), float(info.fps)
    centres = centre_frames(n_frames, cfg.stride)
    windows = {int(c): window_indices(int(c), n_frames, fps, cfg.window_s, cfg.window_frames)
               for c in centres}
    digest = file_digest(path)
    frame_parts = {"video": digest, "window_s": cfg.window_s, "window_frames": cfg.window_frames,
                   "image_size": cfg.image_size, "fps": fps}

    every_window = np.concatenate(list(windows.values()))
    streams: dict[str, _FrameStream] = {}

    def clips(batch: list[int], stage: str) -> list[list[np.ndarray]]:
        """The window frames of these segments (one decoding pass per stage)."""
        if stage not in streams:
            streams[stage] = _FrameStream(path, every_window, cfg.image_size)
        return [streams[stage].get(windows[c]) for c in batch]

    prompt = learner_prompt(qs, cfg.window_frames)
    replies = store.map(
        "vera.answers",
        {**frame_parts, "model": vlm.name, "questions": qs, "prompt": PROMPT_VERSION,
         "max_new_tokens": cfg.max_new_tokens},
        [int(c) for c in centres],
        lambda batch: _vlm_batch(vlm, [(c, prompt) for c in clips(batch, "answers")], cfg),
        batch_size=cfg.vlm_batch_size, desc="VERA answers")
    embeddings = np.stack(store.map(
        "vera.embeddings", {**frame_parts, "model": embedder.name},
        [int(c) for c in centres],
        lambda batch: list(np.asarray(embedder.encode_video(clips(batch, "embeddings")),
                                     dtype=np.float32)),
        batch_size=cfg.vlm_batch_size, desc="VERA embeddings"))

    log = ParseLog()
    labels = [log.record(r, parse_binary_label(r)) for r in replies]
    from .stages import interpolate_missing

    raw, _ = interpolate_missing([None if v is None else float(v) for v in labels])
    refined, n_neighbours = retrieval_ensemble(embeddings, raw, cfg.ensemble_fraction,
                                               cfg.temperature)
    smoothed = smooth_segments(refined, cfg.smooth_taps, cfg.smooth_sigma)
    frame_scores = segments_to_frames(smoothed, n_frames, segment_length=cfg.stride)
    if cfg.position_prior:
        frame_scores = frame_scores * position_prior(n_frames)

    segments = pd.DataFrame({
        "start_frame": centres,
        "end_frame": np.minimum(centres + cfg.stride, n_frames),
        "centre_frame": centres,
        "time_s": centres / fps,
        "raw_score": [np.nan if v is None else float(v) for v in labels],
        "ensemble_score": refined,
        "score": smoothed,
        "answer": replies,
        "explanation": [_explanation(r) for r in replies],
    })
    return Detection(
        video=path, method="vera", profile=profile_of(vlm, embedder),
        frame_scores=np.asarray(frame_scores, dtype=np.float64), fps=fps, segments=segments,
        model_calls=calls_since(before),
        extras={"questions": qs, "unparseable": log.failed, "answers": log.total,
                "neighbours": n_neighbours, "position_prior": cfg.position_prior,
                "config": {f.name: getattr(cfg, f.name) for f in fields(cfg)}})
