"""Teaching helpers for notebook 60: perfect-perception backends (the oracle), the views a
segment was shown, one description's scores, and fusion tuning on a validation split."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..result import Detection
from .core import TEMPLATES, Config, ensemble
from .fusion import fuse, fused_frame_scores, normalised
from .official import named_detections
from .views import grid_image, heat_map, masked_frame, square, view_size, window_boxes


def text_embeddings(clip: Any, class_names: Sequence[str],
                    templates: Sequence[str] = TEMPLATES) -> np.ndarray:
    """One L2-normalised CLIP text embedding per class name, the mean over the templates."""
    texts = [t.format(name) for name in class_names for t in templates]
    return ensemble(list(np.asarray(clip.encode_text(texts))), len(class_names))


def prompt_scores(detection: Detection, prompt: str) -> np.ndarray:
    """One description's frame scores, normalised as the detection's ``frame_scores`` are."""
    per = detection.extras["prompt_frame_scores"]
    if prompt not in per:
        raise KeyError(f"{prompt!r} was not among this detection's prompts {list(per)}")
    s = np.asarray(per[prompt], dtype=np.float64)
    return normalised(s) if detection.extras.get("config", {}).get("normalise", False) else s


def segment_views(video: str | os.PathLike, detection: Detection, row: int | pd.Series,
                  ) -> dict[str, np.ndarray]:
    """The images the VLM saw for one segment row: ``key``, ``heat``, ``masked``, ``grid``."""
    from ..video import probe, read_frames
    seg, boxes = detection.segments, detection.extras["windows"]
    r = seg.iloc[row] if isinstance(row, (int, np.integer)) else row
    cfg = detection.extras.get("config", {})
    info = probe(video)
    ctx = [int(f) for f in str(r["context_frames"]).split()]
    got = read_frames(video, indices=[int(r["key_frame"])] + ctx,
                      size=view_size(info.width, info.height, int(cfg.get("view_max_side", 896))))
    key = got.images[0]
    # window scores are stored in segment order
    s = int(np.searchsorted(np.sort(seg["start_frame"].unique()), int(r["start_frame"])))
    heat = heat_map(detection.extras["window_scores"][r["prompt"]][s], boxes, key.shape[0],
                    key.shape[1])
    return {"key": key, "heat": heat, "masked": masked_frame(key, heat),
            "grid": grid_image(list(got.images[1:]), boxes.iloc[int(r["window"])],
                               int(cfg.get("position_size", 240)), int(cfg.get("grid_cell", 224)))}


def top_segment(detection: Detection, prompt: str,
                labels: np.ndarray | None = None) -> pd.Series:
    """``prompt``'s segment row with the highest fused score; ties (frequent with tiny models
    or the oracle) go to the larger share of anomalous frames in ``labels`` (``truth``), then
    the earliest. ``tied`` counts the segments sharing the top score."""
    seg = detection.segments[detection.segments["prompt"] == prompt].copy()
    if seg.empty:
        raise KeyError(f"{prompt!r} was not among this detection's prompts "
                       f"{sorted(detection.segments['prompt'].unique())}")
    seg["truth"] = [float(np.mean(labels[a:b])) if labels is not None and b > a else 0.0
                    for a, b in zip(seg["start_frame"], seg["end_frame"])]
    seg = seg.sort_values(["score", "truth", "start_frame"], ascending=[False, False, True],
                          kind="stable")
    row = seg.iloc[0].copy()
    row["tied"] = int(np.isclose(seg["score"], row["score"]).sum())
    return row


def plot_views(views: Mapping[str, np.ndarray], title: str = "") -> Any:
    """The views of :func:`segment_views`: key frame under its heat map, masked frame, grid."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, view, label in zip(axes, ("key", "masked", "grid"), (
            "key frame + heat map (position)", "masked frame: what the VLM sees",
            "2x2 grid, in time order (temporal)")):
        ax.imshow(views[view])
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    axes[0].imshow(views["heat"], cmap="inferno", alpha=0.55)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_timeline(detection: Detection, labels: np.ndarray | None = None,
                  title: str | None = None, ax: Any = None) -> Any:
    """Each description's segment scores as steps over the frame scores and the truth."""
    import matplotlib.pyplot as plt

    from ..plots import plot_detection
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3))
    seg = detection.segments
    for prompt in seg["prompt"].unique():
        rows = seg[seg["prompt"] == prompt].sort_values("start_frame")
        ax.step(rows["start_frame"] / detection.fps, rows["score"], where="post", alpha=0.6,
                label=f"segment score: {prompt}")
    plot_detection(detection, labels=labels, ax=ax, title=title)
    ax.set(xlabel="time (s)", ylabel="anomaly score")
    ax.legend(fontsize=8)
    return ax.figure


