"""The annotation files LAVAD and VERA ship, read as Benchmarks (notebook 00).

A user who followed a method's README has its converted UCF-Crime / XD-Violence files
(often without the datasets' originals): LAVAD's video list ``<frames folder> <start> <end>
<class ids>`` plus a UCF-style temporal annotation, or one of VERA's ``Data/*.json`` lists.

Trap: intervals are 0-based with inclusive ends, as in the datasets' own files; VERA's
evaluation script reads the end as exclusive (one frame per interval fewer), vadnb keeps the
datasets' meaning. Frame counts come from the files (no decoding).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .benchmarks import (UCF_CLASSES, XD_CLASSES, AnnotationError, Benchmark, _pairs, _Rows,
                         annotation_lines, first_existing, list_row, parse_ucf_annotations,
                         read_text, ucf_class_of, video_name, xd_codes)

#: Class ids of LAVAD's and AnomalyCLIP's label tables (``data/*_labels.csv``): the sorted names.
LAVAD_CLASS_IDS = {"ucf_crime": sorted([*UCF_CLASSES, "Normal"]),
                   "xd_violence": sorted(XD_CLASSES.values())}
FPS = {"ucf_crime": 30.0, "xd_violence": 24.0}
LIST_EXPECTED = "'<frames folder> <start frame> <end frame> <class ids, comma-joined>'"


def _dataset(dataset: str) -> str:
    if dataset not in LAVAD_CLASS_IDS:
        raise ValueError(f"dataset must be one of {sorted(LAVAD_CLASS_IDS)}, got {dataset!r}")
    return dataset


def _resolve(root: Path, relative: str) -> Path:
    """``root / relative``, or a video file of that name (``.mp4``, ``.avi``) if that is missing."""
    path = root / relative
    return first_existing(path, *(path.with_suffix(s) for s in (".mp4", ".avi"))) or path


def load_lavad_annotations(video_list: str | os.PathLike, temporal_annotations: str | os.PathLike,
                           dataset: str = "ucf_crime", frames_root: str | os.PathLike | None = None,
                           fps: float | None = None) -> Benchmark:
    """LAVAD's ``annotations/test.txt`` (or ``anomaly_test.txt``) plus the temporal annotation
    beside it, as a test-split Benchmark. ``dataset`` picks the class-id table
    (:data:`LAVAD_CLASS_IDS`); ``frames_root`` (default: the list's folder) holds the frames.
    """
    ids = LAVAD_CLASS_IDS[_dataset(dataset)]
    video_list, temporal = Path(video_list), Path(temporal_annotations)
    frames_root = Path(frames_root) if frames_root is not None else video_list.parent
    intervals = {Path(name).stem: pairs
                 for name, (_, pairs) in parse_ucf_annotations(temporal, strict=False).items()}
    out = _Rows(fps or FPS[dataset])
    for where, fields, line in annotation_lines(video_list):
        if len(fields) != 4:
            raise AnnotationError(f"{where}: expected {LIST_EXPECTED}, got {len(fields)} fields: "
                                  f"{line!r}")
        start, end, labels = list_row(where, fields, LIST_EXPECTED, ids,
                                      f"{dataset}'s table: {', '.join(ids)}")
        name = video_name(fields[0])
        label = next((c for c in labels if c != "Normal"), "Normal")
        if label != "Normal" and name not in intervals:
            raise AnnotationError(f"{temporal}: no line for the anomalous video {name} of {where}")
        # LAVAD numbers a video's frames from its start frame: shift the intervals with it.
        shifted = [(s - start, e - start) for s, e in intervals.get(name, []) if e >= start]
        if label == "Normal" and shifted:
            raise AnnotationError(f"{where}: {name} is listed as Normal but {temporal} gives it "
                                  "anomalous intervals")
        out.add(name, _resolve(frames_root, fields[0]), "test", label,
                [(max(0, s), e) for s, e in shifted], num_frames=end - start + 1,
                labels="|".join(labels))
    if not out.rows:
        raise AnnotationError(f"{video_list}: no rows; expected {LIST_EXPECTED}")
    return out.benchmark(f"{dataset} (LAVAD files)", video_list.parent,
                         [c for c in ids if c != "Normal"])


def _vera_label(item: dict, dataset: str, where: str) -> tuple[str, list[str], bool | None]:
    """(label, all labels, is_anomalous from the entry if it says) of one VERA entry."""
    name = str(item.get("video_name") or item.get("video"))
    labels = ([XD_CLASSES[c] for c in xd_codes(Path(name).name)] if dataset == "xd_violence"
              else [ucf_class_of(name, where)])
    # UCF_Instruct files put the frame count in video_label: then only "label" says
    frame_count = dataset == "ucf_crime" and str(item.get("video_label")) not in ("0", "1")
    values = [item.get(key) for key in ("video_label", "label")[frame_count:]]
    said = next((bool(int(v)) for v in values
                 if isinstance(v, (int, float)) or (isinstance(v, str) and v in ("0", "1"))), None)
    qa = item.get("QA") or []
    if said is None and qa and isinstance(qa[0], dict):
        answer = str(qa[0].get("a", "")).strip().lower()
        said = True if answer.startswith("yes") else False if answer.startswith("no") else None
    return labels[0], labels, said


def load_vera_annotations(json_file: str | os.PathLike, dataset: str = "ucf_crime",
                          split: str | None = None, videos_root: str | os.PathLike | None = None,
                          fps: float | None = None) -> Benchmark:
    """One of VERA's ``Data/*.json`` files as a Benchmark of ``split`` (default from the file
    name); entries without ``temporal_label`` carry a video-level label only."""
    dataset, json_file = _dataset(dataset), Path(json_file)
    try:
        entries = json.loads(read_text(json_file))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{json_file}: not JSON ({err.msg} at line {err.lineno}); expected "
                              "VERA's list of {\"video\": ..., \"length\": ...} entries") from None
    if not isinstance(entries, list) or not entries:
        raise AnnotationError(f"{json_file}: expected a non-empty JSON list of video entries")
    words = set(re.split(r"[^a-z]+", json_file.stem.lower()))  # "UCF_Eval" -> {"ucf", "eval"}
    split = split or ("train" if "train" in words else "val" if "val" in words else "test")
    root = Path(videos_root) if videos_root is not None else json_file.parent
    out = _Rows(fps or FPS[dataset])
    for i, item in enumerate(entries):
        where = f"{json_file}, entry {i}"
        if not isinstance(item, dict) or not (item.get("video") or item.get("video_name")):
            raise AnnotationError(f"{where}: expected an object with 'video' or 'video_name'")
        if "length" not in item or not str(item["length"]).isdigit() or int(item["length"]) < 1:
            raise AnnotationError(f"{where}: expected 'length', the video's number of frames "
                                  f"(a whole number >= 1), got {item.get('length')!r}")
        relative = str(item.get("video") or item.get("video_name"))
        name, given = video_name(relative), item.get("path")
        label, labels, said = _vera_label(item, dataset, where)
        anomalous = label != "Normal" if said is None else said
        truth = None if anomalous else []  # no temporal_label: a video-level label only
        if "temporal_label" in item:
            values = item["temporal_label"]
            if not isinstance(values, list) or not all(isinstance(v, int) for v in values):
                raise AnnotationError(f"{where}: 'temporal_label' must be a list of frame numbers")
            truth = _pairs(values, where, "[s1, e1, s2, e2, ...] (-1 for none)", allow_none=True)
            if said is not None and said != bool(truth):
                raise AnnotationError(f"{where}: label says {'anomalous' if said else 'normal'} "
                                      f"but temporal_label gives {truth}")
            anomalous = bool(truth)
        if anomalous != (label != "Normal"):
            raise AnnotationError(f"{where}: {name} is {'anomalous' if anomalous else 'normal'} "
                                  f"in the file but its name/folder says {label}")
        path = Path(given) if given and Path(given).exists() else _resolve(root, relative)
        out.add(name, path, split, label, truth, anomalous=anomalous,
                num_frames=int(item["length"]), labels="|".join(labels))
    classes = UCF_CLASSES if dataset == "ucf_crime" else [c for c in XD_CLASSES.values()
                                                          if c != "Normal"]
    return out.benchmark(f"{dataset} (VERA files)", json_file.parent, list(classes))