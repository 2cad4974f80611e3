"""The official code's own computations (SkiddieAhn/Paper-AnyAnomaly), for comparison with
vadnb's defaults: its per-benchmark windows and its evaluation's fusion over a test set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..result import Detection
from .fusion import fuse, smooth

#: Window sides (px at 240 x 240) per benchmark, as the official configuration sets them.
DATASET_WINDOWS: dict[str, tuple[int, int, int]] = {
    "shanghaitech": (48, 80, 120),
    "avenue": (48, 80, 240),
}

#: The word naming the prompt's answer line, as the official configuration sets it.
DATASET_OUTPUT_WORD: dict[str, str] = {"shanghaitech": "Response", "avenue": "Output"}


def dataset_key(dataset: str) -> str:
    """``dataset``'s canonical name ("shanghaitech", "avenue"); a clear error otherwise."""
    key = str(dataset).lower().replace("_", "").replace("-", "")
    key = {"shtech": "shanghaitech", "sht": "shanghaitech", "cshtech": "shanghaitech",
           "cave": "avenue", "cuhkavenue": "avenue"}.get(key, key)
    if key not in DATASET_WINDOWS:
        raise ValueError(f"no AnyAnomaly settings for dataset {dataset!r}; "
                         f"known: {sorted(DATASET_WINDOWS)}")
    return key


def dataset_windows(dataset: str) -> tuple[int, int, int]:
    """The window sizes the official code uses on ``dataset`` ("shanghaitech", "avenue")."""
    return DATASET_WINDOWS[dataset_key(dataset)]


def named_detections(detections: Mapping[str, Detection] | Sequence[Detection]
                     ) -> tuple[list[str], list[Detection]]:
    """``(names, detections)``: a dict's keys or the file stems; AnyAnomaly detections only."""
    if isinstance(detections, Mapping):
        names, dets = list(detections), list(detections.values())
    else:
        dets = list(detections)
        names = [Path(d.video).stem for d in dets]
    for name, d in zip(names, dets):
        if d.method != "anyanomaly":
            raise ValueError(f"{name}: needs AnyAnomaly detections, got {d.method!r}")
    return names, dets


def official_fusion(segment_views: Sequence[np.ndarray], segment_length: int = 24,
                    weights: Sequence[float] = (0.6, 0.3, 0.1), sigma: float = 15.0,
                    eps: float = 1e-8) -> list[np.ndarray]:
    """The official evaluation's scores, exactly: per-video ``[S, 3]`` view scores repeated
    over their frames, concatenated over all videos, fused, smoothed and min-max'ed (``eps``
    added to the range) once over the concatenation, then cut back per video."""
    views = [np.asarray(v, dtype=np.float64).reshape(-1, 3) for v in segment_views]
    if not views:
        raise ValueError("no videos to fuse")
    frames = np.concatenate([np.repeat(v, segment_length, axis=0) for v in views])
    fused = smooth(fuse(frames[:, 0], frames[:, 1], frames[:, 2], weights), sigma)
    fused = (fused - fused.min()) / (fused.max() - fused.min() + eps)
    cuts = np.cumsum([len(v) * segment_length for v in views])[:-1]
    return np.split(fused, cuts)


def official_frame_scores(detections: Mapping[str, Detection] | Sequence[Detection],
                          weights: Sequence[float] | None = None, sigma: float | None = None,
                          ) -> dict[str, np.ndarray]:
    """``{name: scores}`` of a test set as the official code computes them: per segment and
    view the max over descriptions (unparsed: 0), whole segments only (evaluate with
    ``cvad_auc(..., trim_labels=True)``), then :func:`official_fusion` in the order given."""
    names, dets = named_detections(detections)
    if not dets:
        raise ValueError("no detections")
    cfg0 = dets[0].extras.get("config", {})
    weights = tuple(weights if weights is not None else cfg0.get("weights", (0.6, 0.3, 0.1)))
    sigma = float(sigma if sigma is not None else cfg0.get("sigma", 15.0))
    length = int(cfg0.get("segment_length", 24))
    views = []
    for name, det in zip(names, dets):
        if int(det.extras.get("config", {}).get("segment_length", 24)) != length:
            raise ValueError(f"{name}: all detections need the same segment_length")
        seg, per_view = det.segments, []
        for v in ("key", "position", "temporal"):
            ok = seg.get(f"parsed_{v}", pd.Series(True, index=seg.index)).astype(bool)
            table = seg[f"score_{v}"].where(ok, 0.0).groupby(seg["start_frame"]).max()
            per_view.append(table.sort_index().to_numpy()[:det.num_frames // length])
        views.append(np.stack(per_view, axis=1))
    return dict(zip(names, official_fusion(views, length, weights, sigma)))

