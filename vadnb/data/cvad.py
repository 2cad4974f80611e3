"""C-ShT and C-Ave: AnyAnomaly's customizable-VAD (C-VAD) label sets (notebooks 00 and 60).

AnyAnomaly re-labels the ShanghaiTech and Avenue test sets *per anomaly type*: for "car",
only frames showing a car are anomalous and every other anomaly counts as normal. Its
``ground_truth/c-shtech_labels/`` (and ``c-avenue_labels/``) hold one ``.h5`` per type or
multi-type set. Evaluate with :func:`vadnb.metrics.cvad_auc` (per type, micro AUC).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .benchmarks import (VIDEO_EXTENSIONS, AnnotationError, Benchmark, _Rows, check_frame_count,
                         first_existing, frame_mask, read_text)

#: The single anomaly types of each C-VAD benchmark, in the official configuration's order.
CVAD_TYPES: dict[str, tuple[str, ...]] = {
    "shanghaitech": ("car", "bicycle", "fighting", "throwing", "hand_truck", "running",
                     "skateboarding", "falling", "jumping", "loitering", "motorcycle"),
    "avenue": ("too_close", "bicycle", "throwing", "running", "dancing"),
}

_PREFIX = {"shanghaitech": "shtech", "avenue": "avenue"}
_FPS = {"shanghaitech": 24.0, "avenue": 25.0}
_ALIASES = {**dict.fromkeys(("shanghaitech", "shtech", "sht", "c-sht", "c-shtech"), "shanghaitech"),
            **dict.fromkeys(("avenue", "cuhk avenue", "c-ave", "c-avenue"), "avenue")}
_FIX = ("Clone https://github.com/SkiddieAhn/Paper-AnyAnomaly and pass its ground_truth/ "
        "folder (holding c-shtech_labels/ and c-avenue_labels/).")


def _labels_dir(ground_truth_dir: str | os.PathLike, dataset: str) -> tuple[str, Path, str]:
    """(dataset's canonical name, its labels folder, its file prefix)."""
    key = _ALIASES.get(str(dataset).strip().lower())
    if key is None:
        raise ValueError(f"unknown C-VAD dataset {dataset!r}; use 'shanghaitech' or 'avenue'")
    root, prefix = Path(ground_truth_dir), _PREFIX[key]
    name = f"c-{prefix}_labels"
    for d in (root / name, root / "ground_truth" / name, root):
        if d.is_dir() and any(d.glob(f"*{prefix}_*_label.h5")):
            return key, d, prefix
    raise FileNotFoundError(f"no {name}/ with *_label.h5 files under {root}\n{_FIX}")


def cvad_types(ground_truth_dir: str | os.PathLike, dataset: str = "shanghaitech"
               ) -> dict[str, list[str]]:
    """The label sets present on disk: ``{"single": [...], "multiple": [...]}``."""
    _, d, prefix = _labels_dir(ground_truth_dir, dataset)
    return {kind: sorted(p.name[len(m + prefix) + 1:-len("_label.h5")]
                         for p in d.glob(f"{m}{prefix}_*_label.h5"))
            for kind, m in (("single", ""), ("multiple", "m_"))}


def cvad_keywords(anomaly_type: str) -> list[str]:
    """The keywords typed for a label set: "jumping-falling-pickup" -> three, "too_close" one."""
    return [k for k in str(anomaly_type).split("-") if k]


def cvad_multi_type_videos(ground_truth_dir: str | os.PathLike,
                           dataset: str = "shanghaitech") -> list[str]:
    """The videos of the multi-type sets (left out of every single-type evaluation), from
    ``c-<dataset>-multiple.json`` and the ``m_*`` label files."""
    _, d, prefix = _labels_dir(ground_truth_dir, dataset)
    json_file = first_existing(d.parent / f"c-{prefix}-multiple.json",
                               d / f"c-{prefix}-multiple.json")
    names = _multi_type_json(json_file) if json_file is not None else set()
    names.update(v for f in sorted(d.glob(f"m_{prefix}_*_label.h5")) for v in _read_h5(f))
    return sorted(names)


def _multi_type_json(json_file: Path) -> set[str]:
    """The video names of ``c-<dataset>-multiple.json``: ``{set: [video, ...]}``, checked."""
    expected = "a JSON object mapping each multi-type set to a list of video names"
    try:
        data = json.loads(read_text(json_file))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{json_file}: not valid JSON: {err.msg} at line {err.lineno}, "
                              f"column {err.colno}; expected {expected}") from None
    if not isinstance(data, dict):
        raise AnnotationError(f"{json_file}: holds a JSON {type(data).__name__}; expected "
                              f"{expected}")
    for key, videos in data.items():
        if not isinstance(videos, list) or not all(isinstance(v, str) for v in videos):
            raise AnnotationError(f"{json_file}: set {key!r} maps to {videos!r}; expected "
                                  f"{expected}")
    return {v for videos in data.values() for v in videos}


