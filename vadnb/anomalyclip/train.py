"""Fitting AnomalyCLIP: multiple-instance segment selection, :func:`anomalyclip_loss`, and the
loop (half abnormal, half normal batches of 32 x 16 grids, AdamW, warm-up + cosine)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..stages import configure
from .core import NORMAL, Config, normal_centroid
from .model import AnomalyCLIP, clip_label, clip_parts
from .run import benchmark_features, clip_roles, feature_scale


def select_segments(logits: Any, labels: Any, num_segments: int, seg_length: int,
                    top_k: int = 3, bottom_k: int = 3, keep: Any = None) -> tuple[Any, Any]:
    """Multiple-instance selection: ``(top [B, top_k], bottom [B, bottom_k])`` segments.

    ``logits [B, S*L, C]``; ``labels [B]`` class index, ``-1`` = normal video; ``keep
    [B, S]`` the segments that survive dropout (None: all). Abnormal videos rank segments by
    the summed likelihood of their own class, normal videos by that of all classes (their
    ``bottom`` is unused). Dropped segments are never picked while enough remain.
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
    b, rest = x.shape[0], x.shape[2:]
    grid = x.reshape(b, num_segments, seg_length, *rest)
    index = idx.view(b, -1, *([1] * (1 + len(rest)))).expand(-1, -1, seg_length, *rest)
    return grid.gather(1, index).reshape(b, -1, *rest)


def anomalyclip_loss(logits: Any, scores: Any, labels: Any, top: Any, bottom: Any,
                     num_segments: int, seg_length: int, lambda_smooth: float = 8e-4,
                     lambda_sparse: float = 8e-3, eps: float = 1e-8,
                     smooth_within_videos: bool = False) -> dict[str, Any]:
    """Every term of AnomalyCLIP's loss on one batch, and ``total`` (notebook 50 explains each);
    smoothness runs over the flattened batch, as the official code, unless asked otherwise."""
    labels = torch.as_tensor(labels, device=logits.device).long()
    abn = labels >= 0
    nor = ~abn
    if not abn.any() or not nor.any():
        raise ValueError("a training batch needs both abnormal and normal videos")
    a_logits, a_scores, a_labels = logits[abn], scores[abn], labels[abn]
    n_logits, n_scores = logits[nor], scores[nor]

    def pick(x: Any, idx: Any) -> Any:  # frames of the chosen segments
        return _gather_segments(x, idx, num_segments, seg_length)

    def own_class(x: Any) -> Any:  # each abnormal frame's value for its video's class
        return x.gather(2, a_labels.view(-1, 1, 1).expand(-1, x.shape[1], 1))

    # likelihood terms
    a_top = pick(a_logits, top[abn])  # [A, k*L, C]
    projection_topk = -own_class(a_top).mean()
    projection_normal = n_logits.max(dim=2).values.mean()

    # NLL on the joint class probabilities
    def log_probs(lg: Any, sc: Any) -> Any:
        log_class = torch.log_softmax(lg, dim=-1) + torch.log(sc.clamp_min(eps)).unsqueeze(-1)
        log_normal = torch.log((1 - sc).clamp_min(eps)).unsqueeze(-1)
        return torch.cat([log_class, log_normal], dim=-1)  # normal is the last column

    c = logits.shape[-1]
    nll_topk_abnormal = -own_class(log_probs(a_top, pick(a_scores, top[abn]))).mean()
    nll_bottomk_abnormal = -log_probs(pick(a_logits, bottom[abn]),
                                      pick(a_scores, bottom[abn]))[..., c].mean()
    nll_topk_normal = -log_probs(pick(n_logits, top[nor]), pick(n_scores, top[nor]))[..., c].mean()
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


