"""Mutation run for AnomalyCLIP (issue 23): plant one plausible result-changing bug at a
time in vadnb/anomalyclip and see which test of tests/test_anomalyclip.py catches it
(``_mutants.py``).

    PYTHONPATH=. VADNB_PROFILE=tiny python benchmarks/mutants_anomalyclip.py [NUMBER ...]
"""

from __future__ import annotations

from _mutants import as_rows, main

PKG = "vadnb/anomalyclip/"

#: (name, file, old, new)
MUTANTS: list[tuple[str, str, str, str]] = [
    ("CLIP text pooled one token early", "model.py",
     "end = fz.tokens.argmax(dim=-1)", "end = fz.tokens.argmax(dim=-1) - 1"),
    ("class names keep underscores", "model.py",
     'names = [c.replace("_", " ") for c in class_names]', "names = list(class_names)"),
    ("prompt without its final '.'", "model.py",
     '+ " " + n + "." for n in names]', '+ " " + n for n in names]'),
    ("BatchNorm on batch statistics at test time", "core.py",
     "    model.eval()\n", "    model.eval(); model.norm.train()\n"),  # same line count
    ("video class by max instead of sum", "run.py",
     "[:, :len(class_names)].sum(0)", "[:, :len(class_names)].max(0)"),
    ("release list start offset ignored", "official.py",
     "offset = starts.get(name, 0)", "offset = 0"),
    ("default smoothness within videos", "core.py",
     "    smooth_within_videos: bool = False\n", "    smooth_within_videos: bool = True\n"),
    ("default lr schedule per step", "core.py",
     'lr_schedule: Literal["per_step", "per_epoch"] = "per_epoch"',
     'lr_schedule: Literal["per_step", "per_epoch"] = "per_step"'),
    ("default drop_last off", "core.py", "drop_last: bool = True", "drop_last: bool = False"),
    ("steps per epoch always ceil", "train.py",
     "rounding = math.floor if cfg.drop_last else math.ceil", "rounding = math.ceil"),
    ("warm-up epoch e at (e+1)/warm-up", "train.py",
     "return (epoch / warmup_epochs if", "return ((epoch + 1) / warmup_epochs if"),
    ("normal videos ranked by their largest class", "train.py",
     "rank = torch.where(abnormal[:, None], own, seg.sum(2))",
     "rank = torch.where(abnormal[:, None], own, seg.max(2).values)"),
    ("bottom-k takes the largest", "train.py",
     "largest=False).indices", "largest=True).indices"),
    ("dropped segments still selected", "train.py",
     "top = torch.where(keep, rank, torch.full_like(rank, -1e6)).topk(top_k",
     "top = rank.topk(top_k"),
    ("sparsity over normal videos too", "train.py",
     "sparsity = lambda_sparse * a_scores.mean()", "sparsity = lambda_sparse * scores.mean()"),
    ("projection_normal mean instead of max", "train.py",
     "projection_normal = n_logits.max(dim=2).values.mean()",
     "projection_normal = n_logits.mean()"),
    ("centroid over all videos", "core.py",
     "for v in features if labels[v] == NORMAL]", "for v in features]"),
    ("class directions not normalised", "core.py",
     "return text / text.norm(dim=-1, keepdim=True)", "return text"),
    ("text side not re-centred", "core.py",
     "text = text_features - centroid", "text = text_features"),
    ("p(normal) = score", "core.py",
     "probs = torch.cat([cond * scores[:, None], (1 - scores)[:, None]], dim=1)",
     "probs = torch.cat([cond * scores[:, None], scores[:, None]], dim=1)"),
    ("test padding repeats the last frame", "core.py",
     "return np.arange(padded) % num_frames",
     "return np.minimum(np.arange(padded), num_frames - 1)"),
    ("test grids cut consecutively", "core.py",
     "grid = grid.reshape(cfg.num_segments, grids, cfg.seg_length, -1).transpose(0, 1)",
     "grid = grid.reshape(grids, cfg.num_segments, cfg.seg_length, -1)"),
    ("default weight decay 0.02", "core.py",
     "weight_decay: Annotated[float, Field(ge=0)] = 0.2",
     "weight_decay: Annotated[float, Field(ge=0)] = 0.02"),
    ("default smoothness weight 8e-3", "core.py",
     "lambda_smooth: Annotated[float, Field(ge=0)] = 8e-4",
     "lambda_smooth: Annotated[float, Field(ge=0)] = 8e-3"),
    ("shorter group cycled without drop_last", "train.py",
     "order += perm[:whole or len(perm)]", "order += perm"),
    ("training offsets one short", "train.py",
     "offsets = rng.integers(0, max(spacing - seg_length + 2, 1)",
     "offsets = rng.integers(0, max(spacing - seg_length + 1, 1)"),
    ("segment dropout keeps the dropped", "train.py",
     ">= cfg.segment_dropout)", "< cfg.segment_dropout)"),
    ("likelihoods after the features (ShanghaiTech)", "model.py",
     "torch.cat([logits, centred], dim=-1)", "torch.cat([centred, logits], dim=-1)"),
    ("feature stride ignored at inference", "core.py",
     "features = embed_frames(rt, v, cfg.feature_stride, cfg.batch_frames)",
     "features = embed_frames(rt, v, 1, cfg.batch_frames)"),
    ("NLL of bottom-k on the class column", "train.py",
     "pick(a_scores, bottom[abn]))[..., c].mean()",
     "pick(a_scores, bottom[abn]))[..., 0].mean()"),
    ("abnormal videos ranked by another class", "train.py",
     "own = seg.gather(2, labels.clamp(min=0)", "own = seg.gather(2, (labels.clamp(min=0) + 1) % c"),
]


if __name__ == "__main__":
    main(as_rows(MUTANTS, prefix=PKG), ["tests/test_anomalyclip.py"])
