"""The Benchmark object and parsers for the public VAD benchmarks (notebook 00 tours them).

Every ``load_*`` returns a :class:`Benchmark` (a video table plus frame-level ground truth)
read from a download's own layout (``write_sample`` writes a tiny copy of each); a wrong line
raises :class:`AnnotationError` naming the file, the line and what was expected. Frame numbers
in text formats are 0-based with inclusive ends. Nothing is dropped silently: a listed video
missing on disk is left out with a warning naming it; a video found twice is an error.
"""

from __future__ import annotations

import codecs
import itertools
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg")
COLUMNS = ["name", "path", "split", "label", "is_anomalous", "num_frames", "fps"]

#: XD-Violence class codes (the part of the file name after ``label_``).
XD_CLASSES = {"A": "Normal", "B1": "Fighting", "B2": "Shooting", "B4": "Riot",
              "B5": "Abuse", "B6": "Car accident", "G": "Explosion"}


class AnnotationError(ValueError):
    """An annotation file that does not follow its format; the message says where and how."""


def read_text(path: str | os.PathLike) -> str:
    """An annotation file's text: UTF-8 (a byte-order mark is dropped) or UTF-16 with a BOM;
    any other encoding is an :class:`AnnotationError` naming the file and the bad byte."""
    data = Path(path).read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    if b"\x00" in data:
        raise AnnotationError(f"{path}: holds NUL bytes: UTF-16 text without a byte-order mark? "
                              "Annotation files are read as UTF-8; convert it, e.g. "
                              "`iconv -f utf-16le -t utf-8 FILE > FILE.utf8`")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise AnnotationError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "annotation files are read as UTF-8: convert it, e.g. "
            "`iconv -f latin1 -t utf-8 FILE > FILE.utf8`") from None


def warn_left_out(items: list, what: str) -> None:
    """One warning naming what a loader leaves out, so a partial download is never silent."""
    if items:
        more = f" and {len(items) - 5} more" if len(items) > 5 else ""
        warnings.warn(f"{len(items)} {what}; they are left out: "
                      f"{', '.join(map(str, items[:5]))}{more}", stacklevel=4)


_FRAME_COUNTS: dict[tuple[str, int, int], int] = {}


