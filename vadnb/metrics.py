"""Frame-level evaluation, as all four methods report it (taught in notebook 40).

The benchmarks score *micro* metrics: the frames of every test video are concatenated
into one long label array and one long score array, and a single ROC-AUC (UCF-Crime,
ShanghaiTech, ...) or average precision (XD-Violence) is computed over them.
scikit-learn does the counting; this module checks the inputs and reports clearly.

Average precision comes in two variants that differ when scores are tied (LAVAD's LLM
scores take 11 values, so by several points):

- ``"sklearn"``: scikit-learn's ``average_precision_score``, the step-wise sum
  ``sum_n (R_n - R_{n-1}) P_n``; it never interpolates between operating points.
- ``"trapezoid"``: the trapezoid area under the precision-recall curve,
  ``auc(recall, precision)`` over ``precision_recall_curve``: what XD-Violence's own
  evaluation code and LAVAD's ``src/eval.py`` compute and what their papers report as AP.

``frame_ap(..., variant=...)`` picks one; :data:`REPORTED_AP` says which one each
benchmark's published numbers use, and :func:`ap_name` is the label every table shows.
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

#: The AP variant behind each benchmark's published numbers (XD-Violence's official
#: evaluation, which LAVAD and most weakly supervised methods reuse, takes the trapezoid
#: area; a benchmark not listed reports AUC only).
REPORTED_AP = {"xd-violence": "trapezoid"}


def ap_name(variant: str = "sklearn") -> str:
    """The column label of an AP computed with ``variant`` (tables say which AP they show)."""
    _check_variant(variant)
    return AP_VARIANTS[variant]


def _check_variant(variant: str) -> None:
    if variant not in AP_VARIANTS:
        raise ValueError(f"unknown AP variant {variant!r}; use one of {sorted(AP_VARIANTS)} "
                         "('trapezoid' is what XD-Violence and LAVAD report)")


def _as_list(x: ArrayOrList) -> tuple[list[str], list[np.ndarray]]:
    if isinstance(x, Mapping):
        return list(x.keys()), [np.asarray(v).ravel() for v in x.values()]
    if isinstance(x, np.ndarray) and x.dtype != object:
        return ["video 0"], [x.ravel()]
    items = [np.asarray(v).ravel() for v in x]
    return [f"video {i}" for i in range(len(items))], items


def concat_frames(labels: ArrayOrList, scores: ArrayOrList) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-video labels and scores, checking that every video's lengths match.

    Both may be one array, a list of per-video arrays, or a dict name -> array (same keys).
    A dict on one side and a list or array on the other is refused: videos are paired by
    name, never by position. Labels must be 0/1 (bool, int or float 0.0/1.0).
    """
    if isinstance(labels, Mapping) != isinstance(scores, Mapping):
        which = "labels" if isinstance(labels, Mapping) else "scores"
        other = "scores" if which == "labels" else "labels"
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
    for name, y in zip(names, ys):
        _check_binary(y, name)
    y = np.concatenate(ys) if ys else np.zeros(0)
    s = np.concatenate(ss).astype(np.float64) if ss else np.zeros(0)
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} frame scores are NaN or infinite")
    return y.astype(np.int64), s


def _check_binary(y: np.ndarray, name: str) -> None:
    """Refuse labels that are not 0/1, instead of casting 0.7 to 0 silently."""
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
    """``y`` comes from :func:`concat_frames`, so it is 0/1 already; both values must occur."""
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
    """Frame-level average precision over all frames of all videos (micro), in [0, 1].

    ``variant="sklearn"`` (default): scikit-learn's average precision.
    ``variant="trapezoid"``: the trapezoid area under the PR curve, the AP that XD-Violence
    and LAVAD report (:data:`REPORTED_AP`); higher than sklearn's when scores are tied.
    """
    _check_variant(variant)
    y, s = concat_frames(labels, scores)
    _check_two_classes(y, "frame AP")
    return _ap(y, s, variant)


def _ap(y: np.ndarray, s: np.ndarray, variant: str) -> float:
    if variant == "trapezoid":
        precision, recall, _ = precision_recall_curve(y, s)
        return float(auc(recall, precision))
    return float(average_precision_score(y, s))


def _auc_ap(y: np.ndarray, s: np.ndarray, variant: str) -> dict[str, float]:
    """AUC and AP of one group of frames; NaN for both where only one class occurs."""
    if len(np.unique(y)) < 2:
        return {"auc": np.nan, "ap": np.nan}
    return {"auc": float(roc_auc_score(y, s)), "ap": _ap(y, s, variant)}


