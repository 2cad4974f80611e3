"""Figures every notebook draws: anomaly scores over time and contact sheets of frames.

All functions return a matplotlib :class:`~matplotlib.figure.Figure` and never call
``plt.show()``: in Jupyter the figure appears at the end of the cell as any pyplot figure
(write ``fig = plot_detection(det)`` to show it once and keep it for ``fig.savefig``); in a
script or under the ``Agg`` backend nothing opens a window.

Reading a score timeline (notebook 40 explains it on LAVAD's scores):

- the line is the method's anomaly score for each frame, on a time axis in seconds;
- red bands are the frames the ground truth marks anomalous;
- a dashed line is the threshold that turns scores into alarms;
- a small red tag in the corner, "tiny models: scores mean nothing", says the scores come
  from random-init models (the ``tiny`` profile); the notebook's banner explains it once
  (:func:`vadnb.lesson.banner`).

:func:`pipeline` draws a method's pipeline (frames -> models -> scores) where its notebook
introduces it.
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

from . import registry

__all__ = [
    "intervals",
    "frame_caption",
    "plot_scores",
    "plot_detection",
    "plot_many",
    "contact_sheet",
    "tag_figure",
    "clean_text",
    "similarity_matrix",
    "fastest_mover_boxes",
    "sampling_figure",
    "pipeline",
    "PIPELINES",
    "TINY_TAG",
    "GT_COLOR",
    "WARNING_COLOR",
]

GT_COLOR = "#d62728"  # ground-truth anomalous frames in every figure and widget ("tab:red")
WARNING_COLOR = "darkred"
TINY_TAG = "tiny models: scores mean nothing"  # the same words as vadnb.lesson.TINY_TAG


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


def clean_text(text: Any, width: int | None = None) -> str:
    """Text safe to draw: control characters (which random-init models emit and no font
    has a glyph for) become spaces, runs of spaces one; cut to ``width`` characters."""
    raw = "" if text is None else str(text)
    out = " ".join("".join(ch if ch.isprintable() else " " for ch in raw).split())
    if width is not None and len(out) > width:
        out = out[: max(width - 1, 1)] + "…"
    return out


def frame_caption(index: int, fps: float | None = None) -> str:
    """A short caption for a frame: ``"frame 120 · 12.0 s"`` (or ``"frame 120"`` without fps)."""
    if fps:
        return f"frame {int(index)} · {int(index) / fps:.1f} s"
    return f"frame {int(index)}"


def _shade_truth(ax: Axes, labels: Any, fps: float | None, n_scores: int) -> None:
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
                   label="ground truth: anomalous" if i == 0 else None)


def _is_tiny(profile: Any, warning: str | None = None) -> bool:
    """Whether the scores mean nothing: a warning, a tiny profile's name, or an object that
    says so (``.meaningless``, or ``.profile``: a Detection, the Environment of ``setup``)."""
    from .models.profiles import MEANINGLESS_PROFILES

    if hasattr(profile, "meaningless"):
        return bool(profile.meaningless)
    return bool(warning) or getattr(profile, "profile", profile) in MEANINGLESS_PROFILES


def tag_figure(fig: Figure, profile: str | None = "tiny") -> Figure:
    """Add the small tiny-profile tag to ``fig`` (top-right corner) when ``profile`` is
    ``"tiny"`` (or anything with ``.profile``/``.meaningless``, e.g. a Detection or the
    Environment from ``vadnb.setup``). Returns ``fig``."""
    if _is_tiny(profile) and not any(getattr(t, "get_text", lambda: "")() == f"⚠ {TINY_TAG}"
                        for t in fig.texts):
        fig.text(0.995, 0.995, f"⚠ {TINY_TAG}", ha="right", va="top", fontsize=7,
                 color=WARNING_COLOR)
    return fig


def plot_scores(frame_scores: Sequence[float] | np.ndarray, fps: float | None = None,
                labels: Sequence[int] | np.ndarray | None = None, ax: Axes | None = None,
                title: str | None = None, threshold: float | None = None,
                warning: str | None = None, label: str = "score",
                profile: str | None = None) -> Figure:
    """Anomaly score over time, with the ground truth shaded.

    frame_scores: one score per frame. fps: put the x axis in seconds (frames otherwise).
    labels: 0/1 ground truth per frame; anomalous runs are shaded red.
    ax: draw into an existing axes (e.g. one panel of a larger figure).
    threshold: draw a dashed horizontal line at this score.
    warning, profile: a non-empty warning (e.g. ``detection.warning``) or ``profile="tiny"``
        adds the small "tiny models: scores mean nothing" tag.
    label: legend name of the score line.
    """
    tiny = _is_tiny(profile, warning)
    scores = np.asarray(frame_scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("frame_scores is empty: nothing to plot (did the method read any frame?)")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3), layout="constrained")
    x = np.arange(scores.size) / fps if fps else np.arange(scores.size)
    if labels is not None:
        _shade_truth(ax, np.asarray(labels), fps, scores.size)
    ax.plot(x, scores, lw=1.2, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="0.3", ls="--", lw=1, label=f"threshold {threshold:g}")
    finite = scores[np.isfinite(scores)]
    if finite.size and finite.min() >= 0 and finite.max() <= 1:
        # probabilities: a fixed [0, 1] axis, with headroom for the warning if there is one
        ax.set_ylim(-0.03, 1.15 if tiny else 1.03)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlim(0, scores.size / fps if fps else max(scores.size - 1, 1))
    ax.set_xlabel("time (s)" if fps else "frame")
    ax.set_ylabel("anomaly score")
    if title:
        ax.set_title(title)
    if tiny:  # a short tag in the top-right corner (the notebook's banner says the sentence)
        ax.text(0.995, 0.98, f"⚠ {TINY_TAG}", transform=ax.transAxes, ha="right", va="top",
                fontsize=7, color=WARNING_COLOR, zorder=10,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": WARNING_COLOR,
                      "alpha": 0.85, "lw": 0.6})
    # outside the axes, so it never hides a score
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return ax.figure


def plot_detection(detection: Any, labels: Sequence[int] | np.ndarray | None = None,
                   ax: Axes | None = None, title: str | None = None,
                   threshold: float | None = None) -> Figure:
    """:func:`plot_scores` for a :class:`vadnb.detect.Detection`: time axis from its fps,
    its warning printed when its scores are meaningless (tiny profile), a default title
    naming the method, the video and the profile."""
    return plot_scores(detection.frame_scores, fps=detection.fps, labels=labels, ax=ax,
                       title=title if title is not None else
                       f"{detection.method} · {Path(str(detection.video)).name} · "
                       f"profile {detection.profile}",
                       threshold=threshold, warning=detection.warning or None,
                       label=detection.method)


def plot_many(detections: Mapping[str, Any], labels: Sequence[int] | np.ndarray | None = None,
              fps: float | None = None, threshold: float | None = None,
              title: str | None = None, warning: str | None = None,
              profile: str | None = None) -> Figure:
    """Stacked score timelines, one panel per entry, sharing the time axis (notebook 80).

    detections: name -> Detection or name -> array of frame scores.
    fps: used for plain arrays (a Detection brings its own).
    labels: one 0/1 ground-truth array, shaded in every panel.
    warning, profile: mark plain arrays as tiny-profile scores (pass ``det.warning`` or
        ``profile="tiny"``); a Detection says so itself. The figure then carries one small
        tag; with a mix, the tiny panels' names say "(tiny)".
    """
    if not detections:
        raise ValueError("plot_many needs at least one detection (got an empty dict)")
    n = len(detections)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.9 * n + 0.7), sharex=True,
                             layout="constrained", squeeze=False)
    tiny_panels = []
    for ax, (name, item) in zip(axes[:, 0], detections.items()):
        if hasattr(item, "frame_scores"):
            tiny = bool(getattr(item, "meaningless", False))
            plot_scores(item.frame_scores, fps=item.fps if item.fps else fps, labels=labels,
                        ax=ax, threshold=threshold, label=name)
        else:
            tiny = _is_tiny(profile, warning)
            plot_scores(item, fps=fps, labels=labels, ax=ax, threshold=threshold, label=name)
        tiny_panels.append(tiny)
        ax.label_outer()
    mixed = not all(tiny_panels)  # a mix: name the tiny panels
    for ax, tiny, name in zip(axes[:, 0], tiny_panels, detections):
        ax.set_ylabel(f"{name}\n(tiny)" if tiny and mixed else name, fontsize=9)
    axes[-1, 0].set_xlabel("time (s)" if (fps or any(getattr(d, "fps", None)
                                                      for d in detections.values())) else "frame")
    fig.supylabel("anomaly score", fontsize=9)
    if title:
        fig.suptitle(title)
    if any(tiny_panels):
        tag_figure(fig, "tiny")
    return fig


def contact_sheet(images: Any, labels: Sequence[str] | None = None, cols: int = 8,
                  title: str | None = None, width_in: float = 12.0,
                  profile: str | None = None, fontsize: float = 9,
                  boxes: Sequence[Any] | None = None, box_label: str = "") -> Figure:
    """A grid of frames with a small caption under each (e.g. ``"frame 120 · 12.0 s"``).

    images: uint8 RGB array [N, H, W, 3], a list of such images, or a ``vadnb.video.Frames``
        (then each caption defaults to its frame index and time).
    labels: one caption per image (optional).
    cols: images per row. width_in: figure width in inches (height follows the images).
    profile: ``"tiny"`` adds the tiny-profile tag (captions from random-init models).
    fontsize: caption size in points (9 stays readable at notebook width).
    boxes: one ``(x, y, w, h)`` pixel box (or None) per image, drawn as a yellow frame with
        ``box_label`` above it: point at what the caption talks about.
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
    caption_in = (fontsize / 72 * 1.6) if labels is not None else 0.05
    height = rows * (cell_w * h / max(w, 1) + caption_in) + (0.4 if title else 0.1)
    fig, axes = plt.subplots(rows, cols, figsize=(width_in, height), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= len(images):
            continue
        ax.imshow(np.asarray(images[k]))
        if boxes is not None and k < len(boxes) and boxes[k] is not None:
            from matplotlib.patches import Rectangle

            x, y, bw, bh = (float(v) for v in boxes[k])
            ax.add_patch(Rectangle((x - 2, y - 2), bw + 4, bh + 4, fill=False, ec="yellow", lw=2))
            if box_label:
                ax.text(x, y - 4, box_label, color="yellow", fontsize=fontsize, va="bottom",
                        fontweight="bold")
        if labels is not None:
            ax.set_title(clean_text(labels[k]), fontsize=fontsize, pad=2)
    if title:
        fig.suptitle(title)
    image_in = cell_w * h / max(w, 1)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, wspace=0.03,
                        hspace=(caption_in + 0.02) / image_in,
                        top=1 - (0.4 if title else 0.1) / height)
    if profile is not None:
        tag_figure(fig, profile)
    return fig