def count_frames(path: str | os.PathLike) -> int:
    """Decodable frames of a video file, or images in a frame folder (cached per file state)."""
    p = Path(path)
    stat = p.stat()
    key = (str(p.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _FRAME_COUNTS:
        from ..video import folder_frame_count, probe

        _FRAME_COUNTS[key] = folder_frame_count(p) if p.is_dir() else probe(p).num_frames
    return _FRAME_COUNTS[key]


def intervals_to_labels(intervals: list[tuple[int, int]], num_frames: int) -> np.ndarray:
    """0/1 uint8 frame labels from inclusive 0-based (start, end) pairs, cut at the video end."""
    labels = np.zeros(num_frames, np.uint8)
    for start, end in intervals:
        labels[max(0, start):min(num_frames, end + 1)] = 1
    return labels


def frame_mask(values: object, where: str) -> np.ndarray:
    """A per-frame 0/1 label array (ShanghaiTech's ``.npy``, C-VAD's ``.h5``), checked, as uint8."""
    a = np.asarray(values)
    if a.ndim != 1 or not np.isin(a, (0, 1)).all():
        raise AnnotationError(f"{where}: expected a 1-D array of 0/1, one per frame; got shape "
                              f"{a.shape} with values {np.unique(a)[:5].tolist()}")
    return a.astype(np.uint8)


def check_frame_count(labels: np.ndarray, path: Path, where: str) -> None:
    """One label per frame of the video, else the labels and video are different releases."""
    n = count_frames(path)
    if n != len(labels):
        counted = "images in the frame folder" if path.is_dir() else "decoded from the video"
        raise AnnotationError(
            f"{where} has {len(labels)} frame labels but {path} has {n} frames ({counted}); the "
            "labels and the video must come from the same release (check that the frames were "
            "extracted from the original videos at full rate)")


def _pairs(values: list, where: str, expected: str, allow_none: bool) -> list[tuple[int, int]]:
    """Frame numbers (text or int) as checked (start, end) pairs; (-1, -1) means none."""
    try:
        numbers = [int(v) for v in values]
    except ValueError:
        raise AnnotationError(f"{where}: expected {expected}, got non-integer frame numbers "
                              f"{' '.join(map(str, values))!r}") from None
    if len(numbers) % 2:
        raise AnnotationError(f"{where}: expected {expected}, got an odd number of frame numbers")
    pairs = [p for p in zip(numbers[::2], numbers[1::2]) if not allow_none or p != (-1, -1)]
    bad = [(s, e) for s, e in pairs if s < 0 or e < s]
    if bad:
        raise AnnotationError(f"{where}: expected {expected}; the interval {bad[0]} is not a "
                              "start <= end pair of frame numbers >= 0")
    return pairs


@dataclass
class Benchmark:
    """Videos (``table``, one row each) and ``truth``: per name, 0-based inclusive (start, end)
    intervals, a 0/1 frame array, or ``None`` (a video-level label only: weak supervision)."""

    name: str
    root: Path
    table: pd.DataFrame
    truth: dict[str, list[tuple[int, int]] | np.ndarray | None] = field(repr=False)
    classes: list[str] = field(default_factory=list)
    _checked: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    @property
    def videos(self) -> pd.DataFrame:
        """The video table; num_frames is filled in (by decoding) for videos that lack it."""
        for name in self.table["name"][self.table["num_frames"].isna()]:
            self.num_frames(name)
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
            example = self.table["name"].iloc[0] if len(self.table) else None
            raise KeyError(f"no video named {name!r} in benchmark {self.name!r}; "
                           f"names look like {example!r}")
        return rows.iloc[0]

    def path(self, name: str) -> Path:
        """The file (or frame folder) of video ``name``."""
        return Path(self._row(name)["path"])

    def num_frames(self, name: str) -> int:
        """Number of frames of video ``name`` (decodes the file once if the format lacks it)."""
        n = self._row(name)["num_frames"]
        if pd.isna(n):
            n = count_frames(self.path(name))
            self.table.loc[self.table["name"] == name, "num_frames"] = n
        return int(n)

    def has_frame_labels(self, name: str) -> bool:
        """False for a video with a video-level label only (weakly supervised training)."""
        self._row(name)
        return name not in self.truth or self.truth[name] is not None

    def frame_labels(self, name: str) -> np.ndarray:
        """0/1 uint8 per frame of video ``name``; intervals past its end are cut, with a warning.
        Raises ValueError for a video-level label only, AnnotationError for a wrong-length mask."""
        row = self._row(name)
        truth = self.truth.get(name, [])
        if truth is None:
            raise ValueError(
                f"{name} ({row['split']} split of {self.name}) has a video-level label only "
                f"({row['label']}): the benchmark gives no frame labels for it. Weakly "
                "supervised training uses videos['is_anomalous'] / videos['label']; evaluate "
                "on the test split, whose frames are labelled.")
        video = row["path"] if isinstance(row["path"], str) else ""
        if isinstance(truth, np.ndarray):
            if name not in self._checked and video and Path(video).exists():  # else labels only
                check_frame_count(truth, Path(video), f"the ground truth of {name}")
                self._checked.add(name)
            return truth.astype(np.uint8)
        num_frames = self.num_frames(name)
        if name not in self._checked:  # warn once per video about intervals past its end
            self._checked.add(name)
            last = num_frames - 1
            notes = [f"interval {s}..{e} " + (f"runs past the last frame {last}: cut to {s}..{last}"
                     if s <= last else f"starts past the last frame {last}: it labels nothing")
                     for s, e in truth if e > last]
            if truth and all(s > last for s, _ in truth):
                notes.append(f"so the {row['label']} video's frames are all normal")
            if notes:
                warnings.warn(f"{self.name}: video {name} ({video}) has {num_frames} frames; "
                              f"{'; '.join(notes)}. The annotation and the video disagree: "
                              "check that the video file is complete and from the annotated "
                              "release", stacklevel=2)
        return intervals_to_labels(truth, num_frames)

    def all_frame_labels(self, split: str | None = None,
                         skip_video_level: bool = False) -> dict[str, np.ndarray]:
        """``{name: frame_labels(name)}`` (of ``split``; optionally skipping video-level ones)."""
        table = self.table if split is None else self.subset(split).table
        return {name: self.frame_labels(name) for name in table["name"]
                if not skip_video_level or self.has_frame_labels(name)}

    def video_classes(self) -> dict[str, str]:
        """``{name: label}`` ("Normal" or the class), as ``vadnb.metrics.per_class`` wants."""
        return dict(zip(self.table["name"], self.table["label"]))

    def summary(self) -> pd.DataFrame:
        """Per split: videos, normal / anomalous videos, frames, anomalous frames and videos
        with a video-level label only (decodes videos whose format lacks their length)."""
        v = self.videos
        only = ~v["name"].map(self.has_frame_labels)
        v = v.assign(normal=~v["is_anomalous"], video_level_only=only, anomalous_frames=[
            0 if skip else int(self.frame_labels(n).sum()) for n, skip in zip(v["name"], only)])
        return v.groupby("split", sort=False).agg(
            videos=("name", "size"), normal=("normal", "sum"), anomalous=("is_anomalous", "sum"),
            frames=("num_frames", "sum"), anomalous_frames=("anomalous_frames", "sum"),
            video_level_only=("video_level_only", "sum")).reset_index()

    def subset(self, split: str) -> Benchmark:
        """The videos of one split ("train", "val" or "test") as a Benchmark of their own."""
        known = sorted(self.table["split"].unique())
        if split not in known:
            raise ValueError(f"benchmark {self.name!r} has no split {split!r}; it has {known}")
        table = self.table[self.table["split"] == split].reset_index(drop=True)
        truth = {n: self.truth[n] for n in table["name"] if n in self.truth}
        return Benchmark(f"{self.name}/{split}", self.root, table, truth, list(self.classes))


@dataclass
class _Rows:
    """What a loader collects: rows, ground truth, and listed videos missing on disk."""

    fps: float
    rows: list[dict] = field(default_factory=list)
    truth: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)

    def add(self, name: str, path: str | os.PathLike, split: str, label: str, truth: object, *,
            num_frames: int | None = None, anomalous: bool | None = None, **extra: object) -> None:
        """One video; ``num_frames`` None is counted when needed, ``extra`` become columns."""
        self.rows.append(dict(name=name, path=str(path), split=split, label=label,
                              is_anomalous=label != "Normal" if anomalous is None else anomalous,
                              num_frames=num_frames, fps=self.fps, **extra))
        self.truth[name] = truth

    def benchmark(self, name: str, root: str | os.PathLike, classes: list[str] | None = None,
                  left_out: str = "", none_found: str | None = None) -> Benchmark:
        """The Benchmark, after a warning about ``missing`` (and ``none_found`` if empty)."""
        warn_left_out(self.missing, left_out)
        if none_found is not None and not self.rows:
            raise FileNotFoundError(none_found)
        extra = list(dict.fromkeys(k for row in self.rows for k in row if k not in COLUMNS))
        table = pd.DataFrame(self.rows, columns=COLUMNS + extra).astype(
            {"num_frames": "Int64", "is_anomalous": bool, "fps": float})
        if table["num_frames"].notna().all():
            table["num_frames"] = table["num_frames"].astype("int64")
        dup = table["name"][table["name"].duplicated()].tolist()
        if dup:
            raise AnnotationError(f"{name}: the video name {dup[0]!r} occurs twice; names must be "
                                  "unique within a benchmark")
        classes = sorted(set(table["label"]) - {"Normal"}) if classes is None else classes
        return Benchmark(name, Path(root), table, self.truth, list(classes))


def first_existing(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.exists()), None)


