"""Running a trained AnomalyCLIP on a video (:func:`run`) or a benchmark split (:func:`evaluate`,
with the paper's recognition metrics). Scores are cached by the checkpoint's and the features'
content, so a warm re-run loads no model (not even CLIP's text tower) and decodes no frame."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..cache import file_digest, make_key
from ..models.profiles import MEANINGLESS_PROFILES
from ..runtime import Roles, Runtime
from ..stages import configure
from . import core, model as model_module
from .core import NORMAL, Config
from .model import _checkpoint_paths, clip_label, load_checkpoint, state_digest

#: Profiles a checkpoint's features may come from (anything else: the caller's profile).
PROFILES = ("tiny", "colab", "paper")


def feature_scale(features: np.ndarray) -> str:
    """``"unit"`` when every row has norm 1 (L2-normalised), else ``"raw"`` (AnomalyCLIP's)."""
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected features [T, D] with T > 0, got shape {x.shape}")
    return "unit" if np.all(np.abs(np.linalg.norm(x, axis=1) - 1.0) < 1e-3) else "raw"


def check_feature_scale(features: np.ndarray, expected: str | None, source: str) -> str:
    """The features' scale; a ValueError naming ``source`` if it is not ``expected`` (if given)."""
    found = feature_scale(features)
    if expected and found != expected:
        norm = float(np.linalg.norm(np.asarray(features, np.float32), axis=1).mean())
        hint = ("they look L2-normalised (every row has norm 1); AnomalyCLIP uses the raw "
                "visual-encoder output: re-extract with vadnb.anomalyclip.extract_features"
                if found == "unit" else
                "they are raw features but the model was trained on L2-normalised ones")
        raise ValueError(f"{source}: features on the wrong scale for this model (mean row norm "
                         f"{norm:.3g}, model expects {expected!r} features): {hint}")
    return found


def clip_roles(profile: str | None, cfg: Config, backends: Mapping[str, Any] | None) -> Roles:
    """The one role AnomalyCLIP uses: ``clip`` (a given backend, or the profile's)."""
    return Roles(profile, models={"clip": cfg.clip_model}, backends=backends)


def extract_features(video: str | os.PathLike, clip: Any, stride: int = 1, cache: Any = None,
                     batch_frames: int = 32, progress: bool = True) -> np.ndarray:
    """Raw (never L2-normalised) CLIP features of every ``stride``-th frame, cached per frame
    (a double without ``encode_image_raw`` gives normalised ones: see :func:`feature_scale`)."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    rt = Runtime(Roles(backends={"clip": clip}), cache)
    return core.embed_frames(rt, rt.video(video), stride, batch_frames)


def benchmark_features(benchmark: Any, roles: Roles, cfg: Config, cache: Any,
                       features: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Features of every video of ``benchmark``; those in ``features`` are kept."""
    rt, given = Runtime(roles, cache), features or {}
    out = {}
    for row in benchmark.videos.itertuples():
        if row.name in given:
            out[row.name] = np.asarray(given[row.name], dtype=np.float32)
        else:  # the clip role is loaded only on a frame whose feature is not cached
            out[row.name] = core.embed_frames(rt, rt.video(row.path), cfg.feature_stride,
                                              cfg.batch_frames)
    return out


def predict(model: Any, features: np.ndarray, stride: int = 1,
            num_frames: int | None = None, source: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """``(scores [N], class_probs [N, C+1])`` of one video's features ``[T, D]``, repeated to
    ``N = num_frames`` (default ``T * stride``) frames; columns: ``model.class_names``, "Normal".
    Raises ValueError naming ``source`` when the features' scale is not the model's."""
    feats = np.asarray(features, dtype=np.float32)
    if feats.ndim != 2 or len(feats) == 0:
        raise ValueError(f"{source}: expected features [T, D] with T > 0, got shape {feats.shape}")
    check_feature_scale(feats, getattr(model, "feature_scale", None), source)
    scores, probs = core.score_features(model, feats)
    n = len(feats) * stride if num_frames is None else int(num_frames)
    return core.repeat_strided(scores, stride, n), core.repeat_strided(probs, stride, n)


def segments_table(scores: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                    fps: float, seg_length: int = 16) -> pd.DataFrame:
    cols = list(class_names) + [NORMAL]
    rows, n = [], len(scores)
    for start in range(0, n, seg_length):
        end = min(start + seg_length, n)
        p = probs[start:end].mean(0)
        best = int(np.argmax(p))
        centre = (start + end - 1) // 2
        row = {"start_frame": start, "end_frame": end, "centre_frame": centre,
               "time_s": centre / fps if fps > 0 else float("nan"),
               "score": float(scores[start:end].mean()), "predicted_class": cols[best]}
        row.update({f"p_{c}": float(v) for c, v in zip(cols, p)})
        row["explanation"] = f"{cols[best]} (p={p[best]:.2f})"
        if cols[best] == NORMAL and p[best] < 0.5 and len(cols) > 1:
            # Normal is the likeliest single class, yet the anomaly classes together outweigh it
            top = int(np.argmax(p[:-1]))
            row["explanation"] += (f"; the anomaly classes together p={1 - p[best]:.2f}, "
                                   f"most of all {cols[top]} (p={p[top]:.2f})")
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class Evaluation:
    """A trained model on a split: frame AUC / AP and the paper's recognition metrics. Trap: the
    ``paper_*`` numbers use the official threshold, tuned on the *test* ROC: optimistic."""
    auc: float
    ap: float
    per_class: pd.DataFrame
    class_accuracy: float
    frame_scores: dict[str, np.ndarray]
    class_probs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    video_classes: dict[str, str]
    predicted_classes: dict[str, str]
    class_names: list[str]
    meaningless: bool = False
    class_auc: float = float("nan")
    class_ap: float = float("nan")
    class_table: pd.DataFrame | None = None
    top1_video: float = float("nan")
    top5_video: float = float("nan")
    paper_threshold: float = float("nan")
    paper_top1_frame: float = float("nan")
    paper_top5_frame: float = float("nan")

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a JSON-able dict."""
        table = self.class_table if self.class_table is not None else pd.DataFrame()
        head = ("auc", "ap", "class_accuracy", "class_auc", "class_ap", "top1_video", "top5_video")
        return {**{k: getattr(self, k) for k in head},
                "paper_threshold_tuned_on_test": self.paper_threshold,
                "paper_top1_frame": self.paper_top1_frame, "paper_top5_frame": self.paper_top5_frame,
                "videos": len(self.frame_scores), "per_class": self.per_class.to_dict("records"),
                "class_table": table.to_dict("records"), "meaningless": self.meaningless}


def video_class(class_probs: np.ndarray, class_names: Sequence[str]) -> str:
    """The class with the largest p(c) summed over frames (threshold-free, unlike the official)."""
    return list(class_names)[int(np.argmax(np.asarray(class_probs)[:, :len(class_names)].sum(0)))]


def _nanmean(values: Any) -> float:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else float("nan")


def recognition_metrics(frame_scores: Mapping[str, np.ndarray],
                        class_probs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                        video_classes: Mapping[str, str], class_names: Sequence[str]
                        ) -> dict[str, Any]:
    """The paper's recognition metrics (:class:`Evaluation`) from per-video arrays."""
    from .. import metrics
    names = list(class_names)
    frame_classes = {v: np.where(np.asarray(labels[v]) > 0,
                                 names.index(video_classes[v]) if video_classes[v] in names else -1,
                                 -1) for v in labels}
    table = metrics.class_frame_metrics(frame_classes, class_probs, names)
    summed = {v: np.asarray(class_probs[v])[:, :len(names)].sum(0) for v in class_probs}
    out = {"class_table": table, "class_auc": _nanmean(table["auc"]),
           "class_ap": _nanmean(table["ap"]),
           "top1_video": metrics.topk_video_accuracy(video_classes, summed, names, 1),
           "top5_video": metrics.topk_video_accuracy(video_classes, summed, names, 5)}
    y = {v: np.asarray(labels[v]) for v in labels}
    both = np.concatenate(list(y.values())) if y else np.zeros(0)
    if both.size and 0 < both.sum() < both.size:
        thr = metrics.youden_threshold(y, frame_scores)
        out["paper_threshold"] = thr
        for k in (1, 5):  # mean over the anomaly classes
            t = metrics.thresholded_frame_topk(frame_classes, frame_scores, class_probs, names, thr, k)
            out[f"paper_top{k}_frame"] = _nanmean(t[t["class"] != NORMAL][f"top{k}"])
    return out


def evaluate(model: Any, benchmark: Any, split: str | None = "test", *,
             backends: Mapping[str, Any] | None = None, profile: str | None = None,
             cache: Any = None, features: Mapping[str, np.ndarray] | None = None) -> Evaluation:
    """Score every frame of the split's videos into an :class:`Evaluation`."""
    from .. import metrics
    cfg = model.config
    bench = benchmark.subset(split) if split else benchmark
    saved = model.profile if model.profile in PROFILES else None
    feats = benchmark_features(bench, clip_roles(profile or saved, cfg, backends), cfg, cache,
                               features)
    scores, probs, labels, classes, predicted = {}, {}, {}, {}, {}
    for row in bench.videos.itertuples():
        y = np.asarray(bench.frame_labels(row.name))
        scores[row.name], probs[row.name] = predict(model, feats[row.name], cfg.feature_stride,
                                                    num_frames=len(y), source=str(row.path))
        labels[row.name] = y
        classes[row.name] = row.label
        predicted[row.name] = video_class(probs[row.name], model.class_names)
    recognition = recognition_metrics(scores, probs, labels, classes, model.class_names)
    return Evaluation(
        auc=metrics.frame_auc(labels, scores), ap=metrics.frame_ap(labels, scores),
        per_class=metrics.per_class(labels, scores, classes),
        class_accuracy=recognition["top1_video"],
        frame_scores=scores, class_probs=probs, labels=labels, video_classes=classes,
        predicted_classes=predicted, class_names=list(model.class_names) + [NORMAL],
        meaningless=model.profile in MEANINGLESS_PROFILES, **recognition)


def _checkpoint_recipe(checkpoint: Any, config: Config | None, overrides: dict[str, Any]
                       ) -> tuple[Config, dict[str, Any]]:
    """The Config, and the checkpoint's profile, digest, clip and classes (no model loaded)."""
    if isinstance(checkpoint, (str, os.PathLike)):
        weights, meta_path = _checkpoint_paths(checkpoint, exist=True)
        meta = json.loads(meta_path.read_text())
        cfg = configure(Config, config or Config(**meta.get("config", {})), overrides, "AnomalyCLIP")
        return cfg, {"profile": meta.get("profile"), "digest": file_digest(weights),
                     "clip": meta.get("clip_model"), "classes": list(meta["class_names"])}
    cfg = configure(Config, config or checkpoint.config, overrides, "AnomalyCLIP")
    return cfg, {"profile": checkpoint.profile, "digest": state_digest(checkpoint),
                 "clip": checkpoint.clip_name, "classes": list(checkpoint.class_names)}


def _load_model(checkpoint: Any, clip: Any, cfg: Config) -> Any:
    """The trained model, its prompts going through ``clip``."""
    if isinstance(checkpoint, (str, os.PathLike)):
        return load_checkpoint(checkpoint, clip=clip, device=cfg.device)
    if checkpoint.clip_name and clip_label(clip) != checkpoint.clip_name:
        raise ValueError(f"the model was trained on {checkpoint.clip_name!r} features but the "
                         f"clip backend is {clip_label(clip)!r}; pass the same clip model")
    return checkpoint


def _cached_scorer(rt: Runtime, checkpoint: Any, cfg: Config, digest: str, source: str):
    """``features -> (scores, probs)``, cached by checkpoint, features and the scoring code
    (edit it and scores are redone); the model is loaded on a miss only."""
    code = [inspect.getsource(core.score_features), inspect.getsource(core.pad_wraparound),
            inspect.getsource(model_module)]

    def score(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def compute() -> dict[str, np.ndarray]:
            model = _load_model(checkpoint, rt.roles.get("clip"), cfg)
            check_feature_scale(features, getattr(model, "feature_scale", None), source)
            scores, probs = core.score_features(model, features)
            return {"scores": scores, "probs": probs}

        parts = {"checkpoint": digest, "features": make_key({"features": features}),
                 "code": hashlib.sha256("\n".join(code).encode()).hexdigest()[:16]}
        out = rt.cache.memo("anomalyclip.scores", parts, compute)
        return (np.asarray(out["scores"], np.float32), np.asarray(out["probs"], np.float32))

    return score


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: Mapping[str, Any] | None = None, cache: Any = None,
        checkpoint: str | os.PathLike | Any = None, **overrides: Any):
    """Score every frame of ``video`` with a trained model (``checkpoint``: a saved path or the
    model) and name the class; ``extras["class_probs"]`` ends with "Normal"."""
    from ..result import Detection
    if checkpoint is None:
        raise ValueError(
            "AnomalyCLIP is weakly supervised and has no zero-shot mode: train it first "
            "(model, curves = vadnb.anomalyclip.train(benchmark); "
            "vadnb.anomalyclip.save_checkpoint(model, 'anomalyclip.safetensors')) and pass "
            "checkpoint='anomalyclip.safetensors' (notebook 50 shows how)")
    cfg, meta = _checkpoint_recipe(checkpoint, config, overrides)
    # default to the profile the checkpoint was trained with (its features' clip model)
    saved = meta["profile"] if meta["profile"] in PROFILES else None
    rt = Runtime(clip_roles(profile or saved, cfg, backends), cache)
    try:
        scores, probs, fps = core.pipeline(rt, video, cfg,
                                           _cached_scorer(rt, checkpoint, cfg, meta["digest"],
                                                          str(video)))
    finally:
        rt.release()
    classes = meta["classes"]
    return Detection(
        video=str(video), method="anomalyclip", profile=rt.roles.detection_profile(["clip"]),
        frame_scores=scores, fps=fps,
        segments=segments_table(scores, probs, classes, fps, cfg.seg_length),
        model_calls=rt.model_calls(),
        extras={"class_probs": probs, "class_names": classes + [NORMAL],
                "feature_stride": cfg.feature_stride})
