"""AnomalyCLIP: weakly supervised anomaly detection and recognition in CLIP's latent space
(notebook 50 teaches it).

Zanella et al., "Delving into CLIP latent space for Video Anomaly Recognition" (CVIU 2024).
Only *video-level* labels are needed for training ("this video contains a Robbery"); the
method learns which frames are anomalous, and of which class, by itself:

1. **Frame features.** A frozen CLIP image encoder embeds every frame (``extract_features``;
   or read the authors' pre-extracted ``.npy`` files with ``load_features``).
2. **Normal centroid.** The mean feature over all frames of the *normal* training videos.
   Every feature is re-centred on it: normality becomes the origin of the space.
3. **Class directions.** A CoOp prompt learner (8 learnable context tokens per anomaly
   class, random init) goes through CLIP's frozen text encoder (its text projection is
   trained). Each class's text feature, re-centred on the centroid and normalised, is one
   direction ``d_c`` in the image space; the normal class has no direction.
4. **Likelihoods.** The projections ``x . d_c`` of a re-centred frame feature, batch-normalised
   (``BatchNorm1d(affine=False)``), are per-class likelihoods: far along ``d_c`` = looks like c.
5. **Multiple-instance learning.** A training video is sampled as 32 segments x 16
   consecutive frames. Per-frame likelihoods summed over a segment rank the segments; after
   random segment dropout, the top-3 segments along the true class (normal videos: along
   the sum of classes) and the bottom-3 of abnormal videos are *selected*.
6. **Temporal model.** Linear -> an axial transformer over the 32 x 16 grid (attention
   along the segments, then along the frames of a segment) -> LayerNorm -> Linear ->
   sigmoid: one anomaly score per frame.
7. **Loss** (``anomalyclip_loss``): push the top-k frames along their class direction,
   pull normal frames' largest projection down, a negative log-likelihood on
   ``p(c) = softmax(likelihoods)_c * score`` and ``p(normal) = 1 - score`` for the three
   selections, plus temporal smoothness and sparsity on abnormal videos' scores.

At test time every frame is scored: the (strided) feature sequence is padded by
wrap-around to a multiple of 32 x 16 and cut into grids of that shape.

Where vadnb departs from the public code, :data:`DIFFERENCES` says what, why and the
effect (notebook 50 renders it); :data:`RECIPES` holds the paper's per-dataset settings and
:func:`convert_release` turns the authors' released checkpoints into vadnb's format.
"""

from __future__ import annotations

import copy
import json
from contextlib import nullcontext
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from .models.base import call_stats, calls_since
from .models.profiles import MEANINGLESS_PROFILES
from .stages import Difference, ModelId, config_dataclass, configure

__all__ = [
    "Config",
    "AnomalyCLIP",
    "AxialTemporalModel",
    "PromptLearner",
    "extract_features",
    "load_features",
    "normal_centroid",
    "sample_training_indices",
    "pad_wraparound",
    "select_segments",
    "anomalyclip_loss",
    "fit",
    "train",
    "predict",
    "evaluate",
    "Evaluation",
    "recognition_metrics",
    "save_checkpoint",
    "load_checkpoint",
    "run",
    "latent_space",
    "plot_latent_space",
    "plot_loss_curves",
    "direction_separation",
    "describe_separation",
    "video_class",
    "LOSS_TERMS",
    "DIFFERENCES",
    "RECIPES",
    "RELEASE_CLASSES",
    "recipe",
    "feature_scale",
    "check_feature_scale",
    "class_directions",
    "convert_release",
    "load_release_checkpoint",
    "release_benchmark",
    "oracle_clip",
]

NORMAL = "Normal"


# Limits: generous for real use, there to turn a typo into an error instead of an
# out-of-memory crash. A training video is a num_segments x seg_length grid of features
# for each of batch_size videos, so the grid's axes are capped at 1024 and 256 (the paper:
# 32 x 16); n_ctx at 64 because CLIP's text encoder reads 77 tokens and the class name
# needs the rest; seeds stay within numpy's 32 bits.
@config_dataclass
class Config:
    """AnomalyCLIP's settings, defaulting to the paper's UCF-Crime recipe.

    Paper (CVIU 2024): UCF-Crime AUC 86.36, XD-Violence AP 78.51, ShanghaiTech (weak split)
    AUC 98.07, with raw CLIP ViT-B/16 features of every frame. The per-dataset recipes of
    the official configs are :data:`RECIPES` (``recipe("shanghaitech")``): XD-Violence
    ``emb_size=128``, ``lr=5e-6``; ShanghaiTech ``lr=5e-4``, ``depth=2``,
    ``concat_features=True``, 10 warm-up epochs of 100. ``epochs``, ``batch_size`` and
    ``feature_stride`` are the knobs to shrink for a CPU run.
    """

    clip_model: ModelId | None = None
    """The clip role's model (None: the profile's; the paper uses CLIP ViT-B/16, 512-d)."""
    feature_stride: Annotated[int, Field(ge=1, le=10_000)] = 1
    """Embed every ``feature_stride``-th frame (1 = every frame, as the paper); a strided
    feature stands for its ``feature_stride`` frames and scores are repeated back."""
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
    """Axial transformer layers (ShanghaiTech: 2). Two streams run through every layer and
    are averaged once at the end, as the official reversible block."""
    concat_features: bool = False
    """Feed the temporal model the class likelihoods concatenated before the re-centred
    features (ShanghaiTech's recipe), not the features alone."""
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
    lr_schedule: Literal["per_step", "per_epoch"] = "per_step"
    """"per_step": warm-up and cosine move every step, warm-up starting at ``lr / steps``;
    "per_epoch": the official schedule (the rate changes once per epoch and the first
    epoch runs at exactly 0)."""
    smooth_within_videos: bool = True
    """Smoothness sums squared score steps inside each abnormal video; False: over the
    flattened batch, as the official code (also penalising the jump between two videos)."""
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 50
    """Training epochs (an epoch sees every video of the larger of the two groups once)."""
    batch_size: Annotated[int, Field(ge=2, le=4096)] = 64
    """Videos per step: half abnormal, half normal."""
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    """Seed for initialisation, sampling and segment dropout."""
    device: str | None = None
    """"cuda" / "cpu" (None: cuda when available)."""

    @model_validator(mode="after")
    def _fields_agree(self) -> Config:
        if self.emb_size % self.heads:
            raise ValueError(f"Config.emb_size ({self.emb_size}) must be divisible by "
                             f"Config.heads ({self.heads})")
        if max(self.top_k, self.bottom_k) > self.num_segments:
            raise ValueError(f"Config.top_k ({self.top_k}) and Config.bottom_k "
                             f"({self.bottom_k}) cannot exceed Config.num_segments "
                             f"({self.num_segments})")
        return self

    @property
    def grid(self) -> int:
        """Frames in one 32 x 16 grid (512 by default)."""
        return self.num_segments * self.seg_length


#: The official per-dataset settings (configs/model/anomaly_clip_<dataset>.yaml and
#: configs/experiment/<dataset>.yaml of lucazanella/AnomalyCLIP), as Config overrides, and
#: the paper's headline result with each.
RECIPES: dict[str, dict[str, Any]] = {
    "ucf_crime": {"config": {}, "paper": "frame AUC 86.36"},
    "xd_violence": {"config": {"emb_size": 128, "lr": 5e-6}, "paper": "frame AP 78.51"},
    "shanghaitech": {"config": {"lr": 5e-4, "depth": 2, "concat_features": True,
                                "warmup_epochs": 10, "epochs": 100},
                     "paper": "frame AUC 98.07 (weakly supervised split)"},
}

#: Class order of each released model (the official ``data/*_labels.csv``: the prompts are
#: built for these names sorted, "Normal" included, and the Normal row is then dropped).
RELEASE_CLASSES: dict[str, list[str]] = {
    "ucf_crime": ["Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting",
                  "Normal", "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing",
                  "Vandalism"],
    "xd_violence": ["Abuse", "Car_accident", "Explosion", "Fighting", "Normal", "Riot",
                    "Shooting"],
    "shanghaitech": ["car", "chasing", "circuit", "fall", "fighting", "hurdle", "jumping",
                     "monocycle", "normal", "push", "robbery", "running", "skateboard", "step",
                     "stoop", "throwing object", "vaudeville", "vehicle"],
}


def _dataset_key(dataset: str) -> str:
    key = str(dataset).lower().replace("-", "_").replace(" ", "_")
    key = {"ucf": "ucf_crime", "ucfcrime": "ucf_crime", "xd": "xd_violence",
           "xdviolence": "xd_violence", "sht": "shanghaitech", "shanghai_tech": "shanghaitech"
           }.get(key, key)
    if key not in RECIPES:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(RECIPES)}")
    return key


def recipe(dataset: str, **overrides: Any) -> Config:
    """The official Config for ``dataset`` ("ucf_crime", "xd_violence", "shanghaitech"),
    with ``overrides`` on top (e.g. fewer epochs for a CPU run)."""
    return Config(**{**RECIPES[_dataset_key(dataset)]["config"], **overrides})


