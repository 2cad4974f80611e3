"""A disk cache for expensive stage outputs (taught in notebook 10).

Entries are keyed by what they were computed from (the video's content hash, not its path;
stage, model, parameters) and stored as pickle-free ``.npz`` files (reading a shared cache
never runs code), written atomically so a killed run resumes. A value holding a *failed*
reply is never stored; a damaged entry, or one ``check`` rejects, is named in a
:class:`CacheWarning`, removed and recomputed; an unwritable folder warns once.

>>> Cache("/tmp/vadnb-doc-cache").memo("square", {"x": 3}, lambda: 3 * 3)
9
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from platformdirs import user_cache_dir

from .models.base import Reply

__all__ = ["Cache", "CacheWarning", "cache_dir", "file_digest", "make_key", "get_cache"]

_ARRAY_TAG = "__ndarray__"
_TUPLE_TAG = "__tuple__"
_REPLY_TAG = "__reply__"
_STACK_TAG = "__stacked__"  # same-shape arrays in one member (warm runs read thousands)


class CacheWarning(UserWarning):
    """The cache could not read an entry (it is recomputed) or could not store one."""


class _Uncacheable(Exception):
    """The value holds a failed reply: it is not stored."""


def cache_dir() -> Path:
    """The cache folder: ``$VADNB_CACHE`` if set, else the user's cache dir (``~/.cache/vadnb``)."""
    return Path(os.environ.get("VADNB_CACHE") or user_cache_dir("vadnb", appauthor=False)
                ).expanduser()


