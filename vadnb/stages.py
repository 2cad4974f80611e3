"""Steps several methods share: centre frames and windows, nearest-neighbour retrieval with
softmax weights, Gaussian smoothing, parsing model replies, validated Configs, and the tables
of differences from the official code (each docstring names the notebook that teaches it)."""

from __future__ import annotations

import functools
import math
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import AfterValidator, BeforeValidator, ConfigDict, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass
from scipy.special import softmax as _softmax  # lavad.official uses it too

from .models.served import redact

C = TypeVar("C")

__all__ = ["centre_frames", "window_frames_closed", "window_frames_half_open", "resized",
           "knn_softmax", "top_k", "gaussian_kernel", "gaussian_smooth", "interpolate_missing",
           "parse_bracket_score", "parse_first_number", "parse_binary_label", "ParseLog",
           "CONFIG_RULES", "SEQUENCE", "ModelId", "config_dataclass", "configure",
           "config_error", "Difference", "differences_markdown"]


def centre_frames(num_frames: int, stride: int = 16) -> np.ndarray:
    """Frames 0, stride, 2*stride, ... below ``num_frames`` (LAVAD, VERA: 16; notebook 20)."""
    if num_frames <= 0:
        raise ValueError(f"video has {num_frames} frames; nothing to score")
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    return np.arange(0, num_frames, stride, dtype=np.int64)


def window_frames_half_open(centre: int, num_frames: int, fps: float, window_s: float = 10.0,
                            n: int = 10) -> np.ndarray:
    """LAVAD's window: ``n`` of the frames ``[centre - W//2, centre + W//2)``, ``W =
    int(window_s * fps)``, clipped (not shifted), at ``linspace(0, len - 1, n)`` rounded
    *down* as the official code; a shorter window repeats its last frame (notebook 20)."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    half = int(window_s * fps) // 2
    lo = max(int(centre) - half, 0)
    hi = max(min(int(centre) + half, int(num_frames)), lo + 1)  # at least the centre frame
    if hi - lo <= n:
        return np.minimum(np.arange(lo, lo + n, dtype=np.int64), hi - 1)
    return lo + np.linspace(0, hi - lo - 1, n).astype(np.int64)


def window_frames_closed(centre: int, num_frames: int, fps: float, window_s: float = 10.0,
                         n: int = 10) -> np.ndarray:
    """VERA's window: ``n`` frames over the *closed* ``[centre - h, centre + h]``, ``h =
    round(window_s * fps / 2)``, clipped, linspace *rounded*; not LAVAD's frames."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    half = int(round(window_s * fps / 2))
    lo, hi = max(0, centre - half), min(num_frames - 1, centre + half)
    return np.linspace(lo, hi, n).round().astype(np.int64)