def _root(root: str | os.PathLike, key: str, what: str) -> tuple[Path, str]:
    """``root``, checked, and the hint ending every missing-file error of benchmark ``key``."""
    from .samples import SAMPLE_LAYOUTS

    layout = SAMPLE_LAYOUTS[key]
    fix = f"Download it from {layout['download']} and pass the folder holding {layout['files']}."
    return _need(Path(root), what, fix), fix


def _need(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}\n{fix}")
    return path


def _index_videos(root: Path) -> dict[str, list[Path]]:
    """Every video file under ``root`` by file name: the copies found, sorted."""
    index: dict[str, list[Path]] = {}
    for p in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS):
        index.setdefault(p.name, []).append(p)
    return index


def _labelled_copy(copies: list[Path], folder: str | None, root: Path) -> Path:
    """Among same-named files, the one in ``folder``; any other choice would be a guess."""
    if len(copies) == 1:
        return copies[0]
    in_place = [p for p in copies if folder is not None and p.parent.name == folder]
    if len(in_place) == 1:
        return in_place[0]
    where = f"none of them in a folder named {folder!r}, " if folder and not in_place else ""
    raise ValueError(f"{copies[0].name} is under {root} {len(copies)} times ({where}"
                     f"{' and '.join(str(p) for p in copies)}); cannot tell which copy the "
                     "annotation labels: remove or rename the extra copies")


UCF_EXPECTED = ("'<name>.mp4  <Class>  s1  e1  s2  e2' (six fields: file name, class, two "
                "start/end frame pairs, -1 -1 for no interval)")
LAVAD_TEMPORAL_EXPECTED = "'<name> <class> s1 e1 [s2 e2 ...]' (-1 -1 for no interval)"


def parse_ucf_annotations(path: str | os.PathLike, strict: bool = True
                          ) -> dict[str, tuple[str, list[tuple[int, int]]]]:
    """Read a UCF-Crime style temporal annotation file: ``{file name: (class, intervals)}``.
    ``strict=False`` reads LAVAD's copies: any number of pairs, names without an extension,
    a line repeated word for word (a video on two differing lines is an error naming both)."""
    path, seen = Path(path), {}
    expected = UCF_EXPECTED if strict else LAVAD_TEMPORAL_EXPECTED
    out: dict[str, tuple[str, list[tuple[int, int]]]] = {}
    for where, fields, line in annotation_lines(path):
        if len(fields) != 6 if strict else len(fields) < 4:
            raise AnnotationError(f"{where}: expected {expected}, got {len(fields)} fields: "
                                  f"{line!r}")
        name, label = fields[0], fields[1]
        if strict and Path(name).suffix.lower() not in VIDEO_EXTENSIONS:
            raise AnnotationError(f"{where}: expected {UCF_EXPECTED}; {name!r} is not a video "
                                  "file name")
        intervals = _pairs(fields[2:], where, expected, allow_none=True)
        if label == "Normal" and intervals:
            raise AnnotationError(f"{where}: a 'Normal' video cannot have anomalous intervals: "
                                  f"{line!r}")
        first_where, first_fields = seen.setdefault(name, (where, fields))
        if strict and first_where != where:
            raise AnnotationError(f"{where}: {name} is annotated twice")
        if first_fields != fields:
            raise AnnotationError(
                f"{where}: video {Path(name).stem} is annotated again, differently from "
                f"{first_where} ({' '.join(first_fields)!r} vs {' '.join(fields)!r}); keep the "
                "right line")
        out[name] = (label, intervals)
    if not out:
        raise AnnotationError(f"{path}: no annotation lines; expected {expected}")
    return out


