"""The campus mini-benchmark shipped with the suite (notebook 00 tours it): sixteen 10 fps
clips cut from OpenCV's ``vtest.avi`` with planted anomalies (``data/campus/README.md``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .benchmarks import (AnnotationError, Benchmark, _Rows, annotation_lines, count_frames,
                         parse_ucf_annotations)

GET_THE_DATA = (
    "The campus clips live in the repository's data/campus/ folder: clone the whole repository "
    "(git clone https://github.com/vadnb/vadnb), set VADNB_DATA to a folder holding campus/, "
    "or rebuild them with `python scripts/make_campus.py` (needs `apt-get install opencv-doc`)."
)


def campus_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$VADNB_DATA/campus``, else ``<repo>/data/campus``."""
    if root is not None:
        return Path(root)
    if os.environ.get("VADNB_DATA"):
        return Path(os.environ["VADNB_DATA"]).expanduser() / "campus"
    return Path(__file__).resolve().parents[2] / "data" / "campus"


def verify_checksums(root: str | os.PathLike) -> None:
    """Check every clip against ``SHA256SUMS``; raise ValueError naming the clips that differ."""
    root = Path(root)
    sums = root / "SHA256SUMS"
    if not sums.exists():
        raise FileNotFoundError(f"{sums} not found. {GET_THE_DATA}")
    bad = []
    for where, parts, line in annotation_lines(sums):
        if len(parts) != 2:
            raise AnnotationError(f"{where}: expected '<sha256>  <relative path>', got {line!r}")
        digest, relative = parts
        path = root / relative.lstrip("*")
        if not path.exists():
            bad.append(f"{relative} (missing)")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            bad.append(f"{relative} (content differs)")
    if bad:
        raise ValueError(f"campus clips do not match {sums}: {', '.join(bad)}. "
                         "Restore them with `git checkout data/campus` or rebuild with "
                         "`python scripts/make_campus.py`.")


def load_campus(root: str | os.PathLike | None = None, verify: bool = False) -> Benchmark:
    """The campus mini-benchmark as a Benchmark (``root``: see :func:`campus_root`);
    ``verify=True`` first checks every clip against ``SHA256SUMS``."""
    root = campus_root(root)
    annotations = root / "annotations.txt"
    if not annotations.exists():
        raise FileNotFoundError(f"campus data not found: {annotations} does not exist. "
                                f"{GET_THE_DATA}")
    if verify:
        verify_checksums(root)
    parsed = parse_ucf_annotations(annotations)
    split_of = {}
    for split in ("train", "val", "test"):
        split_file = root / "splits" / f"{split}.txt"
        if not split_file.exists():
            raise FileNotFoundError(f"{split_file} not found. {GET_THE_DATA}")
        for where, _, line in annotation_lines(split_file):
            file_name = line.strip()
            if file_name not in parsed:
                raise AnnotationError(f"{where}: {file_name!r} is not in {annotations}")
            if file_name in split_of:
                raise AnnotationError(f"{where}: {file_name!r} is already in "
                                      f"split {split_of[file_name]!r}")
            split_of[file_name] = split
    classes_file = root / "classes.txt"
    classes = [" ".join(f).replace("_", " ") for _, f, _ in annotation_lines(classes_file)]
    out = _Rows(fps=10.0)
    for file_name, (label, intervals) in parsed.items():
        if file_name not in split_of:
            raise AnnotationError(f"{annotations}: {file_name} is in no split file under "
                                  f"{root / 'splits'}")
        label = label.replace("_", " ")
        if label != "Normal" and label not in classes:
            raise AnnotationError(f"{annotations}: class {label!r} of {file_name} is not in "
                                  f"{classes_file}")
        path = root / "videos" / file_name
        if not path.exists():
            raise FileNotFoundError(f"campus clip missing: {path}. {GET_THE_DATA}")
        out.add(Path(file_name).stem, path, split_of[file_name], label, intervals,
                num_frames=count_frames(path))
    return out.benchmark("campus", root, classes)