def _read_h5(path: Path) -> dict[str, np.ndarray]:
    """``{video: uint8 labels}`` from one label file, checked (1-D, 0/1 only)."""
    import h5py

    out: dict[str, np.ndarray] = {}
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise AnnotationError(f"{path}: not a readable HDF5 label file ({err})") from None
    with f:
        for key in f:
            if not isinstance(f[key], h5py.Dataset):
                raise AnnotationError(f"{path}: entry {key!r} is a group; expected one 1-D "
                                      "dataset of 0/1 frame labels per video at the root")
            out[str(key)] = frame_mask(f[key][()], f"{path}: video {key!r}")
    if not out:
        raise AnnotationError(f"{path}: holds no videos")
    return out


def _find_video(root: Path, name: str) -> Path | None:
    folders = [root / name, root / "testing" / "frames" / name, root / "frames" / name]
    return first_existing(*folders, *(base / f"{name}{ext}" for base in (
        root, root / "testing" / "videos", root / "testing_videos", root / "videos")
        for ext in VIDEO_EXTENSIONS))


def load_cvad(ground_truth_dir: str | os.PathLike, dataset: str = "shanghaitech",
              anomaly_type: str = "car", videos_root: str | os.PathLike | None = None,
              fps: float | None = None) -> Benchmark:
    """One C-VAD label set (a type of :data:`CVAD_TYPES` or a multi-type set such as
    ``"jumping-falling-pickup"``) as a Benchmark of test videos; a single type leaves out the
    multi-type sets' videos. ``videos_root`` None: no paths, else frame counts must match."""
    dataset, d, prefix = _labels_dir(ground_truth_dir, dataset)
    single, multi = (d / f"{m}{prefix}_{anomaly_type}_label.h5" for m in ("", "m_"))
    path = single if single.is_file() else multi
    if not path.is_file():
        have = cvad_types(ground_truth_dir, dataset)
        raise FileNotFoundError(
            f"no C-VAD label set {anomaly_type!r} for {dataset} in {d} (looked for "
            f"{single.name} and {multi.name}); single types: {have['single']}, "
            f"multi-type sets: {have['multiple']}")
    truth = _read_h5(path)
    if path == single:
        excluded = set(cvad_multi_type_videos(ground_truth_dir, dataset))
        truth = {k: v for k, v in truth.items() if k not in excluded}
    root = Path(videos_root) if videos_root is not None else None
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"videos_root is not a folder: {root}")
    out = _Rows(float(fps or _FPS[dataset]))
    for name, labels in sorted(truth.items()):
        video = "" if root is None else _find_video(root, name)
        if video is None:
            raise FileNotFoundError(
                f"{path.name}: video {name!r} not found under {root} (looked for a frame "
                f"folder {name}/ or testing/frames/{name}/, or {name}.avi / .mp4)")
        if video:
            check_frame_count(labels, video, f"{path}: video {name!r}")
        out.add(name, video, "test", anomaly_type if labels.any() else "Normal", labels,
                num_frames=len(labels))
    return out.benchmark(f"c-{prefix}/{anomaly_type}", ground_truth_dir,
                         cvad_keywords(anomaly_type))