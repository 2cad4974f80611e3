"""The plumbing every method's pipeline shares, written once: roles, frames, cached model calls.

A pipeline describes *what it sends* to a model as small request values (:class:`Chat`,
:class:`Ask`, :class:`Caption`, :class:`EncodeImage`, :class:`EncodeText`,
:class:`EncodeVideo`) and hands them to :meth:`Runtime.map`. The runtime

- keys each request by the request itself plus the model's identity (the exact messages or
  prompt, the image references, the generation settings): change any code that changes what
  is sent and the model is asked again; change nothing and the answer comes from the cache.
  There are no version constants to bump;
- asks only the requests it has no answer for, in batches, storing each batch as soon as it
  returns (a run killed half-way resumes at the first unfinished batch); a failed reply
  (:class:`vadnb.models.FailedReply`) is returned but never stored;
- loads a role's model on the first miss only and decodes a frame only when a request that
  misses needs its pixels, all frames of one map in one forward pass of :mod:`vadnb.video`
  (and with them every frame the pipeline planned for its later stages, :meth:`Runtime.plan`,
  so a cold run decodes once). A warm run loads no model and decodes no frame;
- keeps the frames it decoded for the later calls of the same run (a :class:`FrameStore`
  shared by the runtimes of one :class:`Roles`, within a byte budget), so a cold run whose
  stages send the same frames (AnyAnomaly's windows then its VLM, VERA's answers then its
  embeddings) decodes them once.

Images are sent *by reference*: :class:`Frame` (a video's digest and a frame index) or
:class:`Derived` (an operation applied to other references: a masked frame, a 2x2 grid),
keyed by their recipe (sources, the operation's name and source code, its parameters),
never by re-hashing pixels.

>>> rt = Runtime(Roles(profile="tiny"))                                # doctest: +SKIP
>>> v = rt.video("campus/clip.mp4")                                    # doctest: +SKIP
>>> caps = rt.map("captioner", [Caption(v.frame(i)) for i in (0, 16)])  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .cache import Cache, get_cache, make_key
from .models.base import is_failed

__all__ = ["Roles", "Runtime", "VideoRef", "Frame", "Derived", "Chat", "Ask", "Caption",
           "EncodeImage", "EncodeImageRaw", "EncodeText", "EncodeVideo", "request_key", "image_key",
           "STAT_COLUMNS", "FrameStore", "FRAME_BUDGET"]

Messages = list[dict[str, Any]]


# --------------------------------------------------------------------------- roles


class Roles:
    """The models a run uses, one per role, loaded on first use and released between stages.

    ``entries`` maps a role (the name a pipeline uses: ``"clip"``) to the profile-table entry
    that plays it (``"clip-b32"``); by default a role is its own entry. ``models`` overrides
    the model of a role (a hub id, a folder, ``"openai:<name>@<url>"``), as a Config's
    ``<role>_model`` field does. ``backends`` are models the caller built (test doubles,
    served models, models shared by a benchmark run): used as they are, never released.
    """

    def __init__(self, profile: str | None = None, *, entries: Mapping[str, str] | None = None,
                 models: Mapping[str, str | None] | None = None,
                 backends: Mapping[str, Any] | None = None):
        self.profile = profile
        self.entries = dict(entries or {})
        self.models = {k: v for k, v in (models or {}).items() if v is not None}
        self.given = dict(backends or {})
        self.loaded: dict[str, Any] = {}
        self._resolved: str | None = None
        # decoded frames kept for this run's later calls (every Runtime built on these roles)
        self.frames = FrameStore()

    def entry(self, role: str) -> str:
        return self.entries.get(role, role)

    def image_cap(self, role: str) -> int | None:
        """The image-size cap (pixels) ``role``'s VLM applies to what it is sent, known
        without loading it: the backend's own, else the role's default (local and served
        alike). Part of every ``Ask`` key: an image sent under another cap is another image."""
        backend = self.given.get(role) or self.loaded.get(role)
        if backend is not None:
            return getattr(backend, "max_pixels", None)
        from .models.hf import max_pixels_for

        return max_pixels_for(self.entry(role))

    def resolved_profile(self) -> str:
        if self._resolved is None:
            from .models.profiles import resolve_profile

            self._resolved = resolve_profile(self.profile, verbose=False)
        return self._resolved

    def _source(self, role: str) -> tuple[str, str]:
        """(model source, profile name) for a role that is not given, without loading it."""
        if role in self.models:
            return str(self.models[role]), "custom"
        from .models.profiles import model_spec

        profile = self.resolved_profile()
        return str(model_spec(self.entry(role), profile).model), profile

    def identity(self, role: str) -> str:
        """The model's name as its backend will carry it (cache keys, ``det.model_calls``),
        known without loading it."""
        if role in self.given:
            return str(self.given[role].name)
        if role in self.loaded:
            return str(self.loaded[role].name)
        source, _ = self._source(role)
        if source.startswith("tiny:"):
            from .models.tiny import TINY_VERSION

            return f"{source}@v{TINY_VERSION}"
        return source

    def profile_name(self, role: str) -> str:
        """The profile of the model that plays ``role`` (``"tiny"`` for random-init models)."""
        if role in self.given or role in self.loaded:
            backend = self.given.get(role) or self.loaded[role]
            return "tiny" if getattr(backend, "meaningless", False) else str(backend.profile)
        source, profile = self._source(role)
        return "tiny" if source.startswith("tiny:") else profile

    def get(self, role: str) -> Any:
        """The backend for ``role``, loading it on first use."""
        if role in self.given:
            return self.given[role]
        if role not in self.loaded:
            from . import models

            backend = models.load(self.entry(role), profile=self.profile,
                                  model=self.models.get(role))
            expected = self.identity(role)
            if backend.name != expected and not str(self.models.get(role, "")).startswith(
                    "openai:"):
                backend.release()
                raise RuntimeError(f"{role}: expected model {expected!r}, loaded "
                                   f"{backend.name!r}; cache keys would not match")
            self.loaded[role] = backend
        return self.loaded[role]

    def release(self, *roles: str) -> None:
        """Free the models this object loaded for ``roles`` (all when none is named: the run
        is over, so the decoded frames it kept go too).

        Given backends are never released: their owner decides."""
        if not roles:
            self.frames.clear()
        for role in roles or list(self.loaded):
            backend = self.loaded.pop(role, None)
            if backend is not None:
                backend.release()

    def detection_profile(self, roles: Iterable[str]) -> str:
        """A Detection's profile: ``"tiny"`` if any role is tiny, else the common profile,
        else ``"custom"``."""
        names = {self.profile_name(r) for r in roles}
        if "tiny" in names:
            return "tiny"
        return names.pop() if len(names) == 1 else "custom"


# --------------------------------------------------------------------------- images by reference


@functools.lru_cache(maxsize=1024)
def _function_id(fn: Callable[..., Any]) -> str:
    """A function's name and a digest of its source: editing the operation changes keys.

    Remembered per function object (reading source costs ~2 ms; AnyAnomaly keys thousands
    of window crops): an edited function is a new object, so it still gets a new key."""
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = name
    return f"{name}#{hashlib.sha256(source.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Frame:
    """Frame ``index`` of the video whose content digest is ``video`` (native size)."""

    video: str
    index: int

    @property
    def key(self) -> str:
        return f"{self.video}:{self.index}"


@dataclass(frozen=True)
class Derived:
    """An image made by ``op(list_of_source_images, **params)`` from other references.

    Keyed by its recipe: the sources' keys, the operation's name and source code, and the
    parameters (which must be plain values: numbers, strings, tuples)."""

    op: Callable[..., np.ndarray]
    sources: tuple[Any, ...]
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, op: Callable[..., np.ndarray], sources: Sequence[Any], **params: Any
           ) -> Derived:
        return cls(op, tuple(sources), tuple(sorted(params.items())))

    @functools.cached_property
    def key(self) -> str:  # computed once per object (sources may be nested recipes)
        return make_key({"op": _function_id(self.op),
                         "sources": [image_key(s) for s in self.sources],
                         "params": dict(self.params)})


def image_key(image: Any) -> str:
    """The key of an image sent to a model: a reference's recipe, an array's content."""
    if isinstance(image, (Frame, Derived)):
        return image.key
    if isinstance(image, np.ndarray):  # an in-memory image (oracle inputs, tests)
        return make_key({"pixels": image})
    raise TypeError(f"an image in a request must be a runtime Frame, Derived or a numpy "
                    f"array, got {type(image).__name__}")


@dataclass(frozen=True)
class VideoRef:
    """A video the runtime knows: its path, content digest, frame count and rate."""

    path: Any
    digest: str
    num_frames: int
    fps: float
    frame_bytes: int = 0  # one decoded frame (the frame store's budget counts them)

    def frame(self, index: int) -> Frame:
        return Frame(self.digest, int(index))

    def frames(self, indices: Iterable[int]) -> list[Frame]:
        return [Frame(self.digest, int(i)) for i in indices]


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Chat:
    """One conversation for the ``llm`` role: exactly the messages and generation settings."""

    messages: tuple[Any, ...] | list[Any]
    max_new_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    """Nucleus-sampling threshold (used when ``temperature > 0``)."""
    draw: str | None = None
    """Names one sample: requests that differ only here are asked (and cached) apart, so a
    sampling pipeline gets one independent reply per position, as the paper's code does."""
    choices: tuple[str, ...] | None = None
    """The allowed replies: the backend returns the one the model finds most likely
    (``llm.batch(..., choices=)``) instead of free text; None: free text."""


