"""Steps that several methods share (each docstring names the notebook that teaches it).

Centre frames and windows (LAVAD, VERA), nearest-neighbour retrieval with softmax weights
(LAVAD's refinement, VERA's retrieval ensemble), Gaussian smoothing (VERA, AnyAnomaly) and
robust parsing of model replies (all of them).
"""

from __future__ import annotations

import math
import re
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

C = TypeVar("C")

import numpy as np

__all__ = [
    "centre_frames",
    "window_indices",
    "window_frames_closed",
    "window_frames_half_open",
    "knn_softmax",
    "top_k",
    "gaussian_kernel",
    "gaussian_smooth",
    "interpolate_missing",
    "parse_bracket_score",
    "parse_first_number",
    "parse_binary_label",
    "ParseLog",
    "configure",
    "check_field",
    "check_range",
    "Difference",
    "differences_markdown",
]


def centre_frames(num_frames: int, stride: int = 16) -> np.ndarray:
    """Frames 0, stride, 2*stride, ... below ``num_frames``: one scored position each.

    LAVAD and VERA score every 16th frame of the video at its native rate (notebook 20).
    """
    if num_frames <= 0:
        raise ValueError(f"video has {num_frames} frames; nothing to score")
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    return np.arange(0, num_frames, stride, dtype=np.int64)


