"""Reading frames exactly (taught in notebook 10, ``10_frame_extraction``).

Every method in this suite scores *frames*, and every benchmark labels *frames*: a score
for frame 1200 is only worth something if the picture it came from really is frame 1200.
This module therefore reads videos one way only: **sequentially**. It decodes the file from
its first frame to its last and keeps the frames it was asked for. A frame's index is its
position in that sequential decode, nothing else.

Why not seek? Seeking (``cv2.CAP_PROP_POS_FRAMES``) and the frame count a container announces
(``cv2.CAP_PROP_FRAME_COUNT``) both trust the file's header and index, and those lie more often
than one would hope: an AVI whose header claims 444 frames when 68 decode, an MP4 whose edit
list hides its first frames, an MPEG-TS stream that starts at 1.4 s, a phone video with a
variable frame rate. Counting and reading sequentially is exact for all of them.

The public functions:

- :func:`probe` counts the decodable frames (one pass over the file, cached on disk by the
  file's content, so the second call is instant) and returns a :class:`VideoInfo`.
- :func:`frame_times` gives the presentation time of every frame.
- :func:`read_frames` returns the frames asked for (all, ``fps`` sampling, or ``indices``)
  as a :class:`Frames`; :func:`iter_frames` yields the same in chunks, for long videos.
- :func:`extract_frames` writes them as JPEG files named by their frame index.
- :func:`sample_indices` is the ``fps`` sampling rule on its own.
- :func:`write_test_video`, :func:`read_frame_code` and :func:`patch_avi_frame_count` make
  small synthetic videos whose frames carry their own index (for tests and lessons).

Anything wrong with the input raises :class:`VideoError` (a ``ValueError``) whose message names
the file, says what is wrong and what to do about it.
"""

from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "VideoError", "VideoInfo", "Frames", "probe", "frame_times", "sample_indices",
    "read_frames", "iter_frames", "extract_frames",
    "write_test_video", "read_frame_code", "patch_avi_frame_count",
]

PathLike = str | os.PathLike

#: Give up opening or reading a file after this long (guards against FFmpeg blocking).
TIMEOUT_MS = 20_000
#: Two timestamps closer than this (seconds) are the same instant (absorbs float rounding).
_EPS = 1e-6
#: Bump when the probe's logic changes, so stale cache entries are not reused.
_PROBE_VERSION = 1


#: What decoding has cost since the last :func:`reset_decode_stats` (benchmarks read it):
#: decoder opens, frames the decoder stepped over (probe passes included), frames returned.
_DECODE_STATS = {"opens": 0, "frames_decoded": 0, "frames_returned": 0}


def decode_stats() -> dict[str, int]:
    """Decoder opens, frames decoded and frames returned since the last reset.

    A cached stage decodes nothing, so a warm re-run must leave these at zero; a stage that
    streams reads each frame at most once per pass (``benchmarks/``).
    """
    return dict(_DECODE_STATS)


def reset_decode_stats() -> None:
    for key in _DECODE_STATS:
        _DECODE_STATS[key] = 0


class VideoError(ValueError):
    """A video that cannot be read as asked; the message names the file and the problem."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video by decoding it once.

    Attributes:
        num_frames: frames a sequential decode yields (the truth, whatever the header says).
        fps: frames per second: the container's nominal rate when the measured timestamps
            agree with it (within 1 %), else the measured average rate (variable frame rate).
        width, height: frame size in pixels, as decoded.
        duration_s: last frame's timestamp plus one frame period (``1 / fps``).
        header_frames: the frame count the container *claims* (``cv2.CAP_PROP_FRAME_COUNT``
            or the stream's ``frames`` field in PyAV); 0 when it claims nothing. Often wrong.
        backend: the decoder that read it, ``"opencv"`` or ``"pyav"``.
        timestamps_from: ``"decoder"`` when per-frame timestamps come from the file (strictly
            increasing), ``"index/fps"`` when the file's timestamps were missing or unusable.
    """

    num_frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    header_frames: int = 0
    backend: str = "opencv"
    timestamps_from: str = "decoder"


