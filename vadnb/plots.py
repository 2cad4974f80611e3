"""Figures the notebooks draw: score timelines (notebook 40 teaches reading them: red bands
are ground-truth anomalies, a dashed line the threshold, and a small red tag marks tiny
random-init scores), contact sheets, and each method's :func:`pipeline`. Every function
returns a matplotlib Figure and never calls ``plt.show()`` (no window under ``Agg``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch

from . import registry
from .models.profiles import MEANINGLESS_PROFILES

__all__ = ["intervals", "frame_caption", "plot_scores", "plot_detection", "plot_many",
           "contact_sheet", "tag_figure", "clean_text", "similarity_matrix", "pipeline",
           "fastest_mover_boxes", "sampling_figure", "PIPELINES", "TINY_TAG", "GT_COLOR"]

GT_COLOR = "#d62728"  # ground-truth anomalous frames in every figure and widget ("tab:red")
WARNING_COLOR = "darkred"  # the tiny-profile tag
TINY_TAG = "tiny models: scores mean nothing"  # the same words as vadnb.lesson.TINY_TAG


def intervals(labels: Sequence[int] | np.ndarray) -> list[tuple[int, int]]:
    """Runs of 1s in 0/1 frame labels as inclusive ``(start, end)`` frame pairs:
    ``intervals([0, 1, 1, 0, 0, 1]) == [(1, 2), (5, 5)]``."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"frame labels must be a 1-D 0/1 array, got shape {y.shape}")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"frame labels must hold only 0 and 1, found {sorted(values)[:5]}; "
                         "pass the ground truth (e.g. Benchmark.frame_labels(name)), not scores")
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (y == 1).astype(np.int8), [0]])))
    return [(int(s), int(e) - 1) for s, e in zip(edges[0::2], edges[1::2])]


def clean_text(text: Any, width: int | None = None) -> str:
    """Text safe to draw: control characters (random-init models emit them, no font draws
    them) become spaces, runs of spaces one; cut to ``width`` characters."""
    raw = "" if text is None else str(text)
    out = " ".join("".join(ch if ch.isprintable() else " " for ch in raw).split())
    if width is not None and len(out) > width:
        out = out[: max(width - 1, 1)] + "…"
    return out


def frame_caption(index: int, fps: float | None = None) -> str:
    """A short caption for a frame: ``"frame 120 · 12.0 s"`` (``"frame 120"`` without fps)."""
    return f"frame {int(index)} · {int(index) / fps:.1f} s" if fps else f"frame {int(index)}"


def _shade_truth(ax: Axes, labels: Any, fps: float | None, n_scores: int) -> None:
    if len(labels) != n_scores:
        warnings.warn(f"{len(labels)} frame labels but {n_scores} frame scores: the shading and "
                      "the scores may be misaligned (were the labels made for another frame "
                      "rate?)", stacklevel=3)
    scale = 1.0 / fps if fps else 1.0
    for i, (start, end) in enumerate(intervals(labels)):  # frame i covers [i, i + 1)
        ax.axvspan(start * scale, (end + 1) * scale, color=GT_COLOR, alpha=0.15, lw=0,
                   label="ground truth: anomalous" if i == 0 else None)


def _is_tiny(profile: Any, warning: str | None = None) -> bool:
    """A warning, a meaningless profile's name, or an object with ``.meaningless``/``.profile``."""
    if hasattr(profile, "meaningless"):
        return bool(profile.meaningless)
    return bool(warning) or getattr(profile, "profile", profile) in MEANINGLESS_PROFILES


def tag_figure(fig: Figure, profile: Any = "tiny") -> Figure:
    """Tag ``fig`` once, top right, with :data:`TINY_TAG` when ``profile`` is tiny (a name,
    a Detection, or the Environment from ``vadnb.setup``). Returns ``fig``."""
    tag = f"⚠ {TINY_TAG}"
    if _is_tiny(profile) and all(t.get_text() != tag for t in fig.texts):
        fig.text(0.995, 0.995, tag, ha="right", va="top", fontsize=7, color=WARNING_COLOR)
    return fig


