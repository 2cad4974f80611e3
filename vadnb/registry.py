"""Each method declares itself once; ``detect``, ``compare``, ``scale``, ``plots``, ``lesson``
and ``data.protocols`` read the declarations.

A method is a module with a ``Config`` and a ``run(video, *, config, profile, backends, cache,
**overrides) -> Detection``, ending with one :func:`register` call::

    register("lavad", config=Config, run=run, roles={"captioner": "captioner", ...},
             cost=_cost, title="...", stages=[...], paper=("title", ...),
             protocols=[protocol("UCF-Crime", "test (290)", "frame AUC", 80.28, "load...")])

The built-in methods are known by module name without importing them (their modules pull in
torch); a declaration is read when a table needs it. Adding a method is one module (or
folder) and one declaration: import it, and every table lists it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Method", "register", "protocol", "unregister", "get", "names", "module_of",
           "methods", "view", "BUILTIN"]

#: The suite's methods: name -> the module whose import registers it.
BUILTIN: dict[str, str] = {
    "lavad": "vadnb.lavad",
    "anomalyclip": "vadnb.anomalyclip",
    "vera": "vadnb.vera",
    "anyanomaly": "vadnb.anyanomaly",
    "classical": "vadnb.baseline",
    "flashback": "vadnb.flashback",
}

#: One row of a cost model: (role, kind of call, calls per minute of video, formula).
CostRow = tuple[str, str, float, str]


@dataclass(frozen=True)
class Method:
    """What the suite needs to know about one method.

    roles: role a pipeline uses -> the profile-table entry that plays it (``{"clip":
        "clip-b32"}``); empty for a model-free method.
    cost: ``cost(fps, **options) -> [CostRow]``: model calls per minute of video with the
        Config defaults (options: ``captioners``, ``keywords``, or a variant's own).
    cost_variants: other names the cost table accepts -> options for ``cost``
        (``{"lavad-published": {"published": True}}``).
    pipeline: the diagram :func:`vadnb.plots.pipeline` draws: ``{"title": ..., "stages":
        [(stage, who, output, kind), ...]}``.
    reference: the paper (:class:`vadnb.lesson.Reference`); protocols: rows of
        :func:`vadnb.data.protocol_table` (``method`` is filled in).
    keep_loaded: a caller scoring many clips loads the roles once and keeps them (False
        for LAVAD, whose stages load one role at a time across videos).
    latency_s: for a causal method, the video seconds between a frame's arrival and its
        final score (the groundwork for a live mode); None for a method that needs the
        whole video before it scores any frame.
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

    @property
    def module(self) -> str:
        return self.run.__module__


_modules: dict[str, str] = dict(BUILTIN)
_methods: dict[str, Method] = {}


def register(name: str, *, config: type, run: Callable[..., Any],
             roles: Mapping[str, str] | None = None, title: str = "",
             stages: Sequence[tuple[str, str, str, str]] | None = None,
             paper: tuple[str, str, str, str, str] | None = None, **declaration: Any) -> Method:
    """Declare a method (at the end of its module); returns the declaration.

    ``title`` and ``stages`` make its ``pipeline`` diagram; ``paper`` is ``(title, authors,
    venue, arXiv id, code)``, its :class:`vadnb.lesson.Reference`; other keywords are
    :class:`Method` fields."""
    if not name or not name.isidentifier():
        raise ValueError(f"a method name must be a Python identifier, got {name!r}")
    if stages is not None:
        declaration["pipeline"] = {"title": title, "stages": list(stages)}
    if paper is not None:
        from .lesson import Reference  # the lessons read the registry: imported on use

        declaration["reference"] = Reference(name, *paper)
    method = Method(name, config, run, dict(roles or {}), **declaration)
    _modules[name] = method.module
    _methods[name] = method
    return method


def protocol(benchmark: str, split: str, metric: str, reported: float | None, load: str, *,
             ap_variant: str = "—", class_metrics: str = "—") -> dict[str, Any]:
    """One row of :func:`vadnb.data.protocol_table`: how the paper evaluated the method on
    ``benchmark``, the number it reported and the loader call that reproduces the split."""
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
    module = module_of(name)
    if name not in _methods:
        importlib.import_module(module)
        if name not in _methods:
            raise RuntimeError(f"module {module} does not register method {name!r}: end it "
                               f"with vadnb.registry.register({name!r}, ...)")
    return _methods[name]


def methods() -> list[Method]:
    return [get(n) for n in names()]


class _View(Mapping):
    """A read-only ``{method: value}`` table computed from the declarations on each read
    (so a method registered later appears in it); methods whose value is None are left out."""

    def __init__(self, value: Callable[[Method], Any], doc: str = ""):
        self._value = value
        self.__doc__ = doc

    def _items(self) -> dict[str, Any]:
        out = {}
        for m in methods():
            v = self._value(m)
            if v is not None:
                out[m.name] = v
        return out

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def __repr__(self) -> str:
        return repr(self._items())


class _Modules(Mapping):
    """``{method: module name}``, read without importing any method."""

    def __getitem__(self, key: str) -> str:
        return _modules[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(_modules))

    def __len__(self) -> int:
        return len(_modules)

    def __repr__(self) -> str:
        return repr(dict(_modules))


def view(value: Callable[[Method], Any], doc: str = "") -> Mapping[str, Any]:
    """A live ``{method name: value(declaration)}`` mapping for a table that reads the registry."""
    return _View(value, doc)


MODULES: Mapping[str, str] = _Modules()
