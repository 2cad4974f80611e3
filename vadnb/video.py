"""Reading frames exactly (taught in notebook 10, ``10_frame_extraction``).

Every method in this suite scores *frames*, and every benchmark labels *frames*: a score
for frame 1200 is only worth something if the picture it came from really is frame 1200.
A frame's index here is therefore its **position in a sequential decode** of the file, counted
from 0, and nothing else: not what the header says, not where a seek happens to land.

The frame count a container announces (``cv2.CAP_PROP_FRAME_COUNT``) and seeking by frame
number (``cv2.CAP_PROP_POS_FRAMES``) both trust the file's header and index, and those lie more
often than one would hope: an AVI whose header claims 444 frames when 68 decode, an MP4 whose
edit list hides its first frames, an MPEG-TS stream that starts at 1.4 s, a phone video with a
variable frame rate. So :func:`probe` decodes the whole file once and records, for every frame,
its presentation timestamp (``pts``) and whether it is a key frame. That record is the index:

- reading frames in ascending order decodes sequentially, in one pass;
- reading a few frames far apart **seeks** to the key frame at or before each and decodes
  forward, naming every decoded frame by looking its ``pts`` up in the probe's record, and
  checking as it goes that the frames arrive exactly as the sequential decode had them. Any
  surprise (a missing or unknown ``pts``, a seek that lands elsewhere) abandons seeking for a
  sequential decode; files whose timestamps cannot name frames (missing or repeated ``pts``,
  damaged data) are never seeked at all. Seeking is a shortcut to the same frames, never a
  different answer.

A damaged file is decoded past its damaged packets, as ``ffmpeg`` does; the frames that could
not be decoded are reported (a :class:`DamagedVideoWarning` naming the file and the frames, and
:attr:`VideoInfo.lost_frames` / :attr:`VideoInfo.lost_ranges`), never silently dropped, and
the frames after them keep their **true** indices (their places in the undamaged video, which
the container tells: an MP4's sample table, an AVI's ``idx1`` index, the timestamps of a
constant-rate Matroska or MPEG-TS stream), so a benchmark's per-frame labels still line up.
Asking for a lost frame raises :class:`VideoError`.

A **frame folder** (a directory of numbered images, ``000.jpg, 001.jpg, ...``, as ShanghaiTech
and Avenue ship) is a video too: frame ``i`` is the ``i``-th image in natural name order
(``2.jpg`` before ``10.jpg``), at ``frame_rate`` frames per second (default
:data:`FOLDER_FPS`). When the names are numbered (``img_004.png``: the same text around one
number), frame ``i`` is the image numbered ``first + i``, and a number missing from the run is
a lost frame (reported as for a damaged file).

The public functions:

- :func:`probe` counts the decodable frames (one pass over the file, cached on disk by the
  file's content, so the second call is instant) and returns a :class:`VideoInfo`.
- :func:`frame_times` gives the presentation time of every frame.
- :func:`read_frames` returns the frames asked for (all, ``fps`` sampling, or ``indices``)
  as a :class:`Frames`; :func:`iter_frames` yields the same in chunks, for long videos.
- :func:`extract_frames` writes them as JPEG files named by their frame index.
- :func:`sample_indices` is the ``fps`` sampling rule on its own.
- :func:`folder_images` and :func:`folder_frame_count` list a frame folder's images and count
  its frames from their names alone.
- :func:`decode_stats` / :func:`seek_stats` count the decoding work done (for benchmarks).
- :func:`write_test_video`, :func:`read_frame_code` and :func:`patch_avi_frame_count` make
  small synthetic videos whose frames carry their own index (for tests and lessons).

Anything wrong with the input raises :class:`VideoError` (a ``ValueError``) whose message names
the file, says what is wrong and what to do about it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import struct
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "VideoError", "DamagedVideoWarning", "VideoInfo", "Frames", "probe", "frame_times",
    "sample_indices", "read_frames", "iter_frames", "extract_frames", "decode_stats",
    "reset_decode_stats", "seek_stats", "FOLDER_FPS", "IMAGE_SUFFIXES", "folder_images",
    "write_test_video", "read_frame_code", "patch_avi_frame_count", "folder_frame_count",
]

PathLike = str | os.PathLike

#: Give up opening or reading a file after this long (guards against FFmpeg blocking).
TIMEOUT_MS = 20_000
#: Two timestamps closer than this (seconds) are the same instant (absorbs float rounding).
_EPS = 1e-6
#: Bump when the probe's logic changes, so stale cache entries are not reused.
_PROBE_VERSION = 5
#: Frame rate of a frame folder when ``frame_rate`` is not given (stated in VideoInfo.fps_from).
FOLDER_FPS = 30.0
#: Image files a frame folder may hold (case-insensitive); other files in it are ignored.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Seek only when it skips more than this many frames (a seek costs a few frames of decoding).
_SEEK_MIN_SKIP = 64


#: What decoding has cost since the last :func:`reset_decode_stats` (benchmarks read it):
#: decoder opens, frames the decoder stepped over (probe passes included), frames returned.
_DECODE_STATS = {"opens": 0, "frames_decoded": 0, "frames_returned": 0}
#: Seeks made, and seeks abandoned for a sequential decode because a frame did not match.
_SEEK_STATS = {"seeks": 0, "fallbacks": 0}


def decode_stats() -> dict[str, int]:
    """Decoder opens, frames decoded and frames returned since the last reset.

    A cached stage decodes nothing, so a warm re-run must leave these at zero; a stage that
    streams reads each frame at most once per pass (``benchmarks/``). A frame-folder image
    read counts as one frame decoded.
    """
    return dict(_DECODE_STATS)


def seek_stats() -> dict[str, int]:
    """Seeks made and seeks abandoned (fallbacks to a sequential decode) since the last reset."""
    return dict(_SEEK_STATS)


def reset_decode_stats() -> None:
    """Set :func:`decode_stats` and :func:`seek_stats` back to zero."""
    for stats in (_DECODE_STATS, _SEEK_STATS):
        for key in stats:
            stats[key] = 0


class VideoError(ValueError):
    """A video that cannot be read as asked; the message names the file and the problem."""


class DamagedVideoWarning(UserWarning):
    """A video that decodes, but not whole: frames lost to damage, or a file cut short."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video by decoding it once.

    Attributes:
        num_frames: frames in the video (the truth, whatever the header says): those a
            sequential decode yields, plus ``lost_frames``.
        fps: frames per second: the container's nominal rate when the measured timestamps
            agree with it (within 1 %), else the measured average rate (variable frame rate).
            For a frame folder: ``frame_rate`` when given, else :data:`FOLDER_FPS` (30).
        width, height: frame size in pixels, as decoded (a frame folder: its first image).
        duration_s: last frame's timestamp plus one frame period (``1 / fps``).
        header_frames: the frame count the container *claims* (the stream's ``frames`` field
            in PyAV, or ``cv2.CAP_PROP_FRAME_COUNT``); 0 when it claims nothing. Often wrong.
        backend: what read it: ``"pyav"``, ``"opencv"`` (when PyAV cannot open the file) or
            ``"images"`` (a frame folder).
        timestamps_from: ``"decoder"`` when per-frame timestamps come from the file (strictly
            increasing), ``"index/fps"`` when they were missing or unusable (and for folders).
        source: ``"file"`` or ``"folder"`` (a frame folder).
        fps_from: where ``fps`` comes from: ``"container"``, ``"measured"``, ``"assumed"`` (no
            timing in the file: 25), ``"given"`` (``frame_rate=``) or ``"default"``
            (a frame folder without ``frame_rate``: :data:`FOLDER_FPS`).
        lost_frames: frames of the file that could not be decoded (damaged data; and the
            frames predicted from them, which show made-up content), or images missing from a
            frame folder's numbering; 0 for a whole file. The other frames keep their true
            indices, so the lost ones are gaps in the indices that :func:`read_frames`
            returns. (Where a file's layout cannot place the lost frames, which only a warning
            says, the decoded frames are numbered consecutively instead.)
        lost_ranges: the lost frames as ``(first, last)`` ranges (inclusive), in presentation
            order; empty when unknown or nothing was lost.
        damaged_packets: compressed packets the decoder rejected.
        seekable: the probe's index can name every frame by its timestamp, so reading a few
            frames far apart seeks instead of decoding everything before them.
    """

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
    """Frames read from a video.

    Attributes:
        images: uint8 RGB array ``[N, H, W, 3]``.
        indices: int64 ``[N]``, the source frame index of each image: its position in the
            video, counted from 0 (in a damaged file, lost frames keep their places).
        timestamps_s: float64 ``[N]``, each frame's presentation time in seconds relative to
            the video's first frame (see :func:`frame_times`).
    """

    images: np.ndarray
    indices: np.ndarray
    timestamps_s: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


# --------------------------------------------------------------------------- decoders
# Two decoders: PyAV (FFmpeg's libraries called directly: exact timestamps, seeking, and
# decoding past damaged packets) and OpenCV's FFmpeg backend, used when PyAV cannot open a file.
# An opener returns a handle, or None when it cannot open the file.

@dataclass
class _Handle:
    """An open decoder: PyAV's container and its video stream, or OpenCV's capture."""

    close: Callable[[], None]
    container: Any = None
    stream: Any = None
    cap: Any = None


def _open_pyav(path: Path) -> _Handle | None:
    try:
        import av
    except ImportError:
        return None
    try:
        container = av.open(str(path), timeout=TIMEOUT_MS / 1000)
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return None
    if not container.streams.video:
        container.close()
        return None
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return _Handle(container.close, container, stream)


def _open_opencv(path: Path) -> _Handle | None:
    import cv2

    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, TIMEOUT_MS,
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, TIMEOUT_MS]
    try:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    except cv2.error:
        return None
    if not cap.isOpened():
        cap.release()
        return None
    return _Handle(cap.release, cap=cap)


#: Decoders to try, in order.
_BACKENDS: dict[str, Callable[[Path], Any]] = {
    "pyav": _open_pyav,
    "opencv": _open_opencv,
}


class _Untrusted(Exception):
    """A frame after a seek is not the one the probe's index promised: decode sequentially."""