def resized(images: Sequence[np.ndarray], width: int, height: int) -> np.ndarray:
    """The one image of ``images`` resized as :func:`vadnb.video.read_frames` does (area), for
    ``Derived.of(resized, [frame], ...)``: a frame read at that size (VERA, notebook 70)."""
    import cv2

    (image,) = images
    if (image.shape[1], image.shape[0]) == (width, height):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def knn_softmax(queries: np.ndarray, keys: np.ndarray, values: np.ndarray, k: int,
                temperature: float = 1.0,
                block_elements: int = 1 << 23) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query, the ``softmax(sim / temperature)``-weighted mean of the values of its
    ``k`` most similar keys (inner product). Returns ``(refined, indices [Q, k], weights [Q,
    k])``, best first, ties to the lower index. LAVAD: t=1, k=10 (notebook 40); VERA: t=0.1,
    k=15 % (notebook 70). Float32 blocks of ``block_elements``: linear in the queries."""
    q = np.asarray(queries, dtype=np.float32)
    kx = np.asarray(keys, dtype=np.float32)
    v = np.asarray(values, dtype=np.float64).ravel()
    if q.ndim != 2 or kx.ndim != 2 or q.shape[1] != kx.shape[1]:
        raise ValueError(f"expected queries [Q, D] and keys [K, D], got {q.shape} and "
                         f"{kx.shape}")
    if kx.shape[0] != v.shape[0]:
        raise ValueError(f"{kx.shape[0]} keys but {v.shape[0]} values")
    if kx.shape[0] == 0:
        raise ValueError("no keys to retrieve from")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    k = int(min(max(k, 1), kx.shape[0]))
    idx, top = np.empty((len(q), k), dtype=np.int64), np.empty((len(q), k), dtype=np.float64)
    rows = max(1, int(block_elements) // max(1, kx.shape[0]))
    for start in range(0, len(q), rows):
        block = slice(start, start + rows)
        idx[block], top[block] = top_k(q[block] @ kx.T, k)  # float32 similarities [rows, K]
    w = _softmax(top / temperature, axis=1)
    return (w * v[idx]).sum(axis=1), idx, w


def top_k(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and (float64) values of each row's ``k`` largest, best first, ties to the lower
    column; only candidates are sorted."""
    n_rows, n_cols = sims.shape
    k = int(min(max(k, 1), n_cols))
    cand = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(sims, cand, axis=1).min(axis=1)
    # rows where ties at the k-th value straddle the cut: pick among them by index
    for r in np.flatnonzero((sims >= kth[:, None]).sum(axis=1) > k):
        cand[r] = np.argsort(-sims[r], kind="stable")[:k]
    vals = np.take_along_axis(sims, cand, axis=1)
    order = np.lexsort((cand, -vals), axis=1) if n_rows else cand
    cand = np.take_along_axis(cand, order, axis=1)
    return cand, np.take_along_axis(sims, cand, axis=1).astype(np.float64)


