"""CLIP through open_clip: AnomalyCLIP (ViT-B/16), AnyAnomaly (ViT-B/32), the embedder fallback.

A CLIP is ``"ViT-B-16:openai"`` (an ``openai`` tag builds the ``-quickgelu`` architecture:
OpenAI's weights were trained with it, plain GELU silently degrades them),
``"hf-hub:org/repo"``, or a folder with ``open_clip_config.json`` (read as ``local-dir:``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch

from .base import Backend, choose_dtype, clip_list, run_batched, text_list, to_pil, unit_rows
from .hub import is_local, offline_advice
from .preprocess import from_open_clip


def open_clip_names(model: str) -> tuple[str, str | None]:
    """``(model_name, pretrained)`` for ``open_clip.create_model_and_transforms``."""
    if is_local(model):
        return "local-dir:" + str(Path(model).expanduser().resolve()), None
    if model.startswith(("hf-hub:", "local-dir:")):
        return model, None
    arch, _, tag = model.partition(":")
    if tag == "openai" and not arch.endswith("-quickgelu"):
        arch += "-quickgelu"  # OpenAI's weights need QuickGELU (plain GELU degrades them)
    return arch, (tag or None)


def open_clip_precision(dtype: Any) -> str:
    """open_clip's ``precision`` for a torch dtype: its mixed fp16/bf16 modes keep LayerNorm
    in fp32, as OpenAI's CLIP ran (casting the whole model would not)."""
    return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")


class OpenClipBackend(Backend):
    """An open_clip CLIP; methods may use ``model`` (its text tower for CoOp prompts),
    ``tokenizer``, ``preprocess`` (open_clip's own, per PIL image), ``image_size``, ``dtype``."""

    role = "clip"

    def __init__(self, model: str, *, name: str | None = None, profile: str = "custom",
                 device: str = "cpu", dtype: Any = None, batch_size: int = 64,
                 meaningless: bool = False):
        super().__init__(name or model, profile=profile, device=device, batch_size=batch_size,
                         meaningless=meaningless)
        model_name, pretrained = open_clip_names(model)
        self.dtype = choose_dtype(device, dtype, model)[0]
        with offline_advice(self.role, model, (Exception,)):  # open_clip raises many kinds
            clip, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, device=device,
                precision=open_clip_precision(self.dtype))
        self.model = clip.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.preprocess = preprocess
        self.batch_preprocess = from_open_clip(clip)
        size = getattr(clip.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.dim = int(getattr(clip, "embed_dim", 0) or clip.text_projection.shape[-1])

    def _image_batch(self, images: list[Any], raw: bool = False) -> list[np.ndarray]:
        if self.batch_preprocess is not None and not raw:
            x = self.batch_preprocess.batch(images)
        else:
            x = torch.stack([self.preprocess(to_pil(im)) for im in images])
        with torch.inference_mode():
            emb = self.model.encode_image(x.to(self.device, self.dtype))
        return list(emb.float().cpu().numpy()) if raw else list(unit_rows(emb))

    def _text_batch(self, texts: list[str]) -> list[np.ndarray]:
        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            emb = self.model.encode_text(tokens)
        return list(unit_rows(emb))

    def encode_image(self, images: Sequence[Any]) -> np.ndarray:
        """Images (uint8 RGB arrays or PIL) -> float32 [N, D], unit rows."""
        return self._embed_all(self._image_batch, images, f"{self.role} images", self.dim)

    def encode_image_raw(self, images: Sequence[Any]) -> np.ndarray:
        """Images -> float32 [N, D], the visual encoder's raw output (never normalised),
        preprocessed per PIL image with open_clip's own transform, as AnomalyCLIP's code."""
        return self._embed_all(functools.partial(self._image_batch, raw=True), images,
                               f"{self.role} raw images", self.dim)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 [N, D], unit rows."""
        return self._embed_all(self._text_batch, text_list(texts, "encode_text"),
                               f"{self.role} texts", self.dim)


class OpenClipEmbedder(OpenClipBackend):
    """The embedder role played by CLIP (ImageBind not installed); a clip's embedding is the
    normalised mean of its frames'."""

    role = "embedder"

    def encode_video(self, clips: Sequence[Sequence[Any]]) -> np.ndarray:
        """Clips (lists of frames) -> float32 [N, D]: mean of frame embeddings, renormalised."""
        clips = clip_list(clips)
        with self._count(len(clips)):
            if not clips:
                return np.zeros((0, self.dim), np.float32)
            frames = [f for c in clips for f in c]
            rows = np.stack(run_batched(self._image_batch, frames, self.batch_size,
                                        desc="embedder video frames"))
        parts = np.split(rows, np.cumsum([len(c) for c in clips])[:-1])
        means = [part.mean(axis=0) for part in parts]
        out = np.stack([m / max(float(np.linalg.norm(m)), 1e-12) for m in means])
        return out.astype(np.float32)
