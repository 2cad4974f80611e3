"""Figures every notebook draws: anomaly scores over time and contact sheets of frames.

All functions return a matplotlib :class:`~matplotlib.figure.Figure` and never call
``plt.show()``: in Jupyter the figure appears at the end of the cell as any pyplot figure
(write ``fig = plot_detection(det)`` to show it once and keep it for ``fig.savefig``); in a
script or under the ``Agg`` backend nothing opens a window.

Reading a score timeline (notebook 40 explains it on LAVAD's scores):

- the line is the method's anomaly score for each frame, on a time axis in seconds;
- red bands are the frames the ground truth marks anomalous;
- a dashed line is the threshold that turns scores into alarms;
- a red note inside the axes says the scores come from random-init models and mean nothing
  (the ``tiny`` profile, see ``vadnb.detect.TINY_WARNING``).
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "intervals",
    "frame_caption",
    "plot_scores",
    "plot_detection",
    "plot_many",
    "contact_sheet",
    "GT_COLOR",
    "WARNING_COLOR",
]

GT_COLOR = "#d62728"  # ground-truth anomalous frames in every figure and widget ("tab:red")
WARNING_COLOR = "darkred"


def intervals(labels: Sequence[int] | np.ndarray) -> list[tuple[int, int]]:
    """Runs of 1s in a 0/1 frame-label array, as inclusive ``(start, end)`` frame pairs.

    >>> intervals([0, 1, 1, 0, 0, 1])
    [(1, 2), (5, 5)]
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"frame labels must be a 1-D 0/1 array, got shape {y.shape}")
    if y.size == 0:
        return []
    if y.dtype == bool:
        y = y.astype(np.int8)
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(
            f"frame labels must hold only 0 and 1, found {sorted(values)[:5]}; pass the ground "
            "truth (e.g. Benchmark.frame_labels(name)), not scores")
    padded = np.concatenate([[0], (y == 1).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    starts, stops = edges[0::2], edges[1::2]  # stops are exclusive
    return [(int(s), int(e) - 1) for s, e in zip(starts, stops)]


def frame_caption(index: int, fps: float | None = None) -> str:
    """A short caption for a frame: ``"frame 120 · 12.0 s"`` (or ``"frame 120"`` without fps)."""
    if fps:
        return f"frame {int(index)} · {int(index) / fps:.1f} s"
    return f"frame {int(index)}"


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def _shade_truth(ax: Axes, labels: Any, fps: float | None, n_scores: int,
                 legend: bool = True) -> int:
    """Shade each ground-truth interval; returns how many were drawn."""
    runs = intervals(labels)
    if len(labels) != n_scores:
        warnings.warn(
            f"{len(labels)} frame labels but {n_scores} frame scores: the shading and the "
            "scores may be misaligned (were the labels made for another frame rate?)",
            stacklevel=3)
    scale = 1.0 / fps if fps else 1.0
    for i, (start, end) in enumerate(runs):
        # a frame covers [i, i + 1) on the axis, so the band ends after the last frame
        ax.axvspan(start * scale, (end + 1) * scale, color=GT_COLOR, alpha=0.15, lw=0,
                   label="ground truth: anomalous" if (i == 0 and legend) else None)
    return len(runs)


def _write_warning(ax: Axes, warning: str) -> None:
    text = "\n".join(textwrap.wrap(f"⚠ {warning}", width=120))
    ax.text(0.5, 0.97, text, transform=ax.transAxes, ha="center", va="top", fontsize=8,
            color=WARNING_COLOR, zorder=10,
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": WARNING_COLOR, "alpha": 0.85})


def plot_scores(frame_scores: Sequence[float] | np.ndarray, fps: float | None = None,
                labels: Sequence[int] | np.ndarray | None = None, ax: Axes | None = None,
                title: str | None = None, threshold: float | None = None,
                warning: str | None = None, label: str = "score") -> Figure:
    """Anomaly score over time, with the ground truth shaded.

    frame_scores: one score per frame. fps: put the x axis in seconds (frames otherwise).
    labels: 0/1 ground truth per frame; anomalous runs are shaded red.
    ax: draw into an existing axes (e.g. one panel of a larger figure).
    threshold: draw a dashed horizontal line at this score.
    warning: text printed inside the axes, e.g. ``detection.warning`` (tiny profile).
    label: legend name of the score line.
    """
    scores = np.asarray(frame_scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("frame_scores is empty: nothing to plot (did the method read any frame?)")
    fig, ax = _new_axes(ax, (10, 3))
    x = np.arange(scores.size) / fps if fps else np.arange(scores.size)
    if labels is not None:
        _shade_truth(ax, np.asarray(labels), fps, scores.size)
    ax.plot(x, scores, lw=1.2, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="0.3", ls="--", lw=1, label=f"threshold {threshold:g}")
    finite = scores[np.isfinite(scores)]
    if finite.size and finite.min() >= 0 and finite.max() <= 1:
        # probabilities: a fixed [0, 1] axis, with headroom for the warning if there is one
        ax.set_ylim(-0.03, 1.3 if warning else 1.03)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlim(0, scores.size / fps if fps else max(scores.size - 1, 1))
    ax.set_xlabel("time (s)" if fps else "frame")
    ax.set_ylabel("anomaly score")
    if title:
        ax.set_title(title)
    if warning:
        _write_warning(ax, warning)
    # outside the axes, so it never hides a score
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def _describe(detection: Any) -> str:
    return f"{detection.method} · {Path(str(detection.video)).name} · profile {detection.profile}"


def plot_detection(detection: Any, labels: Sequence[int] | np.ndarray | None = None,
                   ax: Axes | None = None, title: str | None = None,
                   threshold: float | None = None) -> Figure:
    """:func:`plot_scores` for a :class:`vadnb.detect.Detection`: time axis from its fps,
    its warning printed when its scores are meaningless (tiny profile), a default title
    naming the method, the video and the profile."""
    return plot_scores(detection.frame_scores, fps=detection.fps, labels=labels, ax=ax,
                       title=title if title is not None else _describe(detection),
                       threshold=threshold, warning=detection.warning or None,
                       label=detection.method)


def plot_many(detections: Mapping[str, Any], labels: Sequence[int] | np.ndarray | None = None,
              fps: float | None = None, threshold: float | None = None,
              title: str | None = None, warning: str | None = None) -> Figure:
    """Stacked score timelines, one panel per entry, sharing the time axis (notebook 80).

    detections: name -> Detection or name -> array of frame scores.
    fps: used for plain arrays (a Detection brings its own).
    labels: one 0/1 ground-truth array, shaded in every panel.
    warning: printed in the panels of plain arrays (pass ``det.warning`` when the arrays
        come from a tiny-profile detection); a Detection's panel shows its own warning.
    """
    if not detections:
        raise ValueError("plot_many needs at least one detection (got an empty dict)")
    n = len(detections)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.9 * n + 0.7), sharex=True,
                             layout="constrained", squeeze=False)
    for ax, (name, item) in zip(axes[:, 0], detections.items()):
        if hasattr(item, "frame_scores"):
            plot_scores(item.frame_scores, fps=item.fps if item.fps else fps, labels=labels,
                        ax=ax, threshold=threshold, warning=item.warning or None, label=name)
        else:
            plot_scores(item, fps=fps, labels=labels, ax=ax, threshold=threshold,
                        warning=warning or None, label=name)
        ax.set_ylabel(name)
        ax.label_outer()
    if title:
        fig.suptitle(title)
    return fig


def contact_sheet(images: Any, labels: Sequence[str] | None = None, cols: int = 8,
                  title: str | None = None, width_in: float = 12.0) -> Figure:
    """A grid of frames with a small caption under each (e.g. ``"frame 120 · 12.0 s"``).

    images: uint8 RGB array [N, H, W, 3], a list of such images, or a ``vadnb.video.Frames``
        (then each caption defaults to its frame index and time).
    labels: one caption per image (optional).
    cols: images per row. width_in: figure width in inches (height follows the images).
    """
    if labels is None and hasattr(images, "indices") and hasattr(images, "timestamps_s"):
        labels = [f"frame {int(i)} · {float(t):.1f} s"
                  for i, t in zip(images.indices, images.timestamps_s)]
    if hasattr(images, "images"):
        images = images.images
    images = list(images)
    if not images:
        raise ValueError("contact_sheet got no images")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} captions for {len(images)} images")
    if cols < 1:
        raise ValueError(f"cols must be at least 1, got {cols}")
    cols = min(cols, len(images))
    rows = -(-len(images) // cols)
    h, w = np.asarray(images[0]).shape[:2]
    cell_w = width_in / cols
    caption_in = 0.25 if labels is not None else 0.05
    height = rows * (cell_w * h / max(w, 1) + caption_in) + (0.4 if title else 0.1)
    fig, axes = plt.subplots(rows, cols, figsize=(width_in, height), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= len(images):
            continue
        ax.imshow(np.asarray(images[k]))
        if labels is not None:
            ax.set_title(str(labels[k]), fontsize=7, pad=2)
    if title:
        fig.suptitle(title)
    image_in = cell_w * h / max(w, 1)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, wspace=0.03,
                        hspace=(caption_in + 0.02) / image_in,
                        top=1 - (0.4 if title else 0.1) / height)
    return fig
