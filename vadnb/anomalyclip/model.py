"""AnomalyCLIP's trainable model (CoOp prompts, axial temporal transformer, the whole) and its
checkpoints (safetensors + JSON, no pickle)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .core import NORMAL, Config, class_directions


def clip_label(clip: Any) -> str:
    """The name a clip backend goes by (checkpoints record it)."""
    return str(getattr(clip, "name", type(clip).__name__))


def clip_parts(clip: Any) -> tuple[Any, Any]:
    """``(open_clip model, tokenizer)`` of a clip backend: the text tower CoOp needs."""
    model = getattr(clip, "model", None)
    tokenizer = getattr(clip, "tokenizer", None)
    if model is None or tokenizer is None or not hasattr(model, "token_embedding"):
        raise TypeError(
            f"AnomalyCLIP learns prompts through CLIP's text encoder, so the clip backend must "
            f"expose .model (an open_clip CLIP) and .tokenizer; {clip_label(clip)!r} does not. "
            "Load one with vadnb.models.load('clip', profile=...)")
    return model, tokenizer


class PromptLearner(nn.Module):
    """CoOp: ``n_ctx`` learnable tokens per class before its name -> one text feature per class
    ``[C, D]``. CLIP's text tower is copied, so training never changes the shared backend."""

    def __init__(self, clip_model: Any, tokenizer: Any, class_names: Sequence[str],
                 n_ctx: int = 8, train_text_projection: bool = True):
        super().__init__()
        names = [c.replace("_", " ") for c in class_names]
        width = clip_model.ln_final.weight.shape[0]
        ctx = torch.empty(len(names), n_ctx, width)
        nn.init.normal_(ctx, std=0.02)
        self.ctx = nn.Parameter(ctx)
        prompts = [" ".join(["X"] * n_ctx) + " " + n + "." for n in names]
        tokens = torch.as_tensor(tokenizer(prompts), dtype=torch.long)
        device = clip_model.token_embedding.weight.device
        with torch.no_grad():
            emb = clip_model.token_embedding(tokens.to(device)).float().cpu()
        self.frozen = nn.Module()  # never trained, never saved: rebuilt from the clip
        self.frozen.register_buffer("tokens", tokens)
        self.frozen.register_buffer("prefix", emb[:, :1].clone())  # start token
        self.frozen.register_buffer("suffix", emb[:, 1 + n_ctx:].clone())  # name, '.', end
        self.frozen.transformer = copy.deepcopy(clip_model.transformer).float()
        self.frozen.ln_final = copy.deepcopy(clip_model.ln_final).float()
        self.frozen.register_buffer("positional_embedding",
                                    clip_model.positional_embedding.detach().float().clone())
        mask = getattr(clip_model, "attn_mask", None)
        self.frozen.register_buffer("attn_mask", None if mask is None else mask.detach().clone(),
                                    persistent=False)
        self.frozen.requires_grad_(False)
        proj = clip_model.text_projection
        proj = proj.weight.T if isinstance(proj, nn.Linear) else proj
        self.text_projection = nn.Parameter(proj.detach().float().clone(),
                                            requires_grad=train_text_projection)

    def forward(self) -> Any:
        fz = self.frozen
        x = torch.cat([fz.prefix, self.ctx, fz.suffix], dim=1)
        x = x + fz.positional_embedding
        x = fz.transformer(x, attn_mask=fz.attn_mask)
        x = fz.ln_final(x)
        end = fz.tokens.argmax(dim=-1)  # the end-of-text token has the largest id
        x = x[torch.arange(x.shape[0], device=x.device), end]
        return x @ self.text_projection


