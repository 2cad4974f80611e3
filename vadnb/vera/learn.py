"""VERA's verbalized learning: the guiding questions are the only thing trained (notebook 70).
The learner (a frozen VLM) answers them about a training video; the optimizer (the same VLM)
sees the frames, predictions and labels and writes new ones; the set with the best held-out
validation accuracy wins. Every call is cached, so an interrupted run resumes."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..cache import Cache, file_digest
from ..models.base import Reply
from ..progress import bar
from ..runtime import Ask, Derived, Roles, Runtime, VideoRef
from ..stages import ParseLog
from . import prompts
from .core import Config
from .prompts import parse_questions, read_label, resolve_questions, save_questions
from .run import validated


@dataclass
class LearnResult:
    """What :func:`learn_questions` found: the chosen ``questions`` and a ``history`` row per
    question set (``val_acc`` NaN when not validated); parse logs count unreadable replies."""

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
        from ..models.profiles import MEANINGLESS_PROFILES

        return self.profile in MEANINGLESS_PROFILES

    def save_history(self, path: str | os.PathLike) -> Path:
        """Write the history as CSV (each question set a JSON list in one cell)."""
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
    """A Benchmark, a DataFrame (path + is_anomalous or label) or [(path, 0/1), ...], checked."""
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


def _accuracy(replies: Sequence[Reply], targets: Sequence[int],
              log: ParseLog, reading: str = "official") -> tuple[float, list]:
    preds = [log.record(r, read_label(r, reading, "learning")) for r in replies]
    # an unreadable reply is a wrong prediction: it never counts as correct
    correct = [p is not None and p == t for p, t in zip(preds, targets)]
    return float(np.mean(correct)), preds


def _batches(n_videos: int, cfg: Config, steps: int) -> list[np.ndarray]:
    """Which training videos each step sees: a seeded shuffle per epoch, cut in batches."""
    out: list[np.ndarray] = []
    epoch = 0
    while len(out) < steps:
        order = np.random.default_rng(cfg.seed + epoch).permutation(n_videos)
        out += [order[i:i + cfg.batch_size] for i in range(0, n_videos, cfg.batch_size)]
        epoch += 1
    return out[:steps]


def even_frame_indices(num_frames: int, n: int) -> np.ndarray:
    """``n`` frames spread evenly over the whole video: the middle of each of n equal parts."""
    if num_frames <= 0:
        raise ValueError(f"video has {num_frames} frames; nothing to sample")
    return np.floor((np.arange(n) + 0.5) * num_frames / n).astype(np.int64)


def training_frames(video: VideoRef, cfg: Config) -> tuple[Derived, ...]:
    """The ``train_frames`` frames a learner sees of a training video, at ``image_size``."""
    return prompts.vlm_frames(video, even_frame_indices(video.num_frames, cfg.train_frames),
                              cfg.image_size)


def ask_learner(rt: Runtime, videos: Sequence[VideoRef], questions: Sequence[str],
                cfg: Config, desc: str) -> list[Reply]:
    """The learner's reply for each video (one VLM request per video)."""
    prompt = prompts.learner_prompt(questions, cfg.train_frames)
    return rt.map("vlm", [Ask(training_frames(v, cfg), prompt, max_new_tokens=cfg.max_new_tokens)
                          for v in videos], batch_size=cfg.vlm_batch_size, desc=desc)


def optimizer_step(rt: Runtime, videos: Sequence[VideoRef], targets: Sequence[int],
                   questions: list[str], cfg: Config, step: int) -> dict[str, Any]:
    """One step of verbalized learning on a batch of training videos: the learner answers
    with the current questions, the optimizer (the same VLM, shown every frame of the
    batch, the predictions and the targets) writes new questions."""
    # 1. the learner answers each video with the current questions
    replies = ask_learner(rt, videos, questions, cfg, desc=f"learner step {step}")
    log = ParseLog()
    train_acc, preds = _accuracy(replies, targets, log, cfg.label_reading)
    # 2. the optimizer sees the frames, the predictions and the targets
    prompt = prompts.optimizer_prompt(questions, preds, targets,
                                      replies if cfg.show_replies else None, cfg.train_frames,
                                      cfg.max_questions)
    images = tuple(f for v in videos for f in training_frames(v, cfg))
    reply = rt.map("vlm", [Ask(images, prompt, max_new_tokens=cfg.max_new_tokens)])[0]
    # 3. its reply's questions replace the current ones (kept when it holds none)
    new = parse_questions(reply, cfg.max_questions)
    return {"replies": list(replies), "predictions": preds, "train_acc": train_acc,
            "optimizer_reply": reply, "parsed": new is not None,
            "questions_out": new if new is not None else questions}


