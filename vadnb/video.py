"""Reading frames exactly (taught in notebook 10, ``10_frame_extraction``).

A frame's index is its position in a sequential decode, counted from 0: not the count a header
claims (``cv2.CAP_PROP_FRAME_COUNT`` often lies), nor where a seek by frame number lands.
:func:`probe` decodes a file once (cached by content) and records each frame's pts and key
flag; reads decode sequentially, or seek to a key frame and check every frame against that
record, decoding sequentially at the first surprise. A damaged file is decoded past its damage:
lost frames are reported (:class:`DamagedVideoWarning`, :attr:`VideoInfo.lost_ranges`) and the
others keep their true indices (MP4 sample table, AVI ``idx1``, Matroska/TS timestamps). A
folder of numbered images is a video too. :func:`write_test_video` makes videos whose frames
show their own index (:func:`read_frame_code`). Bad input raises :class:`VideoError`.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import os
import re
import struct
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = ["VideoError", "DamagedVideoWarning", "VideoInfo", "Frames", "probe", "frame_times",
           "sample_indices", "read_frames", "iter_frames", "extract_frames", "decode_stats",
           "reset_decode_stats", "seek_stats", "FOLDER_FPS", "IMAGE_SUFFIXES", "folder_images",
           "write_test_video", "read_frame_code", "patch_avi_frame_count", "folder_frame_count"]

PathLike = str | os.PathLike
_Packets = list[tuple[Any, Any, bool, int]]  # each picture packet's (pts, dts, is key, position)
_Placed = tuple[list[int], int]  # each decoded frame's index (-1: dropped), the frame count

TIMEOUT_MS = 20_000  #: give up opening or reading a file after this long (FFmpeg may block)
_EPS = 1e-6  # seconds: two timestamps closer than this are the same instant
_PROBE_VERSION = 5  # bump when the probe's logic changes, so stale cache entries go unused
FOLDER_FPS = 30.0  #: a frame folder's rate when ``frame_rate`` is not given (see fps_from)
#: Image files a frame folder may hold (case-insensitive); other files in it are ignored.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_SEEK_MIN_SKIP = 64  # seek only past this many frames (a seek costs a few frames' decoding)
_CONVERT_AHEAD = 4  # frames converted to RGB ahead of the decoder, at most (a picture each)
FRAMES_MANIFEST = "frames.json"  #: which source frames an extract_frames folder holds
# decoding work since the last reset (an image read counts as a frame decoded)
_DECODE_STATS = {"opens": 0, "frames_decoded": 0, "frames_returned": 0}
_SEEK_STATS = {"seeks": 0, "fallbacks": 0}


def decode_stats() -> dict[str, int]:
    """Decoder opens, frames decoded (probes included) and returned since the last reset."""
    return dict(_DECODE_STATS)


def seek_stats() -> dict[str, int]:
    """Seeks made and seeks abandoned (fallbacks to a sequential decode) since the last reset."""
    return dict(_SEEK_STATS)


def reset_decode_stats() -> None:
    """Set :func:`decode_stats` and :func:`seek_stats` back to zero."""
    for stats in (_DECODE_STATS, _SEEK_STATS):
        stats.update(dict.fromkeys(stats, 0))


class VideoError(ValueError):
    """A video that cannot be read as asked; the message names the file and the problem."""


class DamagedVideoWarning(UserWarning):
    """A video that decodes, but not whole: frames lost to damage, or a file cut short."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns by decoding a video once. ``num_frames`` is the truth (decoded
    plus ``lost_frames``), ``header_frames`` the container's often wrong claim (0: none). ``fps``
    is the container's rate when the timestamps agree within 1 %, else the measured one (see
    ``fps_from``). ``lost_ranges`` are inclusive; lost frames keep their places (unless a
    warning says the file cannot place them). ``seekable``: far-apart reads seek."""

    num_frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    header_frames: int = 0
    backend: str = "pyav"
    timestamps_from: str = "decoder"
    source: str = "file"
    fps_from: str = "container"
    lost_frames: int = 0
    lost_ranges: tuple[tuple[int, int], ...] = ()
    damaged_packets: int = 0
    seekable: bool = False


@dataclass
class Frames:
    """``images`` uint8 RGB ``[N, H, W, 3]``, their frame ``indices`` int64 ``[N]`` and
    ``timestamps_s`` float64 ``[N]`` (seconds from the first frame, see :func:`frame_times`)."""

    images: np.ndarray
    indices: np.ndarray
    timestamps_s: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


# --------------------------------------------------------------------------- decoders
# PyAV (exact timestamps, seeking, decoding past damage), else OpenCV's FFmpeg backend, in the
# order of _BACKENDS. An opener returns a handle (close, container and stream, or cap), or None.

def _open_pyav(path: Path) -> SimpleNamespace | None:
    import av
    try:
        container = av.open(str(path), timeout=TIMEOUT_MS / 1000)
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return None
    if not container.streams.video:
        container.close()
        return None
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return SimpleNamespace(close=container.close, container=container, stream=stream)


def _open_opencv(path: Path) -> SimpleNamespace | None:
    import cv2
    try:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, TIMEOUT_MS])
    except cv2.error:
        return None
    if not cap.isOpened():
        cap.release()
        return None
    return SimpleNamespace(close=cap.release, cap=cap)


_BACKENDS: dict[str, Callable[[Path], Any]] = {"pyav": _open_pyav, "opencv": _open_opencv}


class _Untrusted(Exception):
    """A frame after a seek is not the one the probe's index promised: decode sequentially."""


def _pyav_frames(h: Any, damage: list[int] | None = None,
                 packets: _Packets | None = None) -> Iterator[Any]:
    """PyAV's frames, past damaged packets (each noted in ``damage``; None: raise)."""
    import av
    demuxed, decoded = h.container.demux(h.stream), 0
    while True:
        packet = None
        try:
            packet = next(demuxed, None)
            if packet is None:
                return
            if packets is not None and packet.size and not packet.is_discard:
                packets.append((packet.pts, packet.dts, bool(packet.is_keyframe),
                                -1 if packet.pos is None else int(packet.pos)))
            frames = packet.decode()
        except av.error.FFmpegError:
            if damage is None:
                raise _Untrusted("a packet failed to demux or decode") from None
            damage.append(decoded)
            if packet is None:  # the container is unreadable from here on
                return
            continue
        for frame in frames:
            decoded += 1
            _DECODE_STATS["frames_decoded"] += 1
            yield frame