#: UCF-Crime's 13 anomaly classes, as its folders and annotation files spell them.
UCF_CLASSES = ["Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting",
               "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"]


def annotation_lines(path: str | os.PathLike) -> Iterator[tuple[str, list[str], str]]:
    """``("<file>, line <n>", fields, line)`` for each non-blank line of an annotation file."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split()
        if fields:
            yield f"{path}, line {number}", fields, line


def parse_video_list(path: str | os.PathLike, expected: str) -> list[tuple[str, str]]:
    """``(where, line)`` for each non-blank line of a list file (one video per line), stripped."""
    lines = [(where, line.strip()) for where, _, line in annotation_lines(path)]
    if not lines:
        raise AnnotationError(f"{path}: no lines; expected {expected}")
    return lines


def list_row(where: str, fields: list[str], expected: str, ids: list[str], table: str
             ) -> tuple[int, int, list[str]]:
    """Start, end and class names of a ``<path> <start> <end> <class ids, comma-joined>`` row
    (LAVAD's and AnomalyCLIP's lists); ``ids`` is the id table, ``table`` names it in errors."""
    try:
        start, end = int(fields[1]), int(fields[2])
        class_ids = [int(v) for v in fields[3].split(",")]
    except ValueError:
        raise AnnotationError(f"{where}: expected {expected}, got {' '.join(fields)!r}") from None
    if start < 0 or end < start:
        raise AnnotationError(f"{where}: frames {start}..{end} are not a start <= end range")
    bad = [i for i in class_ids if not 0 <= i < len(ids)]
    if bad:
        raise AnnotationError(f"{where}: class id {bad[0]} is not one of 0..{len(ids) - 1} "
                              f"({table})")
    return start, end, [ids[i] for i in class_ids]


def ucf_class_of(relative: str, where: str) -> str:
    """The class of a UCF-Crime video from its folder (``Arson/Arson011_x264.mp4``) or name."""
    path = Path(relative)
    for part in path.parts[-2::-1]:  # the innermost class (or normal) folder
        if part in UCF_CLASSES or "normal" in part.lower():
            return part if part in UCF_CLASSES else "Normal"
    match = re.match(r"([A-Za-z]+?)\d", path.stem)
    if path.stem.lower().startswith("normal"):
        return "Normal"
    if match and match.group(1) in UCF_CLASSES:
        return match.group(1)
    raise AnnotationError(f"{where}: cannot tell the class of {relative!r}; expected a path like "
                          "'Arson/Arson011_x264.mp4' or 'Training_Normal_Videos_Anomaly/"
                          "Normal_Videos001_x264.mp4' (class folder, then file)")


def split_validation(table: pd.DataFrame, fraction: float, seed: int = 0) -> set[str]:
    """Names of a reproducible, class-stratified validation share of ``table``'s videos:
    per label, ``round(fraction * n)`` (at least one of two or more) of the sorted names,
    shuffled with ``numpy.random.default_rng(seed)``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {fraction!r}")
    if fraction == 0:
        return set()
    rng, chosen = np.random.default_rng(seed), set()
    for _, part in table.groupby("label"):
        names = np.array(sorted(part["name"]))
        k = max(int(round(fraction * len(names))), int(len(names) >= 2))
        chosen.update(names[rng.permutation(len(names))[:k]].tolist())
    return chosen


def _apply_validation(rows: list[dict], val: float | str | os.PathLike | list[str] | None,
                      seed: int, where: str) -> None:
    """Move training rows to the "val" split: a fraction (stratified) or a list of names."""
    train = [r for r in rows if r["split"] == "train"]
    if val is None or not train:
        return
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        names = split_validation(pd.DataFrame(train), float(val), seed)
    else:
        given = [line for _, line in parse_video_list(val, "one training video per line")
                 ] if isinstance(val, (str, os.PathLike)) else list(val)
        names = {Path(v).stem for v in given}
        unknown = sorted(names - {r["name"] for r in train})
        if unknown:
            raise AnnotationError(f"{where}: {len(unknown)} validation videos are not training "
                                  f"videos found here (e.g. {unknown[0]!r}); a validation list "
                                  "names videos of the training list")
    for row in train:
        row["split"] = "val" if row["name"] in names else "train"