@dataclass(frozen=True)
class Ask:
    """One question with images for the ``vlm`` role."""

    images: tuple[Any, ...]
    prompt: str
    max_new_tokens: int | None = None
    temperature: float = 0.0
    max_pixels: int | None = None
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    system: str | None = None  # a system message before the question (None: none)


@dataclass(frozen=True)
class Caption:
    """One image for the ``captioner`` role."""

    image: Any
    max_new_tokens: int | None = None
    """The caption's length cap; None: the model's own generation settings. Always keyed
    (captions cached before the cap was a request setting were made with a cap of 30)."""


@dataclass(frozen=True)
class EncodeImage:
    """One image embedding (``clip``, ``embedder``)."""

    image: Any


@dataclass(frozen=True)
class EncodeImageRaw:
    """One image through the ``clip`` role's visual encoder, its raw output (never
    L2-normalised), as AnomalyCLIP uses it. A backend without ``encode_image_raw`` (a
    scripted double) answers with its ``encode_image``."""

    image: Any


@dataclass(frozen=True)
class EncodeText:
    """One text embedding (``clip``, ``embedder``, ``text_embedder``)."""

    text: str


@dataclass(frozen=True)
class EncodeVideo:
    """One clip embedding from its frames (``embedder``)."""

    frames: tuple[Any, ...]