class _LandedLate(_Untrusted):
    """A seek landed after the wanted key frame (nothing taken yet: another seek may do)."""


def _pyav_frames(h: _Handle, damage: list[int] | None = None,
                 packets: list[tuple[Any, Any, bool, int]] | None = None) -> Iterator[Any]:
    """Every frame PyAV decodes, in presentation order, going on past damaged packets.

    ``damage`` (when given) collects, for each packet the decoder rejects, how many frames had
    come out before it; without it a rejected packet raises :class:`_Untrusted`. ``packets``
    collects ``(pts, dts, is_keyframe, byte position)`` of every packet that carries a picture.
    """
    import av

    demuxed = h.container.demux(h.stream)
    decoded = 0
    while True:
        try:
            packet = next(demuxed)
        except StopIteration:
            return
        except av.error.FFmpegError:  # the container is unreadable from here on
            if damage is None:
                raise _Untrusted("demuxing failed") from None
            damage.append(decoded)
            return
        if packets is not None and packet.size and not packet.is_discard:
            pos = packet.pos
            packets.append((packet.pts, packet.dts, bool(packet.is_keyframe),
                            -1 if pos is None else int(pos)))
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            if damage is None:
                raise _Untrusted("a packet failed to decode") from None
            damage.append(decoded)
            continue
        for frame in frames:
            decoded += 1
            _DECODE_STATS["frames_decoded"] += 1
            yield frame


def _opencv_frames(h: _Handle, p: Path) -> Iterator[tuple[float, Callable[[], np.ndarray]]]:
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


def _quarter_turns(frame: Any) -> int:
    """Counter-clockwise quarter turns that show a PyAV frame upright (its display matrix:
    phones record portrait video as landscape pictures plus a rotation, as OpenCV applies)."""
    return int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4


def _rgb(frame: Any) -> np.ndarray:
    """A PyAV frame as uint8 RGB ``[H, W, 3]``, upright."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = _quarter_turns(frame)
    return np.rot90(rgb, turns) if turns else rgb


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
        handle = _BACKENDS[name](p)
        if handle is not None:
            _DECODE_STATS["opens"] += 1
            return name, handle
    damage = _truncation(p)
    if damage:
        raise VideoError(f"{p} is truncated or damaged ({damage}) and no frame can be read: "
                         "0 frames decoded. Download or copy the file again.")
    raise VideoError(f"{p} is not a video that can be decoded (tried: {', '.join(names)}): "
                     "it may not be a video at all (e.g. a renamed text file), have no video "
                     "stream, or use a codec this FFmpeg lacks. Check it with "
                     "`ffprobe` or re-encode it to H.264 MP4.")


# --------------------------------------------------------------------------- truncation
def _truncation(p: Path) -> str | None:
    """A description of how the file is cut short, or None when its structure looks whole.

    Checks the container's own size fields: an AVI's RIFF size, an MP4/MOV's top-level
    boxes, a Matroska segment's size. (A header that lies about the frame *count* while the
    file is whole is not truncation: see :func:`patch_avi_frame_count`.)
    """
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(4096)
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            declared = struct.unpack("<I", head[4:8])[0] + 8
            if declared > size:
                return f"its RIFF header declares {declared} bytes, the file has {size}"
            return None
        if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
            pos, seen = 0, []
            while pos + 8 <= size:
                f.seek(pos)
                box = f.read(16)
                length, kind = struct.unpack(">I4s", box[:8])
                if length == 1 and len(box) >= 16:
                    length = struct.unpack(">Q", box[8:16])[0]
                elif length == 0:
                    length = size - pos
                if length < 8:
                    return f"a damaged MP4 box at byte {pos}"
                seen.append(kind)
                if pos + length > size:
                    return (f"its '{kind.decode('latin-1')}' box needs {pos + length} bytes, "
                            f"the file has {size}")
                pos += length
            if b"moov" not in seen:
                return "the MP4 index (moov box) is missing"
            return None
    if head[:4] == b"\x1a\x45\xdf\xa3":  # Matroska / WebM
        return _mkv_truncation(head, size)
    return None


def _mkv_truncation(data: bytes, size: int) -> str | None:
    """Compare a Matroska segment's declared size (when known) with the file's size."""
    def vint(i: int, keep_marker: bool) -> tuple[int, int]:
        """An EBML variable-length integer at ``i``: its length is 1 + its leading zero bits."""
        length = 9 - data[i].bit_length()
        tail = data[i + 1: i + length]
        value = data[i] if keep_marker else data[i] & (0xFF >> length)
        return (value << 8 * len(tail)) | int.from_bytes(tail, "big"), i + length

    try:
        _, i = vint(0, True)           # EBML header id
        hsize, i = vint(i, False)
        seg_id, i = vint(i + hsize, True)
        start = i
        seg_size, i = vint(i, False)
    except IndexError:
        return "its Matroska header is cut short"
    unknown = seg_size == (1 << (7 * (i - start))) - 1
    if seg_id == 0x18538067 and not unknown and i + seg_size > size:
        return f"its Matroska segment declares {i + seg_size} bytes, the file has {size}"
    return None


def _ts_cut_short(p: Path) -> str | None:
    """How an MPEG-TS file is cut short (it ends inside a transport packet), or None.

    MPEG-TS has no index or total size to compare with: a file cut at a packet boundary
    cannot be told from a whole one, but one cut anywhere else leaves a partial packet.
    """
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(400)
    for packet, sync in ((188, 0), (192, 4)):  # plain TS, and M2TS with its 4-byte prefix
        if len(head) > packet + sync and head[sync] == 0x47 and head[packet + sync] == 0x47:
            extra = size % packet
            if extra:
                return (f"it ends {extra} bytes into a {packet}-byte MPEG-TS packet, so it was "
                        "probably cut short")
            return None
    return None


# --------------------------------------------------------------------------- frame folders
def _natural_key(name: str) -> list[Any]:
    """Sort key putting ``2.jpg`` before ``10.jpg`` (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", name)
    return [int(s) if i % 2 else s.lower() for i, s in enumerate(parts)]


def _folder_images(p: Path) -> list[Path]:
    """The images of a frame folder in natural name order, or a VideoError saying why none."""
    try:
        entries = [e for e in p.iterdir() if not e.name.startswith(".")]
    except OSError as err:
        raise VideoError(f"{p}: cannot list this folder ({err}); check its permissions") from None
    if not entries:
        raise VideoError(f"{p} is an empty directory: pass a video file, or a frame folder "
                         f"(a directory of numbered images: {', '.join(IMAGE_SUFFIXES)})")
    images = [e for e in entries if e.suffix.lower() in IMAGE_SUFFIXES and e.is_file()]
    if not images:
        sample = ", ".join(sorted(e.name for e in entries)[:5])
        raise VideoError(f"{p} is a directory with no image files (it holds {len(entries)} "
                         f"entries, e.g. {sample}); a frame folder holds numbered images "
                         f"({', '.join(IMAGE_SUFFIXES)}). Pass a video file or such a folder.")
    return sorted(images, key=lambda e: _natural_key(e.name))


def folder_images(path: PathLike) -> list[Path]:
    """The images of a frame folder, in the order :func:`probe` and :func:`read_frames` use
    (natural name order, hidden files skipped); no image is opened. Their count is the frame
    count unless the numbering has gaps: see :func:`folder_frame_count`."""
    return _folder_images(Path(path))


def folder_frame_count(path: PathLike) -> int:
    """A frame folder's frame count, as :func:`probe` gives it, from the names alone: the
    span of the numbering (``first .. last``) when the names are numbered, images missing
    from it included (they are lost frames), else the number of images."""
    images = _folder_images(Path(path))
    numbers = _numbering(images)
    return len(images) if numbers is None else numbers[-1] - numbers[0] + 1


def _numbering(images: list[Path]) -> list[int] | None:
    """Each image's number, when every name is the same text around its last run of digits
    (``img_004.png``) and no number repeats; else None (natural name order is all there is).
    ``images`` are in natural order, so the numbers come out ascending."""
    parts = [re.fullmatch(r"(.*?)(\d+)(\D*)", e.name) for e in images]
    if any(m is None for m in parts) or len({(m[1].lower(), m[3].lower())
                                               for m in parts}) != 1:
        return None
    numbers = [int(m[2]) for m in parts]
    if any(b <= a for a, b in zip(numbers, numbers[1:])):
        return None
    return numbers


#: Written by :func:`extract_frames` beside its JPEGs: which source frames the folder holds.
FRAMES_MANIFEST = "frames.json"


def _sampled_by_design(p: Path, numbers: list[int] | None) -> bool:
    """Whether ``p`` is a folder :func:`extract_frames` wrote, holding exactly the frames its
    manifest lists: then its numbers are source frame indices and the gaps between them were
    never meant to be there (sampling), not lost frames."""
    manifest = p / FRAMES_MANIFEST
    if numbers is None or not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(data, dict) and data.get("written_by") == "vadnb.video.extract_frames"
            and isinstance(data.get("indices"), list)
            and sorted(set(data["indices"])) == numbers)