def load_ucf_crime(root: str | os.PathLike, annotations: str | os.PathLike | None = None,
                   fps: float = 30.0, train_list: str | os.PathLike | None = None,
                   val: float | str | os.PathLike | list[str] | None = 0.1,
                   seed: int = 0) -> Benchmark:
    """UCF-Crime at ``root``: the 290 annotated test videos, and the 1610 of ``Anomaly_Train.txt``
    (video-level labels only) as train, of which ``val`` (a stratified fraction with ``seed``,
    a list file or names, or None) becomes "val". Videos are found by file name under ``root``.
    """
    root, fix = _root(root, "ucf_crime", "UCF-Crime folder")
    annotations = annotations or min(root.rglob("Temporal_Anomaly_Annotation*.txt"), default=None)
    if annotations is None:
        raise FileNotFoundError(f"no Temporal_Anomaly_Annotation_for_Testing_Videos.txt under "
                                f"{root}\n{fix}")
    parsed = parse_ucf_annotations(annotations)
    files, out = _index_videos(root), _Rows(fps)

    def add(file_name: str, folder: str | None, split: str, label: str, truth: object) -> None:
        if file_name not in files:
            out.missing.append(file_name)
        else:
            path = _labelled_copy(files[file_name], folder, root)
            out.add(Path(file_name).stem, path, split, label, truth)

    for file_name, (label, intervals) in parsed.items():  # the download's test folders:
        folder = label if label != "Normal" else "Testing_Normal_Videos_Anomaly"
        add(file_name, folder, "test", label, intervals)
    train_list = train_list or min(root.rglob("Anomaly_Train.txt"), default=None)
    if train_list is not None:
        expected = "one video per line, 'Class/Name_x264.mp4'"
        for where, relative in parse_video_list(train_list, expected):
            file_name = Path(relative).name
            if Path(file_name).suffix.lower() not in VIDEO_EXTENSIONS:
                raise AnnotationError(f"{where}: expected {expected}; {relative!r} is not a "
                                      "video file")
            if Path(file_name).stem in out.truth:
                raise AnnotationError(f"{where}: {file_name} is a test video too; the training "
                                      "and test lists must not overlap")
            label = ucf_class_of(relative, where)  # anomalous: a video-level label only
            add(file_name, Path(relative).parent.name or None, "train", label,
                [] if label == "Normal" else None)
        _apply_validation(out.rows, val, seed, str(train_list))
    return out.benchmark(
        "ucf_crime", root, left_out=f"listed UCF-Crime videos not found under {root}",
        none_found=f"none of the {len(parsed)} videos in {annotations} is under {root}\n{fix}")


XD_EXPECTED = "'<video name> s1 e1 [s2 e2 ...]' (a name, then start/end frame pairs)"


def xd_codes(file_name: str) -> list[str]:
    """Every class code in an XD-Violence file name: ``..._label_G-B2-0`` -> ``["G", "B2"]``."""
    match = re.search(r"label_([A-Z0-9]+(?:-[A-Z0-9]+)*)", file_name)
    codes = [c for c in match.group(1).split("-") if c != "0"] if match else []
    if not codes or any(c not in XD_CLASSES for c in codes):
        raise AnnotationError(f"{file_name}: expected an XD-Violence name with 'label_<codes>' "
                              f"(codes {', '.join(XD_CLASSES)}, joined by '-')")
    return codes


def load_xd_violence(root: str | os.PathLike, annotations: str | os.PathLike | None = None,
                     fps: float = 24.0, val: float | str | os.PathLike | list[str] | None = None,
                     seed: int = 0) -> Benchmark:
    """XD-Violence's videos under ``root``, split by a folder name holding "test" or "train"
    (training videos: video-level labels; ``val`` as in :func:`load_ucf_crime`). ``label`` is
    the first class coded in the name, ``labels`` all of them ("Explosion|Shooting")."""
    root, fix = _root(root, "xd_violence", "XD-Violence folder")
    annotations = _need(Path(annotations) if annotations else root / "annotations.txt",
                        "XD-Violence annotations.txt", fix)
    intervals = _xd_intervals(annotations)
    found, out = _index_videos(root), _Rows(fps)
    for file_name, copies in found.items():
        path, name = _labelled_copy(copies, None, root), Path(file_name).stem
        codes = xd_codes(name)
        label = XD_CLASSES[codes[0]]
        folders = [p.lower() for p in path.relative_to(root).parts[:-1]]
        split = next(("test" if "test" in f else "train" for f in folders
                      if "test" in f or "train" in f), "test")
        if split == "test" and label != "Normal" and name not in intervals:
            raise AnnotationError(f"{annotations}: no line for the violent test video "
                                  f"{file_name}; expected {XD_EXPECTED}")
        if split == "train" and name in intervals:
            raise AnnotationError(f"{annotations}: {name} is annotated but lies in the "
                                  f"training folder {path.parent}; a video is in one split")
        truth = intervals.get(name, []) if split == "test" else []
        if split == "train" and label != "Normal":
            truth = None  # a violent training video has a video-level label only
        out.add(name, path, split, label, truth, labels="|".join(XD_CLASSES[c] for c in codes))
    on_disk = {Path(f).stem for f in found}
    out.missing = [f"{n}.mp4" for n in intervals if n not in on_disk]
    _apply_validation(out.rows, val, seed, str(root))
    return out.benchmark("xd_violence", root, [c for c in XD_CLASSES.values() if c != "Normal"],
                         f"annotated XD-Violence videos (in {annotations.name}) not found "
                         f"under {root}", f"no .mp4 videos under {root}\n{fix}")