_digests: dict[tuple[Any, ...], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (16 hex digits), remembered per (path, size, mtime): keys
    survive renaming or copying a video and change with its content. A frame folder is hashed
    by the names, sizes and bytes of its non-hidden files (subfolders left out), in name order.
    """
    p = Path(path)
    files = [p]
    if p.is_dir():
        files = sorted(e for e in p.iterdir() if not e.name.startswith(".") and e.is_file())
    stats = [e.stat() for e in files]
    memo = (str(p.resolve()), *((e.name, s.st_size, s.st_mtime_ns) for e, s in zip(files, stats)))
    if memo not in _digests:
        if p.is_dir():
            h = hashlib.sha256(b"vadnb frame folder\n")
            for e, st in zip(files, stats):
                h.update(f"{len(e.name.encode())}:{e.name}:{st.st_size}\n".encode())
                h.update(e.read_bytes())  # one frame image at a time
        else:
            with open(p, "rb") as f:
                h = hashlib.file_digest(f, "sha256")
        _digests[memo] = h.hexdigest()[:16]
    return _digests[memo]


def _canonical(obj: Any) -> Any:
    """A JSON-able, order-independent view of key parts (paths and arrays included)."""
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return {"sha256": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest(),
                "shape": list(obj.shape), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, float) and obj != obj:  # NaN
        return "nan"
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if hasattr(obj, "__dataclass_fields__"):
        return _canonical(dataclasses.asdict(obj))
    raise TypeError(f"cannot use a {type(obj).__name__} in a cache key: {obj!r}")


def make_key(parts: dict[str, Any]) -> str:
    """A stable hex key for a dict of key parts (stage params, model names, video digests)."""
    text = json.dumps(_canonical(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _encode(value: Any, arrays: list[np.ndarray]) -> Any:
    if getattr(value, "failed", False) is True:
        raise _Uncacheable(repr(value)[:200])
    if isinstance(value, str) and hasattr(value, "truncated"):  # a model Reply
        return {_REPLY_TAG: str(value), "truncated": bool(value.truncated),
                "num_tokens": getattr(value, "num_tokens", None)}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("object arrays cannot be cached; convert them to lists")
        arrays.append(value)
        return {_ARRAY_TAG: len(arrays) - 1}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("cached dicts need string keys")
        return {k: _encode(v, arrays) for k, v in value.items()}
    if isinstance(value, tuple):
        return {_TUPLE_TAG: [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        first = value[0] if len(value) > 1 else None
        # two or more arrays of one shape and dtype (not 0-d: rows would come back as scalars)
        if type(first) is np.ndarray and first.ndim > 0 and first.dtype != object and all(
                type(v) is np.ndarray and v.shape == first.shape and v.dtype == first.dtype
                for v in value):
            arrays.append(np.stack(value))
            return {_STACK_TAG: len(arrays) - 1}
        return [_encode(v, arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot cache a {type(value).__name__}; use dicts, lists, numbers, str, "
                    "arrays")


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if _ARRAY_TAG in value and len(value) == 1:
            return arrays[f"a{value[_ARRAY_TAG]}"]
        if _STACK_TAG in value and len(value) == 1:
            return list(arrays[f"a{value[_STACK_TAG]}"])
        if _TUPLE_TAG in value and len(value) == 1:
            return tuple(_decode(v, arrays) for v in value[_TUPLE_TAG])
        if _REPLY_TAG in value and len(value) == 3:
            return Reply(value[_REPLY_TAG], truncated=value["truncated"],
                         num_tokens=value["num_tokens"])
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


#: What reading a damaged entry raises (cut short, zero bytes, bad CRC, foreign, bad JSON).
_DAMAGE = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
           zipfile.BadZipFile, zlib.error)
_MISSING = object()


class Cache:
    """Stage outputs on disk under ``root/stages/<stage>/<key>.npz``: ``memo`` caches a whole
    stage; ``Runtime.map`` caches model calls batch by batch through ``get`` and ``put``."""

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True):
        self.root = Path(root).expanduser() if root is not None else cache_dir()
        self.enabled = enabled
        self.hits = self.misses = 0
        self.write_errors = 0  # entries that could not be stored (full or read-only folder)
        self.damaged: list[Path] = []  # damaged entries found (and removed) by this Cache

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})"

    def path(self, stage: str, key: str) -> Path:
        return self.root / "stages" / stage / f"{key}.npz"

    def get(self, stage: str, parts: dict[str, Any], default: Any = None,
            check: Callable[[Any], Any] | None = None) -> Any:
        """The stored value for these key parts, or ``default``. An entry ``check(value)``
        rejects (copied, another version) is treated as damaged, not failing later in pandas."""
        path = self.path(stage, make_key(parts))
        if not self.enabled or not path.exists():
            return default
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if k != "__json__"}  # reading checks CRCs
                value = _decode(json.loads(str(z["__json__"])), arrays)
        except PermissionError as err:
            warnings.warn(f"cache entry {path} cannot be read ({err}); computing it again",
                          CacheWarning, stacklevel=2)
            return default
        except _DAMAGE as err:
            # a damaged entry (cut short, zero bytes, bad CRC, bad JSON) is never trusted
            self._discard(path, stage, f"is damaged ({type(err).__name__}: {err})")
            return default
        if check is not None:
            try:
                check(value)
            except Exception as err:  # noqa: BLE001 - any failure of the check means foreign
                self._discard(path, stage, f"does not hold what stage {stage!r} stores "
                                           f"({type(err).__name__}: {err})")
                return default
        return value

    def _discard(self, path: Path, stage: str, why: str) -> None:
        self.damaged.append(path)
        try:
            path.unlink(missing_ok=True)
            what = "removed it"
        except OSError as rm_err:
            what = f"could not remove it ({rm_err})"
        warnings.warn(f"cache entry {path} (stage {stage!r}) {why}; {what} and will compute "
                      "it again", CacheWarning, stacklevel=3)

    def put(self, stage: str, parts: dict[str, Any], value: Any) -> bool:
        """Store ``value``; False when not stored: it holds a failed reply, or the folder
        cannot be written (one warning per Cache). An uncacheable type raises TypeError."""
        if not self.enabled:
            return False
        arrays: list[np.ndarray] = []
        try:
            structure = _encode(value, arrays)
        except _Uncacheable:
            return False
        payload = {f"a{i}": a for i, a in enumerate(arrays)}
        payload["__json__"] = np.array(json.dumps(structure, allow_nan=True))
        try:
            _write_atomic(self.path(stage, make_key(parts)), payload)
        except OSError as err:
            if not self.write_errors:
                warnings.warn(
                    f"cannot write to the cache folder {self.root} ({type(err).__name__}: "
                    f"{err}); results are returned but not cached. Free some space, fix the "
                    "permissions, or point VADNB_CACHE at a writable folder",
                    CacheWarning, stacklevel=2)
            self.write_errors += 1
            return False
        return True

    def memo(self, stage: str, parts: dict[str, Any], compute: Callable[[], Any],
             check: Callable[[Any], Any] | None = None) -> Any:
        """The cached value for ``parts``, computed and stored on a miss (``check``: see
        :meth:`get`)."""
        value = self.get(stage, parts, _MISSING, check)
        if value is not _MISSING:
            self.hits += 1
            return value
        self.misses += 1
        value = compute()
        self.put(stage, parts, value)
        return value

    def report(self):
        """A table of stages with their entry count and size on disk (MB)."""
        base = self.root / "stages"
        rows = []
        for stage in sorted(d for d in base.iterdir() if d.is_dir()) if base.exists() else []:
            sizes = [p.stat().st_size for p in stage.rglob("*.npz") if p.is_file()]
            rows.append((stage.name, len(sizes), round(sum(sizes) / 1e6, 3)))
        return pd.DataFrame(rows, columns=["stage", "entries", "MB"])

    def clear(self, stage: str | None = None) -> None:
        """Delete one stage's entries, or every entry."""
        target = self.root / "stages" / stage if stage else self.root / "stages"
        shutil.rmtree(target, ignore_errors=True)


def _write_atomic(path: Path, payload: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` via a temporary file and a rename: a killed run leaves no half entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_default: Cache | None = None


def get_cache(cache: Cache | str | os.PathLike | None = None) -> Cache:
    """The cache to use: the one given, a folder given, or the process-wide default."""
    global _default
    if isinstance(cache, Cache):
        return cache
    if cache is not None:
        return Cache(cache)
    if _default is None or _default.root != cache_dir():
        _default = Cache()
    return _default
