"""The plumbing every method's pipeline shares, written once: roles, frames, cached model calls.

Pipelines send request values (:class:`Chat`, :class:`Ask`, :class:`Caption`, ``Encode*``) to
:meth:`Runtime.map`, which keys each by the request itself and the model's identity (no version
constants), and loads a model and decodes frames only on a miss: one forward pass for a map's
frames and those :meth:`Runtime.plan` named. A warm run loads and decodes nothing. Images go
by reference (:class:`Frame`, :class:`Derived`), keyed by recipe.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import models
from .cache import file_digest, get_cache, make_key
from .models.base import is_failed
from .models.profiles import base_role, model_spec, resolve_profile
from .progress import bar as progress_bar
from .video import iter_frames, probe

__all__ = ["Roles", "Runtime", "VideoRef", "Frame", "Derived", "Chat", "Ask", "Caption",
           "EncodeImage", "EncodeImageRaw", "EncodeText", "EncodeVideo", "request_key", "image_key",
           "STAT_COLUMNS", "FrameStore", "FRAME_BUDGET"]


class Roles:
    """The models a run uses, one per role, loaded on first use and released between stages.
    ``entries``: role -> profile entry (``"clip"`` -> ``"clip-b32"``); ``models``: a role's
    model override; ``backends``: models the caller built, used as they are, never released."""

    def __init__(self, profile: str | None = None, *, entries: Mapping[str, str] | None = None,
                 models: Mapping[str, str | None] | None = None,
                 backends: Mapping[str, Any] | None = None):
        self.profile = profile
        self.entries = dict(entries or {})
        self.models = {k: v for k, v in (models or {}).items() if v is not None}
        self.given = dict(backends or {})
        self.loaded: dict[str, Any] = {}
        self._resolved: str | None = None
        self.frames = FrameStore()  # decoded frames kept for every Runtime of this run

    def image_cap(self, role: str) -> int | None:
        """The pixel cap ``role``'s VLM applies, known without loading it (part of Ask keys)."""
        backend = self.given.get(role) or self.loaded.get(role)
        if backend is not None:
            return getattr(backend, "max_pixels", None)
        from .models.hf import max_pixels_for

        return max_pixels_for(self.entries.get(role, role))

    def resolved_profile(self) -> str:
        if self._resolved is None:
            self._resolved = resolve_profile(self.profile, verbose=False)
        return self._resolved

    def identity(self, role: str) -> str:
        """The model's name as its backend will carry it (cache keys), known without loading."""
        backend = self.given.get(role) or self.loaded.get(role)
        if backend is not None:
            return str(backend.name)
        source = str(self.models[role] if role in self.models else
                     model_spec(self.entries.get(role, role), self.resolved_profile()).model)
        if source.startswith("tiny:"):
            from .models.tiny import TINY_VERSION

            return f"{source}@v{TINY_VERSION}"
        return source

    def profile_name(self, role: str) -> str:
        """The profile of the model that plays ``role`` (``"tiny"`` for random-init models)."""
        backend = self.given.get(role) or self.loaded.get(role)
        if backend is not None:
            return "tiny" if getattr(backend, "meaningless", False) else str(backend.profile)
        if self.identity(role).startswith("tiny:"):
            return "tiny"
        return "custom" if role in self.models else self.resolved_profile()

    def get(self, role: str) -> Any:
        """The backend for ``role``, loading it on first use."""
        if role in self.given:
            return self.given[role]
        if role not in self.loaded:
            backend = models.load(self.entries.get(role, role), profile=self.profile,
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
        """Free the models loaded for ``roles`` (not given ones); none named: frames go too."""
        if not roles:
            self.frames.clear()
        for role in roles or list(self.loaded):
            backend = self.loaded.pop(role, None)
            if backend is not None:
                backend.release()

    def detection_profile(self, roles: Iterable[str]) -> str:
        """``"tiny"`` if any role is tiny, else the common profile, else ``"custom"``."""
        names = {self.profile_name(r) for r in roles}
        if "tiny" in names:
            return "tiny"
        return names.pop() if len(names) == 1 else "custom"


@functools.lru_cache(maxsize=1024)
def _function_id(fn: Callable[..., Any]) -> str:
    """Name and source digest of ``fn`` (remembered: reading source costs ~2 ms a call)."""
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = name
    return f"{name}#{hashlib.sha256(source.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Frame:
    """Frame ``index`` of the video whose content digest is ``video``."""

    video: str
    index: int


@dataclass(frozen=True)
class Derived:
    """An image made by ``op(list_of_source_images, **params)`` from other references, keyed
    by its recipe: the sources' keys, the operation's name and source, the (plain) params."""

    op: Callable[..., np.ndarray]
    sources: tuple[Any, ...]
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, op: Callable[..., np.ndarray], sources: Sequence[Any], **params: Any) -> Derived:
        return cls(op, tuple(sources), tuple(sorted(params.items())))

    @functools.cached_property
    def key(self) -> str:  # computed once per object (sources may be nested recipes)
        return make_key({"op": _function_id(self.op),
                         "sources": [image_key(s) for s in self.sources],
                         "params": dict(self.params)})