@dataclass
class Frames:
    """Frames read from a video.

    Attributes:
        images: uint8 RGB array ``[N, H, W, 3]``.
        indices: int64 ``[N]``, the source frame index of each image: its position in a
            sequential decode of the file, counted from 0.
        timestamps_s: float64 ``[N]``, each frame's presentation time in seconds relative to
            the video's first frame (see :func:`frame_times`).
    """

    images: np.ndarray
    indices: np.ndarray
    timestamps_s: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


# --------------------------------------------------------------------------- decoders
# A decoder walks the file once, frame by frame. For each frame it yields the frame's
# timestamp (seconds, or nan when the file has none) and a function that returns the frame as
# RGB. Grabbing is cheap; converting a frame to an image is what costs, so only the wanted
# frames call it (and they must call it before the decoder moves on).

@dataclass
class _Decoder:
    backend: str
    fps: float
    width: int
    height: int
    header_frames: int
    frames: Iterator[tuple[float, Callable[[], np.ndarray]]]
    close: Callable[[], None]


def _open_opencv(path: Path) -> _Decoder | None:
    """OpenCV's FFmpeg backend, with timeouts; None when it cannot open the file."""
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

    def frames() -> Iterator[tuple[float, Callable[[], np.ndarray]]]:
        def retrieve() -> np.ndarray:
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                raise VideoError(f"{path}: OpenCV grabbed a frame but could not decode it; "
                                 "the file is probably damaged (try re-encoding it).")
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

        while cap.grab():
            msec = cap.get(cv2.CAP_PROP_POS_MSEC)
            yield (msec / 1000.0 if math.isfinite(msec) else math.nan), retrieve

    return _Decoder(
        backend="opencv",
        fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        header_frames=max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0),
        frames=frames(),
        close=cap.release,
    )


def _open_pyav(path: Path) -> _Decoder | None:
    """PyAV (FFmpeg's libraries, called directly); None when it cannot open the file."""
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
    rate = stream.average_rate or stream.guessed_rate

    def frames() -> Iterator[tuple[float, Callable[[], np.ndarray]]]:
        try:
            for frame in container.decode(stream):
                t = frame.time
                yield (float(t) if t is not None else math.nan), (
                    lambda f=frame: f.to_ndarray(format="rgb24"))
        except av.error.FFmpegError:
            return  # a damaged tail ends the decode, as OpenCV's grab() returning False does

    return _Decoder(
        backend="pyav",
        fps=float(rate) if rate else 0.0,
        width=int(stream.codec_context.width),
        height=int(stream.codec_context.height),
        header_frames=max(int(stream.frames or 0), 0),
        frames=frames(),
        close=container.close,
    )


#: Decoders to try, in order. OpenCV first (what the suite's users have), PyAV as fallback.
_BACKENDS: dict[str, Callable[[Path], _Decoder | None]] = {
    "opencv": _open_opencv,
    "pyav": _open_pyav,
}


