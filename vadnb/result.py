"""What every method returns: a :class:`Detection` (one video's frame scores, segments with
explanations, model calls), and how it is saved and loaded. It imports no method."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .models.base import clean_text
from .models.profiles import MEANINGLESS_PROFILES
from .models.served import redact, redact_values

__all__ = ["Detection", "TINY_WARNING", "SAVED_FILES"]

#: The files of a saved Detection (``detection.json`` last): ``save`` touches only these.
SAVED_FILES = ("frame_scores.npy", "segments.csv", "model_calls.csv", "extras.npz",
               "detection.json")

TINY_WARNING = ("tiny profile: random-init models, the scores exercise the pipeline and "
                "mean nothing about anomalies")


@dataclass
class Detection:
    """What a method says about one video. frame_scores: one score per decodable frame
    (higher = more anomalous). segments: one row per unit scored, with at least
    ``start_frame``, ``end_frame`` (exclusive), ``centre_frame``, ``time_s``, ``score`` and
    ``explanation``. model_calls: calls, items and seconds per role. extras: the method's own.
    """

    video: str
    method: str
    profile: str
    frame_scores: np.ndarray
    fps: float
    segments: pd.DataFrame
    model_calls: pd.DataFrame = field(default_factory=pd.DataFrame)
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a served model's URL in a config echo may hold a password: never keep it
        self.extras = redact_values(self.extras)

    @property
    def meaningless(self) -> bool:
        """True when random-init models produced the scores (the tiny and cpu profiles)."""
        return self.profile in MEANINGLESS_PROFILES

    @property
    def num_frames(self) -> int:
        return len(self.frame_scores)

    @property
    def warning(self) -> str:
        return TINY_WARNING if self.meaningless else ""

    def explanation_at(self, frame: int) -> str:
        """The explanation of the segment that contains ``frame`` (nearest centre otherwise)."""
        seg = self.segments
        if seg.empty or "explanation" not in seg:
            return ""
        inside = seg[(seg["start_frame"] <= frame) & (frame < seg["end_frame"])]
        row = inside.iloc[0] if len(inside) else seg.iloc[
            int(np.argmin(np.abs(seg["centre_frame"].to_numpy() - frame)))]
        return str(row["explanation"])

    def __repr__(self) -> str:
        flag = f" [{TINY_WARNING}]" if self.meaningless else ""
        return (f"Detection(video={Path(self.video).name!r}, method={self.method!r}, "
                f"profile={self.profile!r}, frames={self.num_frames}, "
                f"segments={len(self.segments)}){flag}")

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the :data:`SAVED_FILES` into ``folder``, ``detection.json`` last and stale
        ones removed: an interrupted save never loads as a mix of two detections."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        extras = redact_values(self.extras)  # extras may have been set after construction
        arrays = {k: np.asarray(v) for k, v in extras.items()
                  if isinstance(v, np.ndarray) and v.dtype != object}
        writers = {
            "frame_scores.npy": lambda f: np.save(f, np.asarray(self.frame_scores, np.float32)),
            "segments.csv": lambda f: f.write(_csv_bytes(self.segments)),
            "model_calls.csv": lambda f: f.write(_csv_bytes(self.model_calls))}
        if arrays:
            writers["extras.npz"] = lambda f: np.savez_compressed(f, **arrays)
        meta = {"video": str(self.video), "method": self.method, "profile": self.profile,
                "fps": self.fps, "meaningless": self.meaningless, "files": sorted(writers),
                "text_columns": [str(c) for c in self.segments.select_dtypes(
                    ["object", "string"])],  # read back as text, whatever they look like
                "extras": {k: v for k, v in extras.items() if _jsonable(v)}}
        # a served model's URL may hold a password (extras["config"]): never write it
        text = redact(json.dumps(meta, indent=2))
        writers["detection.json"] = lambda f: f.write(text.encode())
        _write_files(out, writers)
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Detection:
        """The detection :meth:`save` wrote into ``folder``; text comes back as it was saved."""
        src = Path(folder)
        if not (src / "detection.json").is_file():
            raise FileNotFoundError(f"{src} holds no saved Detection (no detection.json): "
                                    "pass the folder given to Detection.save, or save again")
        meta = json.loads((src / "detection.json").read_text(encoding="utf-8"))
        files = meta.get("files", [f for f in SAVED_FILES if (src / f).exists()])
        calls = src / "model_calls.csv"
        extras = meta.get("extras", {})
        if "extras.npz" in files:
            with np.load(src / "extras.npz", allow_pickle=False) as z:
                extras.update({k: z[k] for k in z.files})
        return cls(
            video=meta["video"], method=meta["method"], profile=meta["profile"],
            frame_scores=np.load(src / "frame_scores.npy", allow_pickle=False),
            fps=float(meta["fps"]), extras=extras,
            segments=_read_table(src / "segments.csv", meta.get("text_columns", [])),
            model_calls=_read_table(calls, []) if calls.stat().st_size > 1 else pd.DataFrame())


def _csv_bytes(table: pd.DataFrame) -> bytes:
    """``table`` as UTF-8 CSV, invalid Unicode (half an emoji) repaired rather than fatal."""
    return clean_text(table.to_csv(index=False)).encode("utf-8")


def _read_table(path: Path, text_columns: list[str]) -> pd.DataFrame:
    """A CSV :meth:`Detection.save` wrote, its text as written (only "" is missing: not an
    LLM's answer "None" or "N/A", as pandas' default would have it)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""],
                       dtype={c: str for c in text_columns}, encoding="utf-8")


def _write_files(folder: Path, writers: dict[str, Any]) -> None:
    """Write each ``name: write(file)`` to a temporary file, rename them into ``folder``
    (``detection.json`` last) and remove the :data:`SAVED_FILES` not written."""
    temps: dict[str, Path] = {}
    try:
        for name, write in writers.items():
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".tmp-{name}-")
            temps[name] = Path(tmp)
            with os.fdopen(fd, "wb") as f:
                write(f)
        (folder / "detection.json").unlink(missing_ok=True)  # the folder is invalid until done
        for name in SAVED_FILES:  # detection.json is last
            if name in temps:
                os.replace(temps.pop(name), folder / name)
            else:
                (folder / name).unlink(missing_ok=True)  # an earlier detection's file
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False