@dataclass
class FusionTuning:
    """Result of :func:`tune_fusion`: the best weights and sigma and every candidate's AUC."""
    weights: tuple[float, float, float]
    sigma: float
    auc: float
    table: pd.DataFrame


def tune_fusion(detections: Mapping[str, Detection] | Sequence[Detection],
                labels: Mapping[str, np.ndarray] | Sequence[np.ndarray], *, split: str,
                benchmark: Any = None, weights: Sequence[Sequence[float]] | None = None,
                sigmas: Sequence[float] = (1, 5, 10, 15, 25, 50)) -> FusionTuning:
    """Fusion weights (default: a 0.1 grid summing to 1) and sigma by frame AUC on a
    **validation** split. Trap: the original tunes on test labels; a ``split`` named test,
    or (with ``benchmark``) any test video, is refused."""
    from ..metrics import frame_auc
    if "test" in str(split).lower():
        raise ValueError(f"refusing to tune on the {split!r} split: tune weights and sigma on "
                         "a validation split and evaluate the chosen setting once on test")
    names, dets = named_detections(detections)
    ys = ([np.asarray(labels[k]) for k in names] if isinstance(detections, Mapping)  # type: ignore
          else [np.asarray(y) for y in labels])
    if len(dets) != len(ys) or not dets:
        raise ValueError(f"{len(dets)} detections for {len(ys)} label arrays")
    marked = [d for d in dets if str(d.extras.get("split", "")).lower() == "test"]
    if marked:
        raise ValueError(f"refusing to tune on test videos: {[d.video for d in marked][:3]}")
    if benchmark is not None:
        vids = benchmark.videos
        by_name = dict(zip(vids["name"].astype(str), vids["split"].astype(str)))
        by_path = {Path(p).name: s for p, s in zip(vids["path"].astype(str), vids["split"])}
        for name, d in zip(names, dets):
            sp = by_name.get(str(name)) or by_path.get(Path(d.video).name)
            if sp is not None and "test" in str(sp).lower():
                raise ValueError(f"refusing to tune on {name!r}: the benchmark puts it in the "
                                 f"{sp!r} split; use validation videos only")
    rows, k = [], 10  # the default grid: steps of 1 / k
    cands = [tuple(float(x) for x in w) for w in weights or [
        (a / k, b / k, (k - a - b) / k) for a in range(k + 1) for b in range(k + 1 - a)]]
    for w, sigma in itertools.product(cands, sigmas):
        scores = [_rescore(d, w, float(sigma)) for d in dets]
        rows.append({"a": w[0], "b": w[1], "g": w[2], "sigma": float(sigma),
                     "auc": frame_auc(ys, scores)})
    table = pd.DataFrame(rows).sort_values("auc", ascending=False, kind="stable")
    top = table.iloc[0]
    return FusionTuning((top.a, top.b, top.g), float(top.sigma), float(top.auc),
                        table.reset_index(drop=True))