def _xd_intervals(annotations: Path) -> dict[str, list[tuple[int, int]]]:
    """``{violent test video: intervals}`` from XD-Violence's ``annotations.txt``."""
    intervals: dict[str, list[tuple[int, int]]] = {}
    for where, fields, line in annotation_lines(annotations):
        if len(fields) < 3:
            raise AnnotationError(f"{where}: expected {XD_EXPECTED}, got {line!r}")
        name = fields[0].removesuffix(".mp4")
        try:
            codes = xd_codes(name)
        except AnnotationError as err:
            raise AnnotationError(f"{where}: {err}") from None
        if codes == ["A"]:
            raise AnnotationError(f"{where}: {name} is a normal video (label_A) and cannot have "
                                  "anomalous intervals; expected only violent videos in "
                                  f"{annotations.name}")
        if name in intervals:
            raise AnnotationError(f"{where}: {name} is annotated twice")
        intervals[name] = _pairs(fields[1:], where, XD_EXPECTED, allow_none=False)
    return intervals


#: ShanghaiTech's classes in the weakly supervised split, in the id order AnomalyCLIP's
#: lists use (``data/sht_labels.csv`` of its repository: 17 anomaly classes, normal is id 8).
SHT_CLASSES = ["car", "chasing", "circuit", "fall", "fighting", "hurdle", "jumping", "monocycle",
               "normal", "push", "robbery", "running", "skateboard", "step", "stoop",
               "throwing object", "vaudeville", "vehicle"]


def video_name(listed: str) -> str:
    """A video's name from a listed path: the file name without a video extension."""
    path = Path(listed)
    return path.stem if path.suffix.lower() in VIDEO_EXTENSIONS else path.name


def _sht_video(root: Path, name: str) -> Path:
    """Where ShanghaiTech keeps video ``name``: a test frame folder or a training video."""
    candidates = [root / "testing" / "frames" / name, *(root / part / "videos" / f"{name}{ext}"
                  for part in ("testing", "training") for ext in (".avi", ".mp4")),
                  root / "training" / "frames" / name]
    return first_existing(*candidates) or candidates[0]


def _sht_list(path: Path) -> dict[str, str | None]:
    """``{name: class or None}`` from a weak-split list of names or AnomalyCLIP's rows."""
    expected = ("one video per line: a name like '01_0014', or AnomalyCLIP's "
                "'<path> <start> <end> <class id>'")
    out: dict[str, str | None] = {}
    for where, line in parse_video_list(path, expected):
        fields = line.split()
        if len(fields) not in (1, 4):
            raise AnnotationError(f"{where}: expected {expected}, got {line!r}")
        classes = list_row(where, fields, expected, SHT_CLASSES,
                           "AnomalyCLIP's sht_labels.csv")[2] if len(fields) == 4 else [None]
        out[video_name(fields[0])] = classes[0]
    return out