def learn_questions(train: Any, val: Any, *, config: Config | None = None,
                    profile: str | None = None, backends: dict[str, Any] | None = None,
                    cache: Cache | str | None = None,
                    questions: Sequence[str] | str | os.PathLike | None = None,
                    **overrides: Any) -> LearnResult:
    """Verbalized learning: improve the guiding questions without touching any weight.

    ``train`` / ``val``: Benchmarks, DataFrames (``path``, ``is_anomalous`` or ``label``) or
    ``(path, 0/1)`` lists; test videos are refused. The best validation accuracy wins
    (earliest on ties). ``questions``: the starting set (list, JSON file, None: shipped).
    """
    cfg = validated(config, overrides)
    train_t, val_t = _video_table(train, "training"), _video_table(val, "validation")
    shared = set(train_t["digest"]) & set(val_t["digest"])
    if shared:
        raise ValueError(f"{len(shared)} video(s) are in both the training and the validation "
                         "videos; validation must be held out")
    rt = Runtime(Roles(profile, models={"vlm": cfg.vlm_model}, backends=backends), cache)
    train_v, val_v = ([rt.video(p) for p in t["path"]] for t in (train_t, val_t))
    start = resolve_questions(questions)
    steps = cfg.steps if cfg.steps is not None else cfg.epochs * math.ceil(
        len(train_t) / cfg.batch_size)
    learner_log, optimizer_log = ParseLog(), ParseLog()
    rows: list[dict[str, Any]] = []
    current, source = start, "initial"

    def validate(qs: list[str], step: int) -> float:
        replies = ask_learner(rt, val_v, qs, cfg, desc=f"validation step {step}")
        return _accuracy(replies, list(val_t["target"]), learner_log, cfg.label_reading)[0]

    try:
        for step, batch in enumerate(bar(_batches(len(train_t), cfg, steps), total=steps,
                                         desc="VERA steps", disable=steps <= 1)):
            val_acc = validate(current, step) if step % cfg.validate_every == 0 else float("nan")
            record = optimizer_step(rt, [train_v[i] for i in batch],
                                    list(train_t["target"].iloc[batch]), current, cfg, step)
            for reply, pred in zip(record["replies"], record["predictions"]):
                learner_log.record(reply, pred)
            optimizer_log.record(record["optimizer_reply"], True if record["parsed"] else None)
            rows.append({"step": step, "questions": list(current), "source": source,
                         "train_acc": float(record["train_acc"]), "val_acc": val_acc,
                         "optimizer_reply": str(record["optimizer_reply"])})
            current = list(record["questions_out"])
            source = "optimizer" if record["parsed"] else "kept (optimizer reply unreadable)"
        rows.append({"step": steps, "questions": list(current), "source": source,
                     "train_acc": float("nan"), "val_acc": validate(current, steps),
                     "optimizer_reply": ""})
    finally:
        rt.release()

    history = pd.DataFrame(rows, columns=["step", "questions", "source", "train_acc", "val_acc",
                                          "optimizer_reply"])
    best = int(history["val_acc"].fillna(-1.0).to_numpy().argmax())  # first best: earliest
    history["chosen"] = history.index == best
    chosen = history.iloc[best]
    return LearnResult(questions=list(chosen["questions"]), initial_questions=start,
                       history=history, best_step=int(chosen["step"]),
                       best_val_acc=float(chosen["val_acc"]),
                       profile=rt.roles.detection_profile(["vlm"]),
                       model=rt.roles.identity("vlm"), learner_parse=learner_log,
                       optimizer_parse=optimizer_log)
