"""What VERA sends its models and how it reads their replies (notebook 70): the guiding
questions (files), the learner's and the optimizer's prompts, the frames the VLM and the
embedder see. The cache keys are the exact text sent, so an edited prompt is asked again."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..lavad.video_clip import window_clip
from ..runtime import Derived, EncodeVideo, VideoRef
from ..stages import parse_binary_label, resized, window_frames_closed, window_frames_half_open

#: The hand-written starting questions shipped with the suite.
DEFAULT_QUESTIONS_PATH = Path(__file__).resolve().parents[2] / "data" / "vera_questions.json"


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
    """The learner's (and inference's) prompt, in the structure of VERA's instruction."""
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
    """The optimizer's prompt, in the structure of VERA's optimizer instruction (the batch's
    frames go as images, ``frames_per_video`` each; ``replies`` shown only when given)."""
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
        "improve on the Current Prompt Questions so that the classification error goes down on "
        f"this batch and on the next batch of random videos. Write no more than {max_questions} "
        "New Prompt Questions. Think step by step and reply strictly in this format:",
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


def parse_questions(reply: str, max_questions: int = 5) -> list[str] | None:
    """The guiding questions after an optimizer reply's last "New Prompt Questions" (without
    it, only lines ending "?"), or None: lists of any layout; an item needs three words of
    letters (gibberish is not learned); no duplicates, at most ``max_questions``."""
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
    for q in (c.strip().strip("*`\"'").strip() for c in candidates):
        if q.endswith("??"):
            q = q.rstrip("?") + "?"
        if not heading and not q.endswith("?"):
            continue
        wordy = len(re.findall(r"[A-Za-z]{2,}", q)) >= 3 and len(q) <= 400
        if not wordy or q.lower() in {f.lower() for f in found}:
            continue
        found.append(q)
    return found[:max_questions] or None


_LIST_NUMBER = re.compile(r"(?m)^\s*\(?[01][.):]\)?\s+\S")


#: How a learner reply becomes a 0/1 label (:attr:`Config.label_reading`).
LABEL_READINGS = ("official", "tolerant")


def official_inference_label(reply: str) -> int:
    """The official inference rule (``generate_intial_score.py``): 1 when the reply's last
    non-space character is ``'1'``, else 0, so ``"Output: 1."`` reads 0."""
    return 1 if str(reply or "").rstrip()[-1:] == "1" else 0


def official_training_label(reply: str) -> int:
    """``training.py`` (training and validation): 0 when a ``'0'`` appears after the last
    ``'Output'`` (anywhere in the reply when it has none), else 1: unreadable reads 1."""
    return 0 if "0" in str(reply or "").split("Output")[-1] else 1


def read_label(reply: str, reading: str = "official", where: str = "inference") -> int | None:
    """The 0/1 label of a learner reply: the official rule of ``where`` ("inference" or
    "learning"), or vadnb's :func:`parse_label` with ``reading="tolerant"`` (None: unreadable)."""
    if reading == "tolerant":
        return parse_label(reply)
    if reading != "official" or where not in ("inference", "learning"):
        raise ValueError(f"label reading {reading!r} at {where!r}: use one of "
                         f"{LABEL_READINGS} at 'inference' or 'learning'")
    return official_inference_label(reply) if where == "inference" \
        else official_training_label(reply)


def parse_label(reply: str) -> int | None:
    """vadnb's tolerant reading of the 0/1 label: the first 0/1 after the last "Output", else
    the last standalone 0/1 that is not list numbering, else "there is (no) anomaly", else a
    leading yes/no; None when nothing fits."""
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


def explanation(reply: str) -> str:
    """The reply without its final "Output: x" line, on one line, at most 400 characters."""
    text = re.sub(r"(?is)\boutput\s*:?\s*\[?[01]\b.*$", "", str(reply or "")).strip()
    text = " ".join((text or str(reply or "")).split())
    return text[:400] if text else "(empty reply)"


def resolve_questions(questions: Any) -> list[str]:
    """A question list from a list, a JSON file, a ``LearnResult`` or None (the shipped set)."""
    if questions is None:
        return default_questions()
    if hasattr(questions, "questions") and hasattr(questions, "history"):  # a LearnResult
        return list(questions.questions)
    if isinstance(questions, (str, os.PathLike)):
        return load_questions(questions)
    return _check_questions(list(questions), "questions")


def vlm_frames(video: VideoRef, idx: Sequence[int], size: int) -> tuple[Derived, ...]:
    """Frames ``idx`` of ``video`` resized to ``size`` x ``size``, as VERA gives the VLM."""
    return tuple(Derived.of(resized, [f], width=size, height=size) for f in video.frames(idx))


def window(video: VideoRef, centre: int, cfg: Any) -> tuple[Derived, ...]:
    """The ``window_frames`` frames of a ``window_s`` window around ``centre``, resized."""
    idx = window_frames_closed(int(centre), video.num_frames, video.fps, cfg.window_s,
                                cfg.window_frames)
    return vlm_frames(video, idx, cfg.image_size)


def feature_requests(video: VideoRef, centre: int, seen: tuple[Derived, ...],
                     cfg: Any) -> list[EncodeVideo]:
    """A segment's embedding requests: LAVAD's clip feature, or the frames the VLM ``seen``."""
    if cfg.segment_features == "window":
        return [EncodeVideo(seen)]
    return window_clip(video, window_frames_half_open(int(centre), video.num_frames, video.fps,
                                                      cfg.window_s, 10), "imagebind")