def _rescore(det: Detection, weights: Sequence[float], sigma: float) -> np.ndarray:
    """A detection's frame scores recomputed from its segment table with other settings."""
    cfg = det.extras.get("config", {})
    length = int(cfg.get("segment_length", 24))
    per = []
    for _, g in det.segments.groupby("prompt", sort=False):
        g = g.sort_values("start_frame")
        fused = fuse(g["score_key"], g["score_position"], g["score_temporal"], weights)
        per.append(fused_frame_scores(fused, det.num_frames, length, sigma, normalise=False))
    top = np.max(np.stack(per), axis=0)
    return normalised(top) if cfg.get("normalise", False) else top


def oracle_backends(benchmark: Any, descriptions: Mapping[str, str],
                    config: Config | None = None) -> dict[str, Any]:
    """A CLIP and a VLM that *read the ground truth* of ``benchmark``'s frames (``descriptions``:
    class -> its text); they know which frames, not where in them (flat heat maps)."""
    from ..lesson import frame_truth, pixel_key as key_of
    from ..models.scripted import ScriptedClip, ScriptedVLM
    cfg = config or Config()
    if max(cfg.window_sizes) != cfg.position_size:
        raise ValueError("the oracle needs a whole-frame window: window_sizes must include "
                         f"{cfg.position_size} (got {cfg.window_sizes})")
    classes = sorted({str(c) for c in benchmark.videos["label"]} - {"Normal"})
    unknown = [c for c in classes if c not in descriptions]
    if unknown:
        raise ValueError(f"no description for classes {unknown}; pass descriptions for all")
    by_text = {str(d): str(c) for c, d in descriptions.items()}
    axis = {c: i for i, c in enumerate(classes)}
    dim = len(classes) + 2  # the classes, "normal", "anything else"
    whole = window_boxes(cfg.position_size, [cfg.position_size]).iloc[0]
    side = cfg.position_size

    def views(image: np.ndarray) -> list[np.ndarray]:
        """The whole-frame window, and one cell of a grid cut from it."""
        cell = grid_image([image] * 4, whole, side, cfg.grid_cell)
        return [square(image, side, cfg.window_resize), cell[:cfg.grid_cell, :cfg.grid_cell]]

    truth_of = {k: shown for k, (shown, _) in frame_truth(
        benchmark, lambda w, h: view_size(w, h, cfg.view_max_side), views=views).items()}

    def image_vector(image: np.ndarray) -> np.ndarray:
        v = np.zeros(dim)
        truth = truth_of.get(key_of(image))
        v[axis[truth] if truth in axis else (dim - 2 if truth == "Normal" else dim - 1)] = 1.0
        return v

    def text_vector(text: str) -> np.ndarray:
        v = np.zeros(dim)
        hits = [c for d, c in by_text.items() if d in text]
        v[axis[hits[0]] if hits else dim - 2] = 1.0
        return v

    def seen(image: np.ndarray, cls: str) -> bool:
        c = cfg.grid_cell
        truth = truth_of.get(key_of(image))
        if truth is None and image.shape[:2] == (2 * c, 2 * c):
            # a grid: its cells come from the whole-frame window whenever CLIP found the
            # class in any of the four frames; any other window means it found it in none
            cells = [image[r:r + c, q:q + c] for r in (0, c) for q in (0, c)]
            return cls in [truth_of.get(key_of(x)) for x in cells]
        if truth is None:
            raise ValueError("the oracle only knows the frames of the benchmark it was built "
                             "from; run it on those videos with the same config")
        return truth == cls

    def reply(images: list[np.ndarray], prompt: str) -> str:
        hits = [c for d, c in by_text.items()  # either wording (.prompts) names it
                if f"**{d}**" in prompt or f"show {d}?" in prompt]
        if not hits:
            return "Score: 0.0. Reason: not a description the oracle knows."
        if seen(images[0], hits[0]):
            return f"Score: 1.0. Reason: the ground truth says {hits[0]}."
        return "Score: 0.0. Reason: the ground truth says it is not there."

    return {"clip": ScriptedClip(image_vector, text_vector, name="oracle-clip"),
            "vlm": ScriptedVLM(reply, name="oracle-vlm")}
