"""Reading frames exactly (notebook 10). FIRST DRAFT: interface fixed, internals to be hardened."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["VideoError", "VideoInfo", "Frames", "probe", "read_frames", "extract_frames"]


class VideoError(ValueError):
    """A video that cannot be read as asked; the message names the file and the problem."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


@dataclass
class Frames:
    images: np.ndarray  # uint8 RGB [N, H, W, 3]
    indices: np.ndarray  # int64 [N], source frame index of each image
    timestamps_s: np.ndarray  # float64 [N]

    def __len__(self) -> int:
        return len(self.indices)


def probe(path: str | os.PathLike) -> VideoInfo:
    p = Path(path)
    if not p.exists():
        raise VideoError(f"video not found: {p}")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        raise VideoError(f"not a readable video: {p}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    n = 0
    w = h = 0
    while cap.grab():
        n += 1
    w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    if n == 0:
        raise VideoError(f"video has 0 decodable frames: {p}")
    return VideoInfo(n, float(fps), w, h)


def read_frames(path, fps=None, indices=None, size=None) -> Frames:
    info = probe(path)
    if indices is None:
        if fps is None:
            want = np.arange(info.num_frames)
        else:
            step = info.fps / fps
            want = np.unique(np.floor(np.arange(0, info.num_frames, step)).astype(np.int64))
    else:
        want = np.asarray(indices, dtype=np.int64)
    wanted = set(want.tolist())
    cap = cv2.VideoCapture(str(path))
    got = {}
    i = 0
    while i <= max(wanted) and cap.grab():
        if i in wanted:
            ok, bgr = cap.retrieve()
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if size is not None:
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            got[i] = rgb
        i += 1
    cap.release()
    images = np.stack([got[j] for j in want.tolist()])
    return Frames(images, want, want / info.fps)


def extract_frames(path, out_dir, fps=None):
    raise NotImplementedError