#: Settings added after keys were first made: left out of a key while at these defaults.
_UNKEYED_DEFAULTS = {"Chat": {"top_p": 1.0, "draw": None, "choices": None},
                     "Ask": {"top_p": 1.0, "repetition_penalty": 1.0, "system": None}}


def request_key(model: str, request: Any) -> str:
    """The cache key of one request sent to ``model``: what is sent, and to whom."""
    if not isinstance(request, (Chat, Ask, Caption, EncodeImage, EncodeImageRaw, EncodeText,
                                EncodeVideo)):
        raise TypeError(f"not a runtime request: {type(request).__name__} {request!r:.80}")
    fields = {name: getattr(request, name) for name in request.__dataclass_fields__}
    for name, default in _UNKEYED_DEFAULTS.get(type(request).__name__, {}).items():
        if fields[name] == default:  # a setting added later: at its default, keys stay as
            del fields[name]          # they were, so caches made before it stay valid
    for name in ("image", "images", "frames"):
        if name in fields:
            value = fields[name]
            fields[name] = (image_key(value) if name == "image"
                            else [image_key(i) for i in value])
    return make_key({"model": model, "kind": type(request).__name__, **fields})


#: What differs between the requests of one backend call; every other field is a setting.
_PAYLOAD = {"messages", "draw", "images", "prompt", "image", "text", "frames"}


