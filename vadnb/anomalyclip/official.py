"""Readers of lucazanella/AnomalyCLIP's released files: recipes, class orders, features,
list files, and Lightning checkpoints converted to vadnb's format."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .core import NORMAL, Config
from .model import _checkpoint_paths
from .run import feature_scale


#: The official per-dataset settings (configs/{model,experiment}/*.yaml) as Config overrides,
#: spelling out the official training rules so they survive any change of Config's defaults.
_OFFICIAL_TRAINING = {"lr_schedule": "per_epoch", "drop_last": True,
                      "smooth_within_videos": False}
RECIPES: dict[str, dict[str, Any]] = {
    "ucf_crime": {"config": {**_OFFICIAL_TRAINING}, "paper": "frame AUC 86.36"},
    "xd_violence": {"config": {**_OFFICIAL_TRAINING, "emb_size": 128, "lr": 5e-6},
                    "paper": "frame AP 78.51"},
    "shanghaitech": {"config": {**_OFFICIAL_TRAINING, "lr": 5e-4, "depth": 2,
                                "concat_features": True, "warmup_epochs": 10, "epochs": 100},
                     "paper": "frame AUC 98.07 (weakly supervised split)"},
}

#: Class order of each released model (``data/*_labels.csv``; the Normal row is dropped).
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
    """The official Config for ``dataset`` ("ucf_crime", ...), ``overrides`` on top."""
    return Config(**{**RECIPES[_dataset_key(dataset)]["config"], **overrides})


def load_features(npy_root: str | os.PathLike, list_file: str | os.PathLike | None = None,
                  ncrops: int = 1, crop: int = 0) -> dict[str, np.ndarray]:
    """Video name -> float32 ``[T, D]`` from the release's ``.npy`` files (``[T * ncrops, D]``,
    a frame's crops adjacent; keep ``crop``), only those ``list_file`` names if given.
    Warns, naming the file, when its rows are L2-normalised (not the release's raw scale)."""
    root = Path(npy_root)
    if not root.is_dir():
        raise FileNotFoundError(f"feature folder not found: {root}; download the pre-extracted "
                                "features (see the AnomalyCLIP README) and unpack them there")
    if not 0 <= crop < ncrops:
        raise ValueError(f"crop must be in [0, {ncrops}), got {crop}")
    paths = sorted(root.rglob("*.npy")) if list_file is None else [
        root / (f[0].removesuffix(".npy") + ".npy") for _, _, f in _lines(list_file, "list file")]
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


class _Inert:
    """A pickled hyper-parameter object of a release, replaced: accepts anything, runs nothing."""

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def __call__(self, *_: Any, **__: Any) -> "_Inert":
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass


def _safe_torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``, pickled non-tensor objects becoming :class:`_Inert`."""
    import torch.serialization as ts
    try:
        unsafe = ts.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: not a torch checkpoint ({err})") from err
    try:
        with ts.safe_globals([(type(n.rsplit(".", 1)[-1], (_Inert,), {}), n) for n in unsafe]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: could not be read with torch.load(weights_only=True): {err}") from err


#: Official (Lightning) key prefix -> vadnb key, for the parts that map one to one.
_RELEASE_KEYS = {
    "net.text_encoder.text_projection": "prompts.text_projection",
    **{f"net.selector_model.bn_layer.{k}": f"norm.{k}"
       for k in ("running_mean", "running_var", "num_batches_tracked")},
    **{f"net.temporal_model.{a}.{p}": f"temporal.{b}.{p}" for p in ("weight", "bias")
       for a, b in [("projection", "projection"), ("classifier.layer_norm", "head_norm"),
                    ("classifier.linear", "head")]},
}
_BLOCK = r"net\.temporal_model\.axial_attn\.layers\.blocks\.(\d+)\."


def map_release_state(state: Mapping[str, Any], normal_id: int) -> dict[str, Any]:
    """The official ``state_dict`` (``net.…``) -> vadnb :class:`AnomalyCLIP` keys, without CLIP's
    weights and the Normal context row; reversible block ``2i`` is layer ``i``'s attentions
    (``f`` segments, ``g`` frames), block ``2i + 1`` its feed-forwards."""
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
            m = re.fullmatch(_BLOCK + r"([fg])\.net\.(.+)", key)
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


def _load_centroid(path: str | os.PathLike) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"normal centroid file not found: {p} (the release ships it as "
                                "ncentroid.pt beside the checkpoint)")
    value = np.load(p, allow_pickle=False) if p.suffix == ".npy" else _safe_torch_load(p)
    value = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
    value = np.asarray(value, dtype=np.float32).reshape(-1)
    if value.size < 2:
        raise ValueError(f"{p}: expected a [D] centroid, got shape {value.shape}")
    return value


def convert_release(checkpoint: str | os.PathLike, centroid: str | os.PathLike,
                    out: str | os.PathLike, dataset: str, *,
                    clip_model: str = "ViT-B-16:openai", profile: str = "colab") -> Path:
    """An official release (``.ckpt`` + ``ncentroid.pt``) -> vadnb's checkpoint; nothing in the
    file runs. The release used OpenAI's ViT-B/16 (the colab profile)."""
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
    emb, in_dim = map(int, state["net.temporal_model.projection.weight"].shape)
    dim = int(mapped["centroid"].shape[0])
    if emb % Config.heads:
        raise ValueError(f"{path}: temporal width {emb} is not divisible by {Config.heads} heads")
    if in_dim not in (dim, dim + len(classes) - 1):
        raise ValueError(f"{path}: the temporal model reads {in_dim}-d inputs but the centroid "
                         f"is {dim}-d; is {Path(centroid).name} the centroid of this checkpoint?")
    blocks = {int(m.group(1)) for k in state for m in [re.match(_BLOCK, k)] if m}
    cfg = recipe(key, n_ctx=int(ctx.shape[1]), emb_size=emb,
                 depth=(max(blocks, default=-1) + 1) // 2, concat_features=in_dim != dim)
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


def _lines(path: str | os.PathLike, what: str) -> list[tuple[str, str, list[str]]]:
    """``(where, line, fields)`` of each non-blank line, ``where`` naming file and line."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    return [(f"{path}, line {n}", line, line.split())
            for n, line in enumerate(Path(path).read_text().splitlines(), 1) if line.split()]


def release_benchmark(npy_root: str | os.PathLike,
                      lists: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]],
                      dataset: str, temporal_annotation: str | os.PathLike | None = None,
                      ncrops: int = 1, crop: int = 0, fps: float = 30.0
                      ) -> tuple[Any, dict[str, np.ndarray]]:
    """``(benchmark, features)`` from the release's features and list files (``lists``: split ->
    file(s) of ``<folder>/<video> <start> <end> <label id>...``, ids into
    :data:`RELEASE_CLASSES`). As the official code, frame ``i`` is anomalous where
    ``start <= i + <list start> <= end`` in ``temporal_annotation`` (inclusive, -1 for none)."""
    from ..data import AnnotationError, Benchmark
    classes = RELEASE_CLASSES[_dataset_key(dataset)]
    normal_id = [c.lower() for c in classes].index("normal")
    root = Path(npy_root)
    rows, features, starts = [], {}, {}
    for split, files in lists.items():
        for list_file in [files] if isinstance(files, (str, os.PathLike)) else list(files):
            lines = _lines(list_file, "list file")
            feats = load_features(root, list_file, ncrops=ncrops, crop=crop)
            for where, line, fields in lines:
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
        for where, line, fields in _lines(temporal_annotation, "temporal annotation"):
            name = Path(fields[0]).stem
            try:
                nums = [int(f) for f in fields[2:]]
            except ValueError:
                raise AnnotationError(f"{where}: expected '<video> <class> <start> <end> "
                                      f"...' with integer frames, got {line!r}") from None
            if len(nums) % 2:
                raise AnnotationError(f"{where}: odd number of frame numbers")
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

