"""The images AnyAnomaly shows its VLM, as pixel operations: windows, the WinCLIP-style heat
map, the masked key frame (position context) and the 2x2 grid (temporal context).

The pipeline never holds pixels: it sends ``Derived.of(op, ...)`` recipes, applied only when a
model must see the image and keyed by the op's source, so editing an op re-asks the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..runtime import Derived
from ..stages import resized


def window_boxes(size: int = 240, window_sizes: Sequence[int] = (48, 80, 240),
                 stride: int | None = None) -> pd.DataFrame:
    """Every window (``scale`` index, ``row``, ``col``, ``x0, y0, x1, y1`` px, end exclusive),
    scale by scale, row-major; side ``w`` windows start every ``stride or w`` px while they fit
    (at 240 px: 25 + 9 + 1 = 35 windows)."""
    rows = []
    for scale, w in enumerate(window_sizes):
        if not 0 < w <= size:
            raise ValueError(f"window size {w} must be between 1 and the frame size {size}")
        step = int(stride or w)
        starts = np.arange(0, size - w + 1, step)
        for r, y in enumerate(starts):
            for c, x in enumerate(starts):
                rows.append({"scale": scale, "row": r, "col": c, "x0": int(x), "y0": int(y),
                             "x1": int(x + w), "y1": int(y + w)})
    return pd.DataFrame(rows, columns=["scale", "row", "col", "x0", "y0", "x1", "y1"])


#: ``Config.window_resize`` -> OpenCV interpolation: "linear" (official), "area" (vadnb's option).
RESIZE = {"linear": 1, "area": 3}  # cv2.INTER_LINEAR, cv2.INTER_AREA


def square(frame: np.ndarray, size: int, resize: str = "linear") -> np.ndarray:
    """``frame`` resized to ``size`` x ``size`` (as the official code does, ignoring aspect)."""
    import cv2
    if resize not in RESIZE:
        raise ValueError(f"unknown window_resize {resize!r}; use one of {sorted(RESIZE)}")
    return cv2.resize(np.asarray(frame), (size, size), interpolation=RESIZE[resize])


def cut_windows(frame: np.ndarray, boxes: pd.DataFrame, size: int = 240,
                resize: str = "linear") -> list[np.ndarray]:
    """Each box of :func:`window_boxes` cut from ``frame`` :func:`square`'d to ``size``."""
    sq = square(frame, size, resize)
    return [sq[b.y0:b.y1, b.x0:b.x1] for b in boxes.itertuples()]


def minmax(x: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1]. A (near-)constant input (range < 1e-6, so float32 rounding is never
    stretched into a pattern) becomes all ones: a heat map that keeps the whole frame."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(np.min(x)), float(np.max(x))
    return np.ones_like(x) if hi - lo < 1e-6 else (x - lo) / (hi - lo)


def heat_map(window_scores: np.ndarray, boxes: pd.DataFrame, height: int,
             width: int) -> np.ndarray:
    """WinCLIP-style heat map ``[height, width]`` in [0, 1]: each scale's window grid upsampled
    bilinearly (``cv2.resize``), the scales averaged, then min-max normalised."""
    import cv2
    scores = np.asarray(window_scores, dtype=np.float32).ravel()
    if len(scores) != len(boxes):
        raise ValueError(f"{len(scores)} window scores for {len(boxes)} windows")
    total = np.zeros((height, width), dtype=np.float64)
    scales = sorted(boxes["scale"].unique())
    for scale in scales:
        sub = boxes[sel := (boxes["scale"] == scale).to_numpy()]
        grid = np.zeros((sub["row"].max() + 1, sub["col"].max() + 1), dtype=np.float32)
        grid[sub["row"].to_numpy(), sub["col"].to_numpy()] = scores[sel]
        total += cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
    return minmax(total / len(scales))