def _scan_folder(p: Path, frame_rate: float | None) -> dict[str, Any]:
    """A frame folder's record, from the image headers (every pixel is read only when asked)."""
    from PIL import Image, UnidentifiedImageError

    files = _folder_images(p)
    numbers = _numbering(files)
    sampled = _sampled_by_design(p, numbers)
    first = 0 if sampled else (numbers[0] if numbers else 0)  # a sample keeps source indices
    index = list(range(len(files))) if numbers is None else [k - first for k in numbers]
    n = index[-1] + 1
    sizes = []
    for f, i in zip(files, index):
        try:
            with Image.open(f) as im:
                sizes.append(im.size)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
            raise VideoError(f"{f}: not a readable image ({err}); frame {i} of the frame "
                             f"folder {p}. Replace or remove the file.") from None
    odd = next((i for i, s in enumerate(sizes) if s != sizes[0]), -1)
    fps = float(frame_rate) if frame_rate is not None else FOLDER_FPS
    lost = sorted(set(range(n)) - set(index))
    notes = []
    if lost and not sampled:
        where = _spans(_ranges(lost))
        notes.append(f"{p}: {len(lost)} image(s) missing from this frame folder's numbering "
                     f"(frames {where}, counted from {files[0].name} as frame 0): they are "
                     "lost frames. The other images keep their numbers as frame indices; "
                     "reading a lost index raises VideoError, and VideoInfo.lost_ranges lists "
                     "them. Restore the missing images if those frames matter.")
    return {
        "num_frames": n, "fps": fps, "width": sizes[0][0], "height": sizes[0][1],
        "duration_s": n / fps, "header_frames": 0, "backend": "images",
        "timestamps_from": "index/fps", "timestamps_s": np.arange(n, dtype=np.float64) / fps,
        "source": "folder", "fps_from": "given" if frame_rate is not None else "default",
        # a sample's missing frames are not lost (nothing was damaged); reading one still
        # raises, as only the sampled frames have pictures
        "lost_frames": 0 if sampled else len(lost),
        "lost_ranges": [] if sampled else [list(r) for r in _ranges(lost)],
        "sampled": sampled,
        "frame_index": index if lost else None, "damaged_packets": 0, "seekable": False,
        "files": [f.name for f in files], "first_odd_size": odd,
        "odd_size": list(sizes[odd]) if odd >= 0 else [], "warnings": notes,
    }


