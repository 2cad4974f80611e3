"""Mutation run for AnomalyCLIP (issue 23): plant one plausible result-changing bug at a
time in vadnb/anomalyclip, run tests/test_anomalyclip.py, restore the file, and print which
test caught each mutant.

    VADNB_PROFILE=tiny python benchmarks/mutants_anomalyclip.py [--only N ...]

Each mutant is an exact string replacement that must match once; the file is restored
with ``git checkout -- <file>`` after each run (the script refuses to start on a dirty file).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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
     "return epoch / warmup_epochs", "return (epoch + 1) / warmup_epochs"),
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


def run_one(path: Path, old: str, new: str, timeout: int) -> str:
    text = path.read_text()
    if text.count(old) != 1:
        return f"NOT APPLIED ({text.count(old)} matches)"
    path.write_text(text.replace(old, new))
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               "tests/test_anomalyclip.py"], cwd=REPO, capture_output=True,
                              text=True, timeout=timeout)
        failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.M)
        errors = re.findall(r"^ERROR (\S+)", proc.stdout, re.M)
        if failed or errors:
            return "caught by " + (failed or errors)[0].split("::")[-1]
        return "caught (pytest rc %d)" % proc.returncode if proc.returncode else "MISSED"
    except subprocess.TimeoutExpired:
        return "caught? (timed out)"
    finally:
        subprocess.run(["git", "checkout", "--", str(path)], cwd=REPO, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", type=int, nargs="*", help="mutant numbers to run (default: all)")
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args()
    dirty = subprocess.run(["git", "status", "--porcelain", PKG], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.strip()
    if dirty:
        sys.exit(f"{PKG} has uncommitted changes; commit them first:\n{dirty}")
    caught = total = 0
    for i, (name, file, old, new) in enumerate(MUTANTS, 1):
        if args.only and i not in args.only:
            continue
        result = run_one(REPO / PKG / file, old, new, args.timeout)
        total += 1
        caught += result.startswith("caught")
        print(f"{i:2d}  {name:55s} {result}", flush=True)
    print(f"caught {caught} of {total}")


if __name__ == "__main__":
    main()