def window_frames_half_open(centre: int, num_frames: int, fps: float, window_s: float = 10.0,
                            n: int = 10) -> np.ndarray:
    """LAVAD's window: ``n`` of the frames ``[centre - W//2, centre + W//2)``, ``W =
    int(window_s * fps)``, clipped (not shifted) at the video's ends, taken at
    ``linspace(0, len - 1, n)`` rounded *down*, as the official code picks them. A window
    shorter than ``n`` frames gives all its frames, the last repeated to fill ``n``
    (notebook 20). In seconds, so the same stretch of time at any rate: 300 frames at 30 fps.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    half = int(window_s * fps) // 2
    lo = max(int(centre) - half, 0)
    hi = max(min(int(centre) + half, int(num_frames)), lo + 1)  # at least the centre frame
    length = hi - lo
    if length <= n:
        picked = np.arange(lo, hi, dtype=np.int64)
        return np.concatenate([picked, np.full(n - length, hi - 1, dtype=np.int64)])
    return lo + np.linspace(0, length - 1, n).astype(np.int64)


def window_frames_closed(centre: int, num_frames: int, fps: float, window_s: float = 10.0,
                         n: int = 10) -> np.ndarray:
    """``n`` frames spread evenly over the *closed* window ``[centre - h, centre + h]``,
    ``h = round(window_s * fps / 2)``, clipped to the video (not shifted), linspace
    *rounded* to the nearest frame (VERA's current sampling). Not LAVAD's window
    (:func:`window_frames_half_open`): the two give different frames for one centre.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    half = int(round(window_s * fps / 2))
    lo = max(0, centre - half)
    hi = min(num_frames - 1, centre + half)
    return np.linspace(lo, hi, n).round().astype(np.int64)


#: The name VERA imports today; it is :func:`window_frames_closed`.
window_indices = window_frames_closed


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def knn_softmax(queries: np.ndarray, keys: np.ndarray, values: np.ndarray, k: int,
                temperature: float = 1.0,
                block_elements: int = 1 << 23) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query, the softmax-weighted mean of the values of its ``k`` most similar keys.

    Similarity is the inner product (cosine for L2-normalised rows); weights are
    ``softmax(sim / temperature)`` over the k neighbours. Returns ``(refined, neighbour
    indices [Q, k], weights [Q, k])``, neighbours best first (ties: lower key index first).
    LAVAD's refinement uses temperature 1 and k=10 (notebook 40); VERA's ensemble uses
    temperature 0.1 and k = 15 % of segments (notebook 70).

    Cost stays linear in the number of queries: similarities are computed in float32 by
    blocks of queries (at most ``block_elements`` similarities at a time) and the k best of
    each row are *selected* (``argpartition``), never the whole row sorted.
    """
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
    idx = np.empty((len(q), k), dtype=np.int64)
    top = np.empty((len(q), k), dtype=np.float64)
    rows = max(1, int(block_elements) // max(1, kx.shape[0]))
    for start in range(0, len(q), rows):
        sims = q[start: start + rows] @ kx.T  # float32 [b, K]
        i, t = top_k(sims, k)
        idx[start: start + rows], top[start: start + rows] = i, t
    w = _softmax(top / temperature, axis=1)
    return (w * v[idx]).sum(axis=1), idx, w


def top_k(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest entries of each row, best first.

    Ties are broken by the lower column index, exactly as a stable sort of ``-sims`` would,
    but only the candidates are sorted (``argpartition``): O(rows x columns), not
    O(rows x columns x log columns). Values come back as float64.
    """
    n_rows, n_cols = sims.shape
    k = int(min(max(k, 1), n_cols))
    if k < n_cols:
        cand = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(sims, cand, axis=1).min(axis=1)
        # rows where ties at the k-th value straddle the cut: pick among them by index
        tied = np.flatnonzero((sims >= kth[:, None]).sum(axis=1) > k)
        for r in tied:
            cand[r] = np.argsort(-sims[r], kind="stable")[:k]
    else:
        cand = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols)).copy()
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
    """Smooth a score sequence with a normalised Gaussian, edges padded by reflection.

    ``taps`` defaults to the usual 4-sigma support (``2*ceil(4*sigma)+1``); VERA passes 15.
    The padding keeps the output the same length and unbiased at the ends.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(s) == 0:
        return s
    from scipy.ndimage import convolve1d

    taps = taps or 2 * math.ceil(4 * sigma) + 1
    # "reflect" mirrors the sequence about its ends (numpy's "symmetric"), at any length
    return convolve1d(s, gaussian_kernel(taps, sigma)[::-1], mode="reflect")


def interpolate_missing(values: Sequence[float | None]) -> tuple[np.ndarray, int]:
    """Fill missing (None/NaN) values linearly from their valid neighbours.

    Ends take the nearest valid value. Returns ``(filled, number_missing)``; if every value
    is missing, all become 0.5 (no information) and the count says so (notebook 30).
    """
    a = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    bad = ~np.isfinite(a)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return a, 0
    if n_bad == len(a):
        return np.full(len(a), 0.5), n_bad
    x = np.arange(len(a))
    a[bad] = np.interp(x[bad], x[~bad], a[~bad])
    return a, n_bad


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"


def parse_bracket_score(text: str) -> float | None:
    """LAVAD's score format: the first bracket holding *one* number ``[x]``, x in [0, 1];
    None when there is none.

    As the official parser, a bracket with several values is not an answer: "From
    [0, 0.1, ..., 1.0] I pick [0.7]" gives 0.7 (the echoed candidate list is skipped), and
    "[0.8, 0.2]" alone gives None. Unlike it, spaces ("[ 0.3 ]") and a bare decimal point
    ("[.5]") are read, and values outside [0, 1] ("[7]") are skipped instead of kept as
    scores (notebook 30).
    """
    for m in re.finditer(r"\[\s*(" + _NUMBER + r")\s*\]", text or ""):
        v = float(m.group(1))
        if 0.0 <= v <= 1.0:
            return v
    return None


def parse_first_number(text: str, low: float = 0.0, high: float = 1.0) -> float | None:
    """The first number in ``text`` that lies in [low, high] (AnyAnomaly's score), else None.

    Percent values ("80%") are read as fractions; "8/10" as 0.8 (notebook 60).
    """
    for m in re.finditer(r"(" + _NUMBER + r")\s*(%|/\s*(\d+(?:\.\d*)?))?", text or ""):
        v = float(m.group(1))
        if m.group(2) == "%":
            v /= 100.0
        elif m.group(3):
            denom = float(m.group(3))
            if denom <= 0:
                continue
            v /= denom
        if low <= v <= high:
            return v
    return None


def parse_binary_label(text: str, marker: str = "Output") -> int | None:
    """VERA's answer: the 0 or 1 after the last ``marker`` (e.g. "Output: 1"), else the last
    standalone 0/1 in the reply, else "yes"/"no"; None when nothing fits (notebook 70)."""
    t = text or ""
    idx = t.lower().rfind(marker.lower())
    if idx >= 0:
        m = re.search(r"\b([01])\b", t[idx + len(marker):])
        if m:
            return int(m.group(1))
    ms = re.findall(r"(?<![\d.])([01])(?!\d|\.\d)", t)
    if ms:
        return int(ms[-1])
    low = t.strip().lower()
    if re.match(r"^\W*yes\b", low):
        return 1
    if re.match(r"^\W*no\b", low):
        return 0
    return None


@dataclass
class ParseLog:
    """Counts replies that could not be parsed, and replies cut at the token budget.

    ``failed`` counts replies that gave no value; ``truncated`` counts replies that hit
    ``max_new_tokens`` before the model ended its turn (see :class:`vadnb.models.base.Reply`),
    whether or not a value could still be read from them: a method that needs the end of
    a reply (a score after a preamble) shows both, so a too-small budget is not mistaken
    for a model that cannot follow the format. ``truncated_failed`` counts the overlap.
    """

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


def configure(config_type: type[C], config: C | None, overrides: dict[str, Any],
              method: str) -> C:
    """``config`` (or the defaults) with keyword ``overrides`` applied, every field checked.

    A misspelt setting is an error that lists the valid ones, never silently ignored. Each
    field's value must match its annotation (an ``int`` field rejects 2.5 and True, a
    ``float`` field rejects nan and inf, a ``bool`` field takes only True/False, a
    ``Literal`` only its choices) and lie in its range from the method module's ``LIMITS``
    dict (field -> ``"> 0"``, ``">= 1"``, ``"[0, 1)"``, ...). The message names the method
    and the field, e.g. ``LAVAD: Config.stride must be an int, got 2.5 (float)``.
    """
    known = {f.name for f in fields(config_type)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown {method} setting(s) {unknown}; Config fields are "
                        f"{sorted(known)}")
    hints = _field_types(config_type)
    # scalar fields are checked before the dataclass sees them (its __post_init__ may
    # round or compare them); every field is checked again on the finished Config
    for name, value in overrides.items():
        if _is_scalar_type(hints[name]):
            check_field(method, name, value, hints[name])
    try:
        cfg = replace(config or config_type(), **overrides)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{method}: invalid Config: {err}") from err
    limits = getattr(sys.modules.get(config_type.__module__), "LIMITS", {}) or {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        check_field(method, f.name, value, hints[f.name])
        if f.name in limits and value is not None:
            check_range(method, f.name, value, limits[f.name])
    return cfg


def _field_types(config_type: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(config_type)


def _is_scalar_type(tp: Any) -> bool:
    import typing

    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return all(_is_scalar_type(a) for a in args)
    return tp in (int, float, bool, str) or typing.get_origin(tp) is typing.Literal


def _type_name(tp: Any) -> str:
    import typing

    if typing.get_origin(tp) is typing.Literal:
        return f"one of {list(typing.get_args(tp))}"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> bool:
    """Does ``value`` fit annotation ``tp``? (int/float/bool/str, Optional, Literal,
    list[X], tuple[X, ...], tuple[X, Y], dict; anything else is accepted.)"""
    import numbers
    import typing

    if tp is Any:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if tp is bool:
        return isinstance(value, (bool, np.bool_))
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if tp is float:
        return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
                and math.isfinite(float(value)))
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
        inner = args[0] if args else Any
        return all(_matches(v, inner) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def check_field(method: str, name: str, value: Any, tp: Any) -> None:
    """Raise a TypeError/ValueError naming ``method`` and ``Config.<name>`` unless
    ``value`` fits annotation ``tp`` (nan and inf never fit a float)."""
    if _matches(value, tp):
        return
    import numbers

    if isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and not math.isfinite(float(value)) and _matches(1.0, tp):
        raise ValueError(f"{method}: Config.{name} must be a finite number, got {value}")
    raise TypeError(f"{method}: Config.{name} must be {_type_name(tp)}, got {value!r:.80} "
                    f"({type(value).__name__})")


_BOUND = re.compile(r"^\s*(>=|<=|>|<)\s*(" + _NUMBER + r")\s*$")
_INTERVAL = re.compile(r"^\s*([\[(])\s*(" + _NUMBER + r")\s*,\s*(" + _NUMBER + r")\s*([\])])\s*$")


def check_range(method: str, name: str, value: Any, rule: str) -> None:
    """Raise a ValueError unless ``value`` (a number, or each number of a list/tuple) obeys
    ``rule``: ``"> 0"``, ``">= 1"``, ``"< 1"``, ``"<= 10"`` or an interval ``"[0, 1)"``."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, bool):
            continue
        if not _obeys(float(v), rule):
            what = f"every value of Config.{name}" if values is value else f"Config.{name}"
            rule_text = f"in {rule.strip()}" if _INTERVAL.match(rule) else rule.strip()
            raise ValueError(f"{method}: {what} must be {rule_text}, got {v}")