def load_shanghaitech(root: str | os.PathLike, fps: float = 24.0, split: str = "one-class",
                      train_list: str | os.PathLike | None = None,
                      test_list: str | os.PathLike | None = None) -> Benchmark:
    """ShanghaiTech Campus: ``split="one-class"`` tests the masked videos; ``split="weak"``
    (Zhong et al. 2019) takes ``train_list`` / ``test_list`` (plain names, or AnomalyCLIP's rows
    with a class of :data:`SHT_CLASSES`), anomalous training videos video-level only."""
    root, fix = _root(root, "shanghaitech", "ShanghaiTech folder")
    if split not in ("one-class", "weak"):
        raise ValueError(f"split must be 'one-class' or 'weak', got {split!r}")
    mask_dir = first_existing(root / "testing" / "test_frame_mask", root / "test_frame_mask")
    if mask_dir is None:
        raise FileNotFoundError(f"no test_frame_mask/ folder under {root}\n{fix}")
    masks: dict[str, np.ndarray] = {}
    for mask_file in sorted(mask_dir.glob("*.npy")):
        try:
            mask = np.load(mask_file, allow_pickle=False)
        except ValueError as err:
            raise AnnotationError(f"{mask_file}: not a numpy .npy array ({err})") from None
        masks[mask_file.stem] = frame_mask(mask, str(mask_file))
    if not masks:
        raise FileNotFoundError(f"no .npy masks in {mask_dir}\n{fix}")
    if split == "one-class":  # the training videos are all normal
        train_dir = first_existing(root / "training" / "videos", root / "training" / "frames")
        listed = {"test": dict.fromkeys(masks), "train": {
            item.name if item.is_dir() else item.stem: "normal"
            for item in (sorted(train_dir.iterdir()) if train_dir else [])
            if item.is_dir() or item.suffix.lower() in VIDEO_EXTENSIONS}}
    elif train_list is None or test_list is None:
        raise ValueError("split='weak' needs train_list and test_list (e.g. SH_Train_new.txt "
                         "and SH_Test_NEW.txt, or AnomalyCLIP's Anomaly_Train_*.txt rows)")
    else:
        listed = {"train": _sht_list(Path(train_list)), "test": _sht_list(Path(test_list))}
        both = sorted(set(listed["train"]) & set(listed["test"]))
        if both:
            raise AnnotationError(f"{train_list} and {test_list} both list {both[0]!r}; a video "
                                  "belongs to one split")
    out = _Rows(fps)
    for part, videos in listed.items():
        for name, label in videos.items():
            mask, path = masks.get(name), _sht_video(root, name)
            # a test video needs its mask, unless it is a (normal) training video of the dataset
            if part == "test" and mask is None and not ("training" in path.parts
                                                        and label in (None, "normal")):
                raise AnnotationError(f"{test_list}: test video {name} has no mask in "
                                      f"{mask_dir} and is not a normal training video")
            if mask is not None and path.is_dir():
                check_frame_count(mask, path, str(mask_dir / f"{name}.npy"))
            anomalous = bool(mask.any()) if mask is not None else label not in (None, "normal")
            default = "Abnormal" if anomalous else "Normal"
            label = "Normal" if label == "normal" else label or default
            truth = mask if mask is not None else []
            if part == "train" and anomalous:
                truth = None  # weak supervision: an anomalous training video: video-level only
            out.add(name, path, part, label, truth, anomalous=anomalous,
                    num_frames=None if mask is None else len(mask))
    given = {label for videos in listed.values() for label in videos.values() if label}
    classes = [c for c in SHT_CLASSES if c != "normal" and c in given] or ["Abnormal"]
    return out.benchmark("shanghaitech", root, classes)


def _mat_variable(mat_file: Path, variable: str, what: str) -> np.ndarray:
    """One variable of a MATLAB file, flattened; its absence names the variables there."""
    from scipy.io import loadmat

    data = loadmat(mat_file)
    if variable not in data:
        raise AnnotationError(f"{mat_file}: expected a variable '{variable}' ({what}); "
                              f"found {sorted(k for k in data if not k.startswith('__'))}")
    return np.asarray(data[variable]).ravel()


def _avenue_from_masks(mat_file: Path) -> np.ndarray:
    frames = _mat_variable(mat_file, "volLabel", "one pixel mask per frame")
    return np.array([int(np.asarray(m).any()) for m in frames], np.uint8)


def _avenue_from_intervals(mat_file: Path) -> list[list[tuple[int, int]]]:
    """Per video, the 0-based intervals of a ``gt`` cell array of 1-based [start; end] pairs."""
    per_video = []
    gt = _mat_variable(mat_file, "gt", "per video, a 2 x K array of [start; end] frames")
    for i, item in enumerate(gt, start=1):
        arr = np.asarray(item)
        if arr.size and (arr.ndim != 2 or arr.shape[0] != 2):
            raise AnnotationError(f"{mat_file}: gt entry {i} has shape {arr.shape}; expected "
                                  "2 x K (row 1 starts, row 2 ends, 1-based inclusive)")
        values = arr.astype(np.float64)
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise AnnotationError(f"{mat_file}: gt entry {i} holds non-integer frame numbers "
                                  f"{values[values != np.round(values)][:3].tolist()}; expected "
                                  "whole 1-based frame numbers")
        starts_ends = (values.astype(np.int64) - 1).T.ravel().tolist()  # 0-based s1 e1 s2 e2 ..
        per_video.append(_pairs(starts_ends, f"{mat_file}: gt entry {i}",
                                "1-based frame numbers >= 1 with start <= end", allow_none=False))
    return per_video


def _avenue_videos(folder: Path) -> list[Path]:
    """A folder's videos named by number (``01.avi``): ground truth is matched by it."""
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    warn_left_out([p.name for p in videos if not p.stem.isdigit()], f"files in {folder} do not "
                  "follow Avenue's naming 'NN.avi' (the video's number)")
    return [p for p in videos if p.stem.isdigit()]