def per_video(labels: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray],
              variant: str = "sklearn") -> pd.DataFrame:
    """One row per video: frames, anomalous frames, and AUC/AP (``variant``, see
    :func:`frame_ap`) where both classes occur."""
    _check_variant(variant)
    rows = []
    for name in labels:
        y, s = concat_frames([labels[name]], [scores[name]])
        rows.append({"video": name, "frames": len(y), "anomalous_frames": int(y.sum()),
                     **_auc_ap(y, s, variant), "mean_score": float(s.mean()) if len(s) else np.nan})
    return pd.DataFrame(rows)


def per_class(
    labels: Mapping[str, np.ndarray],
    scores: Mapping[str, np.ndarray],
    video_classes: Mapping[str, str],
    normal: str = "Normal",
    variant: str = "sklearn",
) -> pd.DataFrame:
    """Per anomaly class: micro AUC/AP over that class's videos plus all normal videos.

    This is the usual per-class protocol (UCF-Crime, XD-Violence): each class is judged
    against the same normal footage, so the numbers are comparable across classes.
    ``variant`` picks the AP (see :func:`frame_ap`).
    """
    _check_variant(variant)
    classes = sorted({c for c in video_classes.values() if c != normal})
    normals = [v for v in labels if video_classes[v] == normal]
    rows = []
    for c in classes:
        vids = [v for v in labels if video_classes[v] == c] + normals
        y, s = concat_frames([labels[v] for v in vids], [scores[v] for v in vids])
        rows.append({"class": c, "videos": len(vids) - len(normals), **_auc_ap(y, s, variant)})
    return pd.DataFrame(rows, columns=["class", "videos", "auc", "ap"])


