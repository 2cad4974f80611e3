"""Frame-level evaluation, as all four methods report it (taught in notebook 40).

*Micro* metrics: every test video's frames in one label and one score array, one ROC-AUC or
AP over them (scikit-learn counts; this module checks inputs; AP variants: :data:`AP_VARIANTS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (auc, average_precision_score, precision_recall_curve, roc_auc_score,
                             roc_curve)

__all__ = [
    "frame_auc", "frame_ap", "ap_name", "AP_VARIANTS", "REPORTED_AP", "per_video", "per_class",
    "segments_to_frames", "concat_frames", "class_frame_metrics", "topk_video_accuracy",
    "youden_threshold", "thresholded_frame_topk", "cvad_auc", "cvad_table",
]

ArrayOrList = np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]

#: The two AP variants and what each computes (the label tables print).
AP_VARIANTS = {
    "sklearn": "AP (scikit-learn average precision, step-wise)",
    "trapezoid": "AP (trapezoid area under the PR curve, as XD-Violence / LAVAD report it)",
}

#: The AP variant behind each benchmark's published numbers (not listed: AUC only).
REPORTED_AP = {"xd-violence": "trapezoid"}


def ap_name(variant: str = "sklearn") -> str:
    """The column label of an AP computed with ``variant``."""
    if variant not in AP_VARIANTS:
        raise ValueError(f"unknown AP variant {variant!r}; use one of {sorted(AP_VARIANTS)} "
                         "('trapezoid' is what XD-Violence and LAVAD report)")
    return AP_VARIANTS[variant]


def _as_list(x: ArrayOrList) -> tuple[list[str], list[np.ndarray]]:
    if isinstance(x, Mapping):
        return list(x.keys()), [np.asarray(v).ravel() for v in x.values()]
    if isinstance(x, np.ndarray) and x.dtype != object:
        return ["video 0"], [x.ravel()]
    items = [np.asarray(v).ravel() for v in x]
    return [f"video {i}" for i in range(len(items))], items


def concat_frames(labels: ArrayOrList, scores: ArrayOrList) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-video 0/1 labels and scores (one array, a list, or dicts name ->
    array, paired by name, never by position), checking every video's lengths."""
    if isinstance(labels, Mapping) != isinstance(scores, Mapping):
        which, other = ("labels", "scores") if isinstance(labels, Mapping) else ("scores", "labels")
        raise TypeError(
            f"{which} is a dict (video name -> array) but {other} is not: videos are paired "
            f"by name, never by position; pass {other} as a dict with the same names too")
    if isinstance(labels, Mapping) and isinstance(scores, Mapping):
        missing = set(labels) ^ set(scores)
        if missing:
            raise ValueError(f"labels and scores name different videos: {sorted(missing)[:5]}")
        scores = {k: scores[k] for k in labels}
    names, ys = _as_list(labels)
    _, ss = _as_list(scores)
    if len(ys) != len(ss):
        raise ValueError(f"{len(ys)} label arrays but {len(ss)} score arrays")
    for name, y, s in zip(names, ys, ss):
        if len(y) != len(s):
            raise ValueError(
                f"{name}: {len(y)} frame labels but {len(s)} frame scores; expand segment "
                "scores to one score per frame (vadnb.metrics.segments_to_frames)")
        _check_binary(y, name)
    y = np.concatenate(ys) if ys else np.zeros(0)
    s = np.concatenate(ss).astype(np.float64) if ss else np.zeros(0)
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} frame scores are NaN or infinite")
    return y.astype(np.int64), s


def _check_binary(y: np.ndarray, name: str) -> None:
    """Refuse labels that are not 0/1 (never cast 0.7 to 0 silently)."""
    if y.dtype == bool or len(y) == 0:
        return
    if y.dtype.kind not in "iuf":
        raise ValueError(f"{name}: frame labels must be numbers 0/1, got dtype {y.dtype}")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        values = np.unique(y[bad])[:5].tolist()
        raise ValueError(
            f"{name}: frame labels must be 0 (normal) or 1 (anomalous); {int(bad.sum())} "
            f"frames have other values, e.g. {values}. Threshold soft labels yourself "
            "(labels >= 0.5) if that is what you mean")


def _check_two_classes(y: np.ndarray, metric: str) -> None:
    values = set(np.unique(y).tolist())
    if len(values) < 2:
        only = "normal (0)" if values == {0} else "anomalous (1)" if values else "no"
        raise ValueError(
            f"{metric} needs both normal and anomalous frames, but all {len(y)} labels are "
            f"{only}; evaluate on a set of videos that contains both")


def frame_auc(labels: ArrayOrList, scores: ArrayOrList) -> float:
    """Frame-level ROC-AUC over all frames of all videos (micro), in [0, 1]."""
    y, s = concat_frames(labels, scores)
    _check_two_classes(y, "frame AUC")
    return float(roc_auc_score(y, s))