def _check_file(path: PathLike) -> Path:
    """The path as a Path, or a VideoError saying why it cannot be a video file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise VideoError(f"video not found: {p} (check the path; relative paths are resolved "
                         f"from {Path.cwd()})")
    if p.is_dir():
        raise VideoError(f"{p} is a directory, not a video file; pass one video file "
                         "(e.g. a .mp4 inside it)")
    if not p.is_file():
        raise VideoError(f"{p} is not a regular file (a device or a pipe?); pass a video file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p} is empty (0 bytes); the download or copy probably failed, "
                         "fetch the file again")
    if not os.access(p, os.R_OK):
        raise VideoError(f"{p} is not readable (permission denied); fix its permissions")
    return p


def _open(p: Path, backend: str | None = None) -> _Decoder:
    """Open with the given backend, or the first of ``_BACKENDS`` that can."""
    names = [backend] if backend else list(_BACKENDS)
    for name in names:
        decoder = _BACKENDS[name](p)
        if decoder is not None:
            _DECODE_STATS["opens"] += 1
            return decoder
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
        head = f.read(64)
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
            return _mkv_truncation(f, size)
    return None


def _mkv_truncation(f: Any, size: int) -> str | None:
    """Compare a Matroska segment's declared size (when known) with the file's size."""
    def vint(data: bytes, i: int, keep_marker: bool) -> tuple[int, int]:
        first = data[i]
        length = 1
        while length <= 8 and not first & (0x80 >> (length - 1)):
            length += 1
        value = first if keep_marker else first & (0xFF >> length)
        for b in data[i + 1: i + length]:
            value = (value << 8) | b
        return value, i + length

    f.seek(0)
    data = f.read(4096)
    try:
        _, i = vint(data, 0, True)           # EBML header id
        hsize, i = vint(data, i, False)
        i += hsize
        seg_id, i = vint(data, i, True)
        start = i
        seg_size, i = vint(data, i, False)
    except IndexError:
        return "its Matroska header is cut short"
    unknown = seg_size == (1 << (7 * (i - start))) - 1
    if seg_id == 0x18538067 and not unknown and i + seg_size > size:
        return f"its Matroska segment declares {i + seg_size} bytes, the file has {size}"
    return None


# --------------------------------------------------------------------------- probe
def _scan(p: Path, backend: str | None) -> dict[str, Any]:
    """One sequential pass: count the frames and note every frame's timestamp."""
    decoder = _open(p, backend)
    times: list[float] = []
    try:
        for t, _ in decoder.frames:
            times.append(t)
            _DECODE_STATS["frames_decoded"] += 1
    finally:
        decoder.close()
    n = len(times)
    if n == 0:
        damage = _truncation(p)
        what = f"it is truncated or damaged ({damage})" if damage else (
            "its video stream holds no frame the decoder accepts")
        raise VideoError(f"video has 0 decodable frames: {p}; {what}. Re-encode or fetch "
                         "the file again.")
    damage = _truncation(p)
    if damage and (decoder.header_frames == 0 or n < decoder.header_frames):
        frames_read = f"{n} frame" + ("s" if n != 1 else "")
        raise VideoError(f"{p} is truncated or damaged ({damage}): only {frames_read} could "
                         f"be read (its header announces {decoder.header_frames}). Download or "
                         "copy it again; to keep the readable part, re-mux it, e.g. "
                         f"`ffmpeg -i {p.name} -c copy fixed.mkv`.")
    raw = np.asarray(times, dtype=np.float64)
    reliable = bool(np.all(np.isfinite(raw)) and (n == 1 or np.all(np.diff(raw) > _EPS)))
    nominal = decoder.fps if 0 < decoder.fps < 1000 else 0.0
    if reliable and n > 1:
        rel = raw - raw[0]
        measured = (n - 1) / rel[-1]
        fps = nominal if nominal and abs(nominal - measured) <= 0.01 * measured else measured
    else:
        fps = nominal or 25.0  # no usable timing at all: assume PAL's 25 fps, say so below
        rel = np.arange(n, dtype=np.float64) / fps
    return {
        "num_frames": n, "fps": float(fps), "width": decoder.width, "height": decoder.height,
        "duration_s": float(rel[-1] + 1.0 / fps), "header_frames": decoder.header_frames,
        "backend": decoder.backend, "timestamps_from": "decoder" if reliable else "index/fps",
        "timestamps_s": rel,
    }


def _probe_record(path: PathLike, cache: Any = None) -> tuple[Path, dict[str, Any]]:
    from .cache import file_digest, get_cache

    p = _check_file(path)
    parts = {"video": file_digest(p), "backends": list(_BACKENDS), "version": _PROBE_VERSION}
    record = get_cache(cache).memo("video.probe", parts, lambda: _scan(p, None))
    return p, record


def probe(path: PathLike, cache: Any = None) -> VideoInfo:
    """Count a video's decodable frames and read its size, rate and timing.

    The count comes from grabbing every frame once (exact even when the header lies), so the
    first call costs one pass over the file; the result is cached on disk keyed by the file's
    content (:func:`vadnb.cache.file_digest`), so later calls, in any process, are instant.

    Args:
        path: the video file.
        cache: a :class:`vadnb.cache.Cache`, a folder, or None for the default cache.

    Raises:
        VideoError: missing file, a directory, not a video, 0 decodable frames, truncated.
    """
    _, r = _probe_record(path, cache)
    return VideoInfo(num_frames=int(r["num_frames"]), fps=float(r["fps"]), width=int(r["width"]),
                     height=int(r["height"]), duration_s=float(r["duration_s"]),
                     header_frames=int(r["header_frames"]), backend=str(r["backend"]),
                     timestamps_from=str(r["timestamps_from"]))