#: Every way vadnb's AnomalyCLIP departs from lucazanella/AnomalyCLIP (notebook 50 renders it).
DIFFERENCES: list[Difference] = [
    Difference(
        what="Smoothness sums squared score steps inside each abnormal video; the official "
             "code flattens the abnormal half of the batch first, so the step from one "
             "video's last frame to the next video's first frame is penalised too.",
        why="that jump says nothing about either video.",
        effect="31 spurious terms out of ~16,000 in a 64-video batch, weighted 8e-4: small, "
               "not measured on a benchmark.",
        flag="smooth_within_videos=False"),
    Difference(
        what="The learning rate warms up per step, starting at lr / warm-up steps; the "
             "official schedule changes once per epoch and runs its first epoch at exactly 0.",
        why="a first epoch at lr 0 updates nothing (AdamW's decay is scaled by lr too).",
        effect="the official run trains one epoch less (1 of 50; ShanghaiTech 1 of 100); "
               "not measured.",
        flag='lr_schedule="per_epoch"'),
    Difference(
        what="The reversible axial transformer runs its two-stream coupling with ordinary "
             "autograd instead of the reversible backward pass.",
        why="simpler code, no custom autograd function.",
        effect="none on outputs (the temporal model matches the official computation to "
               "1e-5 at depth 1 and 2, tests/test_anomalyclip.py); more activation memory "
               "in training."),
    Difference(
        what="Prompts are built for the anomaly classes only; the official code also encodes "
             "a Normal prompt and drops its row before use.",
        why="the Normal row never reaches the loss, so it is wasted work.",
        effect="none: identical directions (its context row never gets a gradient); the "
               "release converter drops that row."),
    Difference(
        what="A video's class is the class with the largest summed p(c) over its frames "
             "(threshold-free); the official rule predicts Normal for frames below a score "
             "threshold chosen by Youden's J on the test ROC and reports per-frame top-1/5.",
        why="a threshold tuned on the test labels leaks them into the reported numbers.",
        effect="the official numbers are optimistic by an unmeasured margin; evaluate() "
               "reports both: top1_video / top5_video (ours) and paper_top1_frame / "
               "paper_top5_frame with paper_threshold (the official rule, tuned on test).",
        flag="Evaluation.paper_top1_frame"),
    Difference(
        what="The NLL takes log(max(p, 1e-8)); the official takes log(p).",
        why="a probability that underflows to 0 would give an infinite loss.",
        effect="none unless a probability falls below 1e-8."),
    Difference(
        what="Features vadnb extracts come from vadnb's video reader and open_clip's OpenAI "
             "ViT-B/16 with its preprocessing; the release's come from OpenAI's clip package "
             "on the authors' extracted frames.",
        why="one video pipeline for the whole suite.",
        effect="same weights and scale (raw visual output); resizing and decoding may differ "
               "slightly: not measured. Released features load with load_features / "
               "release_benchmark."),
    Difference(
        what="feature_stride > 1 embeds every k-th frame and repeats scores back; the "
             "official configs embed every frame (stride 1, the default here).",
        why="a CPU or a T4 can then afford the lesson.",
        effect="coarser scores; not measured on a benchmark.",
        flag="feature_stride=1"),
    Difference(
        what="Segment offsets and dropout masks are drawn from one numpy Generator seeded by "
             "Config.seed (the official uses numpy's global state and torch.bernoulli).",
        why="a run is reproducible from its Config.",
        effect="same distributions, different draws."),
    Difference(
        what="run() adds a table of 16-frame segments (mean score, most probable class) to "
             "the per-frame output for the explorer.",
        why="the explorer and Detection show intervals.",
        effect="none on frame scores or metrics."),
]

# =========================================================================== features


def _clip_label(clip: Any) -> str:
    return str(getattr(clip, "name", type(clip).__name__))


