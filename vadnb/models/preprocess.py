"""Image preprocessing for the embedders, batched as tensors (CLIP and ImageBind).

The libraries' preprocess works one PIL image at a time, costlier than the model on a CPU;
here the same steps run on uint8 batches (antialiased bicubic), one call per frame size:
within a grey level or two of the reference (``tests/test_models.py`` bounds it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from .base import as_uint8_rgb

_RESIZE_MODES = ("shortest", "squash")


@dataclass
class BatchPreprocess:
    """Resize (short side to ``size``, or squash to ``size x size``), centre-crop, normalise."""

    size: int
    mean: Sequence[float]
    std: Sequence[float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    def batch(self, images: Sequence[Any]):
        """Images -> float32 tensor ``[N, 3, size, size]`` (one resize per distinct size)."""
        arrays = [as_uint8_rgb(np.asarray(im.convert("RGB")) if hasattr(im, "convert") else im)
                  for im in images]
        out = torch.empty((len(arrays), 3, self.size, self.size), dtype=torch.float32)
        square = [self.size, self.size]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(arrays):
            groups.setdefault(a.shape, []).append(i)
        for idx in groups.values():
            x = torch.from_numpy(np.stack([arrays[i] for i in idx])).permute(0, 3, 1, 2)
            x = F.resize(x.contiguous(), square if self.resize_mode == "squash" else [self.size],
                         interpolation=InterpolationMode(self.interpolation), antialias=True)
            x = F.to_dtype(F.center_crop(x, square), torch.float32, scale=True)  # squash: no crop
            out[idx] = F.normalize(x, self.mean, self.std)
        return out


def from_open_clip(model: Any) -> BatchPreprocess | None:
    """The batched twin of an open_clip model's preprocess (None: no twin, PIL is used)."""
    import open_clip

    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    size = size if isinstance(size, int) else size[0]
    mode = cfg.get("resize_mode", "shortest")
    if mode not in _RESIZE_MODES or cfg.get("interpolation", "bicubic") not in (
            "bicubic", "bilinear"):
        return None
    return BatchPreprocess(size, cfg.get("mean", open_clip.OPENAI_DATASET_MEAN),
                           cfg.get("std", open_clip.OPENAI_DATASET_STD),
                           cfg.get("interpolation", "bicubic"), mode)