def _settings(request: Any) -> tuple[Any, ...]:
    """The generation settings a batch must share (one backend call per group)."""
    return tuple(getattr(request, f) for f in request.__dataclass_fields__ if f not in _PAYLOAD)


def _generate_kwargs(request: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"max_new_tokens": request.max_new_tokens,
                           "temperature": request.temperature}
    if isinstance(request, Chat) and request.top_p != 1.0:
        out["top_p"] = request.top_p
    if isinstance(request, Chat) and request.choices is not None:
        out["choices"] = tuple(request.choices)
    if isinstance(request, Ask):  # the optional settings only when set (older backends)
        neutral = _UNKEYED_DEFAULTS["Ask"]
        out.update({k: getattr(request, k) for k in ("max_pixels", *neutral)
                    if getattr(request, k) != neutral.get(k)})
    return out


#: The embedding requests: the backend's method (else its fallback: a scripted double, a
#: text-only model) and what one request sends.
_ENCODERS: dict[type, tuple[str, str, Callable[[Any, Any], Any]]] = {
    EncodeImage: ("encode_image", "encode_image", lambda r, px: px(r.image)),
    EncodeImageRaw: ("encode_image_raw", "encode_image", lambda r, px: px(r.image)),
    EncodeText: ("encode_text", "encode", lambda r, px: r.text),
    EncodeVideo: ("encode_video", "encode_video", lambda r, px: [px(f) for f in r.frames]),
}


def _send(backend: Any, requests: list[Any], pixels: Callable[[Any], np.ndarray]) -> list[Any]:
    """Call the backend once for requests of one kind and one group of settings."""
    first = requests[0]
    if isinstance(first, Chat):
        return list(backend.batch([list(r.messages) for r in requests],
                                  **_generate_kwargs(first)))
    if isinstance(first, Ask):
        return list(backend.batch([([pixels(i) for i in r.images], r.prompt) for r in requests],
                                  **_generate_kwargs(first)))
    if isinstance(first, Caption):
        cap = {} if first.max_new_tokens is None else {"max_new_tokens": first.max_new_tokens}
        return [str(c) for c in backend([pixels(r.image) for r in requests], **cap)]
    if type(first) not in _ENCODERS:
        raise TypeError(f"not a runtime request: {type(first).__name__}")
    method, fallback, sent = _ENCODERS[type(first)]
    encode = getattr(backend, method, None) or getattr(backend, fallback)
    return list(np.asarray(encode([sent(r, pixels) for r in requests]), dtype=np.float32))