class _AxialAttention(nn.Module):
    """Pre-norm multi-head self-attention along one axis of a ``[B, S, L, E]`` grid."""

    def __init__(self, dim: int, heads: int, axis: int):
        super().__init__()
        self.heads, self.axis = heads, axis
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Any) -> Any:
        if self.axis == 1:  # attend along the segments: make them the sequence axis
            x = x.transpose(1, 2)
        b, n, t, e = x.shape
        h = self.norm(x).reshape(b * n, t, e)
        q = self.to_q(h)
        k, v = self.to_kv(h).chunk(2, dim=-1)
        split = lambda z: z.reshape(b * n, t, self.heads, e // self.heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        out = self.to_out(out.transpose(1, 2).reshape(b * n, t, e)).reshape(b, n, t, e)
        return out.transpose(1, 2) if self.axis == 1 else out


class _ChannelNorm(nn.Module):
    """Layer norm with ``eps`` added to the std (not under the root), as the official code."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Any) -> Any:
        mean = x.mean(-1, keepdim=True)
        std = x.var(-1, unbiased=False, keepdim=True).sqrt()
        return (x - mean) / (std + self.eps) * self.weight + self.bias


class _ConvFeedForward(nn.Module):
    """Channel norm, then two 3x3 convolutions over the segment x frame grid (4x wider)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = _ChannelNorm(dim)
        self.net = nn.Sequential(nn.Conv2d(dim, 4 * dim, 3, padding=1), nn.LeakyReLU(),
                                 nn.Conv2d(4 * dim, dim, 3, padding=1))

    def forward(self, x: Any) -> Any:
        h = self.norm(x).permute(0, 3, 1, 2)  # [B, E, S, L] for Conv2d
        return self.net(h).permute(0, 2, 3, 1)


class AxialTemporalModel(nn.Module):
    """``[B, S, L, D]`` -> scores ``[B, S, L]``: the official reversible axial transformer."""

    def __init__(self, input_dim: int, emb_size: int = 256, depth: int = 1, heads: int = 8,
                 num_segments: int = 32, seg_length: int = 16):
        super().__init__()
        self.num_segments, self.seg_length = num_segments, seg_length
        self.projection = nn.Linear(input_dim, emb_size)
        self.pos_segments = nn.Parameter(torch.randn(num_segments, 1, emb_size))
        self.pos_frames = nn.Parameter(torch.randn(1, seg_length, emb_size))
        self.layers = nn.ModuleList([
            nn.ModuleList([_AxialAttention(emb_size, heads, axis=1),
                           _AxialAttention(emb_size, heads, axis=2),
                           _ConvFeedForward(emb_size), _ConvFeedForward(emb_size)])
            for _ in range(depth)])
        self.head_norm = nn.LayerNorm(emb_size)
        self.head = nn.Linear(emb_size, 1)

    def forward(self, x: Any) -> Any:
        if x.shape[1:3] != (self.num_segments, self.seg_length):
            raise ValueError(f"temporal model expects [B, {self.num_segments}, "
                             f"{self.seg_length}, D] grids, got {tuple(x.shape)}")
        a = b = self.projection(x) + self.pos_segments + self.pos_frames
        for attn_seg, attn_frame, ff1, ff2 in self.layers:
            a = a + attn_seg(b)
            b = b + attn_frame(a)
            a = a + ff1(b)
            b = b + ff2(a)
        return torch.sigmoid(self.head(self.head_norm((a + b) / 2))).squeeze(-1)


class AnomalyCLIP(nn.Module):
    """Prompts -> class directions -> BatchNorm'ed projections -> temporal model:
    ``forward(features [B, S*L, D]) -> (likelihoods [B, S*L, C], scores [B, S*L])``."""

    def __init__(self, clip_model: Any, tokenizer: Any, class_names: Sequence[str],
                 centroid: np.ndarray, config: Config):
        super().__init__()
        self.config = config
        self.class_names = [c for c in class_names if c != NORMAL]
        if not self.class_names:
            raise ValueError("AnomalyCLIP needs at least one anomaly class")
        self.clip_name, self.profile = "", "custom"
        self.feature_scale: str | None = None  # "raw" / "unit": the scale it was trained on
        dim = int(np.asarray(centroid).shape[-1])
        self.register_buffer("centroid", torch.as_tensor(np.asarray(centroid), dtype=torch.float32))
        self.prompts = PromptLearner(clip_model, tokenizer, self.class_names, config.n_ctx,
                                      config.train_text_projection)
        out_dim = self.prompts.text_projection.shape[1]
        if out_dim != dim:
            raise ValueError(f"the clip text features are {out_dim}-d but the frame features are "
                             f"{dim}-d: extract the features with the same CLIP model")
        self.norm = nn.BatchNorm1d(len(self.class_names), affine=False)
        extra = len(self.class_names) if config.concat_features else 0
        self.temporal = AxialTemporalModel(dim + extra, config.emb_size, config.depth,
                                            config.heads, config.num_segments, config.seg_length)

    def directions(self) -> Any:
        """One unit vector per anomaly class ``[C, D]``: text feature minus centroid, normalised."""
        return class_directions(self.prompts(), self.centroid)

    def likelihoods(self, centred: Any, directions: Any | None = None) -> Any:
        """BatchNorm'ed projections of re-centred features ``[..., D]`` -> ``[..., C]``."""
        d = self.directions() if directions is None else directions
        proj = centred @ d.T
        return self.norm(proj.reshape(-1, proj.shape[-1])).reshape(proj.shape)

    def forward(self, features: Any) -> tuple[Any, Any]:
        b, t, _ = features.shape
        centred = features - self.centroid
        logits = self.likelihoods(centred)
        grid = self.temporal_input(centred, logits).reshape(b, self.config.num_segments,
                                                            self.config.seg_length, -1)
        return logits, self.temporal(grid).reshape(b, t)

    def temporal_input(self, centred: Any, logits: Any) -> Any:
        """The re-centred feature, after the likelihoods when ``concat_features`` (ShanghaiTech)."""
        return torch.cat([logits, centred], dim=-1) if self.config.concat_features else centred


def _checkpoint_paths(path: str | os.PathLike, exist: bool = False) -> tuple[Path, Path]:
    """``(weights, meta)`` paths of a checkpoint; with ``exist``, a clear error if one is missing."""
    p = Path(path)
    if p.suffix != ".safetensors":
        p = p.with_suffix(p.suffix + ".safetensors")
    if exist and not (p.exists() and p.with_suffix(".json").exists()):
        raise FileNotFoundError(f"AnomalyCLIP checkpoint not found: need {p} and "
                                f"{p.with_suffix('.json')} (written by "
                                "vadnb.anomalyclip.save_checkpoint)")
    return p, p.with_suffix(".json")


def _trained_state(model: Any) -> dict[str, Any]:
    """The state dict without CLIP's frozen text tower (rebuilt from the clip, never saved)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if ".frozen." not in f".{k}"}


def save_checkpoint(model: Any, path: str | os.PathLike) -> Path:
    """Write safetensors plus ``<name>.json`` (config, classes, clip); returns the weights' path."""
    from safetensors.torch import save_file
    weights, meta_path = _checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file(_trained_state(model), str(weights))
    # the device is not part of the recipe: a model trained on a GPU loads on a CPU too
    meta = {"method": "anomalyclip", "config": asdict(replace(model.config, device=None)),
            "class_names": list(model.class_names), "clip_model": model.clip_name,
            "profile": model.profile, "feature_dim": int(model.centroid.shape[0]),
            "feature_scale": getattr(model, "feature_scale", None)}
    meta_path.write_text(json.dumps(meta, indent=2))
    return weights


def load_checkpoint(path: str | os.PathLike, clip: Any = None, profile: str | None = None,
                    device: str | None = None) -> Any:
    """Load a :func:`save_checkpoint` model; ``clip`` must be the one it was trained with
    (default: the clip role of the checkpoint's profile)."""
    from safetensors.torch import load_file

    from ..models.base import pick_device
    weights, meta_path = _checkpoint_paths(path, exist=True)
    meta = json.loads(meta_path.read_text())
    cfg = Config(**meta["config"])
    if clip is None:
        from .. import models

        clip = models.load("clip", profile=profile or meta.get("profile"), model=cfg.clip_model)
    if meta.get("clip_model") and clip_label(clip) != meta["clip_model"]:
        raise ValueError(f"{weights} was trained on features of clip model {meta['clip_model']!r} "
                         f"but the clip given is {clip_label(clip)!r}; pass the same clip model")
    clip_model, tokenizer = clip_parts(clip)
    state = load_file(str(weights))
    model = AnomalyCLIP(clip_model, tokenizer, meta["class_names"], state["centroid"].numpy(), cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if ".frozen." not in f".{k}"]
    if missing or unexpected:
        raise ValueError(f"{weights} does not match this AnomalyCLIP model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model.clip_name, model.profile, model.feature_scale = (
        meta.get("clip_model", ""), meta.get("profile", "custom"), meta.get("feature_scale"))
    return model.to(pick_device(device or cfg.device)).eval()


def state_digest(model: Any) -> str:
    """A content hash of a trained model's weights, classes and feature scale (cache key)."""
    import hashlib
    h = hashlib.sha256()
    for key, value in sorted(_trained_state(model).items()):
        h.update(key.encode())
        h.update(value.numpy().tobytes())
    h.update(json.dumps([list(model.class_names), getattr(model, "feature_scale", None)]).encode())
    return h.hexdigest()[:32]