def plot_scores(frame_scores: Sequence[float] | np.ndarray, fps: float | None = None,
                labels: Sequence[int] | np.ndarray | None = None, ax: Axes | None = None,
                title: str | None = None, threshold: float | None = None,
                warning: str | None = None, label: str = "score",
                profile: str | None = None) -> Figure:
    """Anomaly score over time (seconds with ``fps``), 0/1 ``labels`` shaded, a dashed
    ``threshold``, into ``ax`` if given; a ``warning`` or a tiny ``profile`` adds the tag."""
    tiny = _is_tiny(profile, warning)
    scores = np.asarray(frame_scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("frame_scores is empty: nothing to plot (did the method read any frame?)")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3), layout="constrained")
    if labels is not None:
        _shade_truth(ax, np.asarray(labels), fps, scores.size)
    ax.plot(np.arange(scores.size) / (fps or 1), scores, lw=1.2, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="0.3", ls="--", lw=1, label=f"threshold {threshold:g}")
    finite = scores[np.isfinite(scores)]
    if finite.size and finite.min() >= 0 and finite.max() <= 1:  # probabilities: fixed axis
        ax.set_ylim(-0.03, 1.15 if tiny else 1.03)  # headroom for the tag
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set(xlim=(0, scores.size / fps if fps else max(scores.size - 1, 1)),
           xlabel="time (s)" if fps else "frame", ylabel="anomaly score",
           title=title or ax.get_title())
    if tiny:
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
    """:func:`plot_scores` for a Detection: its fps, its tiny tag, and a default title
    naming the method, the video and the models (scripted oracles, or the profile)."""
    if title is None:
        models = ("scripted (oracle) models" if detection.profile == "scripted"
                  else f"profile {detection.profile}")
        title = f"{detection.method} · {Path(str(detection.video)).name} · {models}"
    return plot_scores(detection.frame_scores, fps=detection.fps, labels=labels, ax=ax,
                       title=title, threshold=threshold, warning=detection.warning or None,
                       label=detection.method)


def plot_many(detections: Mapping[str, Any], labels: Sequence[int] | np.ndarray | None = None,
              fps: float | None = None, threshold: float | None = None,
              title: str | None = None, warning: str | None = None,
              profile: str | None = None) -> Figure:
    """Stacked timelines on one time axis, a panel per name -> Detection or frame scores
    (``fps``, ``warning``, ``profile`` apply to plain arrays). One tag marks a tiny figure;
    in a mix of tiny and real panels, the tiny ones' names say "(tiny)"."""
    if not detections:
        raise ValueError("plot_many needs at least one detection (got an empty dict)")
    n = len(detections)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.9 * n + 0.7), sharex=True,
                             layout="constrained", squeeze=False)
    tiny = [bool(item.meaningless) if hasattr(item, "frame_scores")
            else _is_tiny(profile, warning) for item in detections.values()]
    for ax, tiny_panel, (name, item) in zip(axes[:, 0], tiny, detections.items()):
        plot_scores(getattr(item, "frame_scores", item), fps=getattr(item, "fps", None) or fps,
                    labels=labels, ax=ax, threshold=threshold, label=name)
        ax.label_outer()
        ax.set_ylabel(f"{name}\n(tiny)" if tiny_panel and not all(tiny) else name, fontsize=9)
    fig.supylabel("anomaly score", fontsize=9)
    if title:
        fig.suptitle(title)
    return tag_figure(fig, "tiny") if any(tiny) else fig