def _read_image(p: Path, name: str, index: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    f = p / name
    try:
        with Image.open(f) as im:
            rgb = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise VideoError(f"{f} (frame {index} of the frame folder {p}) has disappeared since the "
                         "folder was probed; the folder changed, probe it again") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise VideoError(f"{f}: cannot decode this image ({err}); it is frame {index} of the "
                         f"frame folder {p}. Replace or remove the file.") from None
    _DECODE_STATS["frames_decoded"] += 1
    return rgb


# --------------------------------------------------------------------------- probe
def _scan(p: Path, backend: str | None) -> dict[str, Any]:
    """One sequential pass: count the frames and note every frame's timestamp (the index)."""
    name, h = _open(p, backend)
    damage: list[int] = []
    packets: list[tuple[Any, Any, bool, int]] = []
    pts: list[Any] = []  # each decoded frame's pts, whether it is a key frame, its time (s)
    keys: list[bool] = []
    times: list[float] = []
    layout = None
    try:
        if name == "pyav":
            stream = h.stream
            rate = stream.average_rate or stream.guessed_rate
            nominal = float(rate) if rate else 0.0
            header = max(int(stream.frames or 0), 0)
            layout = _Layout(str(h.container.format.name or ""), int(stream.index),
                             stream.time_base)
            width = height = 0
            for frame in _pyav_frames(h, damage, packets):
                if not pts:
                    width, height = frame.width, frame.height
                    if _quarter_turns(frame) % 2:
                        width, height = height, width
                pts.append(frame.pts)
                keys.append(bool(frame.key_frame))
                times.append(math.nan if frame.time is None else float(frame.time))
        else:
            import cv2

            cap = h.cap
            nominal = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            header = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            times = [t for t, _ in _opencv_frames(h, p)]
    finally:
        h.close()
    n, cut = len(times), _truncation(p)
    if n == 0:
        what = f"it is truncated or damaged ({cut})" if cut else (
            "its video stream holds no frame the decoder accepts")
        raise VideoError(f"video has 0 decodable frames: {p}; {what}. Re-encode or fetch "
                         "the file again.")
    if cut and (header == 0 or n < header):
        frames_read = f"{n} frame" + ("s" if n != 1 else "")
        raise VideoError(f"{p} is truncated or damaged ({cut}): only {frames_read} could "
                         f"be read (its header announces {header}). Download or "
                         "copy it again; to keep the readable part, re-mux it, e.g. "
                         f"`ffmpeg -i {p.name} -c copy fixed.mkv`.")
    notes: list[str] = []
    ts_cut = _ts_cut_short(p)
    if ts_cut:
        notes.append(f"{p}: {ts_cut}; {n} frames decoded, the frames after them are missing. "
                     "Fetch the file again if its end matters.")

    nominal = nominal if 0 < nominal < 1000 else 0.0
    placed = _true_slots(p, layout, pts, packets, damage, nominal) if layout else None
    if placed and "avi" not in layout.format.split(","):  # an AVI drops its groups itself
        placed = _drop_damaged_groups(placed, keys)
    slots, total = placed if placed else (list(range(n)), n)
    rel, fps, fps_from, reliable = _timing(times, slots, total, nominal)
    lost = sorted(set(range(total)) - set(slots))
    lost_count = len(lost)
    if placed and (lost or damage or -1 in slots):
        notes.append(_lost_note(p, len(damage), lost, lost_count))
    elif damage:  # the frames cannot be placed: count them at least
        lost = _lost_frames(pts, packets)
        lost_count = len(lost) if lost else max(len(packets) - n, 0)
        notes.append(_lost_note(p, len(damage), lost, lost_count, after=damage[0]))
    damaged = bool(damage or lost_count or -1 in slots)
    seek = _seek_index(pts, keys, packets) if (name == "pyav" and not damaged) else None
    return {
        "num_frames": int(total), "fps": float(fps), "width": int(width),
        "height": int(height), "duration_s": float(rel[-1] + 1.0 / fps), "header_frames": header,
        "backend": name, "timestamps_from": "decoder" if reliable else "index/fps",
        "timestamps_s": rel, "source": "file", "fps_from": fps_from,
        "lost_frames": int(lost_count), "lost_ranges": [list(r) for r in _ranges(lost)],
        "frame_index": slots if placed and (lost or -1 in slots) else None,
        "damaged_packets": len(damage), "seekable": seek is not None,
        "pts": seek[0] if seek else None, "seek_points": seek[1] if seek else None,
        "seek_ts": seek[2] if seek else None, "warnings": notes,
    }


def _lost_note(p: Path, rejected: int, lost: list[int], count: int,
               after: int | None = None) -> str:
    """The warning for a damaged file: how many frames are lost, which, and how the rest
    are numbered (``after``: frames decoded before the damage, where the lost frames cannot be
    placed; None: they keep their true indices)."""
    exact = after is None
    where = _spans(_ranges(lost)) if lost else "none" if exact else f"after decoded frame {after}"
    numbering = (
        "The other frames keep their true indices (their positions in the undamaged video); "
        "reading a lost index raises VideoError, and VideoInfo.lost_ranges lists them."
        if exact else
        "The other frames are read as usual and numbered consecutively, so later frames shift "
        "down by the frames lost before them (this file's timestamps cannot place them).")
    rejected_note = f" (the decoder rejected {rejected} packet(s))" if rejected else ""
    return (f"{p} is damaged{rejected_note}: {count} frame(s) could not be decoded "
            f"(the file's frames {where}, counted from 0; a frame predicted from a lost one "
            f"shows made-up content, so it counts as lost too). {numbering} "
            "Re-encode or fetch the file again for every frame.")


@dataclass(frozen=True)
class _Layout:
    """What the container says about the video stream that locating lost frames needs."""

    format: str      # FFmpeg's demuxer name(s), e.g. "avi", "matroska,webm", "mov,mp4,..."
    stream: int      # the stream's number in the container
    time_base: Any   # the unit of its timestamps (a Fraction)


def _true_slots(p: Path, layout: _Layout, pts: list[Any],
                packets: list[tuple[Any, Any, bool, int]], damage: list[int],
                nominal: float) -> tuple[list[int], int] | None:
    """Each decoded frame's position in the undamaged video and the undamaged video's frame
    count, or None when they cannot be told (frames are then numbered consecutively).

    Every container loses frames its own way, so each is asked what it knows:

    - MP4/MOV: its sample table lists every picture, damaged or not (their packets are
      demuxed): the sorted packet timestamps are the whole presentation order.
    - AVI: its ``idx1`` index lists every chunk's byte position; the demuxer numbers the
      chunks it *reads*, so after damaged chunks are skipped the packets' own timestamps run
      on without a gap, and only the index can say which are missing.
    - Others (Matroska, MPEG-TS, ...): missing blocks leave gaps in the frames' timestamps;
      on a constant-rate timeline (every step one frame period, or a whole number of them)
      a gap of ``k`` periods is ``k - 1`` lost frames. A variable-rate timeline is left
      alone, and so are timestamps that go back in a file the decoder found no fault in.
    """
    fmt = layout.format.split(",")
    if not pts or any(t is None for t in pts):
        return None
    if "mp4" in fmt or "mov" in fmt:
        return _slots_from_packets(pts, packets) if damage else None
    if "avi" in fmt:
        return _avi_slots(p, layout.stream, pts, packets)
    if not damage and any(b <= a for a, b in zip(pts, pts[1:])):
        return None  # timestamps that go back in an undamaged file (e.g. joined recordings)
    return _grid_slots(pts, nominal, layout.time_base)


def _drop_damaged_groups(placed: tuple[list[int], int], keys: list[bool]
                         ) -> tuple[list[int], int]:
    """Drop (place -1) the frames of a group of pictures shown after a picture it lost.

    A group runs from a key frame to the next, in presentation order (the frames before the
    first key frame form one too). Its pictures are predicted from one another, so after a
    loss the rest of the group shows made-up content (error concealment): lost too. The
    frames shown before the loss came from pictures decoded before it and are kept."""
    slots, total = placed
    starts = sorted({s for s, k in zip(slots, keys) if k and s >= 0} | {0})
    first_loss: dict[int, int] = {}
    for x in sorted(set(range(total)) - set(slots)):
        first_loss.setdefault(starts[int(np.searchsorted(starts, x, side="right")) - 1], x)
    if not first_loss:
        return placed

    def kept(s: int) -> bool:
        start = starts[int(np.searchsorted(starts, s, side="right")) - 1]
        return s < first_loss.get(start, total)

    dropped = [s if s >= 0 and kept(s) else -1 for s in slots]
    return (dropped, total) if max(dropped) >= 0 else placed  # keep something to show


def _slots_from_packets(pts: list[Any], packets: list[tuple[Any, Any, bool, int]]
                        ) -> tuple[list[int], int] | None:
    """Frames' positions among every packet's timestamp (a container that lists them all),
    or None when a frame has none. A frame whose place breaks the increasing order gets -1
    (not returned: a damaged decoder emits a stray picture out of order, its content made up
    by error concealment); the frames kept are the longest run of increasing places, so one
    stray frame cannot discard the good frames around it."""
    order = _packet_order(packets)
    if order is None:
        return None
    where = {t: i for i, t in enumerate(order)}
    slots = [where.get(t) for t in pts]
    if not slots or any(s is None for s in slots):
        return None
    keep = _longest_increasing(slots)
    return [int(s) if k else -1 for s, k in zip(slots, keep)], len(order)


def _longest_increasing(values: Sequence[int]) -> list[bool]:
    """Which of ``values`` form a longest strictly increasing subsequence (O(n log n))."""
    import bisect

    tails: list[int] = []      # tails[L]: the smallest last value of an increasing run of L+1
    ends: list[int] = []       # ends[L]: where that run ends
    before = [-1] * len(values)
    for i, v in enumerate(values):
        at = bisect.bisect_left(tails, v)
        if at == len(tails):
            tails.append(v)
            ends.append(i)
        else:
            tails[at], ends[at] = v, i
        before[i] = ends[at - 1] if at else -1
    keep = [False] * len(values)
    i = ends[-1] if ends else -1
    while i >= 0:
        keep[i] = True
        i = before[i]
    return keep


def _timing(times: list[float], slots: list[int], total: int, nominal: float
            ) -> tuple[np.ndarray, float, str, bool]:
    """``(timestamps_s of all total frames, fps, fps_from, reliable)`` from the decoded
    frames' times (``slots``: each one's index, -1 for a stray frame, ignored).

    The decoder's times are used when they all exist and increase; else ``index / fps``."""
    at = [s for s in slots if s >= 0]
    raw = np.asarray([t for t, s in zip(times, slots) if s >= 0], dtype=np.float64)
    reliable = bool(np.all(np.isfinite(raw)) and np.all(np.diff(raw) > _EPS))
    if reliable and len(raw) > 1:
        rel = raw - raw[0]
        measured = (at[-1] - at[0]) / rel[-1]
        use_nominal = bool(nominal) and abs(nominal - measured) <= 0.01 * measured
        fps, fps_from = (nominal, "container") if use_nominal else (measured, "measured")
        return _fill_times(rel, at, total, fps), float(fps), fps_from, True
    fps, fps_from = (nominal, "container") if nominal else (25.0, "assumed")
    return np.arange(total, dtype=np.float64) / fps, float(fps), fps_from, reliable


def _fill_times(rel: np.ndarray, slots: list[int], total: int, fps: float) -> np.ndarray:
    """Times of all ``total`` frames from the decoded frames' (at ``slots``): a lost frame's
    time lies between its neighbours', one period ``1 / fps`` apart beyond the ends; frame 0
    is at 0."""
    at = np.asarray(slots, dtype=np.float64)
    idx = np.arange(total, dtype=np.float64)
    full = np.interp(idx, at, rel)
    full = np.where(idx < at[0], rel[0] - (at[0] - idx) / fps, full)
    full = np.where(idx > at[-1], rel[-1] + (idx - at[-1]) / fps, full)
    return full - full[0]


def _grid_slots(pts: list[int], nominal: float, time_base: Any
                ) -> tuple[list[int], int] | None:
    """Frames' positions on a constant-rate timeline, or None when the timeline is not one.

    The frame period is ``1 / nominal`` seconds in ``time_base`` units (Matroska counts
    milliseconds, so at 30 fps the steps are 33 or 34). The timeline is constant-rate when
    every step is within a quarter period of a whole number of periods and most (90 %) are
    exactly one: then a longer step is frames missing, not a variable rate.
    """
    if len(pts) < 2 or not nominal or not time_base:
        return None
    period = 1.0 / (nominal * float(time_base))
    keep = _longest_increasing(pts)
    kept = np.asarray([t for t, k in zip(pts, keep) if k], dtype=np.float64)
    steps = np.diff(kept) / period
    whole = np.round(steps)
    if len(kept) < 2 or np.any(np.abs(steps - whole) > 0.25) or np.mean(whole == 1) < 0.9:
        return None
    places = iter(np.concatenate([[0], np.cumsum(whole)]).astype(np.int64).tolist())
    slots = [next(places) if k else -1 for k in keep]
    return [int(s) for s in slots], int(max(slots)) + 1


def _avi_slots(p: Path, stream: int, pts: list[int], packets: list[tuple[Any, Any, bool, int]]
               ) -> tuple[list[int], int] | None:
    """Frames' positions in an AVI, from its ``idx1`` index (None without a usable one).

    A frame's packet (its pts names it) sits at a byte position, and that position's entry
    in the index is the picture's number in *decoding* order. A group of pictures (a key
    frame and those decoded after it, up to the next) that lost any picture is dropped
    whole: its other pictures were predicted from the lost one, so they show made-up
    content (and where B-frames reorder them, their places are not known). Frames come
    out of the decoder in presentation order; in a closed group the key frame is shown
    first, so a frame's position is its rank among the frames kept plus the lost pictures
    of the groups before it (those decoded before the latest picture decoded so far).
    """
    chunks = _avi_chunks(p, stream)
    if not chunks:
        return None
    number = {pos: i for i, (pos, _) in enumerate(chunks)}
    by_pts = {q[0]: number.get(q[3]) for q in packets}
    decoded = [by_pts.get(t) for t in pts]
    if any(k is None for k in decoded) or len(set(decoded)) != len(decoded):
        return None
    group = np.cumsum([key for _, key in chunks]) - 1  # each picture's group (-1: before any)
    missing = set(range(len(chunks))) - set(decoded)
    damaged = {int(group[k]) for k in missing}
    kept = [k if int(group[k]) not in damaged else -1 for k in decoded]
    lost = sorted(set(range(len(chunks))) - {k for k in kept if k >= 0})
    slots, highest, rank = [], -1, 0
    for k in kept:
        if k < 0:
            slots.append(-1)
            continue
        highest = max(highest, k)
        slots.append(rank + int(np.searchsorted(lost, highest)))
        rank += 1
    return [int(s) for s in slots], len(chunks)


def _avi_chunks(p: Path, stream: int) -> list[tuple[int, bool]]:
    """``(byte position of the data, is a key frame)`` of the video stream's chunks
    (``NNdc``/``NNdb``) that an AVI's ``idx1`` index lists, in order ([] when the file has no
    such index, e.g. OpenDML only).

    Walks the top-level chunks (``hdrl``, ``movi``, ``idx1``) by their sizes, so only the
    index itself is read."""
    size = p.stat().st_size
    movi, table = -1, b""
    with open(p, "rb") as f:
        pos = 12
        while pos + 12 <= size:
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
        return []
    base = movi if video[0][0] < movi else 0  # offsets from the 'movi' tag, or absolute
    return [(base + off + 8, key) for off, key in video]  # +8: past the chunk's header


def _spans(ranges: Sequence[Sequence[int]]) -> str:
    """Inclusive ``(first, last)`` ranges as text: ``3, 7-9``."""
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ranges)