def _group(requests: list[Any]) -> list[list[int]]:
    """Positions of ``requests`` grouped by kind and settings, first-seen order."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault((type(r).__name__, *_settings(r)), []).append(i)
    return list(groups.values())


# --------------------------------------------------------------------------- frames


#: Bytes of decoded frames a run keeps for its later calls (512 MiB: every frame of a
#: 5-minute 384x288 clip at 10 fps; ~85 frames of 1080p video).
FRAME_BUDGET = 512 * 2**20


class FrameStore:
    """Decoded frames a run keeps between its calls, the least recently used dropped first
    once they hold more than ``budget`` bytes.

    A stage often sends frames a previous stage sent (AnyAnomaly's CLIP windows and VLM
    questions, VERA's answers and embeddings); without the store each map decodes them
    again. A frame is keyed by its video's content digest and index, so it is the same
    pixels for every runtime that asks. Kept frames are read-only: a model or an operation
    that wrote into one would change what the next call sees.
    """

    def __init__(self, budget: int | None = None):
        self.budget = int(FRAME_BUDGET if budget is None else budget)
        self.frames: OrderedDict[Frame, np.ndarray] = OrderedDict()
        self.bytes = 0  # held now
        self.peak = 0  # the most held at once (benchmarks, tests)
        self.planned: dict[str, set[int]] = {}  # video digest -> frames the run will send

    def __len__(self) -> int:
        return len(self.frames)

    def __contains__(self, frame: Frame) -> bool:
        return frame in self.frames

    def get(self, frame: Frame) -> np.ndarray | None:
        image = self.frames.get(frame)
        if image is not None:
            self.frames.move_to_end(frame)
        return image

    def put(self, frame: Frame, image: np.ndarray) -> None:
        """Keep ``image`` (made read-only), dropping the least recently used frames to stay
        within the budget; a frame larger than the whole budget is not kept."""
        if frame in self.frames:
            self.frames.move_to_end(frame)
            return
        if image.nbytes > self.budget:
            return
        image.flags.writeable = False
        self.frames[frame] = image
        self.bytes += image.nbytes
        while self.bytes > self.budget:
            _, dropped = self.frames.popitem(last=False)
            self.bytes -= dropped.nbytes
        self.peak = max(self.peak, self.bytes)

    def clear(self) -> None:
        self.frames.clear()
        self.planned.clear()
        self.bytes = 0

    def ahead(self, video: str, wanted: set[int], frame_bytes: int) -> set[int]:
        """The planned frames of ``video`` to decode along with ``wanted`` (the plan is
        spent): none the store holds, and none at all if they would not fit its budget."""
        extra = {i for i in self.planned.pop(video, ()) if Frame(video, i) not in self} - wanted
        return extra if (len(extra) + len(wanted)) * frame_bytes <= self.budget else set()


class _Pixels:
    """Pixels of the references the missing batches of one map need.

    Frames the run's :class:`FrameStore` holds are taken from it (and held here until the
    last batch that needs them, whatever the store drops meanwhile). The others are decoded
    in one forward pass per video (ascending, over every such frame the missing batches
    need) on first request, put in the store, and each is held here only until the last
    batch that needs it has run: requests may come in any order, no frame is decoded twice.
    """

    def __init__(self, runtime: Runtime, batches: list[list[Any]]):
        self.rt = runtime
        self.store: FrameStore = runtime.frames
        self.pending: Counter[Frame] = Counter()  # frame -> batches still needing it
        for batch in batches:
            self.pending.update(set(_frames_of(batch)))
        self.buffer: dict[Frame, np.ndarray] = {}
        for frame in self.pending:  # taken now: the store may drop them while this map runs
            image = self.store.get(frame)
            if image is not None:
                self.buffer[frame] = image
        self.streams: dict[str, Any] = {}
        self.derived: dict[str, np.ndarray] = {}

    def __call__(self, image: Any) -> np.ndarray:
        if isinstance(image, np.ndarray):
            return image
        if isinstance(image, Derived):
            key = image.key
            if key not in self.derived:
                self.derived[key] = np.asarray(image.op([self(s) for s in image.sources],
                                                        **dict(image.params)))
            return self.derived[key]
        return self._frame(image)

    def _frame(self, frame: Frame) -> np.ndarray:
        while frame not in self.buffer:
            stream = self.streams.get(frame.video)
            if stream is None:
                wanted = {f.index for f, n in self.pending.items()
                          if n > 0 and f.video == frame.video and f not in self.buffer}
                stream = self.rt._decode(frame.video, wanted)
                self.streams[frame.video] = stream
            try:
                chunk = next(stream)
            except StopIteration:
                raise RuntimeError(f"frame {frame.index} of video {frame.video} was not "
                                   "decoded (not among the frames this map needs)") from None
            for i, img in zip(chunk.indices.tolist(), chunk.images):
                decoded = Frame(frame.video, int(i))
                image = img.copy()  # its own memory: the chunk is freed
                self.store.put(decoded, image)
                if self.pending[decoded] > 0:
                    self.buffer[decoded] = image
        return self.buffer[frame]

    def batch_done(self, batch: list[Any]) -> None:
        for frame in set(_frames_of(batch)):
            self.pending[frame] -= 1
            if self.pending[frame] <= 0:
                self.buffer.pop(frame, None)
        self.derived.clear()

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()
        self.streams.clear()
        self.buffer.clear()


def _frames_of(items: Any) -> Iterable[Frame]:
    """The frames in requests, images (a derived image's sources), or lists of them."""
    if isinstance(items, Frame):
        yield items
        return
    if isinstance(items, (Caption, EncodeImage, EncodeImageRaw)):
        items = (items.image,)
    elif isinstance(items, Ask):
        items = items.images
    elif isinstance(items, EncodeVideo):
        items = items.frames
    elif isinstance(items, Derived):
        items = items.sources
    if isinstance(items, (list, tuple)):
        for item in items:
            yield from _frames_of(item)


# --------------------------------------------------------------------------- the runtime


STAT_COLUMNS = ["role", "model", "profile", "calls", "items", "cached", "failures", "seconds"]


@dataclass
class _RoleStat:
    calls: int = 0  # backend calls made (one per batch and settings group)
    items: int = 0  # requests sent to the model
    cached: int = 0  # requests answered by the cache
    failures: int = 0  # failed replies (returned, never cached)
    seconds: float = 0.0


@dataclass
class Runtime:
    """Roles, frames and a cached, batched, resumable map over model calls, for one run.

    ``cache``: a :class:`vadnb.cache.Cache`, a folder, or None for the suite's cache.
    ``frames``: where decoded frames are kept for later calls; by default the store of
    ``roles``, so the runtimes of one run (VERA builds one per video) share one budget.
    """

    roles: Roles = field(default_factory=Roles)
    cache: Any = None
    videos: dict[str, VideoRef] = field(default_factory=dict)
    stats: dict[str, _RoleStat] = field(default_factory=dict)
    frames: FrameStore | None = None  # None: the roles' store, shared by the run's runtimes

    def __post_init__(self) -> None:
        self.cache = get_cache(self.cache)
        if self.frames is None:
            frames = getattr(self.roles, "frames", None)
            self.frames = frames if isinstance(frames, FrameStore) else FrameStore()

    # ---- videos and frames

    def video(self, path: Any, frame_rate: float | None = None) -> VideoRef:
        """Probe ``path`` (cached) and remember it, so frames can be asked by reference."""
        from pathlib import Path

        from .cache import file_digest
        from .video import probe

        info = probe(path, cache=self.cache, frame_rate=frame_rate)
        ref = VideoRef(Path(path), file_digest(path), int(info.num_frames), float(info.fps),
                       3 * int(info.width) * int(info.height))
        self.videos[ref.digest] = ref
        return ref

    def plan(self, *items: Any) -> None:
        """Name every frame the run's later maps will send (requests, images, frames, or
        lists of them), at the pipeline's start: the first map that misses then decodes them
        all in one forward pass and keeps them for the later stages, where each stage alone
        would decode its own frames again. Nothing is decoded here, so a warm run decodes
        nothing; over the frame budget, each map decodes only its own frames."""
        for frame in _frames_of(items):
            self.frames.planned.setdefault(frame.video, set()).add(frame.index)

    def _decode(self, digest: str, wanted: set[int]) -> Any:
        """One forward pass over the ``wanted`` frames, and the planned ones within budget."""
        from .video import iter_frames

        ref = self.videos.get(digest)
        if ref is None:
            raise KeyError(f"video {digest} is unknown to this runtime; call rt.video(path) "
                           "before sending its frames")
        wanted = wanted | self.frames.ahead(digest, wanted, ref.frame_bytes)
        return iter_frames(ref.path, indices=np.asarray(sorted(wanted), dtype=np.int64),
                           cache=self.cache, chunk=16)

    def pixels(self, images: Sequence[Any]) -> list[np.ndarray]:
        """The pixels of image references (frames decoded in one forward pass, derived
        images computed), for the steps that need pixels rather than a model call."""
        batch = [Caption(i) for i in images]
        px = _Pixels(self, [batch])
        try:
            return [px(i).copy() for i in images]
        finally:
            px.close()

    # ---- model calls

    def key(self, role: str, request: Any) -> str:
        """The cache key of ``request`` sent to ``role``'s model."""
        return request_key(self.roles.identity(role), request)

    def map(self, role: str, requests: Sequence[Any], batch_size: int | None = None,
            desc: str | None = None) -> list[Any]:
        """One answer per request, in order: cached ones read, the rest asked in batches.

        Identical requests are asked once. Each batch is stored as soon as it returns, so a
        run killed mid-map re-asks only the batches it had not finished; a batch holding a
        failed reply is returned but not stored. The model is loaded on the first miss.
        """
        from .models import DEFAULT_BATCH
        from .models.profiles import base_role

        requests = list(requests)
        if any(isinstance(r, Ask) and r.max_pixels is None for r in requests):
            cap = self.roles.image_cap(role)  # what the backend applies, made explicit
            requests = [replace(r, max_pixels=cap) if isinstance(r, Ask) and r.max_pixels is None
                        else r for r in requests]
        keys = [self.key(role, r) for r in requests]
        unique = dict(zip(keys, requests))  # first-seen order, identical requests once
        size = max(1, int(batch_size or DEFAULT_BATCH.get(base_role(self.roles.entry(role)), 8)))
        order = list(unique)
        batches = [order[i: i + size] for i in range(0, len(order), size)]
        stage = f"runtime.{base_role(self.roles.entry(role))}"
        stat = self.stats.setdefault(role, _RoleStat())
        answers: dict[str, Any] = {}
        todo = []
        for batch in batches:
            got = self.cache.get(stage, {"items": batch}, None)
            if got is None:
                todo.append(batch)
            else:
                answers.update(zip(batch, got))
                stat.cached += len(batch)
        if todo:
            self._ask(role, stage, todo, unique, answers, stat, desc or f"{role} ({stage})")
        return [answers[k] for k in keys]

    def _ask(self, role: str, stage: str, todo: list[list[str]], unique: dict[str, Any],
             answers: dict[str, Any], stat: _RoleStat, desc: str) -> None:
        from .progress import bar as progress_bar

        todo_requests = [[unique[k] for k in batch] for batch in todo]
        px = _Pixels(self, todo_requests)
        total = sum(len(b) for b in todo)
        bar = progress_bar(total=total, desc=desc, disable=total <= len(todo[0]))
        try:
            backend = self.roles.get(role)
            for batch, reqs in zip(todo, todo_requests):
                out: list[Any] = [None] * len(reqs)
                t0 = time.perf_counter()
                for group in _group(reqs):
                    replies = _send(backend, [reqs[i] for i in group], px)
                    if len(replies) != len(group):
                        raise RuntimeError(f"{role}: the model returned {len(replies)} "
                                           f"answers for {len(group)} requests")
                    for i, reply in zip(group, replies):
                        out[i] = reply
                    stat.calls += 1
                stat.seconds += time.perf_counter() - t0
                stat.items += len(reqs)
                stat.failures += sum(is_failed(r) for r in out)
                self.cache.put(stage, {"items": batch}, out)  # refuses failed replies
                answers.update(zip(batch, out))
                px.batch_done(reqs)
                bar.update(len(batch))
        finally:
            bar.close()
            px.close()

    # ---- statistics

    def model_calls(self):
        """Per role: model, profile, calls, items, cached, failures, seconds (a DataFrame,
        what ``Detection.model_calls`` holds). Roles that answered from the cache count too."""
        import pandas as pd

        rows = [{"role": role, "model": self.roles.identity(role),
                 "profile": self.roles.profile_name(role), "calls": s.calls, "items": s.items,
                 "cached": s.cached, "failures": s.failures, "seconds": s.seconds}
                for role, s in self.stats.items()]
        return pd.DataFrame(rows, columns=STAT_COLUMNS)

    def release(self, *roles: str) -> None:
        """Free loaded models between stages (given backends are kept); with no role named,
        the run is over: the decoded frames kept for it are freed too."""
        self.roles.release(*roles)