def feature_scale(features: np.ndarray) -> str:
    """``"unit"`` when every row has norm 1 (L2-normalised features), else ``"raw"``.

    AnomalyCLIP works on the *raw* output of CLIP's visual encoder (norms far from 1 for
    ViT-B/16); its released features and checkpoints are on that scale.
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected features [T, D] with T > 0, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1)
    return "unit" if np.all(np.abs(norms - 1.0) < 1e-3) else "raw"


def check_feature_scale(features: np.ndarray, expected: str | None, source: str) -> str:
    """Raise a ValueError naming ``source`` when the features' scale is not ``expected``
    (``None`` checks nothing); return the scale found."""
    found = feature_scale(features)
    if expected and found != expected:
        norm = float(np.linalg.norm(np.asarray(features, np.float32), axis=1).mean())
        hint = ("they look L2-normalised (every row has norm 1); AnomalyCLIP uses the raw "
                "visual-encoder output: re-extract with vadnb.anomalyclip.extract_features"
                if found == "unit" else
                "they are raw features but the model was trained on L2-normalised ones")
        raise ValueError(f"{source}: features on the wrong scale for this model (mean row norm "
                         f"{norm:.3g}, model expects {expected!r} features): {hint}")
    return found


def _raw_encoder(clip: Any):
    """A function images -> raw CLIP image features [N, D] (never normalised), or None when
    the backend exposes only normalised features."""
    raw = getattr(clip, "encode_image_raw", None)
    if callable(raw):
        return raw
    model, preprocess = getattr(clip, "model", None), getattr(clip, "preprocess", None)
    if model is None or preprocess is None or not hasattr(model, "encode_image"):
        return None

    def encode(images: Sequence[Any]) -> np.ndarray:
        from PIL import Image

        from .models.base import as_uint8_rgb

        images = list(images)
        device = getattr(clip, "device", "cpu")
        dtype = getattr(clip, "dtype", None) or next(model.parameters()).dtype
        size = int(getattr(clip, "batch_size", 64) or 64)
        counter = clip._count(len(images)) if hasattr(clip, "_count") else nullcontext()
        out = []
        with counter, torch.inference_mode():
            for i in range(0, len(images), size):
                x = torch.stack([preprocess(Image.fromarray(as_uint8_rgb(im)))
                                 for im in images[i:i + size]])
                out.append(model.encode_image(x.to(device, dtype)).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    return encode


def extract_features(video: str | os.PathLike, clip: Any, stride: int = 1, cache: Any = None,
                     batch_frames: int = 32, progress: bool = True) -> np.ndarray:
    """Raw CLIP image features of every ``stride``-th frame of ``video``: float32 ``[ceil(N/stride), D]``.

    Raw means the visual encoder's output as the official code uses it (never
    L2-normalised); a backend that only gives normalised features (a scripted double
    without ``encode_image_raw``) gives those, and :func:`feature_scale` tells them apart.
    Cached under ``anomalyclip.features`` by the video's content digest, the clip backend's
    name and the stride, so a second call makes no model calls.
    """
    from .cache import file_digest, get_cache
    from .video import iter_frames, probe

    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    cache = get_cache(cache)
    encode = _raw_encoder(clip)
    parts = {"video": file_digest(video), "model": _clip_label(clip), "stride": int(stride),
             "scale": "raw" if encode is not None else "backend"}

    def compute() -> np.ndarray:
        from .progress import bar as progress_bar

        fn = encode or (lambda images: clip.encode_image(images))
        info = probe(video)
        indices = np.arange(0, info.num_frames, stride)
        out = []
        with progress_bar(total=len(indices), desc=f"CLIP features {Path(video).name}",
                          disable=not progress or len(indices) <= batch_frames) as bar:
            for frames in iter_frames(video, indices=indices, chunk=batch_frames):
                out.append(np.asarray(fn(list(frames.images)), dtype=np.float32))
                bar.update(len(frames))
        return np.concatenate(out).astype(np.float32)

    return np.asarray(cache.memo("anomalyclip.features", parts, compute), dtype=np.float32)


def load_features(npy_root: str | os.PathLike, list_file: str | os.PathLike | None = None,
                  ncrops: int = 1, crop: int = 0) -> dict[str, np.ndarray]:
    """Read pre-extracted per-video features laid out as the AnomalyCLIP release ships them.

    The release has one ``.npy`` per video under ``npy_root``, in per-class folders
    (``Abuse/Abuse001_x264.npy``), each ``[T * ncrops, 512]``: one row per frame (rows of the
    same frame's crops adjacent), raw CLIP ViT-B/16 outputs. Its list files
    (``Anomaly_Train_Abnormal.txt``, ...) name one video per line as
    ``<folder>/<video> <start> <end> <label id>``. A file whose rows all have norm 1 (not the
    release's scale) gets a warning naming it.

    Args:
        npy_root: folder holding the features.
        list_file: read only the videos it lists (first column, ``.npy`` added); default:
            every ``.npy`` under ``npy_root``.
        ncrops, crop: crops per frame in the files and the one to keep.

    Returns:
        dict video name (file stem) -> float32 ``[T, D]``.
    """
    import warnings

    root = Path(npy_root)
    if not root.is_dir():
        raise FileNotFoundError(f"feature folder not found: {root}; download the pre-extracted "
                                "features (see the AnomalyCLIP README) and unpack them there")
    if not 0 <= crop < ncrops:
        raise ValueError(f"crop must be in [0, {ncrops}), got {crop}")
    if list_file is not None:
        rel = [line.split()[0] for line in Path(list_file).read_text().splitlines() if line.strip()]
        paths = [root / (r if r.endswith(".npy") else r + ".npy") for r in rel]
    else:
        paths = sorted(root.rglob("*.npy"))
    if not paths:
        raise FileNotFoundError(f"no .npy feature files under {root}")
    out: dict[str, np.ndarray] = {}
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p} is listed in {list_file} but missing under {root}")
        arr = np.load(p, allow_pickle=False)
        if arr.ndim != 2 or arr.shape[0] % ncrops or arr.shape[0] == 0:
            raise ValueError(f"{p}: expected [frames * {ncrops}, D] features, got shape {arr.shape}")
        feats = np.ascontiguousarray(arr.reshape(-1, ncrops, arr.shape[1])[:, crop],
                                     dtype=np.float32)
        if feature_scale(feats) == "unit":
            warnings.warn(f"{p}: every row has norm 1 (L2-normalised), but AnomalyCLIP's released "
                          "features and checkpoints are raw CLIP outputs; a released checkpoint "
                          "will refuse these features", stacklevel=2)
        out[p.stem] = feats
    return out


def normal_centroid(features: Mapping[str, np.ndarray], labels: Mapping[str, str]) -> np.ndarray:
    """Mean feature over every frame of the normal videos (label ``"Normal"``)."""
    normal = [np.asarray(features[v], dtype=np.float64) for v in features if labels[v] == NORMAL]
    if not normal:
        raise ValueError("no normal videos to compute the normal centroid from; the training "
                         "split needs videos labelled 'Normal'")
    total = sum(f.sum(0) for f in normal)
    return (total / sum(len(f) for f in normal)).astype(np.float32)


# =========================================================================== sampling


def sample_training_indices(num_frames: int, num_segments: int = 32, seg_length: int = 16,
                            rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices ``[num_segments * seg_length]`` of one training sample of a video.

    As the original: segment ``i`` starts at ``i * spacing + offset`` (offset drawn
    uniformly from ``0 .. spacing - seg_length + 1``, 0 for short videos) and takes
    ``seg_length`` consecutive frames, indices wrapping around the video's end. ``spacing``
    spreads the segments over the video; a video shorter than one grid is treated as if it
    were one grid long (so its frames repeat).
    """
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    rng = rng or np.random.default_rng()
    length = max(num_frames, num_segments * seg_length)
    spacing = (length - seg_length + 1) // num_segments
    offsets = rng.integers(0, max(spacing - seg_length + 2, 1), size=num_segments)
    starts = np.arange(num_segments) * spacing + offsets
    return ((starts[:, None] + np.arange(seg_length)[None, :]) % num_frames).reshape(-1)


def pad_wraparound(num_frames: int, multiple: int) -> np.ndarray:
    """Indices ``0 .. num_frames-1`` followed by the video's start again, up to a multiple.

    Test-time padding: 700 frames with ``multiple=512`` -> 1024 indices, the last 324 being
    frames 0..323.
    """
    padded = math.ceil(num_frames / multiple) * multiple
    return np.arange(padded) % num_frames


# =========================================================================== model parts


class PromptLearner(nn.Module):
    """CoOp: ``n_ctx`` learnable token embeddings per class before the class name,
    through CLIP's text transformer; returns one text feature per class ``[C, D]``.

    The frozen parts of CLIP's text tower are copied (so fine-tuning the text projection
    never changes the shared clip backend) and excluded from checkpoints.
    """

    def __init__(self, clip_model: Any, tokenizer: Any, class_names: Sequence[str],
                 n_ctx: int = 8, train_text_projection: bool = True):
        super().__init__()
        names = [c.replace("_", " ") for c in class_names]
        width = clip_model.ln_final.weight.shape[0]
        ctx = torch.empty(len(names), n_ctx, width)
        nn.init.normal_(ctx, std=0.02)
        self.ctx = nn.Parameter(ctx)
        prompts = [" ".join(["X"] * n_ctx) + " " + n + "." for n in names]
        tokens = tokenizer(prompts)
        tokens = torch.as_tensor(tokens, dtype=torch.long)
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
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        proj = clip_model.text_projection
        if isinstance(proj, nn.Linear):
            proj = proj.weight.T
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
    """Layer norm over the channels with ``eps`` added to the standard deviation (not inside
    the square root), as the feed-forward blocks of the official axial transformer."""

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
    """Frame features ``[B, S, L, D]`` -> anomaly scores ``[B, S, L]`` in (0, 1).

    Linear D -> E; a learned axial positional embedding (one vector per segment plus
    one per frame position, summed); then the official reversible axial transformer's
    two-stream coupling, both streams carried through all ``depth`` layers and averaged
    once at the end::

        a = b = x
        for each layer:
            a = a + attention_along_segments(b);  b = b + attention_along_frames(a)
            a = a + feed_forward_1(b);            b = b + feed_forward_2(a)
        x = (a + b) / 2

    then LayerNorm -> Linear(E, 1) -> sigmoid.
    """

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
        x = self.projection(x) + self.pos_segments + self.pos_frames
        a = b = x
        for attn_seg, attn_frame, ff1, ff2 in self.layers:
            a = a + attn_seg(b)
            b = b + attn_frame(a)
            a = a + ff1(b)
            b = b + ff2(a)
        x = (a + b) / 2
        return torch.sigmoid(self.head(self.head_norm(x))).squeeze(-1)


def class_directions(text_features: Any, centroid: Any) -> Any:
    """One unit direction per class ``[C, D]``: each class's text feature minus the normal
    centroid, normalised (the official selector's re-centring of the text side)."""
    text = text_features - centroid
    return text / text.norm(dim=-1, keepdim=True)


class AnomalyCLIP(nn.Module):
    """The whole trainable model: prompts -> class directions, BatchNorm'ed projections,
    temporal model. ``forward(features [B, S*L, D]) -> (likelihoods [B, S*L, C], scores [B, S*L])``.
    """

    def __init__(self, clip_model: Any, tokenizer: Any, class_names: Sequence[str],
                 centroid: np.ndarray, config: Config):
        super().__init__()
        self.config = config
        self.class_names = [c for c in class_names if c != NORMAL]
        if not self.class_names:
            raise ValueError("AnomalyCLIP needs at least one anomaly class")
        self.clip_name = ""
        self.profile = "custom"
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

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def directions(self) -> Any:
        """One unit vector per anomaly class ``[C, D]``: text feature minus centroid, normalised."""
        return class_directions(self.prompts(), self.centroid)

    def likelihoods(self, centred: Any, directions: Any | None = None) -> Any:
        """BatchNorm'ed projections of re-centred features ``[..., D]`` -> ``[..., C]``."""
        d = self.directions() if directions is None else directions
        proj = centred @ d.T
        shape = proj.shape
        return self.norm(proj.reshape(-1, shape[-1])).reshape(shape)

    def forward(self, features: Any) -> tuple[Any, Any]:
        b, t, dim = features.shape
        cfg = self.config
        centred = features - self.centroid
        logits = self.likelihoods(centred)
        grid = self.temporal_input(centred, logits).reshape(b, cfg.num_segments, cfg.seg_length, -1)
        scores = self.temporal(grid).reshape(b, t)
        return logits, scores

    def temporal_input(self, centred: Any, logits: Any) -> Any:
        """What the temporal model reads per frame: the re-centred feature, preceded by the
        class likelihoods when ``concat_features`` (ShanghaiTech)."""
        return torch.cat([logits, centred], dim=-1) if self.config.concat_features else centred


# =========================================================================== MIL + loss


def select_segments(logits: Any, labels: Any, num_segments: int, seg_length: int,
                    top_k: int = 3, bottom_k: int = 3, keep: Any = None) -> tuple[Any, Any]:
    """Multiple-instance selection of segments.

    Args:
        logits: per-frame likelihoods ``[B, S*L, C]``.
        labels: ``[B]`` class index of each video, ``-1`` for normal videos.
        keep: ``[B, S]`` bool, the segments that survive dropout (None: all).

    Returns:
        ``(top [B, top_k], bottom [B, bottom_k])`` segment indices. Abnormal videos rank
        their segments by the summed likelihood of their own class; normal videos by the
        summed likelihood of all classes (their ``bottom`` row is ranked the same way and
        unused by the loss). Dropped segments are never picked while enough remain.
    """
    b, t, c = logits.shape
    seg = logits.detach().reshape(b, num_segments, seg_length, c).sum(2)  # [B, S, C]
    labels = torch.as_tensor(labels, device=logits.device).long()
    abnormal = labels >= 0
    own = seg.gather(2, labels.clamp(min=0).view(b, 1, 1).expand(b, num_segments, 1)).squeeze(2)
    rank = torch.where(abnormal[:, None], own, seg.sum(2))  # [B, S]
    if keep is None:
        keep = torch.ones(b, num_segments, dtype=torch.bool, device=logits.device)
    keep = torch.as_tensor(keep, device=logits.device).bool()
    top = torch.where(keep, rank, torch.full_like(rank, -1e6)).topk(top_k, dim=1).indices
    bottom = torch.where(keep, rank, torch.full_like(rank, 1e6)).topk(bottom_k, dim=1,
                                                                      largest=False).indices
    return top, bottom


def _gather_segments(x: Any, idx: Any, num_segments: int, seg_length: int) -> Any:
    """Frames of the chosen segments: ``x [B, S*L, ...]``, ``idx [B, k]`` -> ``[B, k*L, ...]``."""
    b = x.shape[0]
    rest = x.shape[2:]
    grid = x.reshape(b, num_segments, seg_length, *rest)
    index = idx.view(b, -1, *([1] * (1 + len(rest)))).expand(-1, -1, seg_length, *rest)
    return grid.gather(1, index).reshape(b, -1, *rest)


def anomalyclip_loss(logits: Any, scores: Any, labels: Any, top: Any, bottom: Any,
                     num_segments: int, seg_length: int, lambda_smooth: float = 8e-4,
                     lambda_sparse: float = 8e-3, eps: float = 1e-8,
                     smooth_within_videos: bool = True) -> dict[str, Any]:
    """AnomalyCLIP's loss on one batch; returns every term and their ``total``.

    Args:
        logits: BatchNorm'ed likelihoods ``[B, S*L, C]``; scores: ``[B, S*L]`` in (0, 1);
        labels: ``[B]`` class index, ``-1`` = normal video; top / bottom: from
        :func:`select_segments`.

    Terms (A = abnormal videos, N = normal videos, frames of the selected segments):

    - ``projection_topk``: ``-mean`` of the true-class likelihood over A's top-k frames;
    - ``projection_normal``: ``mean`` over all of N's frames of the largest likelihood;
    - ``nll_topk_abnormal`` / ``nll_bottomk_abnormal`` / ``nll_topk_normal``: mean negative
      log-probability of the true class / of normal / of normal, with
      ``p(c) = softmax(likelihoods)_c * score`` and ``p(normal) = 1 - score``; ``nll`` = their sum;
    - ``smoothness``: ``lambda_smooth * sum`` over A of squared differences of consecutive
      scores (``smooth_within_videos=False``: of A's scores flattened into one sequence, as
      the official code, so the step from one video's end to the next one's start counts);
    - ``sparsity``: ``lambda_sparse * mean`` of A's scores.
    """
    labels = torch.as_tensor(labels, device=logits.device).long()
    abn = labels >= 0
    nor = ~abn
    if not abn.any() or not nor.any():
        raise ValueError("a training batch needs both abnormal and normal videos")
    S, L = num_segments, seg_length
    a_logits, a_scores, a_labels = logits[abn], scores[abn], labels[abn]
    n_logits, n_scores = logits[nor], scores[nor]

    # likelihood terms
    a_top = _gather_segments(a_logits, top[abn], S, L)  # [A, k*L, C]
    true_top = a_top.gather(2, a_labels.view(-1, 1, 1).expand(-1, a_top.shape[1], 1))
    projection_topk = -true_top.mean()
    projection_normal = n_logits.max(dim=2).values.mean()

    # NLL on the joint class probabilities
    def log_probs(lg: Any, sc: Any) -> Any:
        log_class = torch.log_softmax(lg, dim=-1) + torch.log(sc.clamp_min(eps)).unsqueeze(-1)
        log_normal = torch.log((1 - sc).clamp_min(eps)).unsqueeze(-1)
        return torch.cat([log_class, log_normal], dim=-1)  # normal is the last column

    c = logits.shape[-1]
    lp_a_top = log_probs(a_top, _gather_segments(a_scores, top[abn], S, L))
    nll_topk_abnormal = -lp_a_top.gather(
        2, a_labels.view(-1, 1, 1).expand(-1, lp_a_top.shape[1], 1)).mean()
    lp_a_bottom = log_probs(_gather_segments(a_logits, bottom[abn], S, L),
                            _gather_segments(a_scores, bottom[abn], S, L))
    nll_bottomk_abnormal = -lp_a_bottom[..., c].mean()
    lp_n_top = log_probs(_gather_segments(n_logits, top[nor], S, L),
                         _gather_segments(n_scores, top[nor], S, L))
    nll_topk_normal = -lp_n_top[..., c].mean()
    nll = nll_topk_abnormal + nll_bottomk_abnormal + nll_topk_normal

    # temporal priors on abnormal videos' scores
    seq = a_scores if smooth_within_videos else a_scores.reshape(1, -1)
    smoothness = lambda_smooth * ((seq[:, 1:] - seq[:, :-1]) ** 2).sum()
    sparsity = lambda_sparse * a_scores.mean()

    total = projection_topk + projection_normal + nll + smoothness + sparsity
    return {"projection_topk": projection_topk, "projection_normal": projection_normal,
            "nll_topk_abnormal": nll_topk_abnormal, "nll_bottomk_abnormal": nll_bottomk_abnormal,
            "nll_topk_normal": nll_topk_normal, "nll": nll, "smoothness": smoothness,
            "sparsity": sparsity, "total": total}


LOSS_TERMS = ("projection_topk", "projection_normal", "nll", "smoothness", "sparsity")


# =========================================================================== training


def _warmup_cosine(warmup_steps: int, total_steps: int):
    """Learning-rate factor per step: linear warm-up (from ``1 / warmup_steps``), then
    cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _warmup_cosine_per_epoch(warmup_epochs: float, epochs: int, steps_per_epoch: int):
    """The official schedule as a per-step factor: constant within an epoch; epoch ``e``
    runs at ``e / warmup_epochs`` during warm-up (so epoch 0 at 0), then a cosine."""

    def factor(step: int) -> float:
        epoch = step // steps_per_epoch
        if epoch < warmup_epochs:
            return epoch / warmup_epochs
        progress = (epoch - warmup_epochs) / max(1e-12, epochs - warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _clip_parts(clip: Any) -> tuple[Any, Any]:
    model = getattr(clip, "model", None)
    tokenizer = getattr(clip, "tokenizer", None)
    if model is None or tokenizer is None or not hasattr(model, "token_embedding"):
        raise TypeError(
            f"AnomalyCLIP learns prompts through CLIP's text encoder, so the clip backend must "
            f"expose .model (an open_clip CLIP) and .tokenizer; {_clip_label(clip)!r} does not. "
            "Load one with vadnb.models.load('clip', profile=...)")
    return model, tokenizer


def fit(features: Mapping[str, np.ndarray], labels: Mapping[str, str], clip: Any,
        config: Config | None = None, class_names: Sequence[str] | None = None,
        progress: bool = True, **overrides: Any) -> tuple[Any, pd.DataFrame]:
    """Train AnomalyCLIP on per-video features with video-level labels.

    Args:
        features: video name -> ``[T, D]`` frame features (strided if ``feature_stride > 1``).
        labels: video name -> ``"Normal"`` or the anomaly class name.
        clip: the clip backend the features came from (its text tower learns the prompts).
        class_names: anomaly classes in order (default: sorted classes found in ``labels``).

    Returns:
        ``(model, curves)``: the trained :class:`AnomalyCLIP` (in eval mode) and one row per
        step: epoch, step, each loss term, total, lr.
    """
    from tqdm.auto import tqdm

    from .models.base import pick_device

    cfg = configure(Config, config, overrides, "AnomalyCLIP")
    names = [v for v in features]
    missing = [v for v in names if v not in labels]
    if missing:
        raise KeyError(f"no label for video(s) {missing[:5]}")
    classes = list(class_names) if class_names else sorted({labels[v] for v in names} - {NORMAL})
    classes = [c for c in classes if c != NORMAL]
    unknown = sorted({labels[v] for v in names} - set(classes) - {NORMAL})
    if unknown:
        raise ValueError(f"labels {unknown} are not among class_names {classes}")
    abnormal = [v for v in names if labels[v] != NORMAL]
    normal = [v for v in names if labels[v] == NORMAL]
    if not abnormal or not normal:
        raise ValueError(f"training needs abnormal and normal videos; got {len(abnormal)} "
                         f"abnormal and {len(normal)} normal")

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    clip_model, tokenizer = _clip_parts(clip)
    centroid = normal_centroid(features, labels)
    model = AnomalyCLIP(clip_model, tokenizer, classes, centroid, cfg).to(device)
    model.clip_name = _clip_label(clip)
    model.profile = str(getattr(clip, "profile", "custom"))
    scales = {feature_scale(features[v]) for v in names}
    if len(scales) > 1:
        raise ValueError("the training features mix L2-normalised and raw videos: "
                         + ", ".join(f"{v} ({feature_scale(features[v])})" for v in names[:6]))
    model.feature_scale = scales.pop()

    half = cfg.batch_size // 2
    per_group = min(half, max(len(abnormal), len(normal)))
    steps_per_epoch = math.ceil(max(len(abnormal), len(normal)) / per_group)
    total_steps = steps_per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.lr_schedule == "per_epoch":
        schedule = _warmup_cosine_per_epoch(cfg.warmup_epochs, cfg.epochs, steps_per_epoch)
    else:
        schedule = _warmup_cosine(int(round(cfg.warmup_epochs * steps_per_epoch)), total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    class_index = {c: i for i, c in enumerate(classes)}

    def cycle(group: list[str], n: int) -> list[str]:
        order = []
        while len(order) < n:
            order += [group[i] for i in rng.permutation(len(group))]
        return order[:n]

    rows = []
    model.train()
    bar = tqdm(total=total_steps, desc="AnomalyCLIP training", disable=not progress)
    step = 0
    for epoch in range(cfg.epochs):
        a_order = cycle(abnormal, steps_per_epoch * per_group)
        n_order = cycle(normal, steps_per_epoch * per_group)
        for s in range(steps_per_epoch):
            batch = a_order[s * per_group:(s + 1) * per_group] + n_order[s * per_group:(s + 1) * per_group]
            x = np.stack([features[v][sample_training_indices(len(features[v]), cfg.num_segments,
                                                              cfg.seg_length, rng)] for v in batch])
            y = torch.tensor([class_index[labels[v]] if labels[v] != NORMAL else -1 for v in batch],
                             device=device)
            keep = torch.from_numpy(rng.random((len(batch), cfg.num_segments)) >= cfg.segment_dropout)
            logits, scores = model(torch.from_numpy(x).to(device))
            top, bottom = select_segments(logits, y, cfg.num_segments, cfg.seg_length,
                                          cfg.top_k, cfg.bottom_k, keep.to(device))
            terms = anomalyclip_loss(logits, scores, y, top, bottom, cfg.num_segments,
                                     cfg.seg_length, cfg.lambda_smooth, cfg.lambda_sparse,
                                     smooth_within_videos=cfg.smooth_within_videos)
            optimizer.zero_grad()
            terms["total"].backward()
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            rows.append({"epoch": epoch, "step": step, **{k: float(v.detach()) for k, v in terms.items()},
                         "lr": lr})
            bar.set_postfix(loss=f"{rows[-1]['total']:.3f}")
            bar.update(1)
            step += 1
    bar.close()
    model.eval()
    return model, pd.DataFrame(rows)


# =========================================================================== inference


def predict(model: Any, features: np.ndarray, stride: int = 1,
            num_frames: int | None = None, source: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Score one video's features ``[T, D]``.

    The features are padded by wrap-around to a multiple of the 32 x 16 grid; a video of
    ``g`` grids is cut into 32 blocks of ``g * 16`` frames and grid ``j`` takes the ``j``-th
    16 frames of every block, so each grid spans the whole video (as the original).

    Returns:
        ``(scores [N], class_probs [N, C+1])`` per frame, ``N = num_frames`` (default
        ``T * stride``); ``class_probs`` columns are ``model.class_names`` then ``"Normal"``:
        ``p(c) = softmax(likelihoods)_c * score``, ``p(normal) = 1 - score``.

    Raises:
        ValueError: naming ``source``, when the features are not on the scale the model
            was trained on (L2-normalised features given to a model of raw features).
    """
    cfg = model.config
    feats = np.asarray(features, dtype=np.float32)
    if feats.ndim != 2 or len(feats) == 0:
        raise ValueError(f"{source}: expected features [T, D] with T > 0, got shape {feats.shape}")
    check_feature_scale(feats, getattr(model, "feature_scale", None), source)
    t = len(feats)
    idx = pad_wraparound(t, cfg.grid)
    grids = len(idx) // cfg.grid
    device = model.centroid.device
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(feats[idx]).to(device)  # [g*S*L, D]
        centred = x - model.centroid
        logits = model.likelihoods(centred)
        grid = model.temporal_input(centred, logits)
        grid = grid.reshape(cfg.num_segments, grids, cfg.seg_length, -1).transpose(0, 1)
        scores = model.temporal(grid).transpose(0, 1).reshape(-1)  # back to frame order
        cond = torch.softmax(logits, dim=-1)
        probs = torch.cat([cond * scores[:, None], (1 - scores)[:, None]], dim=1)
    scores = scores[:t].cpu().numpy().astype(np.float32)
    probs = probs[:t].cpu().numpy().astype(np.float32)
    n = t * stride if num_frames is None else int(num_frames)
    scores = np.repeat(scores, stride)
    probs = np.repeat(probs, stride, axis=0)
    if len(scores) < n:  # the last strided feature stands for the rest
        scores = np.concatenate([scores, np.full(n - len(scores), scores[-1])])
        probs = np.concatenate([probs, np.repeat(probs[-1:], n - len(probs), axis=0)])
    return scores[:n], probs[:n]


def _segments_table(scores: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                    fps: float, seg_length: int = 16) -> pd.DataFrame:
    cols = list(class_names) + [NORMAL]
    rows = []
    n = len(scores)
    for start in range(0, n, seg_length):
        end = min(start + seg_length, n)
        p = probs[start:end].mean(0)
        best = int(np.argmax(p))
        centre = (start + end - 1) // 2
        row = {"start_frame": start, "end_frame": end, "centre_frame": centre,
               "time_s": centre / fps if fps > 0 else float("nan"),
               "score": float(scores[start:end].mean()), "predicted_class": cols[best]}
        row.update({f"p_{c}": float(v) for c, v in zip(cols, p)})
        row["explanation"] = f"{cols[best]} (p={p[best]:.2f})"
        rows.append(row)
    return pd.DataFrame(rows)


# =========================================================================== figures


def latent_space(model: Any, features: Mapping[str, np.ndarray],
                 frame_labels: Mapping[str, np.ndarray], video_classes: Mapping[str, str],
                 max_points: int = 4000, seed: int = 0) -> dict[str, Any]:
    """AnomalyCLIP's latent space in 2-D: a PCA of the re-centred frame features.

    Returns ``points`` (DataFrame: x, y, video, kind = "Normal" or the video's class for
    anomalous frames), ``centroid`` (the normal centroid's 2-D position: the origin of the
    re-centred space) and ``directions`` (class -> the class's unit direction projected on
    the plane: its length, at most 1, says how much of the direction the plane shows).
    """
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    rows, xs = [], []
    stride = model.config.feature_stride
    for v, f in features.items():
        y = np.asarray(frame_labels[v])[::stride][:len(f)]
        y = np.pad(y, (0, len(f) - len(y)), mode="edge") if len(y) < len(f) else y
        xs.append(np.asarray(f, np.float32) - model.centroid.cpu().numpy())
        rows.append(pd.DataFrame({"video": v, "kind": np.where(y > 0, video_classes[v], NORMAL)}))
    x = np.concatenate(xs)
    meta = pd.concat(rows, ignore_index=True)
    if len(x) > max_points:
        keep = np.sort(rng.choice(len(x), max_points, replace=False))
        x, meta = x[keep], meta.iloc[keep].reset_index(drop=True)
    pca = PCA(n_components=2, random_state=seed).fit(x)
    xy = pca.transform(x)
    with torch.no_grad():
        d = model.directions().cpu().numpy()
    d2 = d @ pca.components_.T  # length < 1: the part of the direction lying in this plane
    meta["x"], meta["y"] = xy[:, 0], xy[:, 1]
    return {"points": meta, "centroid": pca.transform(np.zeros((1, x.shape[1])))[0],
            "directions": dict(zip(model.class_names, d2)),
            "explained_variance": pca.explained_variance_ratio_.tolist()}


def direction_separation(model: Any, features: Mapping[str, np.ndarray],
                         frame_labels: Mapping[str, np.ndarray],
                         video_classes: Mapping[str, str]) -> pd.DataFrame:
    """How far each class's anomalous frames lie from normal frames along its direction.

    For class ``c``: project every re-centred frame on ``d_c``; ``separation`` is the gap
    between the mean projection of the anomalous frames of c's videos and that of all
    normal frames, in standard deviations of the normal frames (large = apart, ~0 = mixed).
    """
    stride = model.config.feature_stride
    with torch.no_grad():
        d = model.directions().cpu().numpy()
    centroid = model.centroid.cpu().numpy()
    normal, odd = [], {c: [] for c in model.class_names}
    for v, f in features.items():
        y = np.asarray(frame_labels[v])[::stride][:len(f)]
        y = np.pad(y, (0, len(f) - len(y)), mode="edge") if len(y) < len(f) else y
        proj = (np.asarray(f, np.float32) - centroid) @ d.T
        normal.append(proj[y == 0])
        if video_classes[v] in odd:
            odd[video_classes[v]].append(proj[y > 0, model.class_names.index(video_classes[v])])
    normal_proj = np.concatenate(normal)
    rows = []
    for i, c in enumerate(model.class_names):
        x = np.concatenate(odd[c]) if odd[c] else np.zeros(0)
        spread = float(normal_proj[:, i].std()) or 1.0
        rows.append({"class": c, "anomalous_frames": len(x),
                     "separation": float((x.mean() - normal_proj[:, i].mean()) / spread)
                     if len(x) else float("nan")})
    return pd.DataFrame(rows)


def describe_separation(table: pd.DataFrame, apart: float = 2.0) -> str:
    """One computed sentence per class of :func:`direction_separation` (Markdown)."""
    lines = []
    for row in table.to_dict(orient="records"):
        name = row["class"]
        if not row["anomalous_frames"]:
            lines.append(f"- **{name}**: no anomalous frame in these videos.")
            continue
        sep = row["separation"]
        verdict = ("apart from" if sep >= apart else
                   "somewhat apart from" if sep >= apart / 2 else "mixed with")
        lines.append(f"- **{name}**: its {row['anomalous_frames']} anomalous frames lie "
                     f"{sep:+.1f} normal-frame standard deviations along its direction: "
                     f"{verdict} normal frames.")
    return "\n".join(lines)


def plot_latent_space(space: Mapping[str, Any], title: str = "", warning: str = ""):
    """Scatter of :func:`latent_space`: normal frames grey, anomalous frames coloured by
    class, the centroid as a black cross and one arrow per class direction (an arrow is
    short when its direction points mostly out of the plane)."""
    import matplotlib.pyplot as plt

    pts = space["points"]
    fig, ax = plt.subplots(figsize=(7, 6))
    normal = pts[pts["kind"] == NORMAL]
    ax.scatter(normal["x"], normal["y"], s=5, c="0.75", label="normal frames")
    colours = plt.get_cmap("tab10")
    cx, cy = space["centroid"]
    span = float(np.abs(pts[["x", "y"]].to_numpy() - [cx, cy]).max()) or 1.0
    for i, (cls, (dx, dy)) in enumerate(space["directions"].items()):
        colour = colours(i % 10)
        frames = pts[pts["kind"] == cls]
        if len(frames):
            ax.scatter(frames["x"], frames["y"], s=9, color=colour, label=f"{cls} frames")
        tip = (cx + span * dx, cy + span * dy)
        ax.annotate("", xy=tip, xytext=(cx, cy),
                    arrowprops={"arrowstyle": "->", "color": colour, "lw": 2})
        ax.text(*tip, f" {cls}", color=colour, fontsize=9)
        ax.update_datalim([tip])
    ax.scatter([cx], [cy], marker="X", s=90, c="k", label="normal centroid", zorder=5)
    ax.autoscale_view()
    var = space.get("explained_variance", [0, 0])
    ax.set_xlabel(f"PC 1 ({100 * var[0]:.0f} % of variance)")
    ax.set_ylabel(f"PC 2 ({100 * var[1]:.0f} % of variance)")
    ax.set_title(title or "Re-centred CLIP frame features and learned class directions")
    ax.legend(loc="best", fontsize=8)
    if warning:
        fig.text(0.5, 0.01, warning, ha="center", color="crimson", fontsize=8, wrap=True)
    fig.tight_layout()
    return fig


def plot_loss_curves(curves: pd.DataFrame, warning: str = ""):
    """One panel per loss term (and the total, and the learning rate) against the step."""
    import matplotlib.pyplot as plt

    terms = [*LOSS_TERMS, "total", "lr"]
    fig, axes = plt.subplots(2, 4, figsize=(13, 5.5), sharex=True)
    for ax, term in zip(axes.ravel(), terms):
        ax.plot(curves["step"], curves[term], lw=1)
        ax.set_title(term, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(terms):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    if warning:
        fig.suptitle(warning, color="crimson", fontsize=9)
    fig.tight_layout()
    return fig


# =========================================================================== checkpoints


def _checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix != ".safetensors":
        p = p.with_suffix(p.suffix + ".safetensors") if p.suffix else p.with_suffix(".safetensors")
    return p, p.with_suffix(".json")


def save_checkpoint(model: Any, path: str | os.PathLike) -> Path:
    """Write the trained weights as safetensors plus ``<name>.json`` (config, classes, clip).

    CLIP's frozen text tower is not saved: it is rebuilt from the same clip model on load.
    """
    from safetensors.torch import save_file

    weights, meta_path = _checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if ".frozen." not in f".{k}"}
    save_file(state, str(weights))
    # the device is not part of the recipe: a model trained on a GPU loads on a CPU too
    meta = {"method": "anomalyclip", "config": asdict(replace(model.config, device=None)),
            "class_names": list(model.class_names), "clip_model": model.clip_name,
            "profile": model.profile, "feature_dim": int(model.centroid.shape[0]),
            "feature_scale": getattr(model, "feature_scale", None)}
    meta_path.write_text(json.dumps(meta, indent=2))
    return weights


def load_checkpoint(path: str | os.PathLike, clip: Any = None, profile: str | None = None,
                    device: str | None = None) -> Any:
    """Load a model saved by :func:`save_checkpoint` (no pickle: safetensors + JSON).

    ``clip`` must be the same clip model the checkpoint was trained with (default: load the
    clip role for the checkpoint's profile).
    """
    from safetensors.torch import load_file

    from .models.base import pick_device

    weights, meta_path = _checkpoint_paths(path)
    if not weights.exists() or not meta_path.exists():
        raise FileNotFoundError(f"AnomalyCLIP checkpoint not found: need {weights} and {meta_path} "
                                "(written by vadnb.anomalyclip.save_checkpoint)")
    meta = json.loads(meta_path.read_text())
    cfg = Config(**meta["config"])
    if clip is None:
        from . import models

        clip = models.load("clip", profile=profile or meta.get("profile"), model=cfg.clip_model)
    if meta.get("clip_model") and _clip_label(clip) != meta["clip_model"]:
        raise ValueError(f"{weights} was trained on features of clip model {meta['clip_model']!r} "
                         f"but the clip given is {_clip_label(clip)!r}; pass the same clip model")
    clip_model, tokenizer = _clip_parts(clip)
    state = load_file(str(weights))
    centroid = state["centroid"].numpy()
    model = AnomalyCLIP(clip_model, tokenizer, meta["class_names"], centroid, cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if ".frozen." not in f".{k}"]
    if missing or unexpected:
        raise ValueError(f"{weights} does not match this AnomalyCLIP model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model.clip_name = meta.get("clip_model", "")
    model.profile = meta.get("profile", "custom")
    model.feature_scale = meta.get("feature_scale")
    return model.to(pick_device(device or cfg.device)).eval()


# =========================================================================== benchmark level


def _clip_backend(backends: Mapping[str, Any] | None, profile: str | None, cfg: Config) -> Any:
    if backends and "clip" in backends:
        return backends["clip"]
    from . import models

    return models.load("clip", profile=profile, model=cfg.clip_model)


def _benchmark_features(benchmark: Any, clip: Any, cfg: Config, cache: Any,
                        features: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    from tqdm.auto import tqdm

    out = {}
    rows = list(benchmark.videos.itertuples())
    todo = [r for r in rows if features is None or r.name not in features]
    for row in rows:
        if features is not None and row.name in features:
            out[row.name] = np.asarray(features[row.name], dtype=np.float32)
    for row in tqdm(todo, desc="CLIP features", disable=len(todo) < 2, leave=False):
        out[row.name] = extract_features(row.path, clip, cfg.feature_stride, cache,
                                         cfg.batch_frames, progress=False)
    return {r.name: out[r.name] for r in rows}


def train(benchmark: Any, split: str | None = "train", config: Config | None = None, *,
          profile: str | None = None, backends: Mapping[str, Any] | None = None,
          cache: Any = None, features: Mapping[str, np.ndarray] | None = None,
          progress: bool = True, **overrides: Any) -> tuple[Any, pd.DataFrame]:
    """Extract (cached) features for ``benchmark``'s ``split`` and :func:`fit` on them.

    ``features`` (video name -> array, e.g. from :func:`load_features`) skips extraction for
    the videos it holds. Returns ``(model, curves)``.
    """
    cfg = configure(Config, config, overrides, "AnomalyCLIP")
    bench = benchmark.subset(split) if split else benchmark
    if len(bench.videos) == 0:
        raise ValueError(f"the benchmark has no videos in split {split!r}")
    clip = _clip_backend(backends, profile, cfg)
    feats = _benchmark_features(bench, clip, cfg, cache, features)
    labels = dict(zip(bench.videos["name"], bench.videos["label"]))
    classes = [c for c in getattr(benchmark, "classes", []) if c != NORMAL] or None
    return fit(feats, labels, clip, cfg, class_names=classes, progress=progress)


@dataclass
class Evaluation:
    """Results of a trained model on a benchmark split.

    Detection: ``auc``, ``ap`` (frame-level, micro) and ``per_class`` (each class's videos
    with the normal ones, :func:`vadnb.metrics.per_class`). Recognition, as the paper:
    ``class_auc`` / ``class_ap`` (mean over classes of the one-vs-rest frame AUC / AP of
    ``p(c)`` over all test frames; per class in ``class_table``) and ``top1_video`` /
    ``top5_video`` (anomalous test videos whose class is among the 1 / 5 largest summed
    ``p(c)``; ``class_accuracy`` is ``top1_video``). ``paper_threshold`` and
    ``paper_top1_frame`` / ``paper_top5_frame`` follow the official rule, whose threshold is
    tuned on the *test* ROC: read them as optimistic.
    """

    auc: float
    ap: float
    per_class: pd.DataFrame
    class_accuracy: float
    frame_scores: dict[str, np.ndarray]
    class_probs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    video_classes: dict[str, str]
    predicted_classes: dict[str, str]
    class_names: list[str]
    meaningless: bool = False
    class_auc: float = float("nan")
    class_ap: float = float("nan")
    class_table: pd.DataFrame | None = None
    top1_video: float = float("nan")
    top5_video: float = float("nan")
    paper_threshold: float = float("nan")
    paper_top1_frame: float = float("nan")
    paper_top5_frame: float = float("nan")

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a JSON-able dict."""
        table = self.class_table if self.class_table is not None else pd.DataFrame()
        return {"auc": self.auc, "ap": self.ap, "class_accuracy": self.class_accuracy,
                "class_auc": self.class_auc, "class_ap": self.class_ap,
                "top1_video": self.top1_video, "top5_video": self.top5_video,
                "paper_threshold_tuned_on_test": self.paper_threshold,
                "paper_top1_frame": self.paper_top1_frame,
                "paper_top5_frame": self.paper_top5_frame,
                "videos": len(self.frame_scores),
                "per_class": self.per_class.to_dict(orient="records"),
                "class_table": table.to_dict(orient="records"),
                "meaningless": self.meaningless}


def video_class(class_probs: np.ndarray, class_names: Sequence[str]) -> str:
    """A video's predicted anomaly class: the class with the largest summed p(c) over frames.

    Threshold-free, unlike the official rule (frames below a score threshold tuned on the
    test ROC are Normal, the others take their most probable class).
    """
    return list(class_names)[int(np.argmax(np.asarray(class_probs)[:, :len(class_names)].sum(0)))]


def _nanmean(values: Any) -> float:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else float("nan")


def recognition_metrics(frame_scores: Mapping[str, np.ndarray],
                        class_probs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                        video_classes: Mapping[str, str], class_names: Sequence[str]
                        ) -> dict[str, Any]:
    """The paper's anomaly-recognition metrics (see :class:`Evaluation`) from per-video
    frame scores, class probabilities ``[frames, C+1]``, 0/1 frame labels and video classes."""
    from . import metrics

    names = list(class_names)
    frame_classes = {v: np.where(np.asarray(labels[v]) > 0,
                                 names.index(video_classes[v]) if video_classes[v] in names else -1,
                                 -1) for v in labels}
    table = metrics.class_frame_metrics(frame_classes, class_probs, names)
    summed = {v: np.asarray(class_probs[v])[:, :len(names)].sum(0) for v in class_probs}
    out = {"class_table": table, "class_auc": _nanmean(table["auc"]),
           "class_ap": _nanmean(table["ap"]),
           "top1_video": metrics.topk_video_accuracy(video_classes, summed, names, 1),
           "top5_video": metrics.topk_video_accuracy(video_classes, summed, names, 5)}
    y = {v: np.asarray(labels[v]) for v in labels}
    both = np.concatenate(list(y.values())) if y else np.zeros(0)
    if both.size and 0 < both.sum() < both.size:
        thr = metrics.youden_threshold(y, frame_scores)
        k5 = 5
        t1 = metrics.thresholded_frame_topk(frame_classes, frame_scores, class_probs, names, thr, 1)
        t5 = metrics.thresholded_frame_topk(frame_classes, frame_scores, class_probs, names, thr, k5)
        keep = lambda t: t[t["class"] != NORMAL]  # noqa: E731 - mean over anomaly classes
        out.update(paper_threshold=thr, paper_top1_frame=_nanmean(keep(t1)["top1"]),
                   paper_top5_frame=_nanmean(keep(t5)["top5"]))
    return out


def evaluate(model: Any, benchmark: Any, split: str | None = "test", *,
             backends: Mapping[str, Any] | None = None, profile: str | None = None,
             cache: Any = None, features: Mapping[str, np.ndarray] | None = None) -> Evaluation:
    """Score every frame of the split's videos: frame AUC/AP (micro), per-class AUC/AP
    (vadnb.metrics.per_class) and the paper's recognition metrics (:class:`Evaluation`)."""
    from . import metrics

    cfg = model.config
    bench = benchmark.subset(split) if split else benchmark
    clip = None
    if features is None or any(v not in features for v in bench.videos["name"]):
        saved = model.profile if model.profile in ("tiny", "colab", "paper") else None
        clip = _clip_backend(backends, profile or saved, cfg)
    feats = _benchmark_features(bench, clip, cfg, cache, features)
    scores, probs, labels, classes, predicted = {}, {}, {}, {}, {}
    for row in bench.videos.itertuples():
        y = np.asarray(bench.frame_labels(row.name))
        scores[row.name], probs[row.name] = predict(model, feats[row.name], cfg.feature_stride,
                                                    num_frames=len(y), source=str(row.path))
        labels[row.name] = y
        classes[row.name] = row.label
        predicted[row.name] = video_class(probs[row.name], model.class_names)
    recognition = recognition_metrics(scores, probs, labels, classes, model.class_names)
    return Evaluation(
        auc=metrics.frame_auc(labels, scores), ap=metrics.frame_ap(labels, scores),
        per_class=metrics.per_class(labels, scores, classes),
        class_accuracy=recognition["top1_video"],
        frame_scores=scores, class_probs=probs, labels=labels, video_classes=classes,
        predicted_classes=predicted, class_names=list(model.class_names) + [NORMAL],
        meaningless=model.profile in MEANINGLESS_PROFILES, **recognition)


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: Mapping[str, Any] | None = None, cache: Any = None,
        checkpoint: str | os.PathLike | Any = None, **overrides: Any):
    """Score every frame of ``video`` with a trained AnomalyCLIP and name the anomaly class.

    ``checkpoint`` is a path written by :func:`save_checkpoint` (or a trained model).
    Returns a :class:`vadnb.detect.Detection` with one segment per 16 frames (score,
    predicted_class, ``p_<class>`` columns, explanation like ``"Robbery (p=0.83)"``) and
    ``extras["class_probs"]`` (float32 ``[frames, classes + 1]``, columns in
    ``extras["class_names"]``, "Normal" last).
    """
    from .detect import Detection

    if checkpoint is None:
        raise ValueError(
            "AnomalyCLIP is weakly supervised and has no zero-shot mode: train it first "
            "(model, curves = vadnb.anomalyclip.train(benchmark); "
            "vadnb.anomalyclip.save_checkpoint(model, 'anomalyclip.safetensors')) and pass "
            "checkpoint='anomalyclip.safetensors' (notebook 50 shows how)")
    from .cache import file_digest, get_cache

    cache = get_cache(cache)
    before = call_stats()
    given_clip = backends.get("clip") if backends else None
    if isinstance(checkpoint, (str, os.PathLike)):
        weights, meta_path = _checkpoint_paths(checkpoint)
        if not weights.exists() or not meta_path.exists():
            raise FileNotFoundError(f"AnomalyCLIP checkpoint not found: need {weights} and "
                                    f"{meta_path} (written by vadnb.anomalyclip.save_checkpoint)")
        meta = json.loads(meta_path.read_text())
        cfg = configure(Config, config or Config(**meta.get("config", {})), overrides, "AnomalyCLIP")
        saved, model_key, trained_on = meta.get("profile"), file_digest(weights), meta.get("clip_model")
    else:
        cfg = configure(Config, config or checkpoint.config, overrides, "AnomalyCLIP")
        saved, model_key, trained_on = checkpoint.profile, _state_digest(checkpoint), checkpoint.clip_name
    # default to the profile the checkpoint was trained with (its features' clip model)
    saved = saved if saved in ("tiny", "colab", "paper") else None
    clip_key = (_clip_label(given_clip) if given_clip is not None
                else trained_on or f"profile:{profile or saved}")
    parts = {"video": file_digest(video), "checkpoint": model_key, "clip": clip_key,
             "stride": int(cfg.feature_stride)}

    def compute() -> dict[str, Any]:
        from .video import probe

        clip = _clip_backend(backends, profile or saved, cfg)
        if isinstance(checkpoint, (str, os.PathLike)):
            model = load_checkpoint(checkpoint, clip=clip, device=cfg.device)
        else:
            model = checkpoint
            if model.clip_name and _clip_label(clip) != model.clip_name:
                raise ValueError(f"the model was trained on {model.clip_name!r} features but the "
                                 f"clip backend is {_clip_label(clip)!r}; pass the same clip model")
        info = probe(video, cache)
        feats = extract_features(video, clip, cfg.feature_stride, cache, cfg.batch_frames)
        scores, probs = predict(model, feats, cfg.feature_stride, num_frames=info.num_frames,
                                source=str(video))
        return {"scores": scores, "probs": probs, "fps": float(info.fps),
                "profile": str(getattr(clip, "profile", "custom")),
                "class_names": list(model.class_names)}

    # a warm re-run reads this entry only: no model is loaded and no frame decoded
    out = cache.memo("anomalyclip.run", parts, compute)
    scores = np.asarray(out["scores"], dtype=np.float32)
    probs = np.asarray(out["probs"], dtype=np.float32)
    class_names = list(out["class_names"])
    segments = _segments_table(scores, probs, class_names, float(out["fps"]), cfg.seg_length)
    return Detection(
        video=str(video), method="anomalyclip", profile=str(out["profile"]),
        frame_scores=scores, fps=float(out["fps"]), segments=segments,
        model_calls=calls_since(before),
        extras={"class_probs": probs, "class_names": class_names + [NORMAL],
                "feature_stride": cfg.feature_stride})


def _state_digest(model: Any) -> str:
    """A content hash of a trained model's weights, classes and feature scale (cache key)."""
    import hashlib

    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        if ".frozen." in f".{key}":
            continue
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([list(model.class_names), getattr(model, "feature_scale", None)]).encode())
    return h.hexdigest()[:32]


# =========================================================================== released files


class _Inert:
    """Stands in for a non-tensor object pickled in a released checkpoint (the Lightning
    hyper-parameters: optimiser partials, the loss object). Accepts anything, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "_Inert":
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass


def _safe_torch_load(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``; objects other than tensors and containers
    that the file pickles (hyper-parameters) become inert placeholders, never their code."""
    import torch.serialization as ts

    unsafe = []
    if hasattr(ts, "get_unsafe_globals_in_checkpoint"):
        try:
            unsafe = ts.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as err:  # noqa: BLE001 - re-raised with the file name
            raise ValueError(f"{path}: not a torch checkpoint ({err})") from err
    stubs = [(type(n.rsplit(".", 1)[-1], (_Inert,), {}), n) for n in unsafe]
    try:
        if stubs:
            with ts.safe_globals(stubs):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: could not be read with torch.load(weights_only=True): {err}") from err


#: Official (Lightning) key prefix -> vadnb key, for the parts that map one to one.
_RELEASE_KEYS = {
    "net.text_encoder.text_projection": "prompts.text_projection",
    "net.selector_model.bn_layer.running_mean": "norm.running_mean",
    "net.selector_model.bn_layer.running_var": "norm.running_var",
    "net.selector_model.bn_layer.num_batches_tracked": "norm.num_batches_tracked",
    "net.temporal_model.projection.weight": "temporal.projection.weight",
    "net.temporal_model.projection.bias": "temporal.projection.bias",
    "net.temporal_model.classifier.layer_norm.weight": "temporal.head_norm.weight",
    "net.temporal_model.classifier.layer_norm.bias": "temporal.head_norm.bias",
    "net.temporal_model.classifier.linear.weight": "temporal.head.weight",
    "net.temporal_model.classifier.linear.bias": "temporal.head.bias",
}


def map_release_state(state: Mapping[str, Any], normal_id: int) -> dict[str, Any]:
    """The official ``state_dict`` (keys ``net.…``) -> vadnb :class:`AnomalyCLIP` keys.

    Drops the frozen CLIP weights and the Normal class's context row (``normal_id``), and
    maps the axial transformer: reversible block ``2i`` holds layer ``i``'s attention along
    segments (``f``) and along frames (``g``), block ``2i + 1`` its two feed-forwards; the
    positional embeddings ``[1, E, S, 1]`` / ``[1, E, 1, L]`` become ``[S, 1, E]`` / ``[1, L, E]``.
    """
    import re

    out: dict[str, Any] = {}
    for key, value in state.items():
        if key in _RELEASE_KEYS:
            out[_RELEASE_KEYS[key]] = value
        elif key == "net.prompt_learner.ctx":
            if value.dim() != 3:
                raise ValueError("only class-specific contexts (shared_context: False) are supported")
            out["prompts.ctx"] = torch.cat([value[:normal_id], value[normal_id + 1:]])
        elif key == "net.temporal_model.axial_attn.pos_emb.param_0":
            out["temporal.pos_segments"] = value[0].permute(1, 2, 0)
        elif key == "net.temporal_model.axial_attn.pos_emb.param_1":
            out["temporal.pos_frames"] = value[0].permute(1, 2, 0)
        else:
            m = re.fullmatch(r"net\.temporal_model\.axial_attn\.layers\.blocks\.(\d+)\.([fg])\.net\.(.+)", key)
            if not m:
                continue  # frozen CLIP parts, prompt token buffers
            block, side, rest = int(m.group(1)), m.group(2), m.group(3)
            layer, sub = block // 2, (0 if side == "f" else 1) + (2 if block % 2 else 0)
            target = f"temporal.layers.{layer}.{sub}."
            if block % 2 == 0:  # PreNorm(SelfAttention) inside PermuteToFrom
                rest = rest.replace("fn.fn.", "", 1) if rest.startswith("fn.fn.") else rest.replace("fn.", "", 1)
                out[target + rest] = value
            else:  # Sequential(ChanLayerNorm, Conv2d, LeakyReLU, Conv2d)
                name = {"0.g": "norm.weight", "0.b": "norm.bias", "1.weight": "net.0.weight",
                        "1.bias": "net.0.bias", "3.weight": "net.2.weight",
                        "3.bias": "net.2.bias"}.get(rest)
                if name is None:
                    raise ValueError(f"unexpected key in the released temporal model: {key}")
                out[target + name] = value.reshape(-1) if rest.startswith("0.") else value
    return out


def _official_depth(state: Mapping[str, Any]) -> int:
    import re

    blocks = {int(m.group(1)) for k in state
              for m in [re.match(r"net\.temporal_model\.axial_attn\.layers\.blocks\.(\d+)\.", k)] if m}
    return (max(blocks) + 1) // 2 if blocks else 0


def _load_centroid(path: str | os.PathLike) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"normal centroid file not found: {p} (the release ships it as "
                                "ncentroid.pt beside the checkpoint)")
    if p.suffix == ".npy":
        value = np.load(p, allow_pickle=False)
    else:
        value = _safe_torch_load(p)
        value = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
    value = np.asarray(value, dtype=np.float32).reshape(-1)
    if value.size < 2:
        raise ValueError(f"{p}: expected a [D] centroid, got shape {value.shape}")
    return value


def convert_release(checkpoint: str | os.PathLike, centroid: str | os.PathLike,
                    out: str | os.PathLike, dataset: str, *,
                    clip_model: str = "ViT-B-16:openai", profile: str = "colab") -> Path:
    """Convert an official AnomalyCLIP release (Lightning ``.ckpt`` + ``ncentroid.pt``) into
    vadnb's safetensors + JSON checkpoint (:func:`load_checkpoint` / :func:`run` read it).

    The checkpoint is read with ``torch.load(weights_only=True)`` (pickled hyper-parameter
    objects become inert placeholders; nothing in the file runs). The recipe comes from
    :data:`RECIPES` (``depth`` and widths are checked against the weights), the class
    order from :data:`RELEASE_CLASSES` with the Normal row dropped, the centroid from its
    own file. ``clip_model`` / ``profile`` name the CLIP whose text tower the prompts go
    through (the release used OpenAI's ViT-B/16: vadnb's ``clip`` role on the colab profile).
    """
    key = _dataset_key(dataset)
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"released checkpoint not found: {path}")
    raw = _safe_torch_load(path)
    state = raw.get("state_dict", raw) if isinstance(raw, Mapping) else None
    if not isinstance(state, Mapping) or "net.prompt_learner.ctx" not in state:
        raise ValueError(f"{path}: no AnomalyCLIP weights (expected a Lightning checkpoint with "
                         "state_dict['net.prompt_learner.ctx'])")
    classes = RELEASE_CLASSES[key]
    normal_id = [c.lower() for c in classes].index("normal")
    ctx = state["net.prompt_learner.ctx"]
    if ctx.shape[0] != len(classes):
        raise ValueError(f"{path}: {ctx.shape[0]} prompt contexts but {key} has {len(classes)} "
                         f"classes (Normal included); is this the {key} checkpoint?")
    mapped = map_release_state(state, normal_id)
    mapped["centroid"] = torch.from_numpy(_load_centroid(centroid))
    emb = int(state["net.temporal_model.projection.weight"].shape[0])
    in_dim = int(state["net.temporal_model.projection.weight"].shape[1])
    dim = int(mapped["centroid"].shape[0])
    if emb % Config.heads:
        raise ValueError(f"{path}: temporal width {emb} is not divisible by {Config.heads} heads")
    if in_dim not in (dim, dim + len(classes) - 1):
        raise ValueError(f"{path}: the temporal model reads {in_dim}-d inputs but the centroid "
                         f"is {dim}-d; is {Path(centroid).name} the centroid of this checkpoint?")
    cfg = recipe(key, n_ctx=int(ctx.shape[1]), emb_size=emb, depth=_official_depth(state),
                 concat_features=in_dim != dim)
    from safetensors.torch import save_file

    weights, meta_path = _checkpoint_paths(out)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in mapped.items()}, str(weights))
    anomaly = [c for i, c in enumerate(classes) if i != normal_id]
    meta = {"method": "anomalyclip", "config": asdict(cfg), "class_names": anomaly,
            "clip_model": clip_model, "profile": profile, "feature_dim": dim,
            "feature_scale": "raw", "converted_from": path.name, "dataset": key}
    meta_path.write_text(json.dumps(meta, indent=2))
    return weights