def gaussian_kernel(taps: int, sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian of ``taps`` samples (VERA: 15 taps, sigma 10)."""
    if taps < 1 or sigma <= 0:
        raise ValueError(f"need taps >= 1 and sigma > 0, got {taps}, {sigma}")
    x = np.arange(taps) - (taps - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def gaussian_smooth(scores: Sequence[float] | np.ndarray, sigma: float,
                    taps: int | None = None) -> np.ndarray:
    """Smooth scores with a normalised Gaussian of ``taps`` (default ``2*ceil(4*sigma)+1``),
    edges reflected."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(s) == 0:
        return s
    from scipy.ndimage import convolve1d

    taps = taps or 2 * math.ceil(4 * sigma) + 1
    # "reflect" mirrors the sequence about its ends (numpy's "symmetric"), at any length
    return convolve1d(s, gaussian_kernel(taps, sigma)[::-1], mode="reflect")


def interpolate_missing(values: Sequence[float | None]) -> tuple[np.ndarray, int]:
    """Fill missing (None/NaN) values linearly (ends: the nearest valid); all missing: 0.5.
    Returns ``(filled, number_missing)`` (notebook 30)."""
    a = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    bad = ~np.isfinite(a)
    n_bad = int(bad.sum())
    if n_bad == len(a):
        return np.full(len(a), 0.5), n_bad
    x = np.arange(len(a))
    a[bad] = np.interp(x[bad], x[~bad], a[~bad])
    return a, n_bad


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"


def parse_bracket_score(text: str) -> float | None:
    """LAVAD's score: the first bracket holding *one* number in [0, 1], else None. As the
    official parser, "[0, 0.1, ..., 1.0] I pick [0.7]" gives 0.7 and "[0.8, 0.2]" None;
    unlike it, "[ 0.3 ]" and "[.5]" are read and "[7]" is skipped (notebook 30)."""
    for m in re.finditer(r"\[\s*(" + _NUMBER + r")\s*\]", text or ""):
        v = float(m.group(1))
        if 0.0 <= v <= 1.0:
            return v
    return None


def parse_first_number(text: str, low: float = 0.0, high: float = 1.0) -> float | None:
    """The first number in [low, high] (AnyAnomaly's score; "80%" and "8/10" are 0.8)."""
    for m in re.finditer(r"(" + _NUMBER + r")\s*(%|/\s*(\d+(?:\.\d*)?))?", text or ""):
        denom = 100.0 if m.group(2) == "%" else float(m.group(3) or 1)
        value = float(m.group(1)) / denom if denom > 0 else math.nan
        if low <= value <= high:  # never for nan
            return value
    return None


def parse_binary_label(text: str, marker: str = "Output") -> int | None:
    """VERA's answer: the 0 or 1 after the last ``marker`` (e.g. "Output: 1"), else the last
    standalone 0/1 in the reply, else "yes"/"no"; None when nothing fits (notebook 70)."""
    t = text or ""
    idx = t.lower().rfind(marker.lower())
    after_marker = re.search(r"\b([01])\b", t[idx + len(marker):]) if idx >= 0 else None
    if after_marker:
        return int(after_marker.group(1))
    standalone = re.findall(r"(?<![\d.])([01])(?!\d|\.\d)", t)
    if standalone:
        return int(standalone[-1])
    m = re.match(r"^\W*(yes|no)\b", t.strip().lower())
    return None if m is None else int(m.group(1) == "yes")


@dataclass
class ParseLog:
    """Counts replies that gave no value and replies cut at ``max_new_tokens`` (parsed or not),
    so a too-small budget is not mistaken for a model that cannot follow the format."""

    total: int = 0
    failed: int = 0
    truncated: int = 0
    truncated_failed: int = 0
    examples: list[str] = field(default_factory=list)

    def record(self, reply: str, value: object, truncated: bool | None = None) -> object:
        """Count one reply; ``truncated`` defaults to the reply's own flag."""
        cut = bool(getattr(reply, "truncated", False)) if truncated is None else bool(truncated)
        self.total += 1
        self.truncated += cut
        if value is None:
            self.failed += 1
            self.truncated_failed += cut
            if len(self.examples) < 5:
                self.examples.append(str(reply)[:200])
        return value

    def summary(self) -> str:
        text = f"{self.failed} of {self.total} replies unparseable"
        if self.truncated:
            text += (f"; {self.truncated} cut at the token budget"
                     f" ({self.truncated_failed} of them unparseable)")
        return text


#: Every Config's rules: no coercion (an ``int`` field rejects 2.5, True and "3"; a ``float``
#: field takes an int), no nan or inf, field docstrings as pydantic descriptions.
CONFIG_RULES = ConfigDict(strict=True, allow_inf_nan=False, use_attribute_docstrings=True)


def _as_tuple(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError("must be a list or tuple, not one string (one item: ('...',))")
    return tuple(value) if isinstance(value, list) else value


#: Put in a tuple field's ``Annotated[...]``: the field also takes a list, never a bare
#: string (which would become a tuple of letters); its items stay strict.
SEQUENCE = BeforeValidator(_as_tuple)


#: Declare a method's Config: a standard dataclass that pydantic validates on every
#: construction (constraints in ``Annotated[int, Field(ge=1)]``, cross-field checks in a
#: ``@model_validator(mode="after")``); :func:`configure` words its errors.
config_dataclass = functools.partial(pydantic_dataclass, config=CONFIG_RULES)


def _model_id(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a model id (None for the profile's model), not empty text")
    return value


#: A model id or path: ``ModelId | None`` fields take None for the profile's default, and
#: never "" (which would silently pick the default, or reach the hub as an invalid id).
ModelId = Annotated[str, AfterValidator(_model_id)]


def configure(config_type: type[C], config: C | None, overrides: dict[str, Any],
              method: str) -> C:
    """``config`` (or the defaults) with ``overrides`` applied and every field re-checked.
    A misspelt setting lists the valid ones; a wrong type is a TypeError, a value out of range
    a ValueError, naming method and field (``LAVAD: Config.stride must be int, got 2.5``)."""
    known = {f.name for f in fields(config_type)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown {method} setting(s) {unknown}; Config fields are {sorted(known)}")
    try:
        return replace(config or config_type(), **overrides)
    except ValidationError as err:
        raise config_error(config_type, err, method) from None


#: pydantic error types meaning "right type, wrong value" (ValueError); others: a TypeError
_BOUND_WORDS = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}",
                "less_than_equal": "<= {le}", "finite_number": "a finite number",
                "too_short": "must hold at least {min_length} item(s)",
                "too_long": "must hold at most {max_length} item(s)",
                "string_too_short": "at least {min_length} character(s) long",
                "string_too_long": "at most {max_length} characters long",
                "value_error": "{error}"}


def config_error(config_type: type, err: ValidationError, method: str) -> Exception:
    """pydantic's first complaint about a Config as a TypeError or ValueError naming
    ``method`` and the field."""
    first = err.errors()[0]
    kind, loc, value = first["type"], first["loc"], first["input"]
    if not loc:  # a check between fields: its message names them
        return ValueError(f"{method}: {first['ctx']['error']}")
    name, item = str(loc[0]), len(loc) > 1
    hint = typing.get_type_hints(config_type)[name]
    fixed_tuple = typing.get_origin(hint) is tuple and Ellipsis not in typing.get_args(hint)
    if kind not in _BOUND_WORDS or (fixed_tuple and kind == "too_long"):
        return TypeError(f"{method}: Config.{name} must be {_type_name(hint)}, got "
                         f"{_shown(value)} ({type(value).__name__})")
    ctx = {k: _number(v) for k, v in first.get("ctx", {}).items()}
    rule = _BOUND_WORDS[kind].format(**ctx)
    if kind.endswith(("than", "equal")):
        rule = _interval(config_type, name, item) or rule
    if not rule.startswith("must"):
        rule = f"must be {rule}"
    where = f"every value of Config.{name}" if item else f"Config.{name}"
    return ValueError(f"{method}: {where} {rule}, got {_shown(value)}")


def _number(bound: Any) -> Any:
    """0.0 -> 0 (pydantic reports a float field's bound ``gt=0`` as 0.0)."""
    return int(bound) if isinstance(bound, float) and bound.is_integer() else bound


def _shown(value: Any) -> str:
    """A rejected value, short and with any credential (a served URL's password) masked."""
    if isinstance(value, str) and len(value) > 60:
        return f"{redact(value[:40])!r}... ({len(value)} characters)"
    return str(value) if isinstance(value, (int, float)) else redact(f"{value!r:.80}")


def _interval(config_type: type, name: str, item: bool) -> str | None:
    """``"in [16, 4096]"`` when the field (or each item) has a lower and an upper bound."""
    info = config_type.__pydantic_fields__[name]
    metadata = info.metadata
    if item:  # the bounds inside ``tuple[Annotated[int, Field(...)], ...]``
        inner = typing.get_args(info.annotation)[0]
        metadata = [m for f in getattr(inner, "__metadata__", ())
                    for m in getattr(f, "metadata", [f])]
    b = {k: _number(getattr(m, k)) for m in metadata for k in ("ge", "gt", "le", "lt")
         if hasattr(m, k)}
    lo = next((f"{bracket}{b[k]}" for k, bracket in (("ge", "["), ("gt", "(")) if k in b), None)
    hi = next((f"{b[k]}{bracket}" for k, bracket in (("le", "]"), ("lt", ")")) if k in b), None)
    return f"in {lo}, {hi}" if lo and hi else None


def _type_name(tp: Any) -> str:
    """``int``, ``str | None``, ``one of ['fast', 'exact']``, ``tuple[float, float, float]``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and not args:
        return tp.__name__
    return str(tp).replace("typing.", "")


@dataclass(frozen=True)
class Difference:
    """One way vadnb departs from a paper's official code (a method's ``DIFFERENCES``, shown
    by its notebook): ``effect`` on results; ``flag``: the Config setting restoring the paper's."""

    what: str
    why: str
    effect: str
    flag: str | None = None


def differences_markdown(differences: Sequence[Difference], title: str | None = None) -> str:
    """The differences as a Markdown table, every cell's ``|`` escaped and newlines
    flattened (one stray pipe would turn the table into a paragraph)."""
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")

    lines = [f"**{title}**", ""] if title else []
    lines += ["| what differs from the official code | why | effect | paper's variant |",
              "|---|---|---|---|"]
    for d in differences:
        flag = f"`{cell(d.flag)}`" if d.flag else "—"
        lines.append(f"| {cell(d.what)} | {cell(d.why)} | {cell(d.effect)} | {flag} |")
    return "\n".join(lines)