def frame_ap(labels: ArrayOrList, scores: ArrayOrList, variant: str = "sklearn") -> float:
    """Frame-level (micro) average precision; ``variant="trapezoid"``: the PR curve's area
    that XD-Violence and LAVAD report (higher than scikit-learn's on tied scores)."""
    ap_name(variant)  # checks it
    y, s = concat_frames(labels, scores)
    _check_two_classes(y, "frame AP")
    return _auc_ap(y, s, variant)["ap"]


def _auc_ap(y: np.ndarray, s: np.ndarray, variant: str) -> dict[str, float]:
    """AUC and AP of one group of frames; NaN where only one class occurs."""
    if len(np.unique(y)) < 2:
        return {"auc": np.nan, "ap": np.nan}
    if variant == "trapezoid":
        precision, recall, _ = precision_recall_curve(y, s)
        return {"auc": float(roc_auc_score(y, s)), "ap": float(auc(recall, precision))}
    return {"auc": float(roc_auc_score(y, s)), "ap": float(average_precision_score(y, s))}


def per_video(labels: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray],
              variant: str = "sklearn") -> pd.DataFrame:
    """One row per video: frames, anomalous frames, AUC/AP where both classes occur."""
    ap_name(variant)  # checks it
    rows = []
    for name in labels:
        y, s = concat_frames([labels[name]], [scores[name]])
        rows.append({"video": name, "frames": len(y), "anomalous_frames": int(y.sum()),
                     **_auc_ap(y, s, variant), "mean_score": float(s.mean()) if len(s) else np.nan})
    return pd.DataFrame(rows)


def per_class(labels: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray],
              video_classes: Mapping[str, str], normal: str = "Normal",
              variant: str = "sklearn") -> pd.DataFrame:
    """Per anomaly class: micro AUC/AP (``variant``: see :func:`frame_ap`) over that class's
    videos plus all normal videos (the usual protocol: one normal footage for all classes)."""
    ap_name(variant)  # checks it
    classes = sorted({c for c in video_classes.values() if c != normal})
    normals = [v for v in labels if video_classes[v] == normal]
    rows = []
    for c in classes:
        vids = [v for v in labels if video_classes[v] == c] + normals
        y, s = concat_frames([labels[v] for v in vids], [scores[v] for v in vids])
        rows.append({"class": c, "videos": len(vids) - len(normals), **_auc_ap(y, s, variant)})
    return pd.DataFrame(rows, columns=["class", "videos", "auc", "ap"])