def image_key(image: Any) -> str:
    """The key of an image sent to a model: a reference's recipe, an array's content."""
    if isinstance(image, Frame):
        return f"{image.video}:{image.index}"
    if isinstance(image, Derived):
        return image.key
    if isinstance(image, np.ndarray):  # an in-memory image (oracle inputs, tests)
        return make_key({"pixels": image})
    raise TypeError(f"an image in a request must be a runtime Frame, Derived or a numpy "
                    f"array, got {type(image).__name__}")


@dataclass(frozen=True)
class VideoRef:
    """A video the runtime knows: path, content digest, frame count, rate, bytes per frame."""

    path: Any
    digest: str
    num_frames: int
    fps: float
    frame_bytes: int = 0

    def frame(self, index: int) -> Frame:
        return Frame(self.digest, int(index))

    def frames(self, indices: Iterable[int]) -> list[Frame]:
        return [Frame(self.digest, int(i)) for i in indices]


@dataclass(frozen=True)
class Chat:
    """One conversation for the ``llm`` role: exactly the messages and generation settings."""

    messages: Any
    max_new_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0  # nucleus threshold (used when temperature > 0)
    draw: str | None = None  # names one sample: asked and cached apart
    choices: tuple | None = None  # the allowed replies: the most likely one is returned


@dataclass(frozen=True)
class Ask:
    """One question with images for the ``vlm`` role."""

    images: tuple
    prompt: str
    max_new_tokens: int | None = None
    temperature: float = 0.0
    max_pixels: int | None = None
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    system: str | None = None  # a system message before the question


@dataclass(frozen=True)
class Caption:
    """One image for the ``captioner`` role."""

    image: Any
    max_new_tokens: int | None = None  # None: the model's own cap (old captions used 30)


@dataclass(frozen=True)
class EncodeImage:
    """One image embedding (``clip``, ``embedder``)."""

    image: Any


@dataclass(frozen=True)
class EncodeImageRaw:
    """One image through ``clip``'s visual encoder, raw (not L2-normalised, as AnomalyCLIP
    uses it); a backend without ``encode_image_raw`` answers with ``encode_image``."""

    image: Any


@dataclass(frozen=True)
class EncodeText:
    """One text embedding."""

    text: str


@dataclass(frozen=True)
class EncodeVideo:
    """One clip embedding from its frames (``embedder``)."""

    frames: tuple


_REQUESTS = (Chat, Ask, Caption, EncodeImage, EncodeImageRaw, EncodeText, EncodeVideo)
#: Where requests and derived images hold their images.
_IMAGES = {Caption: "image", EncodeImage: "image", EncodeImageRaw: "image", Ask: "images",
           EncodeVideo: "frames", Derived: "sources"}

#: Settings added after keys were first made: left out of a key while at these defaults.
_UNKEYED_DEFAULTS = {"Chat": {"top_p": 1.0, "draw": None, "choices": None},
                     "Ask": {"top_p": 1.0, "repetition_penalty": 1.0, "system": None}}
#: What differs between the requests of one backend call; every other field is a setting.
_PAYLOAD = {"messages", "draw", "images", "prompt", "image", "text", "frames"}