def frame_times(path: PathLike, cache: Any = None) -> np.ndarray:
    """Presentation time (s) of every frame, relative to the first frame (which is at 0).

    Taken from the decoder when the file's timestamps are usable (all present and strictly
    increasing), which keeps variable-frame-rate video exact; otherwise ``index / fps``
    (:attr:`VideoInfo.timestamps_from` says which). Cached with :func:`probe`.
    """
    return np.asarray(_probe_record(path, cache)[1]["timestamps_s"], dtype=np.float64).copy()


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
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
                raise VideoError(f"{p}: indices must be whole frame numbers, got {arr[:5]}...")
        arr = arr.astype(np.int64)
        bad = arr[(arr < 0) | (arr >= n)]
        if bad.size:
            raise VideoError(f"{p}: frame indices out of range: {bad[:5].tolist()} "
                             f"({bad.size} in all); this video has {n} decodable frames, "
                             f"so indices run from 0 to {n - 1}"
                             + (f" (its header claims {record['header_frames']}, wrongly)"
                                if record["header_frames"] not in (0, n) else ""))
        return arr
    if fps is None:
        return np.arange(n, dtype=np.int64)
    return sample_indices(record["timestamps_s"], fps)


# --------------------------------------------------------------------------- reading
def iter_frames(path: PathLike, fps: float | None = None,
                indices: Sequence[int] | np.ndarray | None = None,
                size: tuple[int, int] | None = None, chunk: int = 64,
                cache: Any = None) -> Iterator[Frames]:
    """Yield the frames :func:`read_frames` would return, ``chunk`` frames at a time.

    Memory stays bounded by one chunk, whatever the video's length. Frames come in the order
    asked: ascending for ``fps`` or all frames (one decoding pass), the given order for
    ``indices`` (ascending ``indices`` also take one pass; an unsorted chunk that goes back in
    the video restarts decoding from the start, since only a sequential decode is exact).

    Arguments are those of :func:`read_frames`, plus ``chunk`` (frames per yielded Frames).
    """
    p, record = _probe_record(path, cache)
    _check_fps(p, fps)
    size = _check_size(p, size)
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise VideoError(f"{p}: chunk must be a positive number of frames, got {chunk!r}")
    order = _wanted(p, record, fps, indices)
    # Arguments are checked above, when iter_frames is called; decoding starts on first use.
    return _iter_chunks(p, record, order, size, int(chunk))


def _iter_chunks(p: Path, record: dict[str, Any], order: np.ndarray,
                 size: tuple[int, int] | None, chunk: int) -> Iterator[Frames]:
    """Decode sequentially, yielding the frames of ``order`` (in that order) by chunks."""
    import cv2

    times = np.asarray(record["timestamps_s"], dtype=np.float64)
    backend = str(record["backend"])
    decoder: _Decoder | None = None
    frames_iter: Iterator[tuple[int, tuple[float, Callable[[], np.ndarray]]]] | None = None
    position = -1
    frame_shape: tuple[int, ...] | None = None
    try:
        for start in range(0, len(order), chunk):
            part = order[start: start + chunk]
            need = np.unique(part)
            if decoder is None or need[0] <= position:
                if decoder is not None:
                    decoder.close()
                decoder = _open(p, backend)
                frames_iter = enumerate(decoder.frames)
                position = -1
            got: dict[int, np.ndarray] = {}
            for target in need.tolist():
                for position, (_, retrieve) in frames_iter:
                    _DECODE_STATS["frames_decoded"] += 1
                    if position == target:
                        rgb = retrieve()
                        if size is not None and (rgb.shape[1], rgb.shape[0]) != size:
                            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                        got[target] = np.ascontiguousarray(rgb, dtype=np.uint8)
                        break
                else:
                    raise VideoError(
                        f"{p}: decoding stopped after {position + 1} frames, before frame "
                        f"{target}, although a first pass counted {record['num_frames']}; the "
                        "file may have changed or be damaged. Copy it again and retry.")
            shapes = {im.shape for im in got.values()} | ({frame_shape} if frame_shape else set())
            if len(shapes) > 1:
                raise VideoError(f"{p}: the frame size changes within the video "
                                 f"({sorted(shapes)}); pass size=(width, height) to resize "
                                 "every frame to one size")
            frame_shape = shapes.pop()
            _DECODE_STATS["frames_returned"] += len(part)
            yield Frames(images=np.stack([got[i] for i in part.tolist()]),
                         indices=part.copy(), timestamps_s=times[part])
    finally:
        if decoder is not None:
            decoder.close()