def load_release_checkpoint(checkpoint: str | os.PathLike, centroid: str | os.PathLike,
                            dataset: str, clip: Any, out: str | os.PathLike | None = None,
                            device: str | None = None) -> Any:
    """:func:`convert_release` then :func:`load_checkpoint` with ``clip`` (OpenAI CLIP
    ViT-B/16 for the real release); the converted files go to ``out`` (default: beside the
    checkpoint, ``<name>.vadnb.safetensors``)."""
    out = out or Path(checkpoint).with_suffix(".vadnb.safetensors")
    weights = convert_release(checkpoint, centroid, out, dataset, clip_model=_clip_label(clip),
                              profile=str(getattr(clip, "profile", "custom")))
    return load_checkpoint(weights, clip=clip, device=device)


def release_benchmark(npy_root: str | os.PathLike,
                      lists: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]],
                      dataset: str, temporal_annotation: str | os.PathLike | None = None,
                      ncrops: int = 1, crop: int = 0, fps: float = 30.0
                      ) -> tuple[Any, dict[str, np.ndarray]]:
    """AnomalyCLIP's released features and list files as a vadnb Benchmark plus features.

    Args:
        npy_root: the unpacked feature folder (``Abuse/Abuse001_x264.npy``, ...).
        lists: split -> list file(s) of the release, e.g. ``{"train":
            ["Anomaly_Train_Abnormal.txt", "Anomaly_Train_Normal.txt"], "test":
            "Anomaly_Test.txt"}``; each line ``<folder>/<video> <start> <end> <label id>...``.
            The label id indexes :data:`RELEASE_CLASSES` of ``dataset``: labels come from the
            list, no hand-built dict.
        temporal_annotation: the release's temporal annotation of the test videos (``<video>
            <class> <start> <end> [<start> <end> ...]``, inclusive frame numbers, ``-1``
            for none); frames are anomalous where, as in the official code,
            ``start <= i + <list start> <= end``.
        ncrops, crop, fps: crops per frame in the files, the one kept, the frame rate
            written to the table (features are one per frame).

    Returns:
        ``(benchmark, features)``: pass both to :func:`train` / :func:`evaluate`
        (``features=features``) and nothing is extracted.
    """
    from .data import AnnotationError, Benchmark

    classes = RELEASE_CLASSES[_dataset_key(dataset)]
    normal_id = [c.lower() for c in classes].index("normal")
    root = Path(npy_root)
    rows, features, starts = [], {}, {}
    for split, files in lists.items():
        for list_file in [files] if isinstance(files, (str, os.PathLike)) else list(files):
            list_file = Path(list_file)
            if not list_file.exists():
                raise FileNotFoundError(f"list file not found: {list_file}")
            feats = load_features(root, list_file, ncrops=ncrops, crop=crop)
            for n, line in enumerate(list_file.read_text().splitlines(), 1):
                fields = line.split()
                if not fields:
                    continue
                where = f"{list_file}, line {n}"
                if len(fields) < 4:
                    raise AnnotationError(f"{where}: expected '<folder>/<video> <start> <end> "
                                          f"<label id>', got {line!r}")
                try:
                    start, ids = int(fields[1]), [int(f) for f in fields[3:]]
                except ValueError:
                    raise AnnotationError(f"{where}: start, end and label ids must be integers, "
                                          f"got {line!r}") from None
                if any(not 0 <= i < len(classes) for i in ids):
                    raise AnnotationError(f"{where}: label id outside 0..{len(classes) - 1} "
                                          f"({dataset} has {len(classes)} classes)")
                name = Path(fields[0]).name.removesuffix(".npy")
                label = NORMAL if ids[0] == normal_id else classes[ids[0]]
                features[name], starts[name] = feats[name], start
                rows.append({"name": name, "path": str(root / (fields[0].removesuffix(".npy") + ".npy")),
                             "split": split, "label": label, "is_anomalous": label != NORMAL,
                             "num_frames": len(feats[name]), "fps": float(fps),
                             "label_ids": " ".join(map(str, ids))})
    truth: dict[str, list[tuple[int, int]]] = {}
    if temporal_annotation is not None:
        path = Path(temporal_annotation)
        if not path.exists():
            raise FileNotFoundError(f"temporal annotation not found: {path}")
        for n, line in enumerate(path.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            name = Path(fields[0]).stem
            try:
                nums = [int(f) for f in fields[2:]]
            except ValueError:
                raise AnnotationError(f"{path}, line {n}: expected '<video> <class> <start> <end> "
                                      f"...' with integer frames, got {line!r}") from None
            if len(nums) % 2:
                raise AnnotationError(f"{path}, line {n}: odd number of frame numbers")
            offset = starts.get(name, 0)
            pairs = [(max(s - offset, 0), e - offset) for s, e in zip(nums[::2], nums[1::2])
                     if s >= 0 and e >= s]
            if name in starts:
                truth[name] = [(s, min(e, len(features[name]) - 1)) for s, e in pairs
                               if s < len(features[name])]
    table = pd.DataFrame(rows)
    bench = Benchmark(f"anomalyclip-release/{_dataset_key(dataset)}", root, table, truth,
                      [c for c in classes if c.lower() != "normal"])
    return bench, features


# =========================================================================== perfect perception


def oracle_clip(benchmark: Any, text_clip: Any, separation: float = 4.0, noise: float = 0.5,
                seed: int = 0, stride: int = 1) -> Any:
    """A CLIP double that *knows the ground truth* of ``benchmark``'s frames (notebook 50).

    Every frame of the benchmark's videos is looked up by a hash of its pixels. Its raw
    feature is a fixed "normal footage" point plus per-frame noise, and, on an anomalous
    frame, ``separation`` along a direction of its own class. The text tower (``.model``,
    ``.tokenizer``) is ``text_clip``'s, so AnomalyCLIP's real prompt learning, selection,
    temporal model and loss run on it: what they make of perfect features is an upper
    bound of the method's own steps, not of any model. Frames of other videos (and, with
    ``stride`` > 1, frames off the stride the features will be extracted at) are refused.
    """
    import hashlib

    from .models.base import Backend, as_uint8_rgb
    from .video import iter_frames, probe

    classes = [c for c in benchmark.classes if c != NORMAL]
    dim = int(text_clip.model.text_projection.shape[-1])
    rng = np.random.default_rng(seed)
    base = rng.normal(size=dim)
    base *= 10.0 / np.linalg.norm(base)  # a raw-scale point (ViT-B/16 features are not unit)
    dirs = np.linalg.qr(rng.normal(size=(dim, max(len(classes), 1))))[0].T
    truth: dict[str, str] = {}
    for name, path, label in zip(benchmark.videos.name, benchmark.videos.path,
                                 benchmark.videos.label):
        y = benchmark.frame_labels(name)
        wanted = np.arange(0, min(len(y), probe(path).num_frames), stride)
        for frames in iter_frames(path, indices=wanted, chunk=64):
            for i, image in zip(frames.indices, frames.images):
                key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
                if y[i] or key not in truth:
                    truth[key] = str(label) if y[i] else NORMAL
    tag = hashlib.sha1(json.dumps(sorted(truth.items())).encode()).hexdigest()[:10]

    class OracleClip(Backend):
        role = "clip"

        def __init__(self) -> None:
            super().__init__(f"oracle-clip-{tag}-s{separation}-n{noise}-{seed}", profile="scripted")
            self.model, self.tokenizer = text_clip.model, text_clip.tokenizer

        def encode_image_raw(self, images: Sequence[Any]) -> np.ndarray:
            images = list(images)
            with self._count(len(images)):
                return np.stack([self._vector(as_uint8_rgb(im)) for im in images])

        def encode_image(self, images: Sequence[Any]) -> np.ndarray:
            x = self.encode_image_raw(images)
            return x / np.linalg.norm(x, axis=1, keepdims=True)

        def _vector(self, image: np.ndarray) -> np.ndarray:
            key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
            if key not in truth:
                raise ValueError("the oracle only knows the frames of the benchmark it was built "
                                 "from; run it on those videos")
            frame_rng = np.random.default_rng(int(key[:12], 16))
            x = base + noise * frame_rng.normal(size=dim)
            if truth[key] != NORMAL:
                x = x + separation * dirs[classes.index(truth[key])]
            return x.astype(np.float32)

    return OracleClip()


# --------------------------------------------------------------------------- the declaration
# What detect, compare, scale, plots, lesson and data.protocols know about AnomalyCLIP
# (vadnb.registry): declared once, read by all of them.

from .lesson import Reference  # noqa: E402
from .registry import register  # noqa: E402


def _cost(fps: float, **_: Any) -> list[tuple[str, str, float, str]]:
    """Model calls per minute of video (training not included: it is paid once)."""
    return [("clip", "clip", 60.0 * fps, "every frame")]


register(
    "anomalyclip", config=Config, run=run,
    roles={"clip": "clip"}, cost=_cost, keep_loaded=False,
    pipeline={
            "title": "AnomalyCLIP (weakly supervised): CLIP features -> class directions -> scores",
            "stages": [
                ("frames", "every frame", "RGB frames", "data"),
                ("encode", "CLIP ViT-B/16 image\nencoder (frozen)", "512-d feature\nper frame", "model"),
                ("re-centre", "minus the normal\ncentroid", "features around\nnormality", "math"),
                ("project", "learned prompts (CoOp)\n-> class directions", "likelihood per class\nper frame", "model"),
                ("temporal", "axial transformer\n(trained with MIL)", "anomaly score\nper frame", "model"),
                ("classify", "softmax x score", "frame scores +\nclass per frame", "out"),
            ],
        },
    reference=Reference("anomalyclip", "Delving into CLIP latent space for Video Anomaly Recognition",
        "Luca Zanella, Benedetta Liberatori, Willi Menapace, Fabio Poiesi, Yiming Wang, "
        "Elisa Ricci", "Computer Vision and Image Understanding (CVIU) 249, 2024",
        "2310.02835", "github.com/lucazanella/AnomalyCLIP"),
    protocols=[
        dict(benchmark="UCF-Crime", split="train 1610 / test 290",
            metric="frame AUC", ap_variant="—",
            class_metrics="mean one-vs-rest AUC/AP over classes, top-1/top-5 video accuracy",
            reported=86.36, load="load_ucf_crime(root, val=None)"),
        dict(benchmark="XD-Violence", split="train 3954 / test 800",
            metric="frame AP", ap_variant="step", class_metrics="as UCF-Crime",
            reported=78.51, load="load_xd_violence(root)"),
        dict(benchmark="ShanghaiTech (weak split)", split="train 238 / test 199",
            metric="frame AUC", ap_variant="—", class_metrics="as UCF-Crime (17 classes)",
            reported=98.07,
            load="load_shanghaitech(root, split='weak', train_list=..., test_list=...)")],
)