def request_key(model: str, request: Any) -> str:
    """The cache key of one request sent to ``model``: what is sent, and to whom."""
    if not isinstance(request, _REQUESTS):
        raise TypeError(f"not a runtime request: {type(request).__name__} {request!r:.80}")
    kind = type(request).__name__
    fields = {name: getattr(request, name) for name in request.__dataclass_fields__}
    for name, default in _UNKEYED_DEFAULTS.get(kind, {}).items():
        if fields[name] == default:  # at its default, a later setting keeps old keys valid
            del fields[name]
    name = _IMAGES.get(type(request))
    if name:
        value = fields[name]
        fields[name] = image_key(value) if name == "image" else [image_key(i) for i in value]
    return make_key({"model": model, "kind": kind, **fields})


def _generate_kwargs(request: Any) -> dict[str, Any]:
    """A Chat's or Ask's generation settings; later ones only when set (older backends)."""
    optional = {"max_pixels": None, **_UNKEYED_DEFAULTS[type(request).__name__]}
    optional.pop("draw", None)  # names a sample for the cache; the backend never sees it
    out = {k: getattr(request, k) for k in ("max_new_tokens", "temperature")}
    for k, neutral in optional.items():
        if hasattr(request, k) and getattr(request, k) != neutral:
            out[k] = getattr(request, k)
    if "choices" in out:
        out["choices"] = tuple(out["choices"])
    return out


#: Embedding requests: the backend's method, its fallback (doubles, text-only models), the input.
_ENCODERS: dict[type, tuple[str, str, Callable[[Any, Any], Any]]] = {
    EncodeImage: ("encode_image", "encode_image", lambda r, px: px(r.image)),
    EncodeImageRaw: ("encode_image_raw", "encode_image", lambda r, px: px(r.image)),
    EncodeText: ("encode_text", "encode", lambda r, px: r.text),
    EncodeVideo: ("encode_video", "encode_video", lambda r, px: [px(f) for f in r.frames]),
}