def sample_training_indices(num_frames: int, num_segments: int = 32, seg_length: int = 16,
                            rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices ``[num_segments * seg_length]`` of one training sample, as the original:
    segment ``i`` is ``seg_length`` frames from ``i * spacing + random offset``, wrapping
    around the end (a video shorter than one grid repeats its frames)."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    rng = rng or np.random.default_rng()
    length = max(num_frames, num_segments * seg_length)
    spacing = (length - seg_length + 1) // num_segments
    offsets = rng.integers(0, max(spacing - seg_length + 2, 1), size=num_segments)
    starts = np.arange(num_segments) * spacing + offsets
    return ((starts[:, None] + np.arange(seg_length)[None, :]) % num_frames).reshape(-1)


def _steps(num_abnormal: int, num_normal: int, cfg: Config) -> tuple[int, int]:
    """``(videos per group per step, steps per epoch)`` as the official loaders."""
    larger = max(num_abnormal, num_normal)
    per_group = min(cfg.batch_size // 2, larger)
    rounding = math.floor if cfg.drop_last else math.ceil
    return per_group, rounding(larger / per_group)


def _cosine(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _warmup_cosine(warmup_steps: int, total_steps: int):
    """Learning-rate factor per step: linear warm-up from ``1 / warmup_steps``, then cosine to 0."""
    return lambda step: ((step + 1) / warmup_steps if step < warmup_steps else
                         _cosine((step - warmup_steps) / max(1, total_steps - warmup_steps)))


def _warmup_cosine_per_epoch(warmup_epochs: float, epochs: int, steps_per_epoch: int):
    """The official per-epoch schedule: epoch ``e`` at ``e / warmup_epochs``, then a cosine."""
    def factor(step: int) -> float:
        epoch = step // steps_per_epoch
        return (epoch / warmup_epochs if epoch < warmup_epochs else
                _cosine((epoch - warmup_epochs) / max(1e-12, epochs - warmup_epochs)))
    return factor


def fit(features: Mapping[str, np.ndarray], labels: Mapping[str, str], clip: Any,
        config: Config | None = None, class_names: Sequence[str] | None = None,
        progress: bool = True, **overrides: Any) -> tuple[Any, pd.DataFrame]:
    """``(model, curves)`` trained on ``features`` (video -> ``[T, D]``) with video ``labels``;
    ``clip`` is the backend the features came from."""
    from ..models.base import pick_device
    from ..progress import bar as progress_bar
    cfg = configure(Config, config, overrides, "AnomalyCLIP")
    names = list(features)
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
    clip_model, tokenizer = clip_parts(clip)
    model = AnomalyCLIP(clip_model, tokenizer, classes, normal_centroid(features, labels),
                        cfg).to(device)
    scales = {v: feature_scale(features[v]) for v in names}
    if len(set(scales.values())) > 1:
        raise ValueError("the training features mix L2-normalised and raw videos: "
                         + ", ".join(f"{v} ({scales[v]})" for v in names[:6]))
    model.clip_name, model.profile, model.feature_scale = (
        clip_label(clip), str(getattr(clip, "profile", "custom")), scales[names[0]])
    per_group, steps_per_epoch = _steps(len(abnormal), len(normal), cfg)
    total_steps = steps_per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = (_warmup_cosine_per_epoch(cfg.warmup_epochs, cfg.epochs, steps_per_epoch)
                if cfg.lr_schedule == "per_epoch" else
                _warmup_cosine(int(round(cfg.warmup_epochs * steps_per_epoch)), total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    class_index = {c: i for i, c in enumerate(classes)}

    def cycle(group: list[str], n: int) -> list[str]:
        # as a DataLoader(shuffle, drop_last) restarted whenever it runs out: each pass is a
        # new permutation cut to whole half-batches (drop_last), or kept whole if shorter
        order = []
        while len(order) < n:
            perm = [group[i] for i in rng.permutation(len(group))]
            whole = len(perm) // per_group * per_group if cfg.drop_last else len(perm)
            order += perm[:whole or len(perm)]
        return order[:n]

    rows: list[dict[str, Any]] = []
    model.train()
    bar = progress_bar(total=total_steps, desc="AnomalyCLIP training", disable=not progress)
    for epoch in range(cfg.epochs):
        a_order, n_order = (cycle(g, steps_per_epoch * per_group) for g in (abnormal, normal))
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
            rows.append({"epoch": epoch, "step": len(rows),
                         **{k: float(v.detach()) for k, v in terms.items()},
                         "lr": optimizer.param_groups[0]["lr"]})
            scheduler.step()
            bar.set_postfix(loss=f"{rows[-1]['total']:.3f}")
            bar.update(1)
    bar.close()
    model.eval()
    return model, pd.DataFrame(rows)


def train(benchmark: Any, split: str | None = "train", config: Config | None = None, *,
          profile: str | None = None, backends: Mapping[str, Any] | None = None,
          cache: Any = None, features: Mapping[str, np.ndarray] | None = None,
          progress: bool = True, **overrides: Any) -> tuple[Any, pd.DataFrame]:
    """:func:`fit` on ``split``'s (cached) features; those in ``features`` are not extracted."""
    cfg = configure(Config, config, overrides, "AnomalyCLIP")
    bench = benchmark.subset(split) if split else benchmark
    if len(bench.videos) == 0:
        raise ValueError(f"the benchmark has no videos in split {split!r}")
    roles = clip_roles(profile, cfg, backends)
    feats = benchmark_features(bench, roles, cfg, cache, features)
    labels = dict(zip(bench.videos["name"], bench.videos["label"]))
    classes = [c for c in getattr(benchmark, "classes", []) if c != NORMAL] or None
    return fit(feats, labels, roles.get("clip"), cfg, class_names=classes, progress=progress)

