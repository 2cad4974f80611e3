"""A window as ImageBind's video input, as LAVAD calls it: a 2-frame clip (the window's first
and last frames) in 3 square spatial crops, the 3 embeddings averaged."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..runtime import Derived, EncodeVideo

VIDEO_CLIPS = ("imagebind", "pairs")


def clip_frames(window: np.ndarray, mode: str = "imagebind") -> np.ndarray:
    """The window frames its video embedding reads: first and last, or all (``"pairs"``)."""
    if mode not in VIDEO_CLIPS:
        raise ValueError(f"unknown video_clip {mode!r}; use one of {VIDEO_CLIPS}")
    w = np.asarray(window, dtype=np.int64)
    return w[[0, -1]] if mode == "imagebind" else w


def spatial_crops(image: np.ndarray) -> list[np.ndarray]:
    """ImageBind's 3 square video crops: left, centre, right (top, centre, bottom when
    portrait), each the short side; the embedder resizes after the crop."""
    h, w = image.shape[:2]
    side = min(h, w)
    offsets = [0, int(np.ceil((max(h, w) - side) / 2)), max(h, w) - side]
    if w >= h:
        return [np.ascontiguousarray(image[:, o:o + side]) for o in offsets]
    return [np.ascontiguousarray(image[o:o + side, :]) for o in offsets]


def square_crop(images: list[np.ndarray], k: int) -> np.ndarray:
    """The ``k``-th of :func:`spatial_crops` of one frame (a runtime-derived image)."""
    return spatial_crops(images[0])[k]


def mean_unit(vectors: np.ndarray) -> np.ndarray:
    """The normalised mean of [..., 3, D] crop embeddings (ImageBind averages its crops)."""
    mean = np.asarray(vectors, dtype=np.float64).mean(axis=-2)
    return (mean / np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)
            ).astype(np.float32)


def window_clip(video: Any, window: np.ndarray, mode: str) -> list[EncodeVideo]:
    """A window's video-embedding requests: 3 cropped 2-frame clips, or the frames as is."""
    frames = video.frames(clip_frames(window, mode))
    if mode == "pairs":
        return [EncodeVideo(tuple(frames))]
    return [EncodeVideo(tuple(Derived.of(square_crop, [f], k=k) for f in frames))
            for k in range(3)]


def embed_clips(rt: Any, clips: list[list[EncodeVideo]], batch_size: int, desc: str
                ) -> np.ndarray:
    """``[P, crops, D]``: the embedder's vectors of each item's clip requests."""
    vecs = rt.map("embedder", [q for c in clips for q in c], len(clips[0]) * batch_size, desc)
    return np.stack(vecs).reshape(len(clips), len(clips[0]), -1)
