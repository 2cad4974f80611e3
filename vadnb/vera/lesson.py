"""Teaching helpers for notebook 70: VERA with perfect perception (oracle VLM and embedder),
the validation curve, and sentences computed from a run."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics
from ..cache import Cache
from ..lavad.video_clip import spatial_crops
from ..lesson import frame_truth, pixel_key
from ..models.scripted import ScriptedEmbedder, ScriptedVLM
from ..result import TINY_WARNING
from .core import PAPER_STEP3, VADNB_STEP3
from .learn import LearnResult, learn_questions
from .run import run_many


#: One guiding question per campus anomaly class, and the words the oracle learner listens for.
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
    out = []
    for line in prompt.split(heading, 1)[-1].splitlines()[1:]:
        m = re.match(r"^\d+\. (.+)$", line)
        if m:
            out.append(m.group(1))
        elif out:
            break
    return out


def oracle_backends(benchmark: Any, image_size: int = 448,
                    questions: dict[str, str] | None = None) -> dict[str, Any]:
    """A VLM and an embedder that *read the ground truth* (at ``image_size``): VERA with
    perfect perception (notebook 70). The learner says 1 only when a frame shows an anomaly
    a prompt question asks about; the optimizer adds the question (``questions``: kind ->
    question) of each kind the learner missed."""
    asks = dict(questions or CAMPUS_QUESTIONS)
    # hash -> (class shown, class of its video), of the frames and of their native crops
    known = frame_truth(benchmark, views=spatial_crops) | frame_truth(benchmark, image_size)

    def keys(images: Sequence[np.ndarray]) -> list[str]:
        out = [pixel_key(im) for im in images]
        if any(k not in known for k in out):
            raise ValueError("the oracle only knows the frames of the benchmark it was built "
                             f"from, at {image_size} px; run it on those videos at that size")
        return out

    def named(kind: str, qs: Sequence[str]) -> bool:
        words = _CAMPUS_WORDS.get(kind, (kind.lower(),))
        return any(w in q.lower() for q in qs for w in words)

    def learner(images: list[np.ndarray], prompt: str) -> str:
        qs = _listed(prompt, "** Prompt questions **")
        seen = sorted({known[k][0] for k in keys(images)} - {"Normal"})
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
        said, truth = ([v.strip() for v in m.group(1).split(",")] if m else [] for m in (
            re.search(rf"\*\* The {part} \*\*\n\[([^\]]*)\]", prompt)
            for part in ("model's predictions", "targets")))
        per = max(1, len(images) // n)
        missed = []
        for i in range(n):
            chunk = keys(images[i * per:(i + 1) * per])
            kinds = sorted({known[k][1] for k in chunk} - {"Normal"})
            if i < len(said) and i < len(truth) and said[i] != truth[i] and truth[i] == "1":
                missed += [asks[k] for k in kinds if k in asks and not named(k, qs)]
        new = list(dict.fromkeys(qs + missed))[-limit:]
        reason = (f"The model missed {len(missed)} anomalous video(s); add a question about "
                  "each." if missed else "The model does well; keep the questions.")
        return (f"Reasoning:\n{reason}\nNew Prompt Questions:\n" +
                "\n".join(f"{i}. {q}" for i, q in enumerate(new, 1)))

    def reply(images: list[np.ndarray], prompt: str) -> str:
        return optimizer(images, prompt) if "New Prompt Questions:" in prompt and \
            "** Current Prompt Questions **" in prompt else learner(images, prompt)

    def vector(image: np.ndarray) -> np.ndarray:
        kind = known[keys([image])[0]][0]
        return np.array([0.0, 1.0]) if kind == "Normal" else np.array([1.0, 0.0])

    return {"vlm": ScriptedVLM(reply, name="oracle-vlm"),
            "embedder": ScriptedEmbedder(image_fn=vector, name="oracle-embedder")}


def _tiny_tag(meaningless: bool) -> str:
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
                     "set: nothing was learned, and no noise became a question")
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
    """Why the AUC is what it is: constant scores give 0.5, else how many distinct scores."""
    dets = list(detections)
    scores = np.concatenate([np.asarray(d.frame_scores, dtype=np.float64) for d in dets])
    distinct = len(np.unique(np.round(scores, 9)))
    if distinct == 1:
        text = (f"AUC {auc:.3f}: every frame has the same score, so the ranking is a tie and "
                "the AUC is 0.5 by construction")
    else:
        text = f"AUC {auc:.3f} from {distinct} distinct frame-score values"
    return text + _tiny_tag(any(d.meaningless for d in dets))


def highest_scoring(detections: Mapping[str, Any],
                    labels: Mapping[str, np.ndarray]) -> tuple[str, str]:
    """The video whose highest frame score is the largest, and a sentence saying so. On a
    tie (0/1 answers tie often) the tied video with the most anomalous frames in ``labels``
    is shown, and the sentence says the score could not choose."""
    if not detections:
        raise ValueError("no detections to choose from")
    peaks = {n: float(np.max(d.frame_scores)) for n, d in detections.items()}
    top = max(peaks.values())
    tied = [n for n, p in peaks.items() if np.isclose(p, top)]
    anomalous = {n: int(np.sum(np.asarray(labels[n]) > 0)) for n in tied}
    name = sorted(tied, key=lambda n: -anomalous[n])[0]  # stable: the first among equals
    if len(tied) == 1:
        text = f"{name} has the highest frame score of the {len(peaks)} test videos, {top:.2f}."
    else:
        text = (f"{len(tied)} of {len(peaks)} test videos tie for the highest frame score, "
                f"{top:.2f}: the score cannot choose between them. Shown: {name}, the tied "
                f"video with the most anomalous frames ({anomalous[name]}), so there is an "
                "event to look at.")
    return name, text + _tiny_tag(any(d.meaningless for d in detections.values()))


def perfect_perception(benchmark: Any, oracle: dict[str, Any] | None = None, *,
                       image_size: int = 448, steps: int = 6,
                       questions: Sequence[str] = ("Is there fire or smoke?",),
                       cache: Cache | str | None = None) -> pd.DataFrame:
    """VERA with perfect perception on ``benchmark``: learning, then the test split under
    each step-3 variant (a row each: settings, val_acc, questions, test_auc, test_ap)."""
    oracle = oracle or oracle_backends(benchmark, image_size=image_size)
    result = learn_questions(benchmark.subset("train"), benchmark.subset("val"),
                             backends=oracle, questions=list(questions), steps=steps,
                             image_size=image_size, cache=cache)
    test = benchmark.subset("test").videos
    labels = {n: benchmark.frame_labels(n) for n in test["name"]}
    variants = [
        ("official (default)", {}),
        ("vadnb's step 3 (VADNB_STEP3)", dict(VADNB_STEP3)),
        ("centred kernel, rounded", {"smoothing": "centred"}),
        ("official kernel, unrounded", {"round_decimals": None}),
        ("with UCF position prior (PAPER_STEP3)", dict(PAPER_STEP3)),
        ("vadnb's segment features (window)", {"segment_features": "window"}),
        ("answers only (no steps 2-3)", {"ensemble_fraction": 0.0, "smooth_taps": 1}),
    ]
    rows = []
    for name, settings in variants:
        dets = run_many(list(test["path"]), backends=oracle, questions=result,
                        image_size=image_size, cache=cache, **settings)
        scores = {n: d.frame_scores for n, d in zip(test["name"], dets)}
        rows.append({"variant": name,
                     "settings": ", ".join(f"{k}={v!r}" for k, v in settings.items()) or "-",
                     "val_acc": result.best_val_acc, "questions": len(result.questions),
                     "test_auc": metrics.frame_auc(labels, scores),
                     "test_ap": metrics.frame_ap(labels, scores)})
    return pd.DataFrame(rows)


def plot_history(history: pd.DataFrame, warning: str | None = None, ax: Any = None) -> Any:
    """The validation curve of :func:`learn_questions` (``warning`` across the axes)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
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
        ax.text(0.5, 0.55, "\n".join(textwrap.wrap(f"⚠ {warning}", 60)), transform=ax.transAxes,
                ha="center", va="center", color="C3", fontsize=9)
    return fig