def segments_to_frames(segment_scores: Sequence[float] | np.ndarray, num_frames: int,
                       segment_length: int | None = None,
                       starts: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Expand one score per segment to one per frame: each segment covers ``segment_length``
    frames from frame 0 (LAVAD, VERA: 16; AnyAnomaly: 24), or lasts from its ``starts`` entry
    to the next; cut, or padded with the last score, to exactly ``num_frames``."""
    s = np.asarray(segment_scores, dtype=np.float64).ravel()
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if len(s) == 0:
        raise ValueError("no segment scores to expand")
    if (segment_length is None) == (starts is None):
        raise ValueError("give exactly one of segment_length or starts")
    if segment_length is not None:
        if segment_length <= 0:
            raise ValueError(f"segment_length must be positive, got {segment_length}")
        frames = np.repeat(s, segment_length)
    else:
        st = np.asarray(starts, dtype=np.int64).ravel()
        if len(st) != len(s):
            raise ValueError(f"{len(st)} starts for {len(s)} segment scores")
        if np.any(np.diff(st) <= 0) or st[0] < 0:
            raise ValueError("segment starts must be increasing and non-negative")
        ends = np.append(st[1:], max(num_frames, st[-1] + 1))
        frames = np.repeat(s, ends - st)
        frames = np.concatenate([np.full(st[0], s[0]), frames])
    return np.concatenate([frames, np.full(max(0, num_frames - len(frames)), s[-1])])[:num_frames]


# AnomalyCLIP's class-recognition metrics (notebook 50)


def class_frame_metrics(frame_classes: Mapping[str, np.ndarray],
                        class_probs: Mapping[str, np.ndarray],
                        class_names: Sequence[str]) -> pd.DataFrame:
    """One-vs-rest frame AUC and AP of each class's ``p(c)`` over the pooled frames (as
    AnomalyCLIP's paper). ``frame_classes``: video -> each frame's index into ``class_names``
    (other: normal); ``class_probs``: video -> [frames, >= len(class_names)]."""
    names = list(frame_classes)
    y = np.concatenate([np.asarray(frame_classes[v]).ravel() for v in names])
    p = np.concatenate([np.asarray(class_probs[v], dtype=np.float64) for v in names])
    if len(y) != len(p):
        raise ValueError(f"{len(y)} frame labels but {len(p)} rows of class probabilities")
    rows = [{"class": c, "frames": int((y == i).sum()), **_auc_ap(y == i, p[:, i], "sklearn")}
            for i, c in enumerate(class_names) if (y == i).any() and not (y == i).all()]
    return pd.DataFrame(rows, columns=["class", "frames", "auc", "ap"])


def topk_video_accuracy(true_classes: Mapping[str, str], class_scores: Mapping[str, np.ndarray],
                        class_names: Sequence[str], k: int = 1) -> float:
    """Share of videos whose true class is among their ``k`` highest-scored classes
    (``class_scores[v]``: one per class); other videos (normal) skipped; NaN if none left."""
    names = list(class_names)
    hits = [names.index(c) in np.argsort(-np.asarray(class_scores[v], np.float64)[:len(names)],
                                         kind="stable")[:k]
            for v, c in true_classes.items() if c in names]
    return float(np.mean(hits)) if hits else float("nan")


def youden_threshold(labels: ArrayOrList, scores: ArrayOrList) -> float:
    """The score threshold maximising TPR - FPR. AnomalyCLIP's evaluation picks it *on the
    test set*: use a validation split, or read such test results as optimistic."""
    y, s = concat_frames(labels, scores)
    _check_two_classes(y, "a ROC threshold")
    fpr, tpr, thr = roc_curve(y, s)
    return float(thr[int(np.argmax(tpr - fpr))])


def thresholded_frame_topk(frame_classes: Mapping[str, np.ndarray],
                           scores: Mapping[str, np.ndarray],
                           class_probs: Mapping[str, np.ndarray], class_names: Sequence[str],
                           threshold: float, k: int = 1) -> pd.DataFrame:
    """Per-class frame top-k accuracy, AnomalyCLIP's rule: a frame scored below
    ``threshold`` is Normal (then its k-1 likeliest classes), else its k likeliest; row
    "Normal" is over the frames labelled outside ``class_names``."""
    names = list(class_names)
    vids = list(frame_classes)
    y = np.concatenate([np.asarray(frame_classes[v]).ravel() for v in vids])
    s = np.concatenate([np.asarray(scores[v], dtype=np.float64).ravel() for v in vids])
    p = np.concatenate([np.asarray(class_probs[v], dtype=np.float64)[:, :len(names)]
                        for v in vids])
    normal = len(names)
    y = np.where((y >= 0) & (y < normal), y, normal)
    ranked = np.argsort(-p, axis=1, kind="stable")
    hit = np.where(s < threshold, (y == normal) | (ranked[:, :k - 1] == y[:, None]).any(axis=1),
                   (ranked[:, :k] == y[:, None]).any(axis=1))
    rows = [{"class": c, "frames": int((y == i).sum()), f"top{k}": float(hit[y == i].mean())}
            for i, c in enumerate([*names, "Normal"]) if (y == i).any()]
    return pd.DataFrame(rows)


# C-VAD protocol (AnyAnomaly's benchmarks C-ShT and C-Ave, notebook 60)


def cvad_auc(labels: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray], *,
             multi_type_videos: Sequence[str] = (), trim_labels: bool = False) -> float:
    """Frame AUC of one anomaly type under C-VAD: micro over *every* test video (other types
    are negatives) but ``multi_type_videos``, each needing a score. ``trim_labels`` cuts
    labels to shorter scores (the official code scores whole segments only)."""
    skip = set(multi_type_videos)
    names = [n for n in labels if n not in skip]
    lost = [n for n in names if n not in scores]
    if lost:
        raise ValueError(f"C-VAD needs a score for every test video: {len(lost)} missing, "
                         f"e.g. {lost[:3]}")
    ss = {n: np.asarray(scores[n], np.float64).ravel() for n in names}
    ys = {n: np.asarray(labels[n]).ravel()[:len(ss[n]) if trim_labels else None] for n in names}
    return frame_auc(ys, ss)


def cvad_table(labels_by_type: Mapping[str, Mapping[str, np.ndarray]],
               scores_by_type: Mapping[str, Mapping[str, np.ndarray]], *,
               multi_type_videos: Sequence[str] = (), trim_labels: bool = False) -> pd.DataFrame:
    """:func:`cvad_auc` per anomaly type (type, videos, frames, anomalous_frames, auc) plus a
    row ``mean`` of the AUCs; a type with no anomalous frame gets NaN, out of the mean."""
    rows = []
    for t, labels in labels_by_type.items():
        if t not in scores_by_type:
            raise ValueError(f"no scores for anomaly type {t!r}")
        kept = [n for n in labels if n not in set(multi_type_videos)]
        y = np.concatenate([np.asarray(labels[n]).ravel() for n in kept]) if kept else np.zeros(0)
        auc = (cvad_auc(labels, scores_by_type[t], multi_type_videos=multi_type_videos,
                        trim_labels=trim_labels) if y.any() and not y.all() else np.nan)
        rows.append({"type": t, "videos": len(kept), "frames": int(len(y)),
                     "anomalous_frames": int(y.sum()), "auc": auc})
    rows.append({"type": "mean", "auc": pd.Series([r["auc"] for r in rows], dtype=float).mean()})
    return pd.DataFrame(rows, columns=["type", "videos", "frames", "anomalous_frames", "auc"])
