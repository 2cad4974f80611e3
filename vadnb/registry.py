"""Each method declares itself once (:func:`register`, at the end of its module); every table
of the suite reads the declarations. A method is a module with a ``Config`` and a ``run(video,
*, config, profile, backends, cache, **overrides) -> Detection``. The built-ins are known by
module name without importing them (they pull in torch)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Method", "register", "protocol", "unregister", "get", "names", "module_of",
           "methods", "view", "BUILTIN"]

#: The suite's methods: name -> the module whose import registers it.
BUILTIN: dict[str, str] = {"lavad": "vadnb.lavad", "anomalyclip": "vadnb.anomalyclip",
                           "vera": "vadnb.vera", "anyanomaly": "vadnb.anyanomaly",
                           "classical": "vadnb.baseline", "flashback": "vadnb.flashback"}

#: One row of a cost model: (role, kind of call, calls per minute of video, formula).
CostRow = tuple[str, str, float, str]


@dataclass(frozen=True)
class Method:
    """What the suite needs to know about one method. roles: backends key -> the profile-table
    entry that plays it. cost: ``cost(fps, **options) -> [CostRow]`` per minute of video;
    cost_variants: other names -> options for ``cost``. keep_loaded: False where stages load
    one role at a time across videos (LAVAD). latency_s: a causal method's delay before a
    frame's final score (None: it needs the whole video).
    """

    name: str
    config: type
    run: Callable[..., Any]
    roles: Mapping[str, str] = field(default_factory=dict)
    cost: Callable[..., list[CostRow]] | None = None
    cost_variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pipeline: Mapping[str, Any] | None = None
    reference: Any = None
    protocols: Sequence[Mapping[str, Any]] = ()
    keep_loaded: bool = True
    latency_s: float | None = None


_modules: dict[str, str] = dict(BUILTIN)
_methods: dict[str, Method] = {}


def register(name: str, *, config: type, run: Callable[..., Any],
             roles: Mapping[str, str] | None = None, title: str = "",
             stages: Sequence[tuple[str, str, str, str]] | None = None,
             paper: tuple[str, str, str, str, str] | None = None, **declaration: Any) -> Method:
    """Declare a method (at the end of its module). ``title`` and ``stages`` make its
    ``pipeline``; ``paper`` is ``(title, authors, venue, arXiv id, code)``; other keywords
    are :class:`Method` fields."""
    if not name or not name.isidentifier():
        raise ValueError(f"a method name must be a Python identifier, got {name!r}")
    if stages is not None:
        declaration["pipeline"] = {"title": title, "stages": list(stages)}
    if paper is not None:
        from .lesson import Reference  # the lessons read the registry: imported on use

        declaration["reference"] = Reference(name, *paper)
    method = Method(name, config, run, dict(roles or {}), **declaration)
    _modules[name] = run.__module__
    _methods[name] = method
    return method


def protocol(benchmark: str, split: str, metric: str, reported: float | None, load: str, *,
             ap_variant: str = "—", class_metrics: str = "—") -> dict[str, Any]:
    """One row of :func:`vadnb.data.protocol_table`: how the paper evaluated on ``benchmark``,
    what it reported and the loader call that reproduces the split."""
    return dict(benchmark=benchmark, split=split, metric=metric, ap_variant=ap_variant,
                class_metrics=class_metrics, reported=reported, load=load)


def unregister(name: str) -> None:
    """Forget a method registered at run time (tests); built-ins cannot be removed."""
    if name in BUILTIN:
        raise ValueError(f"{name!r} is a built-in method and stays registered")
    _modules.pop(name, None)
    _methods.pop(name, None)


def names() -> list[str]:
    """Every registered method's name (built-ins first), without importing any."""
    return list(_modules)


def module_of(name: str) -> str:
    """The module that provides ``name``'s ``run`` and ``Config``."""
    if name not in _modules:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(_modules)}")
    return _modules[name]


def get(name: str) -> Method:
    """The declaration of ``name`` (importing its module the first time)."""
    if name not in _methods:
        importlib.import_module(module_of(name))
    if name not in _methods:
        raise RuntimeError(f"module {module_of(name)} does not register method {name!r}: end it "
                           f"with vadnb.registry.register({name!r}, ...)")
    return _methods[name]


def methods() -> list[Method]:
    return [get(n) for n in names()]


class view(Mapping):  # a class called like a function: reading it imports the methods
    """A live, read-only ``{method: value(declaration)}`` mapping (a method registered later
    appears); methods whose value is None are left out."""

    def __init__(self, value: Callable[[Method], Any]):
        self._value = value

    def _items(self) -> dict[str, Any]:
        return {m.name: v for m in methods() if (v := self._value(m)) is not None}

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def __repr__(self) -> str:
        return repr(self._items())


MODULES: Mapping[str, str] = MappingProxyType(_modules)  # live; imports no method