def _send(backend: Any, requests: list[Any], pixels: Callable[[Any], np.ndarray],
          role: str) -> tuple[list[Any], int]:
    """Answers to one batch, and the backend calls made: one per kind and group of settings."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(requests):
        settings = (getattr(r, f) for f in r.__dataclass_fields__ if f not in _PAYLOAD)
        groups.setdefault((type(r).__name__, *settings), []).append(i)
    out: dict[int, Any] = {}
    for group in groups.values():
        first, reqs = requests[group[0]], [requests[i] for i in group]
        if isinstance(first, (Chat, Ask)):
            sent = [list(r.messages) if isinstance(r, Chat)
                    else ([pixels(i) for i in r.images], r.prompt) for r in reqs]
            replies = list(backend.batch(sent, **_generate_kwargs(first)))
        elif isinstance(first, Caption):
            cap = {} if first.max_new_tokens is None else {"max_new_tokens": first.max_new_tokens}
            replies = [str(c) for c in backend([pixels(r.image) for r in reqs], **cap)]
        else:
            method, fallback, make = _ENCODERS[type(first)]
            encode = getattr(backend, method, None) or getattr(backend, fallback)
            replies = list(np.asarray(encode([make(r, pixels) for r in reqs]), dtype=np.float32))
        if len(replies) != len(group):
            raise RuntimeError(f"{role}: the model returned {len(replies)} answers for "
                               f"{len(group)} requests")
        out.update(zip(group, replies))
    return [out[i] for i in range(len(requests))], len(groups)


#: Bytes of decoded frames a run keeps (512 MiB: 5 minutes of 384x288 at 10 fps; 85 of 1080p).
FRAME_BUDGET = 512 * 2**20


class FrameStore:
    """Decoded frames a run keeps for its later calls, least recently used out beyond
    ``budget`` bytes; read-only (a model writing into one would change later calls)."""

    def __init__(self, budget: int | None = None):
        self.budget = int(FRAME_BUDGET if budget is None else budget)
        self.frames: OrderedDict[Frame, np.ndarray] = OrderedDict()
        self.bytes = 0  # held now
        self.peak = 0  # the most held at once (benchmarks, tests)
        self.planned: dict[str, set[int]] = {}  # video digest -> frames the run will send

    def get(self, frame: Frame) -> np.ndarray | None:
        image = self.frames.get(frame)
        if image is not None:
            self.frames.move_to_end(frame)
        return image

    def put(self, frame: Frame, image: np.ndarray) -> None:
        """Keep ``image`` (made read-only) within the budget; one larger than it is not kept."""
        if frame in self.frames or image.nbytes > self.budget:
            self.get(frame)  # a kept frame becomes the most recent
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


class _Pixels:
    """Pixels for one map's missing batches: stored, else one pass per video, held until used."""

    def __init__(self, runtime: Runtime, batches: list[list[Any]]):
        self.rt = runtime
        # frame -> batches still needing it
        self.pending = Counter(f for batch in batches for f in set(_frames_of(batch)))
        stored = {f: runtime.frames.get(f) for f in self.pending}  # the store may drop them
        self.buffer = {f: img for f, img in stored.items() if img is not None}
        self.streams: dict[str, Any] = {}
        self.derived: dict[str, np.ndarray] = {}

    def __call__(self, image: Any) -> np.ndarray:
        if isinstance(image, np.ndarray):
            return image
        if isinstance(image, Derived):
            if image.key not in self.derived:
                self.derived[image.key] = np.asarray(
                    image.op([self(s) for s in image.sources], **dict(image.params)))
            return self.derived[image.key]
        store = self.rt.frames
        while image not in self.buffer:
            if image.video not in self.streams:
                self.streams[image.video] = self._decode(image.video)
            try:
                chunk = next(self.streams[image.video])
            except StopIteration:
                raise RuntimeError(f"frame {image.index} of video {image.video} was not "
                                   "decoded (not among the frames this map needs)") from None
            for i, img in zip(chunk.indices.tolist(), chunk.images):
                decoded = Frame(image.video, int(i))
                img = img.copy()  # its own memory: the chunk is freed
                store.put(decoded, img)
                if self.pending[decoded] > 0:
                    self.buffer[decoded] = img
        return self.buffer[image]

    def _decode(self, video: str) -> Any:
        """One pass over ``video``: the frames this map still needs, and planned ones."""
        store, ref = self.rt.frames, self.rt.videos.get(video)
        if ref is None:
            raise KeyError(f"video {video} is unknown to this runtime; call "
                           "rt.video(path) before sending its frames")
        wanted = {f.index for f, n in self.pending.items()
                  if n > 0 and f.video == video and f not in self.buffer}
        extra = {i for i in store.planned.pop(video, ())
                 if Frame(video, i) not in store.frames} - wanted
        if (len(extra) + len(wanted)) * ref.frame_bytes <= store.budget:  # else: dropped
            wanted |= extra
        return iter_frames(ref.path, indices=np.asarray(sorted(wanted), dtype=np.int64),
                           cache=self.rt.cache, chunk=16)

    def batch_done(self, batch: list[Any]) -> None:
        for frame in set(_frames_of(batch)):
            self.pending[frame] -= 1
            if self.pending[frame] <= 0:
                self.buffer.pop(frame, None)
        self.derived.clear()

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()


def _frames_of(items: Any) -> Iterable[Frame]:
    """The frames in requests, images (a derived image's sources), or lists of them."""
    if isinstance(items, Frame):
        yield items
    elif isinstance(items, (list, tuple, *_IMAGES)):
        field = _IMAGES.get(type(items))
        inner = getattr(items, field) if field else items
        for item in (inner,) if field == "image" else inner:
            yield from _frames_of(item)


STAT_COLUMNS = ["role", "model", "profile", "calls", "items", "cached", "failures", "seconds"]


