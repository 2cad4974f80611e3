"""Benchmarks as one small object, and parsers for the public VAD benchmarks (notebook 00).

Every parser returns a :class:`Benchmark`: a table of videos (name, path, split, label,
is_anomalous, num_frames, fps) plus the frame-level ground truth of each video. The campus
mini-benchmark (:func:`vadnb.data.load_campus`) uses the UCF-Crime annotation format, so
it goes through the same parser.

Formats (all checked line by line; a wrong line raises :class:`AnnotationError` naming the
file, the line and what was expected):

- UCF-Crime: ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt``, one line per test video
  ``Arson011_x264.mp4  Arson  150  420  680  1267`` (class, then up to two start/end frame
  pairs, ``-1`` for none); videos in class folders; 30 fps.
- XD-Violence: ``annotations.txt``, one line per *violent* test video
  ``<name> s1 e1 [s2 e2 ...]``; the class is coded in the file name after ``label_``
  (A normal, B1 fighting, B2 shooting, B4 riot, B5 abuse, B6 car accident, G explosion); 24 fps.
- ShanghaiTech: ``test_frame_mask/<video>.npy``, one 0/1 per frame.
- CUHK Avenue: ``testing_label_mask/<n>_label.mat`` (``volLabel``: one pixel mask per frame),
  or a single ``.mat`` whose ``gt`` holds, per video, a 2 x K array of 1-based inclusive
  [start; end] frame pairs; videos ``testing_videos/NN.avi``; 25 fps.
- UBnormal: ``Scene<k>/<video>.mp4`` with ``Scene<k>/<video>_annotations/<video>_tracks.txt``
  (one ``object_id,start,end`` line per anomalous object, 0-based inclusive frames) and the
  split lists ``{abnormal,normal}_{training,validation,test}_video_names.txt``; 30 fps.

Frame numbers in the text formats are taken as 0-based with inclusive ends (how the
benchmarks' own evaluation scripts read them); an interval running past the video's end is
cut at the last frame.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "AnnotationError", "Benchmark", "count_frames", "intervals_to_labels",
    "parse_ucf_annotations", "load_ucf_crime", "load_xd_violence", "load_shanghaitech",
    "load_avenue", "load_ubnormal", "XD_CLASSES",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif")
COLUMNS = ["name", "path", "split", "label", "is_anomalous", "num_frames", "fps"]

#: XD-Violence class codes (the part of the file name after ``label_``).
XD_CLASSES = {"A": "Normal", "B1": "Fighting", "B2": "Shooting", "B4": "Riot",
              "B5": "Abuse", "B6": "Car accident", "G": "Explosion"}


class AnnotationError(ValueError):
    """An annotation file that does not follow its format; the message says where and how."""


# --------------------------------------------------------------------------------------
# Frame counts (cached) and interval helpers
# --------------------------------------------------------------------------------------

_FRAME_COUNTS: dict[tuple[str, int, int], int] = {}


def count_frames(path: str | os.PathLike) -> int:
    """Number of decodable frames of a video file, or of images in a frame folder.

    Cached per (path, modification time, size), so asking twice costs nothing.
    """
    p = Path(path)
    stat = p.stat()
    key = (str(p.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _FRAME_COUNTS:
        if p.is_dir():
            _FRAME_COUNTS[key] = sum(1 for f in p.iterdir() if f.suffix.lower() in FRAME_EXTENSIONS)
        else:
            from ..video import probe

            _FRAME_COUNTS[key] = probe(p).num_frames
    return _FRAME_COUNTS[key]


def intervals_to_labels(intervals: list[tuple[int, int]], num_frames: int) -> np.ndarray:
    """0/1 uint8 frame labels from inclusive 0-based (start, end) pairs, cut at the video end.

    >>> intervals_to_labels([(1, 2)], 5).tolist()
    [0, 1, 1, 0, 0]
    """
    labels = np.zeros(num_frames, np.uint8)
    for start, end in intervals:
        labels[max(0, start):min(num_frames, end + 1)] = 1
    return labels


def _ints(fields: list[str], where: str, expected: str) -> list[int]:
    try:
        return [int(v) for v in fields]
    except ValueError:
        raise AnnotationError(f"{where}: expected {expected}, got non-integer frame numbers "
                              f"{' '.join(fields)!r}") from None


def _pairs(numbers: list[int], where: str, expected: str, allow_none: bool) -> list[tuple[int, int]]:
    """Group numbers into (start, end) pairs, checking order; (-1, -1) means none."""
    if len(numbers) % 2:
        raise AnnotationError(f"{where}: expected {expected}, got an odd number of frame numbers")
    pairs = []
    for start, end in zip(numbers[::2], numbers[1::2]):
        if allow_none and start == -1 and end == -1:
            continue
        if start < 0 or end < start:
            raise AnnotationError(f"{where}: expected {expected}; the interval ({start}, {end}) "
                                  "is not a start <= end pair of frame numbers >= 0")
        pairs.append((start, end))
    return pairs


# --------------------------------------------------------------------------------------
# The Benchmark object
# --------------------------------------------------------------------------------------


@dataclass
class Benchmark:
    """A set of videos with frame-level ground truth.

    ``videos`` has one row per video: name, path, split, label ("Normal" or the class),
    is_anomalous, num_frames, fps. ``truth`` maps a video name to its anomalous intervals
    (0-based inclusive (start, end) pairs) or to a ready 0/1 frame array.
    Build one with :func:`vadnb.data.load_campus` or a ``load_*`` parser.
    """

    name: str
    root: Path
    table: pd.DataFrame
    truth: dict[str, list[tuple[int, int]] | np.ndarray] = field(repr=False)
    classes: list[str] = field(default_factory=list)

    @property
    def videos(self) -> pd.DataFrame:
        """The video table; num_frames is filled in (by decoding) for videos that lack it."""
        missing = self.table["num_frames"].isna()
        for i in self.table.index[missing]:
            self.table.loc[i, "num_frames"] = count_frames(self.table.loc[i, "path"])
        if missing.any():
            self.table["num_frames"] = self.table["num_frames"].astype("int64")
        return self.table

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        splits = self.table["split"].value_counts().to_dict()
        return (f"Benchmark({self.name!r}, {len(self)} videos {splits}, "
                f"{int(self.table['is_anomalous'].sum())} anomalous, classes={self.classes})")

    def _row(self, name: str) -> pd.Series:
        rows = self.table[self.table["name"] == name]
        if rows.empty:
            raise KeyError(f"no video named {name!r} in benchmark {self.name!r}; "
                           f"names look like {self.table['name'].iloc[0]!r}")
        return rows.iloc[0]

    def path(self, name: str) -> Path:
        """The file (or frame folder) of video ``name``."""
        return Path(self._row(name)["path"])

    def num_frames(self, name: str) -> int:
        """Number of frames of video ``name`` (decodes the file once if the format lacks it)."""
        row = self._row(name)
        if pd.isna(row["num_frames"]):
            n = count_frames(row["path"])
            self.table.loc[self.table["name"] == name, "num_frames"] = n
            return n
        return int(row["num_frames"])

    def frame_labels(self, name: str) -> np.ndarray:
        """0/1 uint8 array with one entry per frame of video ``name`` (1 = anomalous)."""
        truth = self.truth.get(name, [])
        if isinstance(truth, np.ndarray):
            return truth.astype(np.uint8)
        return intervals_to_labels(truth, self.num_frames(name))

    def all_frame_labels(self, split: str | None = None) -> dict[str, np.ndarray]:
        """``{name: frame_labels(name)}`` for every video (of ``split`` if given)."""
        table = self.table if split is None else self.subset(split).table
        return {name: self.frame_labels(name) for name in table["name"]}

    def video_classes(self) -> dict[str, str]:
        """``{name: label}`` ("Normal" or the class), as ``vadnb.metrics.per_class`` wants."""
        return dict(zip(self.table["name"], self.table["label"]))

    def subset(self, split: str) -> Benchmark:
        """The videos of one split ("train", "val" or "test") as a Benchmark of their own."""
        known = sorted(self.table["split"].unique())
        if split not in known:
            raise ValueError(f"benchmark {self.name!r} has no split {split!r}; it has {known}")
        table = self.table[self.table["split"] == split].reset_index(drop=True)
        truth = {n: self.truth[n] for n in table["name"] if n in self.truth}
        return Benchmark(f"{self.name}/{split}", self.root, table, truth, list(self.classes))


def _make(name: str, root: Path, rows: list[dict], truth: dict, classes: list[str] | None = None
          ) -> Benchmark:
    """Assemble a Benchmark from row dicts (num_frames may be None: filled lazily)."""
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["num_frames"] = table["num_frames"].astype("Int64")
    if table["num_frames"].notna().all():
        table["num_frames"] = table["num_frames"].astype("int64")
    table["is_anomalous"] = table["is_anomalous"].astype(bool)
    table["fps"] = table["fps"].astype(float)
    if classes is None:
        classes = sorted(set(table["label"]) - {"Normal"})
    return Benchmark(name, Path(root), table, truth, list(classes))


def _need(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}\n{fix}")
    return path


def _index_videos(root: Path) -> dict[str, Path]:
    """Every video file under ``root`` by file name."""
    return {p.name: p for p in sorted(root.rglob("*")) if p.suffix.lower() in VIDEO_EXTENSIONS}


# --------------------------------------------------------------------------------------
# UCF-Crime (and the campus benchmark, which uses its format)
# --------------------------------------------------------------------------------------

UCF_EXPECTED = ("'<name>.mp4  <Class>  s1  e1  s2  e2' (six fields: file name, class, two "
                "start/end frame pairs, -1 -1 for no interval)")


def parse_ucf_annotations(path: str | os.PathLike) -> dict[str, tuple[str, list[tuple[int, int]]]]:
    """Read a UCF-Crime style temporal annotation file: ``{file name: (class, intervals)}``."""
    path = Path(path)
    out: dict[str, tuple[str, list[tuple[int, int]]]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{path}, line {number}"
        if len(fields) != 6:
            raise AnnotationError(f"{where}: expected {UCF_EXPECTED}, got {len(fields)} fields: {line!r}")
        name, label = fields[0], fields[1]
        if Path(name).suffix.lower() not in VIDEO_EXTENSIONS:
            raise AnnotationError(f"{where}: expected {UCF_EXPECTED}; {name!r} is not a video file name")
        intervals = _pairs(_ints(fields[2:], where, UCF_EXPECTED), where, UCF_EXPECTED, allow_none=True)
        if label == "Normal" and intervals:
            raise AnnotationError(f"{where}: a 'Normal' video cannot have anomalous intervals: {line!r}")
        if name in out:
            raise AnnotationError(f"{where}: {name} is annotated twice")
        out[name] = (label, intervals)
    if not out:
        raise AnnotationError(f"{path}: no annotation lines; expected {UCF_EXPECTED}")
    return out


def load_ucf_crime(root: str | os.PathLike, annotations: str | os.PathLike | None = None,
                   fps: float = 30.0) -> Benchmark:
    """UCF-Crime's 290 annotated test videos from a downloaded copy at ``root``.

    ``annotations`` defaults to ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt``
    anywhere under ``root``; videos are found by file name anywhere under ``root`` (the
    download keeps them in class folders). Annotated videos that are missing are skipped
    with a warning.
    """
    root = Path(root)
    fix = ("Download UCF-Crime (https://www.crcv.ucf.edu/projects/real-world/) and pass the folder "
           "holding its class folders and Temporal_Anomaly_Annotation_for_Testing_Videos.txt.")
    _need(root, "UCF-Crime folder", fix)
    if annotations is None:
        found = sorted(root.rglob("Temporal_Anomaly_Annotation*.txt"))
        if not found:
            raise FileNotFoundError(f"no Temporal_Anomaly_Annotation_for_Testing_Videos.txt under {root}\n{fix}")
        annotations = found[0]
    parsed = parse_ucf_annotations(annotations)
    files = _index_videos(root)
    rows, truth, missing = [], {}, []
    for file_name, (label, intervals) in parsed.items():
        if file_name not in files:
            missing.append(file_name)
            continue
        name = Path(file_name).stem
        rows.append(dict(name=name, path=str(files[file_name]), split="test", label=label,
                         is_anomalous=label != "Normal", num_frames=None, fps=fps))
        truth[name] = intervals
    if missing:
        warnings.warn(f"{len(missing)} annotated UCF-Crime videos not found under {root} "
                      f"(e.g. {missing[0]}); they are left out", stacklevel=2)
    if not rows:
        raise FileNotFoundError(f"none of the {len(parsed)} videos in {annotations} is under {root}\n{fix}")
    return _make("ucf_crime", root, rows, truth)


# --------------------------------------------------------------------------------------
# XD-Violence
# --------------------------------------------------------------------------------------

XD_EXPECTED = "'<video name> s1 e1 [s2 e2 ...]' (a name, then start/end frame pairs)"


def xd_class(file_name: str) -> str:
    """The class coded in an XD-Violence file name (the first code after ``label_``)."""
    match = re.search(r"label_([A-Z][0-9]?)", file_name)
    if not match or match.group(1) not in XD_CLASSES:
        raise AnnotationError(f"{file_name}: expected an XD-Violence name with 'label_<code>' "
                              f"(codes {', '.join(XD_CLASSES)})")
    return XD_CLASSES[match.group(1)]


def load_xd_violence(root: str | os.PathLike, annotations: str | os.PathLike | None = None,
                     fps: float = 24.0) -> Benchmark:
    """XD-Violence's test videos (those found under ``root``) with ``annotations.txt``.

    Normal videos (``label_A``) are not in the annotation file; a violent video missing from
    it raises an error, since its ground truth would be unknown.
    """
    root = Path(root)
    fix = ("Download the XD-Violence test videos and annotations.txt "
           "(https://roc-ng.github.io/XD-Violence/) and pass the folder holding them.")
    _need(root, "XD-Violence folder", fix)
    annotations = Path(annotations) if annotations else root / "annotations.txt"
    _need(annotations, "XD-Violence annotations.txt", fix)
    intervals: dict[str, list[tuple[int, int]]] = {}
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{annotations}, line {number}"
        if len(fields) < 3:
            raise AnnotationError(f"{where}: expected {XD_EXPECTED}, got {line!r}")
        name = fields[0][:-4] if fields[0].endswith(".mp4") else fields[0]
        xd_class(name)  # a name without a class code is not an XD-Violence line
        intervals[name] = _pairs(_ints(fields[1:], where, XD_EXPECTED), where, XD_EXPECTED, allow_none=False)
    rows, truth = [], {}
    for file_name, path in _index_videos(root).items():
        name = Path(file_name).stem
        label = xd_class(name)
        if label != "Normal" and name not in intervals:
            raise AnnotationError(f"{annotations}: no line for the violent video {file_name}; "
                                  f"expected {XD_EXPECTED}")
        rows.append(dict(name=name, path=str(path), split="test", label=label,
                         is_anomalous=label != "Normal", num_frames=None, fps=fps))
        truth[name] = intervals.get(name, [])
    if not rows:
        raise FileNotFoundError(f"no .mp4 videos under {root}\n{fix}")
    return _make("xd_violence", root, rows, truth,
                 classes=[c for c in XD_CLASSES.values() if c != "Normal"])


# --------------------------------------------------------------------------------------
# ShanghaiTech
# --------------------------------------------------------------------------------------


def load_shanghaitech(root: str | os.PathLike, fps: float = 24.0) -> Benchmark:
    """ShanghaiTech Campus test set: ``test_frame_mask/<video>.npy`` gives each frame's 0/1.

    Videos are the frame folders ``testing/frames/<video>/`` (or ``<video>.avi`` / ``.mp4``
    files in ``testing/videos``) when present. ShanghaiTech has no anomaly classes:
    anomalous videos are labelled "Abnormal".
    """
    root = Path(root)
    fix = ("Download ShanghaiTech Campus (https://svip-lab.github.io/dataset/campus_dataset.html) "
           "and pass the folder holding testing/ (with test_frame_mask/).")
    _need(root, "ShanghaiTech folder", fix)
    mask_dirs = [d for d in (root / "testing" / "test_frame_mask", root / "test_frame_mask") if d.is_dir()]
    if not mask_dirs:
        raise FileNotFoundError(f"no test_frame_mask/ folder under {root}\n{fix}")
    rows, truth = [], {}
    for mask_file in sorted(mask_dirs[0].glob("*.npy")):
        name = mask_file.stem
        try:
            mask = np.load(mask_file, allow_pickle=False)
        except ValueError as err:
            raise AnnotationError(f"{mask_file}: not a numpy .npy array ({err})") from None
        if mask.ndim != 1 or not np.isin(mask, (0, 1)).all():
            raise AnnotationError(f"{mask_file}: expected a 1-D array of 0/1, one per frame; got shape "
                                  f"{mask.shape} with values {np.unique(mask)[:5].tolist()}")
        candidates = [root / "testing" / "frames" / name, root / "testing" / "videos" / f"{name}.avi",
                      root / "testing" / "videos" / f"{name}.mp4"]
        path = next((c for c in candidates if c.exists()), candidates[0])
        anomalous = bool(mask.any())
        rows.append(dict(name=name, path=str(path), split="test",
                         label="Abnormal" if anomalous else "Normal", is_anomalous=anomalous,
                         num_frames=len(mask), fps=fps))
        truth[name] = mask.astype(np.uint8)
    if not rows:
        raise FileNotFoundError(f"no .npy masks in {mask_dirs[0]}\n{fix}")
    return _make("shanghaitech", root, rows, truth, classes=["Abnormal"])


# --------------------------------------------------------------------------------------
# CUHK Avenue
# --------------------------------------------------------------------------------------


def _avenue_from_masks(mat_file: Path) -> np.ndarray:
    from scipy.io import loadmat

    data = loadmat(mat_file)
    if "volLabel" not in data:
        raise AnnotationError(f"{mat_file}: expected a variable 'volLabel' (one pixel mask per frame); "
                              f"found {sorted(k for k in data if not k.startswith('__'))}")
    frames = np.asarray(data["volLabel"]).ravel()
    return np.array([int(np.asarray(m).any()) for m in frames], np.uint8)


def _avenue_from_intervals(mat_file: Path) -> list[list[tuple[int, int]]]:
    from scipy.io import loadmat

    data = loadmat(mat_file)
    if "gt" not in data:
        raise AnnotationError(f"{mat_file}: expected a variable 'gt' (per video, a 2 x K array of "
                              f"[start; end] frames); found {sorted(k for k in data if not k.startswith('__'))}")
    per_video = []
    for i, item in enumerate(np.asarray(data["gt"]).ravel()):
        arr = np.asarray(item)
        if arr.size == 0:
            per_video.append([])
            continue
        if arr.ndim != 2 or arr.shape[0] != 2:
            raise AnnotationError(f"{mat_file}: gt entry {i + 1} has shape {arr.shape}; expected "
                                  "2 x K (row 1 starts, row 2 ends, 1-based inclusive)")
        pairs = [(int(s) - 1, int(e) - 1) for s, e in arr.T]  # 1-based -> 0-based
        per_video.append(_pairs([v for p in pairs for v in p], f"{mat_file}: gt entry {i + 1}",
                                "1-based frame numbers >= 1 with start <= end", allow_none=False))
    return per_video


def load_avenue(root: str | os.PathLike, annotations: str | os.PathLike | None = None,
                fps: float = 25.0) -> Benchmark:
    """CUHK Avenue's 21 test videos ``testing_videos/NN.avi`` with their ground truth.

    Ground truth: the official ``ground_truth_demo/testing_label_mask/<n>_label.mat`` files
    (a frame is anomalous if its pixel mask has any pixel set), or ``annotations`` = a single
    ``.mat`` with a ``gt`` cell array of 1-based [start; end] pairs, one entry per video in order.
    """
    root = Path(root)
    fix = ("Download CUHK Avenue (https://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html) "
           "with its ground_truth_demo, and pass the folder holding testing_videos/.")
    _need(root, "Avenue folder", fix)
    video_dir = next((d for d in (root / "testing_videos", root / "testing" / "testing_videos") if d.is_dir()), None)
    if video_dir is None:
        raise FileNotFoundError(f"no testing_videos/ folder under {root}\n{fix}")
    videos = sorted(p for p in video_dir.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise FileNotFoundError(f"no videos in {video_dir}\n{fix}")
    rows, truth = [], {}
    if annotations is not None:
        per_video = _avenue_from_intervals(Path(annotations))
        if len(per_video) != len(videos):
            raise AnnotationError(f"{annotations}: gt has {len(per_video)} entries but {video_dir} "
                                  f"has {len(videos)} videos; expected one entry per video, in order")
        for path, intervals in zip(videos, per_video):
            truth[path.stem] = intervals
            rows.append(dict(name=path.stem, path=str(path), split="test",
                             label="Abnormal" if intervals else "Normal",
                             is_anomalous=bool(intervals), num_frames=None, fps=fps))
    else:
        mask_dir = next((d for d in root.rglob("testing_label_mask") if d.is_dir()), None)
        if mask_dir is None:
            raise FileNotFoundError(f"no ground_truth_demo/testing_label_mask/ under {root} and no "
                                    f"annotations .mat given\n{fix}")
        for path in videos:
            mat_file = mask_dir / f"{int(path.stem)}_label.mat"
            _need(mat_file, f"ground truth of {path.name}", fix)
            labels = _avenue_from_masks(mat_file)
            truth[path.stem] = labels
            rows.append(dict(name=path.stem, path=str(path), split="test",
                             label="Abnormal" if labels.any() else "Normal",
                             is_anomalous=bool(labels.any()), num_frames=len(labels), fps=fps))
    return _make("avenue", root, rows, truth, classes=["Abnormal"])


# --------------------------------------------------------------------------------------
# UBnormal
# --------------------------------------------------------------------------------------

UBNORMAL_SPLITS = {"training": "train", "validation": "val", "test": "test"}


def load_ubnormal(root: str | os.PathLike, fps: float = 30.0) -> Benchmark:
    """UBnormal: ``Scene<k>/<video>.mp4`` plus ``<video>_annotations/<video>_tracks.txt``.

    Splits come from the official name lists ``{abnormal,normal}_{training,validation,test}_
    video_names.txt`` (looked for in ``root`` and ``root/scripts``). A frame is anomalous when
    it lies inside any track's [start, end]. UBnormal videos carry no class label: anomalous
    videos are labelled "Abnormal".
    """
    root = Path(root)
    fix = ("Download UBnormal (https://github.com/lilygeorgescu/UBnormal) and pass the folder holding "
           "the Scene* folders; put the *_video_names.txt split lists from its scripts/ next to them.")
    _need(root, "UBnormal folder", fix)
    rows, truth = [], {}
    for kind in ("abnormal", "normal"):
        for long_split, split in UBNORMAL_SPLITS.items():
            list_name = f"{kind}_{long_split}_video_names.txt"
            list_file = next((d / list_name for d in (root, root / "scripts") if (d / list_name).exists()), None)
            if list_file is None:
                raise FileNotFoundError(f"split list {list_name} not found in {root} or {root / 'scripts'}\n{fix}")
            for number, line in enumerate(list_file.read_text().splitlines(), start=1):
                name = line.strip()
                if not name:
                    continue
                match = re.fullmatch(r"(abnormal|normal)_scene_(\d+)_scenario_\d+(_\w+)?", name)
                if not match or match.group(1) != kind:
                    raise AnnotationError(f"{list_file}, line {number}: expected a name like "
                                          f"'{kind}_scene_3_scenario_1', got {name!r}")
                scene = root / f"Scene{match.group(2)}"
                path = scene / f"{name}.mp4"
                intervals: list[tuple[int, int]] = []
                if kind == "abnormal":
                    intervals = _ubnormal_tracks(scene / f"{name}_annotations" / f"{name}_tracks.txt", fix)
                rows.append(dict(name=name, path=str(path), split=split,
                                 label="Abnormal" if intervals else "Normal",
                                 is_anomalous=bool(intervals), num_frames=None, fps=fps))
                truth[name] = intervals
    return _make("ubnormal", root, rows, truth, classes=["Abnormal"])


def _ubnormal_tracks(tracks_file: Path, fix: str) -> list[tuple[int, int]]:
    expected = "'object_id,start_frame,end_frame' (three comma-separated integers)"
    _need(tracks_file, "UBnormal tracks file", fix)
    intervals = []
    for number, line in enumerate(tracks_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{tracks_file}, line {number}"
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 3:
            raise AnnotationError(f"{where}: expected {expected}, got {line!r}")
        try:
            values = [int(float(f)) for f in fields]
        except ValueError:
            raise AnnotationError(f"{where}: expected {expected}, got {line!r}") from None
        intervals += _pairs(values[1:], where, expected, allow_none=False)
    return intervals