def load_avenue(root: str | os.PathLike, annotations: str | os.PathLike | None = None,
                fps: float = 25.0) -> Benchmark:
    """CUHK Avenue (training videos as ``train_NN``); ground truth from the pixel masks, or
    ``annotations``: a ``.mat`` whose ``gt`` holds 1-based [start; end] pairs per video."""
    root, fix = _root(root, "avenue", "Avenue folder")
    video_dir = first_existing(root / "testing_videos", root / "testing" / "testing_videos")
    if video_dir is None:
        raise FileNotFoundError(f"no testing_videos/ folder under {root}\n{fix}")
    videos = _avenue_videos(video_dir)
    if not videos:
        raise FileNotFoundError(f"no videos in {video_dir}\n{fix}")
    if annotations is not None:
        per_video: list = _avenue_from_intervals(Path(annotations))
        if len(per_video) != len(videos):
            raise AnnotationError(f"{annotations}: gt has {len(per_video)} entries but "
                                  f"{video_dir} has {len(videos)} videos; expected one entry "
                                  "per video, in order")
    else:
        mask_dir = next((d for d in root.rglob("testing_label_mask") if d.is_dir()), None)
        if mask_dir is None:
            raise FileNotFoundError(f"no ground_truth_demo/testing_label_mask/ under {root} and "
                                    f"no annotations .mat given\n{fix}")
        per_video = [_avenue_from_masks(_need(mask_dir / f"{int(path.stem)}_label.mat",
                                              f"ground truth of {path.name}", fix))
                     for path in videos]
    out = _Rows(fps)
    for path, truth in zip(videos, per_video):
        mask = isinstance(truth, np.ndarray)  # else a list of intervals
        anomalous = bool(truth.any()) if mask else bool(truth)
        out.add(path.stem, path, "test", "Abnormal" if anomalous else "Normal", truth,
                num_frames=len(truth) if mask else None)
    train_dir = first_existing(root / "training_videos", root / "training" / "training_videos")
    for path in _avenue_videos(train_dir) if train_dir is not None else []:
        out.add(f"train_{path.stem}", path, "train", "Normal", [])  # Avenue's training: normal
    return out.benchmark("avenue", root, ["Abnormal"])


def load_ubnormal(root: str | os.PathLike, fps: float = 30.0) -> Benchmark:
    """UBnormal, split by the official ``*_video_names.txt`` lists (in ``root`` or its
    ``scripts/``). Track frames are 0-based, ``52`` or ``52.0``; ``20.5``, ``inf`` or ``nan``
    name no frame, so they are an error rather than a silent truncation."""
    root, fix = _root(root, "ubnormal", "UBnormal folder")
    out = _Rows(fps)
    splits = {"training": "train", "validation": "val", "test": "test"}
    for kind, long_split in itertools.product(("abnormal", "normal"), splits):
        list_name = f"{kind}_{long_split}_video_names.txt"
        list_file = first_existing(root / list_name, root / "scripts" / list_name)
        if list_file is None:
            raise FileNotFoundError(f"split list {list_name} not found in {root} or "
                                    f"{root / 'scripts'}\n{fix}")
        for where, _, line in annotation_lines(list_file):
            name = line.strip()
            match = re.fullmatch(r"(abnormal|normal)_scene_(\d+)_scenario_\d+(_\w+)?", name)
            if not match or match.group(1) != kind:
                raise AnnotationError(f"{where}: expected a name like "
                                      f"'{kind}_scene_3_scenario_1', got {name!r}")
            path = root / f"Scene{match.group(2)}" / f"{name}.mp4"
            if not path.exists():
                out.missing.append(path.relative_to(root))
                continue
            tracks = path.parent / f"{name}_annotations" / f"{name}_tracks.txt"
            intervals = _ubnormal_tracks(tracks, fix) if kind == "abnormal" else []
            out.add(name, path, splits[long_split], "Abnormal" if intervals else "Normal",
                    intervals)
    return out.benchmark(
        "ubnormal", root, ["Abnormal"], f"listed UBnormal videos not found under {root}",
        f"none of the videos in the split lists is under {root}\n{fix}")


def _ubnormal_tracks(tracks_file: Path, fix: str) -> list[tuple[int, int]]:
    """The 0-based inclusive (start, end) frames of every track (see :func:`load_ubnormal`)."""
    expected = "'object_id,start_frame,end_frame' (three comma-separated integers)"
    intervals = []
    for where, _, line in annotation_lines(_need(tracks_file, "UBnormal tracks file", fix)):
        fields = [f.strip() for f in line.split(",")]
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values = []
        if len(fields) != 3 or len(values) != 3:
            raise AnnotationError(f"{where}: expected {expected}, got {line!r}")
        bad = [f for f, v in zip(fields, values) if not v.is_integer()]  # inf and nan too
        if bad:
            raise AnnotationError(f"{where}: expected {expected}; {bad[0]!r} is not a whole frame "
                                  "number (UBnormal's tracks hold 0-based frame indices)")
        intervals += _pairs([int(v) for v in values[1:]], where, expected, allow_none=False)
    return intervals