class Runtime:
    """Roles, frames and a cached, batched, resumable map over model calls, for one run.
    ``cache``: a Cache, a folder or None (the suite's); ``frames``: by default the roles'
    store, so the runtimes of one run (VERA: one per video) share one budget."""

    def __init__(self, roles: Roles | None = None, cache: Any = None,
                 frames: FrameStore | None = None):
        self.roles = roles or Roles()
        self.cache = get_cache(cache)
        self.frames = self.roles.frames if frames is None else frames
        self.videos: dict[str, VideoRef] = {}
        # per role: backend calls, items sent, cached, failures (never cached), seconds
        self.stats: dict[str, Counter] = {}

    def video(self, path: Any, frame_rate: float | None = None) -> VideoRef:
        """Probe ``path`` (cached) and remember it, so frames can be asked by reference."""
        info = probe(path, cache=self.cache, frame_rate=frame_rate)
        ref = VideoRef(Path(path), file_digest(path), int(info.num_frames), float(info.fps),
                       3 * int(info.width) * int(info.height))
        self.videos[ref.digest] = ref
        return ref

    def plan(self, *items: Any) -> None:
        """Name the frames later maps will send, so the first miss decodes them all in one pass
        (decodes nothing itself; over the frame budget, each map decodes its own)."""
        for frame in _frames_of(items):
            self.frames.planned.setdefault(frame.video, set()).add(frame.index)

    def pixels(self, images: Sequence[Any]) -> list[np.ndarray]:
        """The pixels of image references (one forward pass), for steps that need pixels."""
        px = _Pixels(self, [list(images)])
        try:
            return [px(i).copy() for i in images]
        finally:
            px.close()

    def map(self, role: str, requests: Sequence[Any], batch_size: int | None = None,
            desc: str | None = None) -> list[Any]:
        """One answer per request, in order: cached ones read, the rest asked in batches (each
        stored as it returns, unless it holds a failed reply); identical requests asked once."""
        requests = list(requests)
        if any(isinstance(r, Ask) and r.max_pixels is None for r in requests):
            cap = self.roles.image_cap(role)  # what the backend applies, made explicit
            requests = [replace(r, max_pixels=cap) if isinstance(r, Ask) and r.max_pixels is None
                        else r for r in requests]
        model = self.roles.identity(role)
        keys = [request_key(model, r) for r in requests]
        unique = dict(zip(keys, requests))  # first-seen order, identical requests once
        base = base_role(self.roles.entries.get(role, role))
        size = max(1, int(batch_size or models.DEFAULT_BATCH.get(base, 8)))
        order, stage = list(unique), f"runtime.{base}"
        stat = self.stats.setdefault(role, Counter())
        answers, todo = {}, []
        for batch in (order[i: i + size] for i in range(0, len(order), size)):
            got = self.cache.get(stage, {"items": batch}, None)
            if got is None:
                todo.append(batch)
            else:
                answers.update(zip(batch, got))
                stat["cached"] += len(batch)
        if todo:
            missed = [[unique[k] for k in batch] for batch in todo]
            answers.update(self._ask(role, stage, todo, missed, desc or f"{role} ({stage})"))
        return [answers[k] for k in keys]

    def _ask(self, role: str, stage: str, key_batches: list[list[str]],
             request_batches: list[list[Any]], desc: str) -> dict[str, Any]:
        """Send the batches the cache missed (loading the model), storing each as it returns."""
        stat, answers = self.stats[role], {}
        px = _Pixels(self, request_batches)
        total = sum(len(b) for b in key_batches)
        bar = progress_bar(total=total, desc=desc, disable=total <= len(key_batches[0]))
        try:
            backend = self.roles.get(role)
            for batch, reqs in zip(key_batches, request_batches):
                t0 = time.perf_counter()
                out, calls = _send(backend, reqs, px, role)
                stat.update(calls=calls, items=len(reqs), seconds=time.perf_counter() - t0,
                            failures=sum(is_failed(r) for r in out))
                self.cache.put(stage, {"items": batch}, out)  # refuses failed replies
                answers.update(zip(batch, out))
                px.batch_done(reqs)
                bar.update(len(batch))
        finally:
            bar.close()
            px.close()
        return answers

    def model_calls(self):
        """Per role: model, profile, calls, items, cached, failures, seconds (a DataFrame)."""
        rows = [[role, self.roles.identity(role), self.roles.profile_name(role),
                 *(int(s[c]) for c in STAT_COLUMNS[3:-1]), float(s["seconds"])]
                for role, s in self.stats.items()]
        return pd.DataFrame(rows, columns=STAT_COLUMNS)

    def release(self, *roles: str) -> None:
        """Free loaded models (given ones are kept); none named: the run's frames go too."""
        self.roles.release(*roles)