def read_frames(path: PathLike, fps: float | None = None,
                indices: Sequence[int] | np.ndarray | None = None,
                size: tuple[int, int] | None = None, cache: Any = None) -> Frames:
    """Read frames exactly, by decoding the video sequentially.

    Args:
        path: the video file.
        fps: sample this many frames per second of video: for each multiple of ``1 / fps``
            seconds, the first frame at or after it, using the frames' real timestamps (so
            variable-frame-rate video is sampled evenly in time; see :func:`sample_indices`).
        indices: source frame indices to read, in any order, repeats allowed; the result
            follows the order given. ``fps=None`` and ``indices=None`` read every frame.
        size: ``(width, height)`` to resize every frame to (``cv2.INTER_AREA``).
        cache: where :func:`probe`'s result is cached (default: the suite's cache).

    Returns:
        :class:`Frames` with ``images`` uint8 RGB ``[N, H, W, 3]``, ``indices`` int64 (each
        image's position in a sequential decode) and ``timestamps_s`` (seconds since the first
        frame: the decoder's presentation times where reliable, else ``index / fps``).

    Raises:
        VideoError: bad file (see :func:`probe`), ``fps <= 0``, indices out of range
        (the message gives the true frame count), a bad ``size``.

    The first call on a file costs two passes (count, then read), later calls one. Use
    :func:`iter_frames` for long videos that do not fit in memory.
    """
    p, record = _probe_record(path, cache)
    _check_fps(p, fps)
    size = _check_size(p, size)
    order = _wanted(p, record, fps, indices)
    times = np.asarray(record["timestamps_s"], dtype=np.float64)
    w, h = size or (int(record["width"]), int(record["height"]))
    if len(order) == 0:
        return Frames(np.zeros((0, h, w, 3), np.uint8), order, times[order])
    # One ascending pass over the distinct frames, then put them in the order asked.
    unique, where = np.unique(order, return_inverse=True)
    images: np.ndarray | None = None
    filled = 0
    for part in iter_frames(p, indices=unique, size=size, chunk=256, cache=cache):
        if images is None:  # allocate once: no second copy of a long video in memory
            images = np.empty((len(unique), *part.images.shape[1:]), np.uint8)
        images[filled: filled + len(part)] = part.images
        filled += len(part)
    assert images is not None and filled == len(unique)
    if len(unique) != len(order) or np.any(unique != order):
        images = images[where.reshape(-1)]
    return Frames(images=images, indices=order, timestamps_s=times[order])


def extract_frames(path: PathLike, out_dir: PathLike, fps: float | None = None,
                   quality: int = 95, indices: Sequence[int] | np.ndarray | None = None,
                   size: tuple[int, int] | None = None, cache: Any = None) -> list[Path]:
    """Write frames as JPEG files named by their source index (``frame_000123.jpg``).

    ``fps``, ``indices`` and ``size`` select frames as in :func:`read_frames`; ``quality`` is
    the JPEG quality (1-100). Frames are streamed, so memory stays small for long videos.
    Returns the written paths in frame order.
    """
    import cv2

    p = _check_file(path)
    if not 1 <= int(quality) <= 100:
        raise VideoError(f"{p}: JPEG quality must be between 1 and 100, got {quality}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for frames in iter_frames(p, fps=fps, indices=indices, size=size, cache=cache):
        for index, rgb in zip(frames.indices.tolist(), frames.images):
            target = out / f"frame_{index:06d}.jpg"
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(target), bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
                raise VideoError(f"could not write {target} (frame {index} of {p}); "
                                 "is the folder writable and the disk not full?")
            written.append(target)
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
        if codec == "libx264":
            stream.codec_context.options = {"crf": "18", "preset": "veryfast",
                                            **(options or {})}
        elif codec == "mpeg4":
            stream.codec_context.options = {"qscale": "2", **(options or {})}
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
