"""A LAVAD run as a Detection (:func:`to_detection`), and the reading of a run's scores."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics
from ..result import Detection
from ..models.base import is_truncated
from .core import Config, refine_scores, to_frames
from .official import refine_from_neighbours


def to_detection(r: dict[str, Any], cfg: Config, profile: str,
               model_calls: pd.DataFrame) -> Detection:
    """One video's pipeline results as a Detection (segments table and extras)."""
    v, raw, refined, log = r["video"], r["raw_scores"], r["scores"], r["parse_log"]
    starts = r["centres"]
    segments = pd.DataFrame({
        "start_frame": starts, "end_frame": np.minimum(starts + cfg.stride, v.num_frames),
        "centre_frame": starts, "time_s": starts / v.fps, "captions": r["captions"],
        "temporal_description": r["temporal_descriptions"], "summary": r["summaries"],
        "score_reply": r["score_replies"], "parsed": [p is not None for p in r["parsed"]],
        "raw_score": raw, "score": refined,
    })
    segments["explanation"] = [f"{s} (LLM score {x:.1f}, refined {f:.2f})"
                               for s, x, f in zip(r["summaries"], raw, refined)]
    llm = model_calls.loc[model_calls["role"] == "llm", "calls"]
    extras: dict[str, Any] = {
        "stride": cfg.stride, "window_s": cfg.window_s,
        "frames_per_window": cfg.frames_per_window, "positions": len(starts),
        "parse_failures": log.failed, "parse_report": log.summary(),
        "parse_failure_examples": list(log.examples), "score_truncated": log.truncated,
        "summary_truncated": int(sum(is_truncated(x) for x in r["summary_replies"])),
        "captioners": len(r["pooled_captions"]), "n_unique_captions": len(r["caption_index"]),
        "n_unique_summaries": len(r["summary_index"]),
        "n_llm_prompts": len(dict.fromkeys(r["temporal_descriptions"]))
        + len(r["summary_index"]),
        "n_llm_calls": int(llm.sum()), "config": dataclasses.asdict(cfg),
        # arrays for the notebooks (not written by Detection.save)
        "caption_index": list(r["caption_index"]),
        "pooled_captions": [list(c) for c in r["pooled_captions"]],
        "caption_embeddings": r["caption_embeddings"], "window_frames": r["windows"],
        "window_caption_ids": r["caption_ids"],
        **{k: r[k] for k in ("frame_embeddings", "video_embeddings", "summary_index",
                             "summary_embeddings", "summary_scores", "neighbours", "weights")},
        "raw_frame_scores": to_frames(raw, v.num_frames, cfg.stride),
    }
    return Detection(video=str(v.path), method="lavad", profile=profile,
                     frame_scores=r["frame_scores"], fps=v.fps, segments=segments,
                     model_calls=model_calls, extras=extras)


def frame_scores_of(detection: Detection, column: str = "score") -> np.ndarray:
    """A detection's frame scores from one segments column (``"raw_score"``: unrefined)."""
    stride = int(detection.extras.get("stride", 16))
    return to_frames(detection.segments[column].to_numpy(), detection.num_frames, stride)


def rescore(detection: Detection, refine_k: int | None = None,
            temperature: float | None = None) -> np.ndarray:
    """Frame scores refined again with another ``refine_k`` or ``temperature``, no model call."""
    ex = detection.extras
    cfg = ex.get("config", {})
    k = int(refine_k if refine_k is not None else cfg.get("refine_k", 10))
    t = float(temperature if temperature is not None else cfg.get("temperature", 1.0))
    if "neighbour_similarities" in ex:  # the paper's released results: neighbours only
        sims, vals = ex["neighbour_similarities"], ex["neighbour_scores"]
        if k > sims.shape[1]:
            raise ValueError(f"the release keeps {sims.shape[1]} neighbours per position; "
                             f"refine_k={k} needs the embeddings")
        refined = refine_from_neighbours(sims[:, :k], vals[:, :k], t)
    elif "video_embeddings" not in ex:
        raise ValueError("this detection has no embeddings (a Detection.load()ed one keeps "
                         "only the tables); re-run lavad.run: the cache makes it free")
    else:
        refined, _, _ = refine_scores(ex["video_embeddings"], ex["summary_embeddings"],
                                      ex["summary_scores"], k, t)
    return to_frames(refined, detection.num_frames, int(ex.get("stride", 16)))


def evaluate(detections: dict[str, Detection], labels: dict[str, np.ndarray],
             classes: dict[str, str] | None = None) -> dict[str, Any]:
    """Frame-level micro AUC and AP (sklearn's, and ``*_trapezoid`` as LAVAD reports) of the
    raw and refined scores; ``classes`` (name -> class) adds per-class tables."""
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