def _obeys(v: float, rule: str) -> bool:
    m = _BOUND.match(rule)
    if m:
        op, bound = m.group(1), float(m.group(2))
        return {">": v > bound, ">=": v >= bound, "<": v < bound, "<=": v <= bound}[op]
    m = _INTERVAL.match(rule)
    if not m:
        raise ValueError(f"bad range rule {rule!r} (use '> 0', '>= 1' or '[0, 1)')")
    lo, hi = float(m.group(2)), float(m.group(3))
    return ((lo <= v) if m.group(1) == "[" else (lo < v)) and \
        ((v <= hi) if m.group(4) == "]" else (v < hi))


@dataclass(frozen=True)
class Difference:
    """One way vadnb departs from a paper's official code: what, why, and its effect.

    Each method module keeps one list of these (``DIFFERENCES``); its notebook renders it
    with :func:`differences_markdown`, so the lesson and the code never disagree.
    ``effect`` says what changes in the results (measured, or "not measured" / "none:
    identical output"); ``flag`` names the Config setting that restores the paper's
    behaviour, when there is one.
    """

    what: str
    why: str
    effect: str
    flag: str | None = None


def differences_markdown(differences: Sequence[Difference], title: str | None = None) -> str:
    """The differences as a Markdown table (for ``IPython.display.Markdown``)."""
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [f"**{title}**", ""] if title else []
    lines += ["| what differs from the official code | why | effect | paper's variant |",
              "|---|---|---|---|"]
    for d in differences:
        flag = f"`{d.flag}`" if d.flag else "—"
        lines.append(f"| {cell(d.what)} | {cell(d.why)} | {cell(d.effect)} | {flag} |")
    return "\n".join(lines)