def _opencv_frames(h: Any, p: Path) -> Iterator[tuple[float, Callable[[], np.ndarray]]]:
    """OpenCV's frames: each frame's time (s, or nan) and a function converting it to RGB."""
    import cv2

    def retrieve() -> np.ndarray:
        ok, bgr = h.cap.retrieve()
        if not ok or bgr is None:
            raise VideoError(f"{p}: OpenCV grabbed a frame but could not decode it; "
                             "the file is probably damaged (try re-encoding it).")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    while h.cap.grab():
        _DECODE_STATS["frames_decoded"] += 1
        msec = h.cap.get(cv2.CAP_PROP_POS_MSEC)
        yield (msec / 1000.0 if math.isfinite(msec) else math.nan), retrieve


def _rgb(frame: Any) -> np.ndarray:
    """A PyAV frame as RGB, upright (counter-clockwise quarter turns: a phone's display matrix)."""
    turns = int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4
    return np.rot90(frame.to_ndarray(format="rgb24"), turns)


def _check_source(path: PathLike) -> Path:
    """The path as a Path, or a VideoError saying why it is neither a video nor a frame folder."""
    if path is None or isinstance(path, (bool, int, float)):
        raise VideoError(f"expected a video file or a frame folder path, got {path!r}")
    p = Path(path).expanduser()
    if not p.exists():
        raise VideoError(f"video not found: {p} (check the path; relative paths are resolved "
                         f"from {Path.cwd()})")
    if p.is_dir():
        return p
    if not p.is_file():
        raise VideoError(f"{p} is not a regular file (a device or a pipe?); pass a video file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p} is empty (0 bytes); the download or copy probably failed, "
                         "fetch the file again")
    if not os.access(p, os.R_OK):
        raise VideoError(f"{p} is not readable (permission denied); fix its permissions")
    return p


def _open(p: Path, backend: str | None = None) -> tuple[str, Any]:
    """Open with the given backend, or the first of ``_BACKENDS`` that can: (name, handle)."""
    names = [backend] if backend else list(_BACKENDS)
    for name in names:
        if (handle := _BACKENDS[name](p)) is not None:
            _DECODE_STATS["opens"] += 1
            return name, handle
    if damage := _truncation(p):
        raise VideoError(f"{p} is truncated or damaged ({damage}) and no frame can be read: "
                         "0 frames decoded. Download or copy the file again.")
    raise VideoError(f"{p} is not a video that can be decoded (tried: {', '.join(names)}): "
                     "not a video at all (e.g. a renamed text file), no video stream, or a "
                     "codec this FFmpeg lacks. Check it with `ffprobe` or re-encode to H.264.")


def _truncation(p: Path) -> str | None:
    """How the container's size fields say the file is cut short (not a lying count)."""
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(4096)
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            declared = struct.unpack("<I", head[4:8])[0] + 8
            return (f"its RIFF header declares {declared} bytes, the file has {size}"
                    if declared > size else None)
        if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
            pos, seen = 0, []
            while pos + 8 <= size:
                f.seek(pos)
                box = f.read(16)
                length, kind = struct.unpack(">I4s", box[:8])
                if length == 1 and len(box) >= 16:
                    length = struct.unpack(">Q", box[8:16])[0]
                length = length or size - pos  # 0: the box runs to the end of the file
                if length < 8:
                    return f"a damaged MP4 box at byte {pos}"
                seen.append(kind)
                if pos + length > size:
                    return (f"its '{kind.decode('latin-1')}' box needs {pos + length} bytes, "
                            f"the file has {size}")
                pos += length
            return None if b"moov" in seen else "the MP4 index (moov box) is missing"
    if head[:4] != b"\x1a\x45\xdf\xa3":
        return None

    def vint(i: int, keep_marker: bool) -> tuple[int, int]:  # EBML: 1 + leading zeros long
        length = 9 - head[i].bit_length()
        tail = head[i + 1: i + length]
        value = head[i] if keep_marker else head[i] & (0xFF >> length)
        return (value << 8 * len(tail)) | int.from_bytes(tail, "big"), i + length

    try:  # compare a Matroska segment's declared size (when known) with the file's size
        _, i = vint(0, True)           # EBML header id
        hsize, i = vint(i, False)
        seg_id, start = vint(i + hsize, True)
        seg_size, i = vint(start, False)
    except IndexError:
        return "its Matroska header is cut short"
    unknown = seg_size == (1 << (7 * (i - start))) - 1
    if seg_id == 0x18538067 and not unknown and i + seg_size > size:
        return f"its Matroska segment declares {i + seg_size} bytes, the file has {size}"
    return None


# --------------------------------------------------------------------------- frame folders
def folder_images(path: PathLike) -> list[Path]:
    """A frame folder's images in the order :func:`read_frames` uses (natural order: 2.jpg
    before 10.jpg; hidden files skipped), or a VideoError saying why there are none."""
    p = Path(path)
    try:
        entries = [e for e in p.iterdir() if not e.name.startswith(".")]
    except OSError as err:
        raise VideoError(f"{p}: cannot list this folder ({err}); check its permissions") from None
    if not entries:
        raise VideoError(f"{p} is an empty directory: pass a video file, or a frame folder "
                         f"(a directory of numbered images: {', '.join(IMAGE_SUFFIXES)})")
    images = [e for e in entries if e.suffix.lower() in IMAGE_SUFFIXES and e.is_file()]
    if not images:
        raise VideoError(f"{p} is a directory with no image files (it holds {len(entries)} "
                         f"entries, e.g. {', '.join(sorted(e.name for e in entries)[:5])}); "
                         f"pass a video file or a folder of images ({', '.join(IMAGE_SUFFIXES)})")
    return sorted(images, key=lambda e: [int(s) if i % 2 else s.lower() for i, s in
                                         enumerate(re.split(r"(\d+)", e.name))])


def folder_frame_count(path: PathLike) -> int:
    """A frame folder's frame count as :func:`probe` gives it, from the names alone (the span of
    their numbering, missing images included, else the number of images)."""
    images = folder_images(path)
    numbers = _numbering(images)
    return len(images) if numbers is None else numbers[-1] - numbers[0] + 1


def _numbering(images: list[Path]) -> list[int] | None:
    """Each image's number, if all names are one text around increasing numbers."""
    parts = [re.fullmatch(r"(.*?)(\d+)(\D*)", e.name) for e in images]
    if any(m is None for m in parts) or len({(m[1].lower(), m[3].lower()) for m in parts}) != 1:
        return None
    numbers = [int(m[2]) for m in parts]
    return None if any(b <= a for a, b in zip(numbers, numbers[1:])) else numbers


