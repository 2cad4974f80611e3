"""AnomalyCLIP, the paper's algorithm (Zanella et al., CVIU 2024; notebook 50 teaches it):
CLIP frame features re-centred on the normal centroid, projected on learned class directions
(the modules: :mod:`.model`), scored by a temporal model; trained from video labels alone by
multiple-instance selection and its loss (the objective and the loop: :mod:`.train`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from ..runtime import EncodeImageRaw, Runtime, VideoRef
from ..stages import ModelId, config_dataclass
from .checks import fields_agree

NORMAL = "Normal"


# Limits turn a typo into an error, not an out-of-memory crash: grid axes <= 1024 x 256 (the
# paper: 32 x 16); n_ctx <= 64 (CLIP reads 77 tokens, the class name needs the rest).
@config_dataclass
class Config:
    """AnomalyCLIP's settings, defaulting to the paper's UCF-Crime recipe (frame AUC 86.36
    with raw CLIP ViT-B/16 features of every frame). The official per-dataset recipes are
    :data:`RECIPES` (``recipe("shanghaitech")``). ``epochs``, ``batch_size`` and
    ``feature_stride`` are the knobs to shrink for a CPU run."""

    clip_model: ModelId | None = None
    """The clip role's model (None: the profile's; the paper uses CLIP ViT-B/16, 512-d)."""
    feature_stride: Annotated[int, Field(ge=1, le=10_000)] = 1
    """Embed every k-th frame (1: every frame, as the paper); scores are repeated back."""
    batch_frames: Annotated[int, Field(ge=1, le=4096)] = 32
    """Frames per clip call while extracting features."""
    n_ctx: Annotated[int, Field(ge=1, le=64)] = 8
    """Learnable context tokens per class in the CoOp prompt ("X X X X X X X X <class>.")."""
    train_text_projection: bool = True
    """Fine-tune CLIP's text projection together with the prompts (the paper does)."""
    num_segments: Annotated[int, Field(ge=1, le=1024)] = 32
    """Segments per training video (the grid's long axis)."""
    seg_length: Annotated[int, Field(ge=1, le=256)] = 16
    """Consecutive (strided) frames per segment (the grid's short axis)."""
    segment_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.7
    """Probability that a segment is hidden from the top-k / bottom-k selection."""
    top_k: Annotated[int, Field(ge=1, le=1024)] = 3
    """Segments selected as most anomalous per video."""
    bottom_k: Annotated[int, Field(ge=1, le=1024)] = 3
    """Segments of abnormal videos selected as least anomalous (treated as normal)."""
    emb_size: Annotated[int, Field(ge=1, le=8192)] = 256
    """Width of the temporal model (its input Linear maps the CLIP dim to this; XD: 128)."""
    depth: Annotated[int, Field(ge=1, le=64)] = 1
    """Axial transformer layers (ShanghaiTech: 2)."""
    concat_features: bool = False
    """Feed the temporal model the likelihoods before the features (ShanghaiTech)."""
    heads: Annotated[int, Field(ge=1, le=256)] = 8
    """Attention heads (each ``emb_size // heads`` wide)."""
    lambda_smooth: Annotated[float, Field(ge=0)] = 8e-4
    """Weight of the smoothness term (sum of squared score differences)."""
    lambda_sparse: Annotated[float, Field(ge=0)] = 8e-3
    """Weight of the sparsity term (mean score of abnormal videos)."""
    lr: Annotated[float, Field(gt=0)] = 1e-5
    """AdamW learning rate (UCF-Crime; XD-Violence 5e-6, ShanghaiTech 5e-4)."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.2
    """AdamW weight decay."""
    warmup_epochs: Annotated[float, Field(ge=0, le=10_000)] = 5
    """Epochs of linear learning-rate warm-up, then cosine decay to 0 (ShanghaiTech: 10)."""
    lr_schedule: Literal["per_step", "per_epoch"] = "per_epoch"
    """"per_epoch" (official): warm-up epoch ``e`` at ``e / warmup_epochs`` (epoch 0 at lr 0),
    then cosine, once per epoch; "per_step": both move every step."""
    smooth_within_videos: bool = False
    """False (official): smoothness over abnormal scores flattened across videos."""
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 50
    """Training epochs (an epoch is one pass over the larger of the two groups)."""
    batch_size: Annotated[int, Field(ge=2, le=4096)] = 64
    """Videos per step: half abnormal, half normal (small groups: see ``train._steps``)."""
    drop_last: bool = True
    """True (official): ``floor(larger group / half batch)`` steps per epoch; False: ceil."""
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    """Seed for initialisation, sampling and segment dropout."""
    device: str | None = None
    """"cuda" / "cpu" (None: cuda when available)."""

    _fields_agree = model_validator(mode="after")(fields_agree)

    @property
    def grid(self) -> int:
        """Frames in one 32 x 16 grid (512 by default)."""
        return self.num_segments * self.seg_length


# --------------------------------------------------------------------------- the paper's steps


def normal_centroid(features: Mapping[str, np.ndarray], labels: Mapping[str, str]) -> np.ndarray:
    """Mean feature over every frame of the normal videos (label ``"Normal"``)."""
    normal = [np.asarray(features[v], dtype=np.float64) for v in features if labels[v] == NORMAL]
    if not normal:
        raise ValueError("no normal videos to compute the normal centroid from; the training "
                         "split needs videos labelled 'Normal'")
    total = sum(f.sum(0) for f in normal)
    return (total / sum(len(f) for f in normal)).astype(np.float32)


def pad_wraparound(num_frames: int, multiple: int) -> np.ndarray:
    """Indices ``0 .. num_frames-1`` then the video's start again, up to a multiple
    (test-time padding: 700 frames, ``multiple=512`` -> 1024 indices, the last frames 0..323)."""
    padded = math.ceil(num_frames / multiple) * multiple
    return np.arange(padded) % num_frames


def class_directions(text_features: Any, centroid: Any) -> Any:
    """One unit direction per class ``[C, D]``: each class's text feature minus the normal
    centroid, normalised (the official selector's re-centring of the text side)."""
    text = text_features - centroid
    return text / text.norm(dim=-1, keepdim=True)


#: The terms of the training loss (:func:`.train.anomalyclip_loss`), as the curves name them.
LOSS_TERMS = ("projection_topk", "projection_normal", "nll", "smoothness", "sparsity")


# --------------------------------------------------------------------------- inference


def embed_frames(rt: Runtime, v: VideoRef, stride: int, batch_frames: int) -> np.ndarray:
    """Raw CLIP image features ``[ceil(N / stride), D]`` of every ``stride``-th frame."""
    frames = v.frames(range(0, v.num_frames, stride))
    features = rt.map("clip", [EncodeImageRaw(f) for f in frames], batch_size=batch_frames,
                      desc="CLIP features")
    return np.stack(features).astype(np.float32)


def score_features(model: Any, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``[T]`` and class probabilities ``[T, C+1]`` (Normal last) of features ``[T, D]``.

    Padded by wrap-around to whole 32 x 16 grids; grid ``j`` of ``g`` takes the ``j``-th 16
    frames of each of 32 blocks, so each grid spans the whole video (as the original)."""
    cfg, t = model.config, len(features)
    idx = pad_wraparound(t, cfg.grid)
    grids = len(idx) // cfg.grid
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(features[idx]).to(model.centroid.device)  # [g*S*L, D]
        centred = x - model.centroid  # normality is the origin
        logits = model.likelihoods(centred)  # [g*S*L, C] BatchNorm'ed projections on d_c
        grid = model.temporal_input(centred, logits)
        grid = grid.reshape(cfg.num_segments, grids, cfg.seg_length, -1).transpose(0, 1)
        scores = model.temporal(grid).transpose(0, 1).reshape(-1)  # back to frame order
        cond = torch.softmax(logits, dim=-1)
        probs = torch.cat([cond * scores[:, None], (1 - scores)[:, None]], dim=1)
    return (scores[:t].cpu().numpy().astype(np.float32),
            probs[:t].cpu().numpy().astype(np.float32))


def repeat_strided(values: np.ndarray, stride: int, num_frames: int) -> np.ndarray:
    """Per-feature values back to every frame: each stands for its ``stride`` frames, the
    last one also for any frames left after it."""
    out = np.repeat(values, stride, axis=0)
    if len(out) < num_frames:
        out = np.concatenate([out, np.repeat(out[-1:], num_frames - len(out), axis=0)])
    return out[:num_frames]


def pipeline(rt: Runtime, video: Any, cfg: Config,
             score: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
             ) -> tuple[np.ndarray, np.ndarray, float]:
    """``(frame_scores [N], class_probs [N, C+1], fps)`` of ``video``; ``score`` is a
    trained model's :func:`score_features` (the caller loads the model, cached)."""
    v = rt.video(video)
    # 1. embed every feature_stride-th frame with the frozen CLIP image encoder (raw output)
    features = embed_frames(rt, v, cfg.feature_stride, cfg.batch_frames)
    # 2. re-centre on the normal centroid, project on the class directions, run the
    #    temporal model over 32 x 16 grids, and combine: p(c) = softmax * score
    scores, probs = score(features)
    # 3. repeat the strided scores back to every frame
    return (repeat_strided(scores, cfg.feature_stride, v.num_frames),
            repeat_strided(probs, cfg.feature_stride, v.num_frames), v.fps)