def contact_sheet(images: Any, labels: Sequence[str] | None = None, cols: int = 8,
                  title: str | None = None, profile: str | None = None, fontsize: float = 9,
                  boxes: Sequence[Any] | None = None, box_label: str = "") -> Figure:
    """A grid of frames (uint8 RGB [N, H, W, 3], a list, or a ``vadnb.video.Frames``, which
    brings captions), ``cols`` a row, captioned by ``labels``; ``boxes``: an ``(x, y, w, h)``
    or None per image, framed in yellow with ``box_label``. A tiny ``profile`` tags it."""
    if labels is None and hasattr(images, "indices") and hasattr(images, "timestamps_s"):
        labels = [f"frame {int(i)} · {float(t):.1f} s"
                  for i, t in zip(images.indices, images.timestamps_s)]
    images = list(getattr(images, "images", images))
    if not images:
        raise ValueError("contact_sheet got no images")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} captions for {len(images)} images")
    if cols < 1:
        raise ValueError(f"cols must be at least 1, got {cols}")
    cols = min(cols, len(images))
    rows = -(-len(images) // cols)
    h, w = np.asarray(images[0]).shape[:2]
    caption_in = fontsize / 72 * 1.6 if labels is not None else 0.05
    height = rows * (12 / cols * h / max(w, 1) + caption_in) + (0.4 if title else 0.1)
    # "compressed": matplotlib packs a grid of fixed-aspect images tightly
    fig, axes = plt.subplots(rows, cols, figsize=(12, height), squeeze=False, layout="compressed")
    boxes = list(boxes or [])
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= len(images):
            continue
        ax.imshow(np.asarray(images[k]))
        if k < len(boxes) and boxes[k] is not None:
            x, y, bw, bh = (float(v) for v in boxes[k])
            ax.add_patch(plt.Rectangle((x - 2, y - 2), bw + 4, bh + 4, fill=False, ec="yellow",
                                       lw=2))
            if box_label:
                ax.text(x, y - 4, box_label, color="yellow", fontsize=fontsize, va="bottom",
                        fontweight="bold")
        if labels is not None:
            ax.set_title(clean_text(labels[k]), fontsize=fontsize, pad=2)
    if title:
        fig.suptitle(title)
    return tag_figure(fig, profile) if profile is not None else fig


def _blobs(frame: np.ndarray, background: np.ndarray, min_area: int) -> list[tuple]:
    """(box, centre) of each foreground blob of at least ``min_area`` pixels."""
    diff = np.abs(frame.astype(np.int16) - background.astype(np.int16)).max(axis=-1)
    mask = cv2.morphologyEx((diff > 40).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    n, _, stats, centres = cv2.connectedComponentsWithStats(mask)
    return [(tuple(int(v) for v in stats[i, :4]), centres[i]) for i in range(1, n)
            if stats[i, 4] >= min_area]


def fastest_mover_boxes(clip: np.ndarray, indices: Sequence[int], max_jump_px: float = 25.0,
                        min_track: int = 5, min_area: int = 150) -> list[Any]:
    """Per frame of ``indices``, the ``(x, y, w, h)`` of the fastest mover in a fixed-camera
    ``clip`` (uint8 RGB [N, H, W, 3]), or None. Blobs off the median frame are linked into
    tracks (nearest centre within ``max_jump_px``); the fastest track of ``min_track``+
    frames wins, with tracks nearly as fast (the mover, briefly hidden). Speed, not people."""
    frames = np.asarray(clip)
    background = np.median(frames[:: max(1, len(frames) // 40)], axis=0)
    tracks: list[list[tuple[int, tuple, np.ndarray]]] = []  # each: (frame, box, centre) ...
    active: list[list[tuple[int, tuple, np.ndarray]]] = []  # tracks seen in the last frame
    for t in range(len(frames)):
        blobs = _blobs(frames[t], background, min_area)
        still, used = [], set()
        for track in active:
            dists = [(float(np.hypot(*(c - track[-1][2]))), k) for k, (_, c) in enumerate(blobs)
                     if k not in used]
            if dists and min(dists)[0] <= max_jump_px:
                k = min(dists)[1]
                used.add(k)
                track.append((t, *blobs[k]))
                still.append(track)
            else:
                tracks.append(track)
        active = still + [[(t, *blob)] for k, blob in enumerate(blobs) if k not in used]
    tracks += active

    def speed(track: list) -> float:  # pixels per frame, start to end
        if len(track) < min_track:
            return 0.0
        return float(np.linalg.norm(track[-1][2] - track[0][2]) / (track[-1][0] - track[0][0]))

    top = max(map(speed, tracks), default=0.0)  # 0: nothing moved for min_track frames
    best = {t: box for track in tracks if top > 0 and speed(track) >= 0.6 * top
            for t, box, _ in track}
    return [best.get(int(i)) for i in indices]


def sampling_figure(num_frames: int, fps: float, sampled: Any, labels: Any = None,
                    thumbs: int = 6, title: str | None = None) -> Figure:
    """What sampling keeps (notebook 10): every frame, the ``sampled`` ones (a
    ``vadnb.video.Frames``) and the 0/1 ground truth on a timeline, over a few thumbnails."""
    idx = np.asarray(sampled.indices)
    times = np.asarray(sampled.timestamps_s, dtype=np.float64)
    if idx.size == 0:
        raise ValueError("sampled holds no frames: nothing to show")
    k = min(thumbs, idx.size)
    fig = plt.figure(figsize=(11, 4.4), layout="constrained")
    grid = fig.add_gridspec(2, k, height_ratios=[1, 1.5])
    ax = fig.add_subplot(grid[0, :])
    duration = num_frames / fps
    ax.vlines(np.arange(num_frames) / fps, 0.55, 0.95, color="0.75", lw=0.6,
              label=f"every frame ({num_frames})")
    ax.vlines(times, 0.05, 0.95, color="C0", lw=1.6, label=f"sampled ({idx.size})")
    if labels is not None:
        _shade_truth(ax, np.asarray(labels), fps, num_frames)
    chosen = np.unique(np.linspace(0, idx.size - 1, k).round().astype(int))
    ax.plot(times[chosen], np.full(len(chosen), 1.05), "v", color="C1", ms=7,
            label="shown below", clip_on=False)
    ax.set(xlim=(0, duration), ylim=(0, 1.12), yticks=[], xlabel="time (s)")
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
                      profile: str | None = None) -> Figure:
    """A retrieval as a picture: rows are queries, columns candidates (e.g. notebook 20's
    frames x captions), colour the cosine similarity, a red dot on each row's nearest."""
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[1] != len(columns):
        raise ValueError(f"similarity must be [rows, {len(columns)}] for {len(columns)} "
                         f"columns, got shape {sim.shape}")
    fig, ax = plt.subplots(figsize=(min(max(7.0, 2 + 0.45 * len(columns)), 12),
                                    min(0.14 * len(sim) + 2.8, 9)), layout="constrained")
    im = ax.imshow(sim, aspect="auto", cmap="viridis")
    ax.plot(sim.argmax(axis=1), np.arange(len(sim)), "r.", ms=5, label="nearest (retrieved)")
    ax.set_xticks(range(len(columns)), [clean_text(c, 28) for c in columns],
                  rotation=60, ha="right", fontsize=8)
    ax.set(xlabel=column_label, ylabel=row_label)
    ax.set_title(title or "cosine similarity", fontsize=10)
    fig.colorbar(im, ax=ax, label="cosine similarity")
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.02), fontsize=8, frameon=False)
    return tag_figure(fig, profile) if profile is not None else fig


#: per method (declared in vadnb.registry): its title and stages in order, each
#: (stage, who does it, what it outputs, kind) with kind in _KINDS
PIPELINES: Mapping[str, dict[str, Any]] = registry.view(lambda m: m.pipeline)

_KINDS = {"data": ("#e8e8e8", "frames in"), "model": ("#d6e6f5", "a model runs"),
          "math": ("#dff0d8", "plain computation"), "out": ("#fbe5c8", "scores out")}


def pipeline(method: str) -> Figure:
    """One method's pipeline as a diagram, frames -> models -> scores, with what each stage
    outputs (notebooks 20, 50, 60, 70, 75). method: a key of :data:`PIPELINES`."""
    key = str(method).lower()
    if key not in PIPELINES:
        raise ValueError(f"no pipeline drawn for {method!r}; choose one of {sorted(PIPELINES)}")
    stages = PIPELINES[key]["stages"]
    n = len(stages)
    fig, ax = plt.subplots(figsize=(12, 2.9), layout="constrained")
    ax.set(xlim=(0, n), ylim=(0, 1))
    ax.axis("off")
    for i, (name, who, output, kind) in enumerate(stages):
        mid = i + 0.5
        ax.add_patch(FancyBboxPatch((i + 0.07, 0.38), 0.86, 0.5, fc=_KINDS[kind][0], ec="0.35",
                                    lw=1, boxstyle="round,pad=0.01,rounding_size=0.04"))
        ax.text(mid, 0.80, name, ha="center", va="center", fontsize=10, fontweight="bold")
        ax.text(mid, 0.58, who, ha="center", va="center", fontsize=8, color="0.15")
        ax.text(mid, 0.20, output, ha="center", va="center", fontsize=8, style="italic",
                color="0.25")
        ax.annotate("", xy=(mid, 0.30), xytext=(mid, 0.38),
                    arrowprops={"arrowstyle": "->", "color": "0.5", "lw": 0.8})
        if i < n - 1:
            ax.annotate("", xy=(i + 1.07, 0.63), xytext=(i + 0.93, 0.63),
                        arrowprops={"arrowstyle": "-|>", "color": "0.3", "lw": 1.2,
                                    "mutation_scale": 12})
    used = [k for k in _KINDS if any(s[3] == k for s in stages)]
    ax.legend(handles=[Patch(fc=_KINDS[k][0], ec="0.35", label=_KINDS[k][1]) for k in used],
              loc="lower center", bbox_to_anchor=(0.5, -0.08), ncol=len(used), fontsize=8,
              frameon=False)
    ax.set_title(f"{PIPELINES[key]['title']}\n(box: stage and who does it; below: what it "
                 "outputs)", fontsize=10)
    return fig