def segments_to_frames(
    segment_scores: Sequence[float] | np.ndarray,
    num_frames: int,
    segment_length: int | None = None,
    starts: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Expand one score per segment to one score per frame.

    Either every segment covers ``segment_length`` consecutive frames from frame 0 (LAVAD,
    VERA: 16; AnyAnomaly: 24), or ``starts`` gives each segment's first frame and a segment
    lasts until the next one starts. The result is cut, or padded with the last score,
    to exactly ``num_frames``.
    """
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
    if len(frames) >= num_frames:
        return frames[:num_frames]
    return np.concatenate([frames, np.full(num_frames - len(frames), s[-1])])


# =========================================================================== class recognition
# (AnomalyCLIP's anomaly-recognition metrics; added for notebook 50. sklearn does the counting.)


def class_frame_metrics(frame_classes: Mapping[str, np.ndarray],
                        class_probs: Mapping[str, np.ndarray],
                        class_names: Sequence[str]) -> pd.DataFrame:
    """One-vs-rest frame AUC and AP of each class's probability over all test frames.

    As AnomalyCLIP's paper: the frames of every video are pooled; for class ``c`` the
    positives are the frames labelled ``c`` and everything else (normal frames and other
    classes' frames) is negative, scored by ``p(c)``. Classes without a labelled frame are
    left out (the official code drops them too).

    Args:
        frame_classes: video -> int array [frames], the class index of each frame
            (an index into ``class_names``; any other value, e.g. -1, means normal).
        class_probs: video -> float array [frames, >= len(class_names)], column ``i`` is
            ``p(class_names[i])``.
        class_names: the anomaly classes (Normal excluded).

    Returns:
        one row per class present: class, frames (positives), auc, ap.
    """
    names = list(frame_classes)
    y = np.concatenate([np.asarray(frame_classes[v]).ravel() for v in names])
    p = np.concatenate([np.asarray(class_probs[v], dtype=np.float64) for v in names])
    if len(y) != len(p):
        raise ValueError(f"{len(y)} frame labels but {len(p)} rows of class probabilities")
    rows = []
    for i, c in enumerate(class_names):
        pos = y == i
        if pos.any() and not pos.all():
            rows.append({"class": c, "frames": int(pos.sum()),
                         "auc": float(roc_auc_score(pos, p[:, i])),
                         "ap": float(average_precision_score(pos, p[:, i]))})
    return pd.DataFrame(rows, columns=["class", "frames", "auc", "ap"])


def topk_video_accuracy(true_classes: Mapping[str, str], class_scores: Mapping[str, np.ndarray],
                        class_names: Sequence[str], k: int = 1) -> float:
    """Share of videos whose true class is among their ``k`` highest-scored classes.

    ``class_scores[v]`` has one score per class of ``class_names`` (e.g. the summed ``p(c)``
    over the video's frames). Videos whose true class is not in ``class_names`` (normal
    videos) are skipped; NaN when none is left.
    """
    names = list(class_names)
    hits = []
    for v, c in true_classes.items():
        if c not in names:
            continue
        s = np.asarray(class_scores[v], dtype=np.float64)[:len(names)]
        order = np.argsort(-s, kind="stable")[:k]
        hits.append(names.index(c) in order)
    return float(np.mean(hits)) if hits else float("nan")


def youden_threshold(labels: ArrayOrList, scores: ArrayOrList) -> float:
    """The score threshold maximising TPR - FPR on the ROC of ``labels`` vs ``scores``.

    AnomalyCLIP's official evaluation picks its class-prediction threshold this way *on the
    test set*; use it on a validation split, or read results computed with it on test as
    optimistic.
    """
    y, s = concat_frames(labels, scores)
    _check_two_classes(y, "a ROC threshold")
    fpr, tpr, thr = roc_curve(y, s)
    return float(thr[int(np.argmax(tpr - fpr))])


def thresholded_frame_topk(frame_classes: Mapping[str, np.ndarray],
                           scores: Mapping[str, np.ndarray],
                           class_probs: Mapping[str, np.ndarray], class_names: Sequence[str],
                           threshold: float, k: int = 1) -> pd.DataFrame:
    """Per-class frame top-k accuracy with a threshold rule (the official AnomalyCLIP rule).

    A frame whose anomaly score is below ``threshold`` is predicted Normal (for top-k:
    Normal first, then the k-1 most probable classes); otherwise its k most probable
    classes. The accuracy of class ``c`` is over the frames labelled ``c``; the row "Normal"
    is over normal frames (label outside ``class_names``).
    """
    names = list(class_names)
    vids = list(frame_classes)
    y = np.concatenate([np.asarray(frame_classes[v]).ravel() for v in vids])
    s = np.concatenate([np.asarray(scores[v], dtype=np.float64).ravel() for v in vids])
    p = np.concatenate([np.asarray(class_probs[v], dtype=np.float64)[:, :len(names)]
                        for v in vids])
    normal = len(names)
    y = np.where((y >= 0) & (y < normal), y, normal)
    ranked = np.argsort(-p, axis=1, kind="stable")
    width = min(k, normal + 1)
    high = np.full((len(y), width), -1)  # -1 never matches: fewer classes than k
    high[:, :min(k, normal)] = ranked[:, :min(k, normal)]
    low = np.concatenate([np.full((len(y), 1), normal), ranked[:, :width - 1]], axis=1)
    pred = np.where((s < threshold)[:, None], low, high)
    hit = (pred == y[:, None]).any(axis=1)
    rows = [{"class": c, "frames": int((y == i).sum()), f"top{k}": float(hit[y == i].mean())}
            for i, c in enumerate([*names, "Normal"]) if (y == i).any()]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# C-VAD protocol (AnyAnomaly's customizable-VAD benchmarks C-ShT and C-Ave, notebook 60)
# --------------------------------------------------------------------------------------


def cvad_auc(labels: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray], *,
             multi_type_videos: Sequence[str] = (), trim_labels: bool = False) -> float:
    """Frame AUC of one anomaly type under the C-VAD protocol.

    ``labels`` holds that type's frame labels for *every* test video of the dataset (other
    anomaly types are 0: they count as negatives), ``scores`` the detector's scores when
    asked for that type. The AUC is micro, over all those videos' frames, leaving out the
    ``multi_type_videos`` (the benchmark's multi-type set). Every remaining video needs a
    score: the protocol is not computable on a subset. ``trim_labels`` cuts each label
    array to its score array's length when the scores are shorter (the official code
    scores whole segments only and cuts the labels likewise).
    """
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
               multi_type_videos: Sequence[str] = (), trim_labels: bool = False
               ) -> pd.DataFrame:
    """:func:`cvad_auc` for each anomaly type, one row each (type, videos, frames,
    anomalous_frames, auc), plus a last row ``mean`` averaging the types' AUCs (how the
    C-ShT / C-Ave numbers are summarised). A type whose labels hold no anomalous frame
    gets NaN and is left out of the mean."""
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
    table = pd.DataFrame(rows, columns=["type", "videos", "frames", "anomalous_frames", "auc"])
    mean = {"type": "mean", "videos": np.nan, "frames": np.nan, "anomalous_frames": np.nan,
            "auc": float(table["auc"].mean()) if table["auc"].notna().any() else np.nan}
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)