def masked_frame(frame: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The key frame with the heat map multiplied onto every channel (the position context)."""
    return (np.asarray(frame, np.float64) * heat[..., None]).clip(0, 255).astype(np.uint8)


def grid_image(frames: Sequence[np.ndarray], box: Any, size: int = 240,
               cell: int = 224) -> np.ndarray:
    """A 2x2 grid of one window (``size``-px box, scaled per frame) cut from 4 frames in order."""
    import cv2
    if len(frames) != 4:
        raise ValueError(f"the temporal grid needs 4 frames, got {len(frames)}")
    out = np.zeros((2 * cell, 2 * cell, 3), dtype=np.uint8)
    # a window_boxes row or a plain (x0, y0, x1, y1)
    bx0, by0, bx1, by1 = map(int, (box.x0, box.y0, box.x1, box.y1) if hasattr(box, "x0") else box)
    for i, f in enumerate(frames):
        f = np.asarray(f)
        h, w = f.shape[:2]
        x0, y0 = int(bx0 * w / size), int(by0 * h / size)
        x1 = max(x0 + 1, int(round(bx1 * w / size)))  # at least one pixel wide
        y1 = max(y0 + 1, int(round(by1 * h / size)))
        r, c = divmod(i, 2)
        out[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = cv2.resize(
            f[y0:y1, x0:x1], (cell, cell), interpolation=cv2.INTER_LINEAR)
    return out


def window_probabilities(window_emb: np.ndarray, class_emb: np.ndarray,
                         scale: float = 100.0) -> np.ndarray:
    """``[..., W, C]`` softmax over classes (normal last) of ``scale * cosine``."""
    from scipy.special import softmax
    return softmax(scale * (np.asarray(window_emb, np.float64)
                            @ np.asarray(class_emb, np.float64).T), axis=-1)


def best_window(window_scores: np.ndarray) -> int:
    """The window with the highest best score over the frames (ties: the first), as official."""
    return int(np.argmax(np.asarray(window_scores).max(axis=0)))


def view_size(width: int, height: int, max_side: int) -> tuple[int, int] | None:
    """``(width, height)`` to read key/context frames at (longer side capped), or None."""
    if max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def view(images: list[np.ndarray], max_side: int) -> np.ndarray:
    """A frame at most ``max_side`` px on its longer side (``cv2.INTER_AREA``, as read_frames)."""
    size = view_size(images[0].shape[1], images[0].shape[0], max_side)
    return images[0] if size is None else resized(images, *size)


def window(images: list[np.ndarray], box: tuple[int, int, int, int], size: int,
           resize: str = "linear") -> np.ndarray:
    """One window ``(x0, y0, x1, y1)`` of the frame resized to ``size`` x ``size``."""
    x0, y0, x1, y1 = box
    return square(images[0], size, resize)[y0:y1, x0:x1]


def masked(images: list[np.ndarray], scores: tuple[float, ...], window_sizes: tuple[int, ...],
           stride: int | None, size: int) -> np.ndarray:
    """The position context: the key frame times the heat map of its window ``scores``."""
    boxes = window_boxes(size, window_sizes, stride)
    return masked_frame(images[0], heat_map(np.asarray(scores), boxes, *images[0].shape[:2]))


def window_crop(frame: Any, box: tuple[int, int, int, int], cfg: Any) -> Any:
    """One window ``box`` of a frame squashed to ``cfg.position_size``, for CLIP."""
    return Derived.of(window, [frame], box=box, size=cfg.position_size, resize=cfg.window_resize)


def question_images(key: Any, context: list[Any], heat: np.ndarray,
                    box: tuple[int, int, int, int], cfg: Any) -> tuple[Any, Any, Any]:
    """The VLM's three images: the key frame, it masked by its heat map, and the 2x2 grid."""
    return (key, Derived.of(masked, [key], scores=tuple(heat.tolist()),
                            window_sizes=cfg.window_sizes, stride=cfg.window_stride,
                            size=cfg.position_size),
            Derived.of(grid_image, context, box=box, size=cfg.position_size, cell=cfg.grid_cell))