def _scan_folder(p: Path, frame_rate: float | None) -> dict[str, Any]:
    """A frame folder's record, from the image headers (pixels are read only when asked)."""
    files = folder_images(p)
    numbers = _numbering(files)
    try:  # a folder extract_frames wrote keeps source indices: its gaps are sampling, not loss
        manifest = json.loads((p / FRAMES_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    sampled = (isinstance(manifest, dict) and isinstance(manifest.get("indices"), list)
               and manifest.get("written_by") == "vadnb.video.extract_frames"
               and sorted(set(manifest["indices"])) == numbers)
    first = 0 if sampled else (numbers[0] if numbers else 0)  # a sample keeps source indices
    index = list(range(len(files))) if numbers is None else [k - first for k in numbers]
    n = index[-1] + 1
    sizes = [_read_image(p, f.name, i, pixels=False) for f, i in zip(files, index)]
    odd = next((i for i, s in enumerate(sizes) if s != sizes[0]), -1)
    fps = float(frame_rate) if frame_rate is not None else FOLDER_FPS
    # a sample's missing frames are not lost (nothing was damaged), but still cannot be read
    lost = [] if sampled else sorted(set(range(n)) - set(index))
    notes = [f"{p}: {len(lost)} image(s) missing from this frame folder's numbering (frames "
             f"{_spans(_ranges(lost))}, counted from {files[0].name} as frame 0) are lost "
             "frames; the others keep their numbers as indices (see VideoInfo.lost_ranges)."
             ] if lost else []
    return {"num_frames": n, "fps": fps, "width": sizes[0][0], "height": sizes[0][1],
            "duration_s": n / fps, "header_frames": 0, "backend": "images", "source": "folder",
            "timestamps_from": "index/fps", "timestamps_s": np.arange(n, dtype=np.float64) / fps,
            "fps_from": "default" if frame_rate is None else "given", "sampled": sampled,
            "lost_frames": len(lost), "lost_ranges": [list(r) for r in _ranges(lost)],
            "frame_index": index if len(index) < n else None, "damaged_packets": 0,
            "seekable": False, "files": [f.name for f in files], "first_odd_size": odd,
            "odd_size": list(sizes[odd]) if odd >= 0 else [], "warnings": notes}


def _read_image(p: Path, name: str, index: int, pixels: bool = True) -> Any:
    """Frame ``index`` of the folder ``p``: its RGB pixels, or (``pixels=False``) its size."""
    from PIL import Image, UnidentifiedImageError
    f = p / name
    try:
        with Image.open(f) as im:
            got = np.asarray(im.convert("RGB")) if pixels else im.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        if pixels and isinstance(err, FileNotFoundError):
            raise VideoError(f"{f} (frame {index} of the frame folder {p}) has disappeared since "
                             "the folder was probed; the folder changed, probe it again") from None
        what = "cannot decode this image" if pixels else "not a readable image"
        raise VideoError(f"{f}: {what} ({err}); frame {index} of the frame folder {p}. "
                         "Replace or remove the file.") from None
    _DECODE_STATS["frames_decoded"] += pixels
    return got


# --------------------------------------------------------------------------- probe
def _scan(p: Path) -> dict[str, Any]:
    """One sequential pass: count the frames and note every frame's timestamp (the index)."""
    d = _decode_pass(p)
    n, cut = len(d.times), _truncation(p)
    if n == 0:
        what = f"it is truncated or damaged ({cut})" if cut else "no frame of it decodes"
        raise VideoError(f"video has 0 decodable frames: {p}; {what}. Re-encode or fetch "
                         "the file again.")
    if cut and (d.header == 0 or n < d.header):
        raise VideoError(f"{p} is truncated or damaged ({cut}): only {n} frame"
                         f"{'s' * (n != 1)} could be read (its header announces {d.header}). "
                         f"Copy it again, or keep what reads: `ffmpeg -i {p.name} -c copy ok.mkv`.")
    notes = _ts_cut_short(p, n)
    nominal = d.nominal if 0 < d.nominal < 1000 else 0.0
    placed = _true_slots(p, *d.layout, d.pts, d.packets, d.damage, d.keys, nominal)  # None: no pts
    slots, total = placed if placed else (list(range(n)), n)
    rel, fps, fps_from, reliable = _timing(d.times, slots, total, nominal)
    lost = sorted(set(range(total)) - set(slots))
    damaged, lost_count, after = bool(d.damage or lost or -1 in slots), len(lost), None
    if d.damage and not placed:  # the frames cannot be placed: count them (name them if pts can)
        lost = _unplaced_lost(d.pts, d.packets)
        lost_count = len(lost) if lost else max(len(d.packets) - n, 0)
        after = d.damage[0]
    if damaged:
        notes.append(_damage_note(p, len(d.damage), lost, lost_count, after))
    seek = _seek_index(d.pts, d.keys, d.packets, damaged)
    return {"num_frames": int(total), "fps": float(fps), "width": int(d.width),
            "height": int(d.height), "duration_s": float(rel[-1] + 1.0 / fps),
            "header_frames": d.header, "backend": d.name, "timestamps_s": rel,
            "timestamps_from": "decoder" if reliable else "index/fps", "source": "file",
            "fps_from": fps_from, "lost_frames": int(lost_count),
            "damaged_packets": len(d.damage), "lost_ranges": [list(r) for r in _ranges(lost)],
            "seekable": seek["pts"] is not None,
            "frame_index": slots if placed and (lost or -1 in slots) else None, "warnings": notes,
            **seek}


def _decode_pass(p: Path) -> SimpleNamespace:
    """Decode every frame once, noting each one's pts, key flag and time, and the packets."""
    name, h = _open(p)
    # damage: frames decoded before each damaged packet; layout: demuxer names, stream, time base
    d = SimpleNamespace(name=name, damage=[], packets=[], pts=[], keys=[], times=[],
                        layout=([], 0, None))
    try:
        if name == "pyav":
            stream = h.stream
            d.nominal = float(stream.average_rate or stream.guessed_rate or 0)
            d.header = max(int(stream.frames or 0), 0)
            d.layout = (str(h.container.format.name or "").split(","), int(stream.index),
                        stream.time_base)  # e.g. ["matroska", "webm"], 0, 1/1000
            for frame in _pyav_frames(h, d.damage, d.packets):
                if not d.pts:  # the size shown: a quarter turn swaps width and height
                    d.height, d.width = _rgb(frame).shape[:2]
                d.pts.append(frame.pts)
                d.keys.append(bool(frame.key_frame))
                d.times.append(math.nan if frame.time is None else float(frame.time))
        else:
            import cv2
            cap = h.cap
            d.nominal = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            d.header = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            d.width = cap.get(cv2.CAP_PROP_FRAME_WIDTH)
            d.height = cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
            d.times = [t for t, _ in _opencv_frames(h, p)]
    finally:
        h.close()
    return d


def _ts_cut_short(p: Path, n: int) -> list[str]:
    """The warning for an MPEG-TS file that ends inside a packet (it has no index to check)."""
    with open(p, "rb") as f:
        head = f.read(400)
    for packet, sync in ((188, 0), (192, 4)):  # plain TS; M2TS has a 4-byte prefix
        if len(head) > packet + sync and head[sync] == head[packet + sync] == 0x47:
            extra = p.stat().st_size % packet
            return [f"{p}: it ends {extra} bytes into a {packet}-byte MPEG-TS packet, so it was "
                    f"probably cut short; {n} frames decoded, the frames after them are missing. "
                    "Fetch the file again if its end matters."] if extra else []
    return []


def _unplaced_lost(pts: list[Any], packets: _Packets) -> list[int]:
    """Positions (presentation order) of pictures whose packet gave no frame; [] if unnamed."""
    order, got = _packet_order(packets), set(pts)
    if not order or None in got:
        return []
    return [i for i, t in enumerate(order) if t not in got]


def _damage_note(p: Path, rejected: int, lost: list[int], count: int, after: int | None) -> str:
    """The warning for a damaged file (``after``: frames decoded before the damage, when the
    lost frames cannot be placed; None: the others keep their true indices)."""
    where = _spans(_ranges(lost)) or ("none" if after is None else f"after decoded frame {after}")
    if after is None:
        numbering = ("keep their true indices; reading a lost index raises VideoError, and "
                     "VideoInfo.lost_ranges lists them")
    else:
        numbering = ("are numbered consecutively, as this file's timestamps cannot place the "
                     "lost ones")
    why = f" (the decoder rejected {rejected} packet(s))" if rejected else ""
    return (f"{p} is damaged{why}: {count} frame(s) could not be decoded (the file's frames "
            f"{where}, counted from 0; a frame predicted from a lost one counts as lost too). "
            f"The other frames {numbering}. Re-encode or fetch the file again.")


def _seek_index(pts: list[Any], keys: list[bool], packets: _Packets, damaged: bool
                ) -> dict[str, Any]:
    """The record's seek fields: the key frames whose packet is known, in an undamaged file
    whose pts all increase.
    ``seek_ts`` is the key packet's dts, a second place to seek to (demuxers differ: MP4
    lands exactly at the pts, MPEG-TS at the dts)."""
    key_dts = {q[0]: q[0] if q[1] is None else q[1] for q in packets if q[2] and q[0] is not None}
    points = [i for i, (t, k) in enumerate(zip(pts, keys)) if k and t in key_dts]
    if damaged or not points or None in pts or any(b <= a for a, b in zip(pts, pts[1:])):
        return {"pts": None, "seek_points": None, "seek_ts": None}
    return {"pts": np.asarray(pts, np.int64), "seek_points": np.asarray(points, np.int64),
            "seek_ts": np.asarray([key_dts[pts[i]] for i in points], np.int64)}


def _true_slots(p: Path, fmt: list[str], stream: int, time_base: Any, pts: list[Any],
                packets: _Packets, damage: list[int], keys: list[bool], nominal: float
                ) -> _Placed | None:
    """Decoded frames' places in the undamaged video and its length, as the container says;
    a frame shown after its group lost a picture (made-up content) is dropped (-1)."""
    if not pts or None in pts:
        return None
    if "avi" in fmt:  # an AVI drops its damaged groups itself
        return _avi_slots(p, stream, pts, packets)
    if "mp4" in fmt or "mov" in fmt:  # places among all packets' pts; strays (off the LIS): -1
        where = {t: i for i, t in enumerate(_packet_order(packets) or [])}
        places = [where.get(t) for t in pts]
        if not damage or None in places:  # None: a frame without a packet, or no distinct pts
            return None
        keep = _longest_increasing(places)
        slots, total = [int(s) if k else -1 for s, k in zip(places, keep)], len(where)
    else:  # on a constant-rate timeline: a step of k periods means k - 1 frames lost
        if (len(pts) < 2 or not nominal or not time_base
                or not damage and any(b <= a for a, b in zip(pts, pts[1:]))):
            return None  # e.g. timestamps that go back in an undamaged file (joined recordings)
        keep = _longest_increasing(pts)
        kept = np.asarray([t for t, k in zip(pts, keep) if k], dtype=np.float64)
        steps = np.diff(kept) * nominal * float(time_base)
        whole = np.round(steps)
        if len(kept) < 2 or np.any(np.abs(steps - whole) > 0.25) or np.mean(whole == 1) < 0.9:
            return None
        at = iter(np.concatenate([[0], np.cumsum(whole)]).astype(np.int64).tolist())
        slots = [next(at) if k else -1 for k in keep]
        total = max(slots) + 1
    at, lost = np.asarray(slots), np.setdiff1d(np.arange(total), slots)
    if not lost.size:
        return slots, total
    # a group runs from a key frame to the next, in presentation order (and from frame 0)
    starts = np.asarray(sorted({s for s, k in zip(slots, keys) if k and s >= 0} | {0}))
    groups, first = np.unique(np.searchsorted(starts, lost, side="right") - 1, return_index=True)
    limit = np.full(len(starts), total)
    limit[groups] = lost[first]  # each group's first lost frame
    shown = (at >= 0) & (at < limit[np.searchsorted(starts, at, side="right") - 1])
    dropped = np.where(shown, at, -1).tolist()
    return (dropped, total) if max(dropped) >= 0 else (slots, total)  # keep something to show


def _longest_increasing(values: Sequence[int]) -> list[bool]:
    """Which of ``values`` form a longest strictly increasing subsequence (O(n log n))."""
    tails: list[int] = []  # tails[L]: the smallest last value of an increasing run of L+1
    ends: list[int] = []  # ends[L]: where that run ends
    before: list[int] = []  # where the element before each in its run is (-1: none)
    for i, v in enumerate(values):
        at = bisect.bisect_left(tails, v)
        tails[at:at + 1], ends[at:at + 1] = [v], [i]  # append, or replace a larger tail
        before.append(ends[at - 1] if at else -1)
    keep, i = [False] * len(values), (ends[-1] if ends else -1)
    while i >= 0:
        keep[i], i = True, before[i]
    return keep


def _timing(times: list[float], slots: list[int], total: int, nominal: float
            ) -> tuple[np.ndarray, float, str, bool]:
    """``(times of all frames, fps, fps_from, reliable)``: decoder times, else index / fps."""
    at = [s for s in slots if s >= 0]
    raw = np.asarray([t for t, s in zip(times, slots) if s >= 0], dtype=np.float64)
    reliable = bool(np.all(np.isfinite(raw)) and np.all(np.diff(raw) > _EPS))
    if reliable and len(raw) > 1:
        rel = raw - raw[0]
        measured = (at[-1] - at[0]) / rel[-1]
        use_nominal = bool(nominal) and abs(nominal - measured) <= 0.01 * measured
        fps, fps_from = (nominal, "container") if use_nominal else (measured, "measured")
        # a lost frame's time lies between its neighbours', one period apart beyond the ends
        idx, known = np.arange(total, dtype=np.float64), np.asarray(at, dtype=np.float64)
        full = (np.interp(idx, known, rel) + np.minimum(idx - known[0], 0) / fps
                + np.maximum(idx - known[-1], 0) / fps)
        return full - full[0], float(fps), fps_from, True
    fps, fps_from = (nominal, "container") if nominal else (25.0, "assumed")
    return np.arange(total, dtype=np.float64) / fps, float(fps), fps_from, reliable


def _avi_slots(p: Path, stream: int, pts: list[int], packets: _Packets) -> _Placed | None:
    """Places from the ``idx1`` index; a group of pictures that lost one is dropped whole."""
    size = p.stat().st_size
    movi, table = -1, b""
    with open(p, "rb") as f:
        pos = 12
        while pos + 12 <= size:  # the top-level chunks: hdrl, movi, idx1
            f.seek(pos)
            tag, length, kind = struct.unpack("<4sI4s", f.read(12))
            if tag == b"LIST" and kind == b"movi":
                movi = pos + 8
            elif tag == b"idx1":
                f.seek(pos + 8)
                table = f.read(length)
                break
            pos += 8 + length + (length & 1)
    tags = (b"%02ddc" % stream, b"%02ddb" % stream)
    entries = [struct.unpack("<4sIII", table[i: i + 16]) for i in range(0, len(table) - 15, 16)]
    video = [(off, bool(flags & 0x10)) for tag, flags, off, length in entries  # AVIIF_KEYFRAME
             if tag in tags and length]
    if movi < 0 or not video:
        return None
    base = (movi if video[0][0] < movi else 0) + 8  # from the 'movi' tag or absolute; +8: header
    number = {base + off: i for i, (off, _) in enumerate(video)}  # a chunk's data position
    by_pts = {q[0]: number.get(q[3]) for q in packets}
    decoded = [by_pts.get(t) for t in pts]
    if any(k is None for k in decoded) or len(set(decoded)) != len(decoded):
        return None
    group = np.cumsum([key for _, key in video]) - 1  # each picture's group (-1: before any)
    missing = np.setdiff1d(np.arange(len(video)), decoded)
    kept = np.where(np.isin(group[decoded], group[missing]), -1, decoded)
    lost, ok = np.setdiff1d(np.arange(len(video)), kept), kept >= 0
    # a closed group shows its key frame first: a frame's place is its rank among the kept
    # frames plus the lost pictures decoded before the latest picture decoded so far
    before = np.searchsorted(lost, np.maximum.accumulate(kept))
    return np.where(ok, np.cumsum(ok) - 1 + before, -1).tolist(), len(video)


def _spans(ranges: Sequence[Sequence[int]]) -> str:
    """Inclusive ``(first, last)`` ranges as text: ``3, 7-9``."""
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ranges)


def _ranges(values: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted integers as inclusive ``(first, last)`` runs."""
    v = np.unique(np.asarray(values, dtype=np.int64))
    return [(int(r[0]), int(r[-1])) for r in np.split(v, np.flatnonzero(np.diff(v) != 1) + 1)
            if r.size]


def _packet_order(packets: _Packets) -> list[Any] | None:
    """Every picture packet's pts in presentation order; None if one is missing or repeats."""
    order = [q[0] for q in packets]
    return None if None in order or len(set(order)) != len(order) else sorted(order)


def _probe_record(path: PathLike, cache: Any = None, frame_rate: float | None = None,
                  fps: float | None = None) -> tuple[Path, dict[str, Any]]:
    """The checked source and its (cached) probe record; ``fps``, a read's rate, checked too."""
    from .cache import file_digest, get_cache
    p = _check_source(path)
    if frame_rate is not None and not p.is_dir():
        raise VideoError(f"{p}: frame_rate is for frame folders only (a video file's rate "
                         "comes from the file); drop frame_rate=")
    for name, value, below, what, hint in (
            ("frame_rate", frame_rate, 1000, " and below 1000 frames", ""),
            ("fps", fps, math.inf, " samples", "; use fps=None to read every frame")):
        number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        if value is not None and not (number and math.isfinite(value) and 0 < value < below):
            raise VideoError(f"{p}: {name} must be > 0{what} per second, got {value!r}{hint}")
    if p.is_dir():
        folder_images(p)  # a clear error for an empty or image-less folder, before hashing
        parts: dict[str, Any] = {"frames": file_digest(p), "version": _PROBE_VERSION,
                                 "frame_rate": None if frame_rate is None else float(frame_rate)}
        record = get_cache(cache).memo("video.probe", parts, lambda: _scan_folder(p, frame_rate))
    else:
        parts = {"video": file_digest(p), "backends": list(_BACKENDS), "version": _PROBE_VERSION}
        record = get_cache(cache).memo("video.probe", parts, lambda: _scan(p))
    for note in record.get("warnings") or []:
        warnings.warn(str(note), DamagedVideoWarning, stacklevel=3)
    return p, record


def probe(path: PathLike, cache: Any = None, frame_rate: float | None = None) -> VideoInfo:
    """Count a video's (file or frame folder) decodable frames, exact even when the header
    lies, and read its size, rate and timing: one full decode, cached on disk by content.
    ``frame_rate`` is a folder's rate (default :data:`FOLDER_FPS`). Raises VideoError for a
    missing, unreadable, truncated or frameless input; warns DamagedVideoWarning for lost
    frames or an MPEG-TS file cut short."""
    _, r = _probe_record(path, cache, frame_rate)
    cast = {"int": int, "float": float, "str": str, "bool": bool}
    kept = {f.name: cast[f.type](r[f.name]) for f in fields(VideoInfo) if f.type in cast}
    return VideoInfo(**kept, lost_ranges=tuple((int(a), int(b)) for a, b in r["lost_ranges"]))


def frame_times(path: PathLike, cache: Any = None, frame_rate: float | None = None) -> np.ndarray:
    """Every frame's time (s, the first at 0): the decoder's when all present and increasing
    (exact for variable frame rate), else ``index / fps`` (``VideoInfo.timestamps_from``)."""
    return np.array(_probe_record(path, cache, frame_rate)[1]["timestamps_s"], dtype=np.float64)


def sample_indices(times_s: np.ndarray, fps: float) -> np.ndarray:
    """The ``fps`` sampling rule: for each multiple of ``1 / fps`` s, the first frame at or
    after it (``times_s`` increasing), each once: 25 fps at ``fps=2`` gives 0, 13, 25, 38."""
    times = np.asarray(times_s, dtype=np.float64)
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    period = 1.0 / fps
    last_k = int(math.floor((times[-1] - times[0]) / period + _EPS))
    targets = times[0] + np.arange(last_k + 1) * period
    picked = np.searchsorted(times, targets - _EPS, side="left")
    return np.unique(picked[picked < len(times)]).astype(np.int64)


# --------------------------------------------------------------------------- reading
class _Reader:
    """Frames by ascending index from one decoder: decoding on, seeking checked, or restarting."""

    def __init__(self, p: Path, record: dict[str, Any]):
        self.p, self.record = p, record
        self.backend, self.n = str(record["backend"]), int(record["num_frames"])
        # the index of each frame a sequential pass yields (-1: a stray frame, skipped)
        slots = record.get("frame_index")
        self.decoded = np.arange(self.n) if slots is None else np.asarray(slots, dtype=np.int64)
        self.index = self.decoded[self.decoded >= 0]  # the frames there are, ascending
        self.handle: Any = None
        self.frames: Iterator[tuple[int, Callable[[], np.ndarray]]] | None = None
        self.pos = -1  # index of the last frame taken from self.frames
        self.seeking = False  # whether self.frames come after a seek (else: sequential)
        self.by_dts = False  # True once seeking by pts has landed late in this file
        self.seekable = bool(record.get("seekable"))  # only PyAV's records are
        seek = [record[k] if self.seekable else [] for k in ("pts", "seek_points", "seek_ts")]
        self.pts, self.points, self.seek_ts = (np.asarray(v, dtype=np.int64) for v in seek)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.handle, self.frames = None, None

    def _restart(self) -> None:
        """Decode sequentially from the first frame."""
        self.close()
        _, self.handle = _open(self.p, self.backend)
        if self.backend == "pyav":
            frames = zip(self.decoded.tolist(), _pyav_frames(self.handle, damage=[]))
            self.frames = ((i, (lambda f=f: _rgb(f))) for i, f in frames if i >= 0)
        else:
            self.frames = ((i, retrieve) for i, (_, retrieve) in
                           zip(self.decoded.tolist(), _opencv_frames(self.handle, self.p)))
        self.seeking, self.pos = False, -1

    def _seek(self, k: int) -> None:
        """Go to seek point ``k``: frames from its key frame on."""
        if self.handle is None:
            _, self.handle = _open(self.p, self.backend)
        self.frames, self.seeking, self.pos = self._after_seek(k), True, int(self.points[k]) - 1

    def _after_seek(self, k: int) -> Iterator[tuple[int, Callable[[], np.ndarray]]]:
        """Frames from seek point ``k`` on, each named by its pts; a mismatch raises _Untrusted.
        A seek goes to the key frame's pts, or to its packet's dts once that landed late."""
        key = int(self.points[k])
        while True:
            ts = int(self.seek_ts[k]) if self.by_dts else int(self.pts[key])
            self.handle.container.seek(ts, backward=True, any_frame=False,
                                       stream=self.handle.stream)
            _SEEK_STATS["seeks"] += 1
            expect = key
            for frame in _pyav_frames(self.handle):
                if frame.pts is None:
                    raise _Untrusted("a frame without pts")
                if expect == key and frame.pts < self.pts[key]:
                    continue  # frames before the key frame: the seek landed a little earlier
                if expect == key and frame.pts > self.pts[key]:
                    break  # the seek landed after the key frame
                if expect >= self.n or frame.pts != self.pts[expect]:
                    raise _Untrusted(f"frame {expect}: pts {frame.pts} is not the indexed one")
                yield expect, (lambda f=frame: _rgb(f))
                expect += 1
            else:
                return
            if self.by_dts or self.seek_ts[k] >= self.pts[key]:
                raise _Untrusted("the seek landed after the key frame")
            self.by_dts = True  # seeking by pts lands late in this file: use the dts

    def take(self, targets: np.ndarray) -> Iterator[tuple[int, Callable[[], np.ndarray]]]:
        """``(index, make_rgb)`` per ascending target; call OpenCV's before taking the next."""
        if self.backend == "images":
            names = self.record["files"]
            for t, i in zip(targets.tolist(), np.searchsorted(self.index, targets).tolist()):
                yield t, functools.partial(_read_image, self.p, names[i], t)
            return
        # each target's seek point, found once (not per frame, under the GIL)
        points = (np.searchsorted(self.points, targets, side="right") - 1).tolist()
        for t, k in zip(targets.tolist(), points):
            seek = self.seekable and k >= 0  # k: the last seek point at or before frame t
            if self.frames is None or t <= self.pos \
                    or (seek and int(self.points[k]) - self.pos > _SEEK_MIN_SKIP):
                if seek and int(self.points[k]) > _SEEK_MIN_SKIP:  # near the start: decode
                    self._seek(k)
                else:
                    self._restart()
            while self.pos < t:  # the frames come in ascending order, t among them
                try:
                    self.pos, retrieve = next(self.frames)
                except (StopIteration, _Untrusted):  # only after a seek can it be _Untrusted
                    if not self.seeking:
                        raise VideoError(
                            f"{self.p}: decoding stopped after {self.pos + 1} frames, before "
                            f"frame {t}, although a first pass counted {self.n}; the file may "
                            "have changed or be damaged. Copy it again and retry.") from None
                    _SEEK_STATS["fallbacks"] += 1  # never seek again in this file
                    self.seekable = False
                    self._restart()
            yield t, retrieve


_HUGEPAGE_SWITCH = threading.Lock()  # held while numpy's huge-page switch is off

_madvise_hugepage: Callable[[bool], bool | None] = getattr(  # numpy's: returns the old setting
    (getattr(np, "_core", None) or np.core).multiarray, "_set_madvise_hugepage", lambda _: None)


def _output(count: int, shape: tuple[int, int]) -> np.ndarray:
    """An uninitialised frame array, without huge-page advice (that stalled large reads)."""
    with _HUGEPAGE_SWITCH:  # the switch is numpy's, process-wide: reads in threads take turns
        before = _madvise_hugepage(False)
        try:
            return np.empty((count, *shape, 3), np.uint8)
        finally:
            if before is not None:
                _madvise_hugepage(before)


def _request(path: PathLike, fps: float | None, indices: Any, size: Any, cache: Any,
             frame_rate: float | None, chunk: int | None = None) -> tuple[Any, ...]:
    """``(reader, order, size, (height, width), chunk)`` of a read, every argument checked;
    ``order``: the frame indices to return, in the order to return them."""
    p, record = _probe_record(path, cache, frame_rate, fps)
    if size is not None:
        size = _check_size(p, size)
    if chunk is not None and (not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise VideoError(f"{p}: chunk must be a positive number of frames, got {chunk!r}")
    reader = _Reader(p, record)
    if indices is None:
        times = np.asarray(record["timestamps_s"])[reader.index]
        order = reader.index if fps is None else reader.index[sample_indices(times, fps)]
    elif fps is not None:
        raise VideoError(f"{p}: pass fps or indices, not both")
    else:
        order = _check_indices(p, record, reader.index, indices)
    chunk = max(len(order), 1) if chunk is None else int(chunk)
    shape = (int(record["height"]), int(record["width"])) if size is None else size[::-1]
    odd = int(record.get("first_odd_size", -1))  # frame folders only
    if size is None and odd >= 0:
        w, h = record["odd_size"]  # of the odd-th image among the files
        raise VideoError(f"{p}: the images of this frame folder differ in size: "
                         f"{record['files'][0]} is {record['width']}x{record['height']}, "
                         f"{record['files'][odd]} (frame {reader.index[odd]}) is {w}x{h}; "
                         "pass size=(width, height) to resize every frame to one size")
    return reader, order, size, shape, chunk


def _check_size(p: Path, size: Any) -> tuple[int, int]:
    """``size`` as ``(width, height)`` ints, or a VideoError naming what is wrong."""
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        w = h = 0
    if w <= 0 or h <= 0 or (w, h) != tuple(size):
        raise VideoError(f"{p}: size must be (width, height) in pixels, both > 0; got {size!r}")
    return w, h


def _check_indices(p: Path, record: dict[str, Any], present: np.ndarray, indices: Any
                   ) -> np.ndarray:
    """The asked ``indices`` as int64, each a frame of the video that was not lost."""
    n = int(record["num_frames"])
    order = np.asarray(indices)
    if order.ndim != 1 and order.size > 0:
        raise VideoError(f"{p}: indices must be a flat list of frame numbers, "
                         f"got shape {order.shape}")
    order = order.reshape(-1)
    if order.size and not np.issubdtype(order.dtype, np.integer) and not (
            np.issubdtype(order.dtype, np.floating) and np.all(order == np.round(order))):
        raise VideoError(f"{p}: indices must be whole frame numbers, got {order[:5]}...")
    order = order.astype(np.int64)
    bad = order[(order < 0) | (order >= n)]
    if bad.size:
        header = record["header_frames"]
        claim = f" (its header claims {header}, wrongly)" if header not in (0, n) else ""
        raise VideoError(f"{p}: frame indices out of range: {bad[:5].tolist()} "
                         f"({bad.size} in all); this video has {n} decodable frames, "
                         f"so indices run from 0 to {n - 1}{claim}")
    missing = np.unique(order[~np.isin(order, present)]).tolist()
    asked = f"{p}: frame(s) {missing[:5]} ({len(missing)} in all) are"
    if missing and record.get("sampled"):
        raise VideoError(f"{asked} not in this folder: extract_frames wrote only the sampled "
                         f"frames its {FRAMES_MANIFEST} lists. Read them from the source video.")
    if missing:
        raise VideoError(f"{asked} lost: this video's frames {_spans(record['lost_ranges'])} "
                         "could not be read (see the DamagedVideoWarning). Ask only for frames "
                         "outside VideoInfo.lost_ranges, or fetch an undamaged copy.")
    return order


def _iter_chunks(reader: _Reader, order: np.ndarray, size: tuple[int, int] | None,
                 shape: tuple[int, int], chunk: int) -> Iterator[Frames]:
    """Decode the frames of ``order`` (in that order) by chunks, each into a fresh array,
    converting to RGB in a second thread (not for OpenCV, whose frames wait for no one)."""
    import cv2
    times = np.asarray(reader.record["timestamps_s"], dtype=np.float64)

    def place(out: np.ndarray, rows: np.ndarray, index: int, make: Callable[[], Any]) -> None:
        rgb = make()
        if size is not None and (rgb.shape[1], rgb.shape[0]) != size:
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        if rgb.shape != out.shape[1:]:
            where = f"{reader.p}: frame {index}" if reader.backend != "images" else (
                f"{reader.p / reader.record['files'][int(np.searchsorted(reader.index, index))]}:"
                f" frame {index} of this frame folder")
            raise VideoError(f"{where} is {rgb.shape[1]}x{rgb.shape[0]}, earlier frames are "
                             f"{out.shape[2]}x{out.shape[1]}: the frame size changes within the "
                             "video; pass size=(width, height) to resize every frame to one size")
        out[rows] = rgb

    try:
        for start in range(0, len(order), chunk):
            part = order[start: start + chunk]
            out = _output(len(part), shape)
            rank = np.argsort(part, kind="stable")  # the rows of each distinct frame, together
            unique, starts = np.unique(part[rank], return_index=True)
            jobs = ((out, rows, *frame) for rows, frame in  # lazy: a decoded frame at a time
                    zip(np.split(rank, starts[1:]), reader.take(unique)))
            if reader.backend == "opencv" or len(unique) < 2:
                for job in jobs:
                    place(*job)
            else:
                pending: list[Any] = []
                with ThreadPoolExecutor(1, thread_name_prefix="vadnb-rgb") as pool:
                    try:
                        for job in jobs:
                            pending.append(pool.submit(place, *job))
                            if len(pending) > _CONVERT_AHEAD:
                                pending.pop(0).result()  # re-raises a conversion's error here
                        for done in pending:
                            done.result()
                    finally:
                        for done in pending:
                            done.cancel()
            _DECODE_STATS["frames_returned"] += len(part)
            yield Frames(images=out, indices=part.copy(), timestamps_s=times[part])
    finally:
        reader.close()


def iter_frames(path: PathLike, fps: float | None = None,
                indices: Sequence[int] | np.ndarray | None = None,
                size: tuple[int, int] | None = None, chunk: int = 64,
                cache: Any = None, frame_rate: float | None = None) -> Iterator[Frames]:
    """Yield the frames :func:`read_frames` would return, ``chunk`` at a time (memory: one
    chunk). Arguments are checked at the call; decoding starts on first use."""
    return _iter_chunks(*_request(path, fps, indices, size, cache, frame_rate, chunk))


def read_frames(path: PathLike, fps: float | None = None,
                indices: Sequence[int] | np.ndarray | None = None,
                size: tuple[int, int] | None = None, cache: Any = None,
                frame_rate: float | None = None) -> Frames:
    """Read frames exactly: each image is the frame at that position of a sequential decode.

    ``fps`` samples by real timestamps (:func:`sample_indices`); ``indices`` reads those
    frames in the order given, repeats allowed; neither reads every frame there is. ``size``
    is ``(width, height)`` (``cv2.INTER_AREA``). Raises VideoError for a bad file, ``fps <=
    0``, indices out of range or lost, a bad ``size``, or mixed frame sizes without ``size``.
    """
    request = _request(path, fps, indices, size, cache, frame_rate)
    whole = list(_iter_chunks(*request))  # one chunk, or none when nothing is asked
    return whole[0] if whole else Frames(_output(0, request[3]), request[1], np.zeros(0))


def extract_frames(path: PathLike, out_dir: PathLike, fps: float | None = None,
                   quality: int = 95, indices: Sequence[int] | np.ndarray | None = None,
                   size: tuple[int, int] | None = None, cache: Any = None,
                   frame_rate: float | None = None) -> list[Path]:
    """Write frames (chosen as by :func:`read_frames`) as ``frame_000123.jpg`` files; return
    the paths. A manifest lists the indices, so reading the folder back keeps them and takes
    the gaps for sampling, not damage."""
    import cv2
    p = _check_source(path)
    if not 1 <= int(quality) <= 100:
        raise VideoError(f"{p}: JPEG quality must be between 1 and 100, got {quality}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for frames in iter_frames(p, fps=fps, indices=indices, size=size, cache=cache,
                              frame_rate=frame_rate):
        for index, rgb in zip(frames.indices.tolist(), frames.images):
            target = out / f"frame_{index:06d}.jpg"
            if not cv2.imwrite(str(target), rgb[..., ::-1], jpeg):
                raise VideoError(f"could not write {target} (frame {index} of {p}); "
                                 "is the folder writable and the disk not full?")
            written.append(target)
    tmp = out / f".{FRAMES_MANIFEST}.tmp"
    tmp.write_text(json.dumps({"written_by": "vadnb.video.extract_frames", "source": p.name,
                               "indices": [int(t.stem.rsplit("_", 1)[1]) for t in written]}))
    os.replace(tmp, out / FRAMES_MANIFEST)
    return written


# --------------------------------------------------------------------------- synthetic videos
# Every frame shows its own index as a bar code, so a test can check which frame it got.

_GRID = 4       # blocks per side; the top row is a colour key, the other 12 blocks are bits
_BITS = _GRID * (_GRID - 1)
_KEY = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]  # RGB: red, green, blue, white


def _code_image(code: int, width: int, height: int) -> np.ndarray:
    ys, xs = (np.linspace(0, n, _GRID + 1).astype(int) for n in (height, width))
    blocks = np.zeros((_GRID, _GRID, 3), np.uint8)  # the colour key row, then bit i at row-major i
    blocks[0] = _KEY
    blocks[1:] = 255 * ((code >> np.arange(_BITS)) & 1).reshape(_GRID - 1, _GRID, 1)
    img = blocks.repeat(np.diff(ys), axis=0).repeat(np.diff(xs), axis=1)
    block_h, block_w = ys[1] - ys[0], xs[-1] - xs[-2]
    if block_h >= 20:  # big enough to print the number in the white key block, for people
        import cv2
        scale, text = block_h / 40, str(code)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        scale *= min(1.0, 0.9 * block_w / max(tw, 1))
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        origin = (int(xs[-2] + (block_w - tw) / 2), int(ys[0] + (block_h + th) / 2))
        cv2.putText(img, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    max(1, int(round(scale * 2))), cv2.LINE_AA)
    return img


def read_frame_code(image: np.ndarray) -> int:
    """The index a :func:`write_test_video` frame shows (robust to compression and resizing)."""
    img = np.asarray(image, dtype=np.float32)
    ys, xs = (np.linspace(0, n, _GRID + 1).astype(int) for n in img.shape[:2])
    my, mx = np.diff(ys) // 4, np.diff(xs) // 4  # a block's centre, away from blurred edges
    cells = [(r, c) for r in range(1, _GRID) for c in range(_GRID)]  # bit i is in cells[i]
    return sum(1 << bit for bit, (r, c) in enumerate(cells) if img[
        ys[r] + my[r]: ys[r + 1] - my[r], xs[c] + mx[c]: xs[c + 1] - mx[c]].mean() > 127)


# near-lossless settings of the default encoders, so a frame's code survives compression
_ENCODER_DEFAULTS = {"libx264": {"crf": "18", "preset": "veryfast"}, "mpeg4": {"qscale": "2"}}


def write_test_video(path: PathLike, num_frames: int = 60, fps: float = 25,
                     size: tuple[int, int] = (64, 48), codec: str | None = None,
                     pts: Sequence[int] | None = None, time_base: Any = None,
                     start_code: int = 0, options: dict[str, str] | None = None) -> Path:
    """Write a video whose frame ``i`` shows ``start_code + i`` (< 4096) as a bar code for
    :func:`read_frame_code`: a colour key row (red, green, blue, white: swapped RGB shows blue
    first), then 12 bit blocks. The extension picks the container, ``codec`` defaults to
    libx264 (.mp4/.mkv/.ts/.mov) or mpeg4; ``size`` is (width, height); ``pts`` are explicit
    times in ``time_base`` units (default ``1 / fps``), e.g. for variable frame rate;
    ``options`` go to the encoder (e.g. ``{"bf": "2"}`` for B-frames)."""
    import av
    out = Path(path)
    if num_frames + start_code > 1 << _BITS:
        raise ValueError(f"a test video codes at most {1 << _BITS} frames")
    codec = codec or ("libx264" if out.suffix.lower() in (".mp4", ".mkv", ".ts", ".mov")
                      else "mpeg4")
    rate = Fraction(fps).limit_denominator(1001)
    tb = Fraction(time_base).limit_denominator(1_000_000) if time_base is not None else 1 / rate
    with av.open(str(out), "w") as container:
        stream = container.add_stream(
            codec, rate=rate, options={**_ENCODER_DEFAULTS.get(codec, {}), **(options or {})})
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = tb
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(_code_image(start_code + i, *size), format="rgb24")
            frame.pts = int(pts[i]) if pts is not None else int(round(i / rate / tb))
            frame.time_base = tb
            container.mux(stream.encode(frame))
        container.mux(stream.encode())  # flush the encoder
    return out


def patch_avi_frame_count(path: PathLike, claimed: int) -> None:
    """Make an AVI's header lie, in place: its frame counts (``avih``, video ``strh``) become
    ``claimed``, frames untouched, so ``cv2.CAP_PROP_FRAME_COUNT`` reports ``claimed``."""
    p = Path(path)
    data = bytearray(p.read_bytes())
    if data[:4] != b"RIFF" or data[8:12] != b"AVI ":
        raise VideoError(f"{p} is not an AVI file (no RIFF/AVI header)")
    avih = data.find(b"avih")
    strh = next((m.start() for m in re.finditer(b"strh", data)
                 if data[m.start() + 8: m.start() + 12] == b"vids"), -1)
    if avih < 0 or strh < 0:
        raise VideoError(f"{p}: no avih or video strh header found")
    struct.pack_into("<I", data, avih + 8 + 16, claimed)   # dwTotalFrames
    struct.pack_into("<I", data, strh + 8 + 32, claimed)   # dwLength
    p.write_bytes(bytes(data))