def _ranges(values: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted integers as inclusive ``(first, last)`` runs."""
    runs: list[tuple[int, int]] = []
    for v in sorted(values):
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _lost_frames(pts: list[Any], packets: list[tuple[Any, Any, bool, int]]) -> list[int]:
    """Positions (in the file's presentation order) of pictures whose packet gave no frame.

    Only when every packet and frame has a distinct timestamp; else [] (count only)."""
    order = _packet_order(packets)
    if order is None or any(t is None for t in pts):
        return []
    got = set(pts)
    return [i for i, t in enumerate(order) if t not in got]


def _packet_order(packets: list[tuple[Any, Any, bool, int]]) -> list[Any] | None:
    """Every picture packet's pts, sorted (presentation order); None if one is missing or
    repeats, as then timestamps cannot name the pictures."""
    order = [q[0] for q in packets]
    if any(t is None for t in order) or len(set(order)) != len(order):
        return None
    return sorted(order)


def _seek_index(pts: list[Any], keys: list[bool], packets: list[tuple[Any, Any, bool, int]]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(pts, seek_points, seek_ts)`` when timestamps can name every frame, else None.

    ``seek_points`` are the indices of frames the decoder calls key frames *and* whose packet
    the container marks as a key frame (a seek lands on those); ``seek_ts`` is the key
    packet's dts, a second timestamp to seek to (demuxers differ: MP4 lands exactly when given
    the pts, MPEG-TS when given the dts).
    """
    if not pts or any(t is None for t in pts):
        return None
    arr = np.asarray(pts, dtype=np.int64)
    if len(arr) > 1 and not np.all(np.diff(arr) > 0):
        return None
    key_packets = {int(q[0]): (int(q[1]) if q[1] is not None else int(q[0]))
                   for q in packets if q[2] and q[0] is not None}
    points = [i for i, (t, k) in enumerate(zip(arr.tolist(), keys)) if k and t in key_packets]
    if not points:
        return None
    seek_ts = [key_packets[int(arr[i])] for i in points]
    return arr, np.asarray(points, dtype=np.int64), np.asarray(seek_ts, dtype=np.int64)


def _check_frame_rate(p: Path, frame_rate: float | None) -> None:
    if frame_rate is None:
        return
    if not p.is_dir():
        raise VideoError(f"{p}: frame_rate is for frame folders only (a video file's rate "
                         "comes from the file); drop frame_rate=")
    if isinstance(frame_rate, bool) or not isinstance(frame_rate, (int, float, np.number)) \
            or not math.isfinite(frame_rate) or not 0 < frame_rate < 1000:
        raise VideoError(f"{p}: frame_rate must be a number of frames per second between 0 and "
                         f"1000, got {frame_rate!r}")


def _probe_record(path: PathLike, cache: Any = None,
                  frame_rate: float | None = None) -> tuple[Path, dict[str, Any]]:
    from .cache import file_digest, get_cache

    p = _check_source(path)
    _check_frame_rate(p, frame_rate)
    if p.is_dir():
        _folder_images(p)  # a clear error for an empty or image-less folder, before hashing
        parts: dict[str, Any] = {"frames": file_digest(p), "version": _PROBE_VERSION,
                                 "frame_rate": None if frame_rate is None else float(frame_rate)}
        record = get_cache(cache).memo("video.probe", parts, lambda: _scan_folder(p, frame_rate))
    else:
        parts = {"video": file_digest(p), "backends": list(_BACKENDS),
                 "version": _PROBE_VERSION}
        record = get_cache(cache).memo("video.probe", parts, lambda: _scan(p, None))
    for note in record.get("warnings") or []:
        warnings.warn(str(note), DamagedVideoWarning, stacklevel=3)
    return p, record


def probe(path: PathLike, cache: Any = None, frame_rate: float | None = None) -> VideoInfo:
    """Count a video's decodable frames and read its size, rate and timing.

    The count comes from decoding every frame once (exact even when the header lies), so the
    first call costs one pass over the file; the result (with the index of every frame's
    timestamp and the key frames, used to seek) is cached on disk keyed by the file's content
    (:func:`vadnb.cache.file_digest`), so later calls, in any process, are instant.

    Args:
        path: a video file, or a frame folder (a directory of numbered images).
        cache: a :class:`vadnb.cache.Cache`, a folder, or None for the default cache.
        frame_rate: frames per second of a frame folder (default :data:`FOLDER_FPS`, 30, and
            ``VideoInfo.fps_from == "default"`` says so). Not allowed for video files.

    Raises:
        VideoError: missing file, not a video, 0 decodable frames, truncated; an empty folder
            or one without images, an unreadable image.

    Warns:
        DamagedVideoWarning: frames lost to damaged data, or an MPEG-TS file cut short.
    """
    _, r = _probe_record(path, cache, frame_rate)
    cast = {"int": int, "float": float, "str": str, "bool": bool}
    return VideoInfo(**{f.name: cast[f.type](r[f.name]) for f in fields(VideoInfo)
                        if f.type in cast},
                     lost_ranges=tuple((int(a), int(b)) for a, b in r["lost_ranges"]))


def frame_times(path: PathLike, cache: Any = None, frame_rate: float | None = None) -> np.ndarray:
    """Presentation time (s) of every frame, relative to the first frame (which is at 0).

    Taken from the decoder when the file's timestamps are usable (all present and strictly
    increasing), which keeps variable-frame-rate video exact; otherwise ``index / fps``
    (:attr:`VideoInfo.timestamps_from` says which; always so for a frame folder). Cached with
    :func:`probe`.
    """
    record = _probe_record(path, cache, frame_rate)[1]
    return np.asarray(record["timestamps_s"], dtype=np.float64).copy()


# --------------------------------------------------------------------------- sampling
def sample_indices(times_s: np.ndarray, fps: float) -> np.ndarray:
    """The ``fps`` sampling rule: for each multiple ``k / fps`` of the sampling period
    (k = 0, 1, 2, ... up to the last frame's time), the first frame whose timestamp is at or
    after it. A frame that is the first after several multiples (a gap in a variable-rate
    video) is taken once.

    At 30 fps sampled at ``fps=1`` this gives frames 0, 30, 60, ...; at 25 fps sampled at
    ``fps=2``: 0, 13, 25, 38, ... (0.52 s is the first frame at or after 0.5 s).

    Args:
        times_s: increasing frame timestamps in seconds (e.g. :func:`frame_times`).
        fps: samples per second, > 0.
    """
    times = np.asarray(times_s, dtype=np.float64)
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    period = 1.0 / fps
    last_k = int(math.floor((times[-1] - times[0]) / period + _EPS))
    targets = times[0] + np.arange(last_k + 1) * period
    picked = np.searchsorted(times, targets - _EPS, side="left")
    return np.unique(picked[picked < len(times)]).astype(np.int64)


def _check_fps(p: Path, fps: float | None) -> None:
    if fps is None:
        return
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.number)):
        raise VideoError(f"{p}: fps must be a number of samples per second, got {fps!r}")
    if not math.isfinite(fps) or fps <= 0:
        raise VideoError(f"{p}: fps must be > 0 samples per second, got {fps}; "
                         "use fps=None to read every frame")


