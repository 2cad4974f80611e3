"""A disk cache for expensive stage outputs (taught in notebook 10).

Every entry is keyed by *what it was computed from*: the video's content (a hash of its
bytes, not its path), the stage name, the model and the parameters. Entries are written
atomically (a temporary file, then ``os.replace``), so a run killed mid-write never leaves
a half-written entry behind, and a re-run picks up where the killed one stopped.

Entries are stored as ``.npz`` files without pickle: a value may be any mix of dicts,
lists, strings, numbers, booleans, ``None`` and numpy arrays. Loading a cache entry never
executes code, so a cache folder shared between users is safe to read.

>>> from vadnb.cache import Cache
>>> cache = Cache("/tmp/vadnb-doc-cache")
>>> cache.memo("square", {"x": 3}, lambda: 3 * 3)
9
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Cache", "cache_dir", "file_digest", "make_key", "get_cache"]

_ARRAY_TAG = "__ndarray__"
_TUPLE_TAG = "__tuple__"


def cache_dir() -> Path:
    """The cache folder: ``$VADNB_CACHE`` if set, else the user's cache dir (``~/.cache/vadnb``)."""
    env = os.environ.get("VADNB_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vadnb", appauthor=False))


_digests: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (first 16 hex digits), remembered per (path, size, mtime).

    Keys built from this survive renaming or copying a video, and change when its content does.
    """
    p = Path(path)
    st = p.stat()
    memo_key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key not in _digests:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _digests[memo_key] = h.hexdigest()[:16]
    return _digests[memo_key]


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
        import dataclasses

        return _canonical(dataclasses.asdict(obj))
    raise TypeError(f"cannot use a {type(obj).__name__} in a cache key: {obj!r}")


def make_key(parts: dict[str, Any]) -> str:
    """A stable hex key for a dict of key parts (stage params, model names, video digests)."""
    text = json.dumps(_canonical(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _encode(value: Any, arrays: list[np.ndarray]) -> Any:
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
        return [_encode(v, arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot cache a {type(value).__name__}; use dicts, lists, numbers, str, arrays")


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if _ARRAY_TAG in value and len(value) == 1:
            return arrays[f"a{value[_ARRAY_TAG]}"]
        if _TUPLE_TAG in value and len(value) == 1:
            return tuple(_decode(v, arrays) for v in value[_TUPLE_TAG])
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def _write_atomic(path: Path, value: Any) -> None:
    arrays: list[np.ndarray] = []
    structure = _encode(value, arrays)
    payload = {f"a{i}": a for i, a in enumerate(arrays)}
    payload["__json__"] = np.array(json.dumps(structure, allow_nan=True))
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


def _read(path: Path) -> Any:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "__json__"}
        structure = json.loads(str(z["__json__"]))
    return _decode(structure, arrays)


_MISSING = object()


class Cache:
    """Stage outputs on disk under ``root/<stage>/<key>.npz``.

    ``memo`` caches a whole stage; ``map`` caches item by item in batches, so an
    interrupted loop resumes at the first batch it had not finished.
    """

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True):
        self.root = Path(root).expanduser() if root is not None else cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})"

    def path(self, stage: str, key: str) -> Path:
        return self.root / "stages" / stage / f"{key}.npz"

    def get(self, stage: str, parts: dict[str, Any], default: Any = None) -> Any:
        """The stored value for these key parts, or ``default``."""
        path = self.path(stage, make_key(parts))
        if not self.enabled or not path.exists():
            return default
        try:
            return _read(path)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            # A corrupt entry (disk full, foreign file) is recomputed, never trusted.
            path.unlink(missing_ok=True)
            return default

    def put(self, stage: str, parts: dict[str, Any], value: Any) -> None:
        if self.enabled:
            _write_atomic(self.path(stage, make_key(parts)), value)

    def memo(self, stage: str, parts: dict[str, Any], compute: Callable[[], Any]) -> Any:
        """Return the cached value for ``parts``, computing and storing it on a miss."""
        value = self.get(stage, parts, _MISSING)
        if value is not _MISSING:
            self.hits += 1
            return value
        self.misses += 1
        value = compute()
        self.put(stage, parts, value)
        return value

    def map(
        self,
        stage: str,
        parts: dict[str, Any],
        items: Sequence[Any],
        compute: Callable[[list[Any]], list[Any]],
        batch_size: int = 16,
        desc: str | None = None,
    ) -> list[Any]:
        """``compute`` over ``items`` in batches, each finished batch stored at once.

        A run killed half-way keeps every batch it finished; the next run with the same
        ``parts`` and ``items`` computes only the rest. ``compute`` gets a list of items
        and must return one result per item, in order.
        """
        items = list(items)
        whole = self.get(stage, {**parts, "items": items}, _MISSING)
        if whole is not _MISSING:
            self.hits += 1
            return whole
        batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        results: list[Any] = []
        todo = []
        for b, batch in enumerate(batches):
            cached = self.get(f"{stage}.part", {**parts, "batch": batch}, _MISSING)
            todo.append(cached is _MISSING)
            results.append(cached)
        if any(todo):
            self.misses += 1
            from .progress import bar as progress_bar

            # no bar for sub-second steps, none inside a stage that shows its own
            bar = progress_bar(total=len(items), desc=desc or stage,
                               disable=len(items) <= batch_size)
            for b, batch in enumerate(batches):
                if todo[b]:
                    out = list(compute(list(batch)))
                    if len(out) != len(batch):
                        raise ValueError(f"{stage}: compute returned {len(out)} results "
                                         f"for {len(batch)} items")
                    self.put(f"{stage}.part", {**parts, "batch": batch}, out)
                    results[b] = out
                bar.update(len(batch))
            bar.close()
        else:
            self.hits += 1
        flat = [r for batch_out in results for r in batch_out]
        self.put(stage, {**parts, "items": items}, flat)
        return flat

    def size_bytes(self, stage: str | None = None) -> int:
        base = self.root / "stages" / stage if stage else self.root / "stages"
        if not base.exists():
            return 0
        return sum(p.stat().st_size for p in base.rglob("*") if p.is_file())

    def report(self):
        """A table of stages with their entry count and size on disk (MB)."""
        import pandas as pd

        rows = []
        base = self.root / "stages"
        if base.exists():
            for d in sorted(p for p in base.iterdir() if p.is_dir()):
                files = [p for p in d.rglob("*.npz") if p.is_file()]
                rows.append({"stage": d.name, "entries": len(files),
                             "MB": round(sum(p.stat().st_size for p in files) / 1e6, 3)})
        return pd.DataFrame(rows, columns=["stage", "entries", "MB"])

    def clear(self, stage: str | None = None) -> None:
        """Delete one stage's entries, or every entry."""
        target = self.root / "stages" / stage if stage else self.root / "stages"
        shutil.rmtree(target, ignore_errors=True)


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