def _blobs(frame: np.ndarray, background: np.ndarray, min_area: int) -> list[tuple]:
    import cv2

    diff = np.abs(frame.astype(np.int16) - background.astype(np.int16)).max(axis=-1)
    mask = (diff > 40).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    n, _, stats, centres = cv2.connectedComponentsWithStats(mask)
    return [(tuple(int(v) for v in stats[i, :4]), centres[i]) for i in range(1, n)
            if stats[i, 4] >= min_area]


def fastest_mover_boxes(clip: np.ndarray, indices: Sequence[int], max_jump_px: float = 25.0,
                        min_track: int = 5, min_area: int = 150) -> list[Any]:
    """For each of ``indices``, the box ``(x, y, w, h)`` of the fastest-moving thing in a
    fixed-camera clip (None in frames where it is not seen).

    clip: every frame, uint8 RGB [N, H, W, 3]; its median frame is the background. Blobs
    that differ from it are linked frame to frame (nearest centre within ``max_jump_px``)
    into tracks; the fastest track over at least ``min_track`` frames wins, with any track
    nearly as fast (the same mover, lost for a frame behind someone else). A figure helper for notebook 00 (which one is the runner?): it knows nothing
    about people, only about speed.
    """
    frames = np.asarray(clip)
    background = np.median(frames[:: max(1, len(frames) // 40)], axis=0)
    tracks: list[list[tuple[int, tuple, np.ndarray]]] = []
    active: list[list[tuple[int, tuple, np.ndarray]]] = []
    for t in range(len(frames)):
        blobs = _blobs(frames[t], background, min_area)
        still, used = [], set()
        for track in active:
            _, _, centre = track[-1]
            dists = [(float(np.hypot(*(c - centre))), k) for k, (_, c) in enumerate(blobs)
                     if k not in used]
            if dists and min(dists)[0] <= max_jump_px:
                d, k = min(dists)
                used.add(k)
                track.append((t, blobs[k][0], blobs[k][1]))
                still.append(track)
            else:
                tracks.append(track)
        for k, (box, centre) in enumerate(blobs):
            if k not in used:
                still.append([(t, box, centre)])
        active = still
    tracks += active

    def speed(track: list) -> float:
        if len(track) < min_track:
            return 0.0
        path = np.array([c for _, _, c in track])
        return float(np.linalg.norm(path[-1] - path[0]) / (track[-1][0] - track[0][0]))

    top = max(map(speed, tracks), default=0.0)
    if top <= 0:
        return [None] * len(indices)
    best = {t: box for track in tracks if speed(track) >= 0.6 * top for t, box, _ in track}
    return [best.get(int(i)) for i in indices]


def sampling_figure(num_frames: int, fps: float, sampled: Any, labels: Any = None,
                    thumbs: int = 6, title: str | None = None) -> Figure:
    """What sampling keeps (notebook 10): a timeline of every frame, the sampled ones and
    the ground truth, above thumbnails of a few sampled frames placed at their times.

    sampled: a ``vadnb.video.Frames`` (its images, indices and timestamps).
    labels: 0/1 ground truth per frame (optional), shaded red.
    """
    idx = np.asarray(sampled.indices)
    times = np.asarray(sampled.timestamps_s, dtype=np.float64)
    if idx.size == 0:
        raise ValueError("sampled holds no frames: nothing to show")
    k = min(thumbs, idx.size)
    fig = plt.figure(figsize=(11, 4.4), layout="constrained")
    grid = fig.add_gridspec(2, k, height_ratios=[1, 1.5])
    ax = fig.add_subplot(grid[0, :])
    duration = num_frames / fps
    every = np.arange(num_frames) / fps
    ax.vlines(every, 0.55, 0.95, color="0.75", lw=0.6, label=f"every frame ({num_frames})")
    ax.vlines(times, 0.05, 0.95, color="C0", lw=1.6, label=f"sampled ({idx.size})")
    if labels is not None:
        _shade_truth(ax, np.asarray(labels), fps, num_frames)
    chosen = np.unique(np.linspace(0, idx.size - 1, k).round().astype(int))
    ax.plot(times[chosen], np.full(len(chosen), 1.05), "v", color="C1", ms=7,
            label="shown below", clip_on=False)
    ax.set_xlim(0, duration)
    ax.set_ylim(0, 1.12)
    ax.set_yticks([])
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    ax.set_title(title or f"{idx.size} of {num_frames} frames kept ({duration:.1f} s of video)",
                 fontsize=10)
    for col, j in enumerate(chosen):
        a = fig.add_subplot(grid[1, col])
        a.imshow(np.asarray(sampled.images[j]))
        a.set_title(f"frame {int(idx[j])} · {times[j]:.1f} s", fontsize=9)
        a.axis("off")
    return fig


def similarity_matrix(similarity: Any, columns: Sequence[str], title: str | None = None,
                      row_label: str = "query", column_label: str = "candidate",
                      profile: str | None = None, max_chars: int = 28) -> Figure:
    """A retrieval as a picture: rows are queries, columns candidates (e.g. notebook 20's
    window frames x caption index), colour the cosine similarity; a red dot marks each row's
    nearest candidate, the one retrieval picks."""
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[1] != len(columns):
        raise ValueError(f"similarity must be [rows, {len(columns)}] for {len(columns)} "
                         f"columns, got shape {sim.shape}")
    fig, ax = plt.subplots(figsize=(min(max(7.0, 2 + 0.45 * len(columns)), 12),
                                    min(0.14 * len(sim) + 2.8, 9)), layout="constrained")
    im = ax.imshow(sim, aspect="auto", cmap="viridis")
    ax.plot(sim.argmax(axis=1), np.arange(len(sim)), "r.", ms=5, label="nearest (retrieved)")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([clean_text(c, max_chars) for c in columns], rotation=60, ha="right",
                       fontsize=8)
    ax.set_xlabel(column_label)
    ax.set_ylabel(row_label)
    ax.set_title(title or "cosine similarity", fontsize=10)
    fig.colorbar(im, ax=ax, label="cosine similarity")
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.02), fontsize=8, frameon=False)
    if profile is not None:
        tag_figure(fig, profile)
    return fig


# --------------------------------------------------------------------------- pipelines

#: per method, its stages in order: (stage, who does it, what it outputs, kind); kind is
#: "data" (frames in), "model" (a learned model runs), "math" (plain computation), "out".
#: Each method declares its diagram (vadnb.registry); this reads them.
PIPELINES: Mapping[str, dict[str, Any]] = registry.view(lambda m: m.pipeline)

_KIND_COLOURS = {"data": "#e8e8e8", "model": "#d6e6f5", "math": "#dff0d8", "out": "#fbe5c8"}
_KIND_NAMES = {"data": "frames in", "model": "a model runs", "math": "plain computation",
               "out": "scores out"}


def pipeline(method: str, width_in: float = 12.0) -> Figure:
    """One method's pipeline as a diagram: frames -> models -> scores, with what each stage
    outputs (shown where the method is introduced: notebooks 20, 50, 60, 70).

    method: ``"lavad"``, ``"anomalyclip"``, ``"anyanomaly"`` or ``"vera"``.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

    key = str(method).lower()
    if key not in PIPELINES:
        raise ValueError(f"no pipeline drawn for {method!r}; choose one of {sorted(PIPELINES)}")
    spec = PIPELINES[key]
    stages = spec["stages"]
    n = len(stages)
    fig, ax = plt.subplots(figsize=(width_in, 2.9), layout="constrained")
    ax.set_xlim(0, n)
    ax.set_ylim(0, 1)
    ax.axis("off")
    box_w, gap = 0.86, 0.14
    for i, (name, who, output, kind) in enumerate(stages):
        x0 = i + gap / 2
        ax.add_patch(FancyBboxPatch((x0, 0.38), box_w, 0.5, boxstyle="round,pad=0.01,rounding_size=0.04",
                                    fc=_KIND_COLOURS[kind], ec="0.35", lw=1))
        ax.text(x0 + box_w / 2, 0.80, name, ha="center", va="center", fontsize=10,
                fontweight="bold")
        ax.text(x0 + box_w / 2, 0.58, who, ha="center", va="center", fontsize=8, color="0.15")
        ax.text(x0 + box_w / 2, 0.20, output, ha="center", va="center", fontsize=8,
                style="italic", color="0.25")
        ax.annotate("", xy=(x0 + box_w / 2, 0.30), xytext=(x0 + box_w / 2, 0.38),
                    arrowprops={"arrowstyle": "->", "color": "0.5", "lw": 0.8})
        if i < n - 1:
            ax.add_patch(FancyArrowPatch((x0 + box_w, 0.63), (x0 + box_w + gap, 0.63),
                                         arrowstyle="-|>", mutation_scale=12, color="0.3", lw=1.2))
    kinds = [k for k in _KIND_NAMES if any(s[3] == k for s in stages)]
    ax.legend(handles=[Patch(fc=_KIND_COLOURS[k], ec="0.35", label=_KIND_NAMES[k]) for k in kinds],
              loc="lower center", bbox_to_anchor=(0.5, -0.08), ncol=len(kinds), fontsize=8,
              frameon=False)
    ax.set_title(f"{spec['title']}\n(box: stage and who does it; below: what it outputs)",
                 fontsize=10)
    return fig