def _check_size(p: Path, size: Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        w, h = (int(v) for v in size)
        ok = (w, h) == tuple(size) and w > 0 and h > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise VideoError(f"{p}: size must be (width, height) in pixels, both > 0; got {size!r}")
    return w, h


def _wanted(p: Path, record: dict[str, Any], fps: float | None,
            indices: Sequence[int] | np.ndarray | None) -> np.ndarray:
    """The frame indices to return, in the order to return them, validated."""
    n = int(record["num_frames"])
    if indices is not None:
        if fps is not None:
            raise VideoError(f"{p}: pass fps or indices, not both")
        arr = np.asarray(indices)
        if arr.ndim != 1 and arr.size > 0:
            raise VideoError(f"{p}: indices must be a flat list of frame numbers, "
                             f"got shape {arr.shape}")
        arr = arr.reshape(-1)
        if arr.size and not np.issubdtype(arr.dtype, np.integer) and not (
                np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
            raise VideoError(f"{p}: indices must be whole frame numbers, got {arr[:5]}...")
        arr = arr.astype(np.int64)
        bad = arr[(arr < 0) | (arr >= n)]
        if bad.size:
            raise VideoError(f"{p}: frame indices out of range: {bad[:5].tolist()} "
                             f"({bad.size} in all); this video has {n} decodable frames, "
                             f"so indices run from 0 to {n - 1}"
                             + (f" (its header claims {record['header_frames']}, wrongly)"
                                if record["header_frames"] not in (0, n) else ""))
        _check_not_lost(p, record, arr)
        return arr
    present = _present(record)
    if fps is None:
        return present
    times = np.asarray(record["timestamps_s"], dtype=np.float64)[present]
    return present[sample_indices(times, fps)]


def _present(record: dict[str, Any]) -> np.ndarray:
    """The indices of the frames that can be read, ascending: every index, unless frames are
    lost (a damaged file, a frame folder with gaps in its numbering)."""
    index = record.get("frame_index")
    if index is None:
        return np.arange(int(record["num_frames"]), dtype=np.int64)
    index = np.asarray(index, dtype=np.int64)
    return index[index >= 0]


def _check_not_lost(p: Path, record: dict[str, Any], arr: np.ndarray) -> None:
    """A VideoError naming the asked frames that are lost (they have no picture to return)."""
    if record.get("frame_index") is None or not arr.size:
        return
    missing = np.unique(arr[~np.isin(arr, _present(record))])
    if missing.size and record.get("sampled"):
        raise VideoError(f"{p}: frame(s) {missing[:5].tolist()} ({missing.size} in all) are not "
                         f"in this folder: extract_frames wrote only the sampled frames listed "
                         f"in its {FRAMES_MANIFEST}. Read them from the source video.")
    if missing.size:
        raise VideoError(f"{p}: frame(s) {missing[:5].tolist()} ({missing.size} in all) are "
                         f"lost: this video's frames {_spans(record['lost_ranges'])} could not "
                         "be read (see the DamagedVideoWarning). Ask only for frames outside "
                         "VideoInfo.lost_ranges, or fetch an undamaged copy.")


# --------------------------------------------------------------------------- reading
class _Reader:
    """Hands out frames by index, in ascending order, from one open decoder.

    Going forward it decodes on; to go back, or to jump far ahead in a file whose probe built
    a seek index, it seeks to the key frame at or before the wanted frame (checking every
    decoded frame against the index, see the module docstring), else it restarts from the
    first frame. A frame folder simply reads the wanted images.
    """

    def __init__(self, p: Path, record: dict[str, Any]):
        self.p, self.record = p, record
        self.backend = str(record["backend"])
        self.n = int(record["num_frames"])
        self.index = _present(record)  # the frames there are, ascending
        # the index of each frame a sequential pass yields (-1: a stray frame, skipped)
        decoded = record.get("frame_index")
        self.decoded = self.index if decoded is None else np.asarray(decoded, dtype=np.int64)
        self.handle: Any = None
        self.frames: Iterator[tuple[int, Callable[[], np.ndarray]]] | None = None
        self.pos = -1  # index of the last frame taken from self.frames
        # (seek point, attempt) of the seek self.frames comes from; None: a sequential decode
        self.seeking: tuple[int, int] | None = None
        self.first_attempt = 0  # 1 once seeking by pts has landed late in this file
        self.seekable = bool(record.get("seekable")) and self.backend == "pyav"
        if self.seekable:
            self.pts = np.asarray(record["pts"], dtype=np.int64)
            self.points = np.asarray(record["seek_points"], dtype=np.int64)
            self.seek_ts = np.asarray(record["seek_ts"], dtype=np.int64)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.handle, self.frames = None, None

    def _restart(self) -> None:
        """Decode sequentially from the first frame."""
        self.close()
        _, self.handle = _open(self.p, self.backend)
        if self.backend == "pyav":
            self.frames = ((i, (lambda f=f: _rgb(f))) for i, f in
                           zip(self.decoded.tolist(), _pyav_frames(self.handle, damage=[]))
                           if i >= 0)
        else:
            self.frames = ((i, retrieve) for i, (_, retrieve) in
                           zip(self.decoded.tolist(), _opencv_frames(self.handle, self.p)))
        self.seeking, self.pos = None, -1

    def _seek(self, k: int, attempt: int | None = None) -> None:
        """Seek to seek point ``k`` (an index into ``self.points``).

        The first attempt seeks to the key frame's pts, the second to its packet's dts (for
        demuxers that land after the wanted key frame when given the pts)."""
        if self.handle is None:
            _, self.handle = _open(self.p, self.backend)
        key = int(self.points[k])
        attempt = self.first_attempt if attempt is None else attempt
        ts = int(self.pts[key]) if attempt == 0 else int(self.seek_ts[k])
        self.handle.container.seek(ts, backward=True, any_frame=False,
                                   stream=self.handle.stream)
        _SEEK_STATS["seeks"] += 1
        self.frames = self._after_seek(key)
        self.seeking, self.pos = (k, attempt), key - 1

    def _after_seek(self, key: int) -> Iterator[tuple[int, Callable[[], np.ndarray]]]:
        """Frames from ``key`` on, each named by its pts; any mismatch raises _Untrusted."""
        expect = key
        for frame in _pyav_frames(self.handle):
            if frame.pts is None:
                raise _Untrusted("a frame without pts")
            if expect == key and frame.pts < self.pts[key]:
                continue  # frames before the key frame: the seek landed a little earlier
            if expect == key and frame.pts > self.pts[key]:
                raise _LandedLate()
            if expect >= self.n or frame.pts != self.pts[expect]:
                raise _Untrusted(f"frame {expect}: pts {frame.pts} is not the indexed one")
            yield expect, (lambda f=frame: _rgb(f))
            expect += 1

    def _recover(self, err: _Untrusted) -> None:
        """After a seek went wrong: where seeking by pts landed late, seek by dts instead;
        else never seek again in this file and decode sequentially."""
        k, attempt = self.seeking or (0, 0)
        if isinstance(err, _LandedLate) and attempt == 0 \
                and self.seek_ts[k] < self.pts[self.points[k]]:
            self.first_attempt = 1
            self._seek(k, 1)
            return
        _SEEK_STATS["fallbacks"] += 1
        self.seekable = False
        self._restart()

    def take(self, targets: np.ndarray, lazy: bool = False
             ) -> Iterator[tuple[int, Any]]:
        """``(index, rgb)`` for each of ``targets`` (ascending, distinct).

        ``lazy=True`` yields, instead of each image, a function that makes it, and that may be
        called later, from another thread (not for the OpenCV decoder, whose picture the next
        frame overwrites)."""
        if lazy and self.backend == "opencv":
            raise ValueError("OpenCV's frames must be converted before the next one is grabbed")
        if self.backend == "images":
            names = self.record["files"]
            where = np.searchsorted(self.index, targets).tolist()
            for t, i in zip(targets.tolist(), where):
                read = functools.partial(_read_image, self.p, names[i], t)
                yield t, (read if lazy else read())
            return
        # each target's seek point, found once (not per frame, under the GIL)
        points = (np.searchsorted(self.points, targets, side="right") - 1).tolist() \
            if self.seekable else [-1] * len(targets)
        for t, k in zip(targets.tolist(), points):
            seek = self.seekable and k >= 0  # k: the last seek point at or before frame t
            if self.frames is None or t <= self.pos \
                    or (seek and int(self.points[k]) - self.pos > _SEEK_MIN_SKIP):
                if seek and int(self.points[k]) > _SEEK_MIN_SKIP:  # near the start: decode
                    self._seek(k)
                else:
                    self._restart()
            while True:
                try:
                    index, retrieve = next(self.frames)
                except StopIteration:
                    if self.seeking is None:
                        raise VideoError(
                            f"{self.p}: decoding stopped after {self.pos + 1} frames, before "
                            f"frame {t}, although a first pass counted {self.n}; the file may "
                            "have changed or be damaged. Copy it again and retry.") from None
                    self._recover(_Untrusted())  # the file ended early after a seek
                    continue
                except _Untrusted as err:
                    self._recover(err)
                    continue
                self.pos = index
                if index == t:
                    yield t, (retrieve if lazy else retrieve())
                    break


#: Held while numpy's huge-page switch is off (see :func:`_output`).
_HUGEPAGE_SWITCH = threading.Lock()


def _madvise_hugepage(enabled: bool) -> bool | None:
    """Turn numpy's transparent-huge-page advice for large arrays on or off; return the old
    setting (None where this numpy has no such switch)."""
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    switch = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    return switch(enabled) if switch is not None else None


def _output(count: int, shape: tuple[int, int]) -> np.ndarray:
    """An uninitialised uint8 ``[count, H, W, 3]`` array for frames (every row gets written).

    It is allocated without numpy's transparent-huge-page advice (the ``NUMPY_MADVISE_HUGEPAGE``
    switch, for this one allocation): a huge page is 2 MiB that the kernel must find, zero and,
    in a virtual machine, have backed by the host on first touch, and on the machines this
    suite was measured on that stalled a large read by seconds, while ordinary 4 KiB pages cost
    the same every time (``benchmarks/bench_video.py`` times both ways on the machine it runs
    on)."""
    with _HUGEPAGE_SWITCH:  # the switch is numpy's, process-wide: reads in threads take turns
        before = _madvise_hugepage(False)
        try:
            return np.empty((count, *shape, 3), np.uint8)
        finally:
            if before is not None:
                _madvise_hugepage(before)


#: Frames converted to RGB ahead of the decoder, at most (each holds one decoded picture).
_CONVERT_AHEAD = 4


def _fill(reader: _Reader, order: np.ndarray, out: np.ndarray,
          size: tuple[int, int] | None) -> None:
    """Decode the frames of ``order`` into ``out`` (row i gets frame order[i]), one pass.

    Converting a decoded picture to RGB and writing it out runs in a second thread while the
    decoder goes on to the next frames (PyAV and numpy release the GIL for both), so on two
    cores a sampled read costs about the decoding alone. OpenCV's frames are converted at once,
    since its decoder reuses the picture on the next grab."""
    from concurrent.futures import ThreadPoolExecutor

    rank = np.argsort(order, kind="stable")  # rows of each frame: rank[starts[j]: ends[j]]
    unique, starts, counts = np.unique(order[rank], return_index=True, return_counts=True)
    ends = starts + counts

    def place(j: int, index: int, rgb: np.ndarray | Callable[[], np.ndarray]) -> None:
        _place(reader, out, rank[starts[j]: ends[j]], index,
               rgb() if callable(rgb) else rgb, size)

    lazy = reader.backend != "opencv"
    if not lazy or len(unique) < 2:
        for j, (index, rgb) in enumerate(reader.take(unique, lazy=False)):
            place(j, index, rgb)
        return
    pending: list[Any] = []
    with ThreadPoolExecutor(1, thread_name_prefix="vadnb-rgb") as pool:
        try:
            for j, (index, convert) in enumerate(reader.take(unique, lazy=True)):
                pending.append(pool.submit(place, j, index, convert))
                if len(pending) > _CONVERT_AHEAD:
                    pending.pop(0).result()  # re-raises a conversion's error here
            for job in pending:
                job.result()
        finally:
            for job in pending:
                job.cancel()


def _place(reader: _Reader, out: np.ndarray, rows: np.ndarray, index: int, rgb: np.ndarray,
           size: tuple[int, int] | None) -> None:
    """Write frame ``index`` (resized to ``size`` if given) into ``out``'s ``rows``."""
    import cv2

    want = out.shape[1:]
    if size is not None and (rgb.shape[1], rgb.shape[0]) != size:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    if rgb.shape != want:
        where = f"{reader.p}: frame {index}"
        if reader.backend == "images":
            name = reader.record["files"][int(np.searchsorted(reader.index, index))]
            where = f"{reader.p / name}: frame {index} of this frame folder"
        raise VideoError(f"{where} is {rgb.shape[1]}x{rgb.shape[0]}, earlier frames are "
                         f"{want[1]}x{want[0]}: the frame size changes within the video; "
                         "pass size=(width, height) to resize every frame to one size")
    out[rows[0]] = rgb
    for r in rows[1:]:
        out[r] = out[rows[0]]


def _output_shape(p: Path, record: dict[str, Any],
                  size: tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) of the frames returned; a mixed-size frame folder needs ``size``."""
    if size is not None:
        return size[1], size[0]
    if record["source"] == "folder" and int(record["first_odd_size"]) >= 0:
        odd = int(record["first_odd_size"])  # the position of the image among the files
        w, h = record["odd_size"]
        frame = _present(record)[odd]
        raise VideoError(f"{p}: the images of this frame folder differ in size: "
                         f"{record['files'][0]} is {record['width']}x{record['height']}, "
                         f"{record['files'][odd]} (frame {frame}) is {w}x{h}; pass "
                         "size=(width, height) to resize every frame to one size")
    return int(record["height"]), int(record["width"])


def iter_frames(path: PathLike, fps: float | None = None,
                indices: Sequence[int] | np.ndarray | None = None,
                size: tuple[int, int] | None = None, chunk: int = 64,
                cache: Any = None, frame_rate: float | None = None) -> Iterator[Frames]:
    """Yield the frames :func:`read_frames` would return, ``chunk`` frames at a time.

    Memory stays bounded by one chunk, whatever the video's length. Frames come in the order
    asked: ascending for ``fps`` or all frames (one decoding pass), the given order for
    ``indices`` (ascending ``indices`` also take one pass, seeking over long gaps when the
    file allows; a chunk that goes back in the video seeks back, or restarts decoding from the
    start when the file cannot be seeked exactly).

    Arguments are those of :func:`read_frames`, plus ``chunk`` (frames per yielded Frames).
    """
    # Arguments are checked here, when iter_frames is called; decoding starts on first use.
    return _iter_chunks(*_request(path, fps, indices, size, cache, frame_rate, chunk))


def _request(path: PathLike, fps: float | None, indices: Sequence[int] | np.ndarray | None,
             size: tuple[int, int] | None, cache: Any, frame_rate: float | None,
             chunk: int | None = None) -> tuple[Any, ...]:
    """``(p, record, order, size, (height, width), chunk)`` of a read, every argument checked."""
    p, record = _probe_record(path, cache, frame_rate)
    _check_fps(p, fps)
    size = _check_size(p, size)
    if chunk is not None and (not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise VideoError(f"{p}: chunk must be a positive number of frames, got {chunk!r}")
    order = _wanted(p, record, fps, indices)
    chunk = max(len(order), 1) if chunk is None else int(chunk)
    return p, record, order, size, _output_shape(p, record, size), chunk


def _iter_chunks(p: Path, record: dict[str, Any], order: np.ndarray,
                 size: tuple[int, int] | None, shape: tuple[int, int],
                 chunk: int) -> Iterator[Frames]:
    """Decode the frames of ``order`` (in that order) by chunks, each into a fresh array."""
    times = np.asarray(record["timestamps_s"], dtype=np.float64)
    reader = _Reader(p, record)
    try:
        for start in range(0, len(order), chunk):
            part = order[start: start + chunk]
            images = _output(len(part), shape)
            _fill(reader, part, images, size)
            _DECODE_STATS["frames_returned"] += len(part)
            yield Frames(images=images, indices=part.copy(), timestamps_s=times[part])
    finally:
        reader.close()


def read_frames(path: PathLike, fps: float | None = None,
                indices: Sequence[int] | np.ndarray | None = None,
                size: tuple[int, int] | None = None, cache: Any = None,
                frame_rate: float | None = None) -> Frames:
    """Read frames exactly: each image is the frame at that position of a sequential decode.

    Args:
        path: the video file, or a frame folder (a directory of numbered images; frame ``i``
            is its ``i``-th image in natural name order).
        fps: sample this many frames per second of video: for each multiple of ``1 / fps``
            seconds, the first frame at or after it, using the frames' real timestamps (so
            variable-frame-rate video is sampled evenly in time; see :func:`sample_indices`).
        indices: source frame indices to read, in any order, repeats allowed; the result
            follows the order given. ``fps=None`` and ``indices=None`` read every frame
            (every frame there is: a damaged file's lost frames are skipped, see
            :attr:`VideoInfo.lost_ranges`).
        size: ``(width, height)`` to resize every frame to (``cv2.INTER_AREA``).
        cache: where :func:`probe`'s result is cached (default: the suite's cache).
        frame_rate: frames per second of a frame folder (see :func:`probe`).

    Returns:
        :class:`Frames`: one image per index asked (or sampled), in that order.

    Raises:
        VideoError: bad file (see :func:`probe`), ``fps <= 0``, indices out of range
        (the message gives the true frame count) or lost to damage (the message names
        them), a bad ``size``, frames of different sizes without ``size``.

    Frames are decoded straight into the returned array (memory: the result plus one
    frame). Frames asked in ascending order take one pass; a few frames far apart seek
    (see the module docstring). The first call on a file costs an extra pass (the probe).
    Use :func:`iter_frames` for long videos that do not fit in memory.
    """
    p, record, order, size, shape, chunk = _request(path, fps, indices, size, cache, frame_rate)
    whole = list(_iter_chunks(p, record, order, size, shape, chunk))  # one chunk, or none
    return whole[0] if whole else Frames(images=_output(0, shape), indices=order,
                                         timestamps_s=np.zeros(0, dtype=np.float64))


def extract_frames(path: PathLike, out_dir: PathLike, fps: float | None = None,
                   quality: int = 95, indices: Sequence[int] | np.ndarray | None = None,
                   size: tuple[int, int] | None = None, cache: Any = None,
                   frame_rate: float | None = None) -> list[Path]:
    """Write frames as JPEG files named by their source index (``frame_000123.jpg``).

    ``fps``, ``indices``, ``size`` and ``frame_rate`` select frames as in
    :func:`read_frames`; ``quality`` is the JPEG quality (1-100). Frames are streamed, so
    memory stays small for long videos. Returns the written paths in frame order.
    A manifest (:data:`FRAMES_MANIFEST`) lists the source indices written, so reading the
    folder back keeps them as frame indices and takes the gaps for sampling, not damage.
    """
    import cv2

    p = _check_source(path)
    if not 1 <= int(quality) <= 100:
        raise VideoError(f"{p}: JPEG quality must be between 1 and 100, got {quality}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for frames in iter_frames(p, fps=fps, indices=indices, size=size, cache=cache,
                              frame_rate=frame_rate):
        for index, rgb in zip(frames.indices.tolist(), frames.images):
            target = out / f"frame_{index:06d}.jpg"
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(target), bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
                raise VideoError(f"could not write {target} (frame {index} of {p}); "
                                 "is the folder writable and the disk not full?")
            written.append(target)
    manifest = {"written_by": "vadnb.video.extract_frames", "source": p.name,
                "indices": [int(t.stem.rsplit("_", 1)[1]) for t in written]}
    tmp = out / f".{FRAMES_MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest), encoding="utf-8")
    os.replace(tmp, out / FRAMES_MANIFEST)
    return written


# --------------------------------------------------------------------------- synthetic videos
# Small videos whose every frame shows its own index as a bar code of big blocks, so a test
# (or a reader of notebook 10) can check, pixel by pixel, which frame a reader returned.

_GRID = 4       # blocks per side; the top row is a colour key, the other 12 blocks are bits
_BITS = _GRID * (_GRID - 1)
_KEY = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]  # RGB: red, green, blue, white


def _code_image(code: int, width: int, height: int) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    ys = np.linspace(0, height, _GRID + 1).astype(int)
    xs = np.linspace(0, width, _GRID + 1).astype(int)
    for c in range(_GRID):
        img[ys[0]:ys[1], xs[c]:xs[c + 1]] = _KEY[c % len(_KEY)]
    for bit in range(_BITS):
        r, c = 1 + bit // _GRID, bit % _GRID
        if (code >> bit) & 1:
            img[ys[r]:ys[r + 1], xs[c]:xs[c + 1]] = 255
    block_h, block_w = ys[1] - ys[0], xs[-1] - xs[-2]
    if block_h >= 20:  # big enough to print the number in the white key block, for people
        import cv2

        scale = block_h / 40
        text = str(code)
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
    height, width = img.shape[:2]
    ys = np.linspace(0, height, _GRID + 1).astype(int)
    xs = np.linspace(0, width, _GRID + 1).astype(int)
    code = 0
    for bit in range(_BITS):
        r, c = 1 + bit // _GRID, bit % _GRID
        y0, y1, x0, x1 = ys[r], ys[r + 1], xs[c], xs[c + 1]
        my, mx = (y1 - y0) // 4, (x1 - x0) // 4  # the block's centre, away from blurred edges
        if img[y0 + my: y1 - my, x0 + mx: x1 - mx].mean() > 127:
            code |= 1 << bit
    return code


#: Near-lossless settings of the default encoders, so a frame's code survives compression.
_ENCODER_DEFAULTS = {"libx264": {"crf": "18", "preset": "veryfast"}, "mpeg4": {"qscale": "2"}}


def write_test_video(path: PathLike, num_frames: int = 60, fps: float = 25,
                     size: tuple[int, int] = (64, 48), codec: str | None = None,
                     pts: Sequence[int] | None = None, time_base: Any = None,
                     start_code: int = 0, options: dict[str, str] | None = None) -> Path:
    """Write a synthetic video whose frame ``i`` shows ``start_code + i`` as a bar code.

    The top row of blocks is a colour key (red, green, blue, white: a reader that swaps RGB
    and BGR shows blue first); on frames at least 80 px high the white block also prints the
    number. The 12 blocks below are the bits, least significant first.

    Args:
        path: output file; the container follows the extension (.mp4, .avi, .mkv, .ts, ...).
        num_frames, fps: length and nominal rate (at most 4096 frames can be coded).
        size: (width, height); keep both multiples of 16 for codecs that need it.
        codec: encoder name (default: ``libx264`` for .mp4/.mkv/.ts, ``mpeg4`` otherwise).
        pts: explicit presentation times in ``time_base`` units (e.g. irregular ones, for a
            variable-frame-rate file); default ``0, 1, 2, ...`` at ``1 / fps``.
        time_base: the unit of ``pts`` in seconds, e.g. ``Fraction(1, 1000)`` or
            ``1 / 1000`` (default ``1 / fps``).
        start_code: the code frame 0 shows.
        options: encoder options (e.g. ``{"bf": "2"}`` for B-frames).

    Read a frame's code back with :func:`read_frame_code`.
    """
    import av
    from fractions import Fraction

    out = Path(path)
    if num_frames + start_code > 1 << _BITS:
        raise ValueError(f"a test video codes at most {1 << _BITS} frames")
    ext = out.suffix.lower()
    codec = codec or ("libx264" if ext in (".mp4", ".mkv", ".ts", ".mov") else "mpeg4")
    rate = Fraction(fps).limit_denominator(1001)
    tb = (Fraction(time_base).limit_denominator(1_000_000) if time_base is not None
          else 1 / rate)
    width, height = size
    with av.open(str(out), "w") as container:
        stream = container.add_stream(codec, rate=rate, options=dict(options or {}))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = tb
        if codec in _ENCODER_DEFAULTS:
            stream.codec_context.options = {**_ENCODER_DEFAULTS[codec], **(options or {})}
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(_code_image(start_code + i, width, height),
                                               format="rgb24")
            frame.pts = int(pts[i]) if pts is not None else int(round(i / rate / tb))
            frame.time_base = tb
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def patch_avi_frame_count(path: PathLike, claimed: int) -> None:
    """Make an AVI's header lie: set its frame count fields to ``claimed``, in place.

    Writes the main header's ``dwTotalFrames`` (``avih``) and the video stream header's
    ``dwLength`` (``strh``). The frames themselves are untouched: a sequential decode still
    yields the true number, while ``cv2.CAP_PROP_FRAME_COUNT`` reports ``claimed``.
    """
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
