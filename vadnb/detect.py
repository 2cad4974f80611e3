"""One call for any method on any video: ``vadnb.detect(path, method=...) -> Detection``.

Every method returns the same :class:`Detection`, so metrics, plots, the explorer widget
and the comparison notebook treat them alike.
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path
from typing import Any

from . import registry
from .models.served import SERVED_OPTIONS, redact
from .result import SAVED_FILES, TINY_WARNING, Detection

__all__ = ["Detection", "detect", "METHODS", "TINY_WARNING", "SAVED_FILES"]

# method name -> module that provides run(video, ...) -> Detection (read from the registry,
# so a method registered later is found too)
METHODS = registry.MODULES


def check_video_input(video: Any) -> Path:
    """``video`` as a Path, after checking it is a local video file or frame folder.

    Raises a clear error (before any model is loaded) for ``None``, a number, a URL, a
    missing path, an empty file, or a folder or file that :func:`vadnb.video.probe` cannot
    read as a video. The probe is cached where the methods look for it (the default cache),
    so the method's own probe is then free.
    """
    from .video import VideoError, probe

    if video is None:
        raise TypeError("detect() needs a video: a file path (str or pathlib.Path) or a "
                        "folder of frames, got None")
    if not isinstance(video, (str, os.PathLike)):
        raise TypeError(f"detect() needs a video path (str or pathlib.Path), got "
                        f"{type(video).__name__} {video!r:.80}")
    text = os.fspath(video)
    if "://" in text:
        raise VideoError(f"{redact(text)!r} is a URL; vadnb reads local files only: download "
                         "the video first and pass its path")
    path = Path(text).expanduser()
    if not path.exists():
        raise VideoError(f"video not found: {path} (check the path; relative paths are "
                         f"resolved from {Path.cwd()})")
    try:
        probe(path)
    except VideoError:
        raise
    except OSError as err:
        kind = "folder" if path.is_dir() else "file"
        raise VideoError(f"{path} cannot be read as a video ({kind}): {type(err).__name__}: "
                         f"{err}; pass a video file or a folder of frames") from err
    return path


def _served_backends(method: str, overrides: dict[str, Any],
                     options: dict[str, Any]) -> dict[str, Any]:
    """Backends for the served models among ``overrides`` (``<role>_model="openai:..."``),
    built with ``options`` (timeout_s, max_retries, api_key...)."""
    from . import models

    served = {name[: -len("_model")]: value for name, value in overrides.items()
              if name.endswith("_model") and str(value or "").startswith("openai:")}
    if not served:
        raise ValueError(f"{', '.join(sorted(options))} apply to served models only: give one "
                         f"as e.g. llm_model='openai:<name>@<base url>' or vlm_model=...")
    return {role: models.load(role, model=spec, **options) for role, spec in served.items()}


def detect(video: str | os.PathLike, method: str = "lavad", profile: str | None = None, *,
           timeout_s: float | None = None, max_retries: int | None = None,
           api_key: str | None = None, **overrides: Any) -> Detection:
    """Score every frame of ``video`` with ``method``.

    ``profile`` picks the models ("tiny", "colab", "paper", "auto"; default from
    ``$VADNB_PROFILE``). Other keyword arguments override the method's Config fields
    (e.g. ``prompts=[...]`` for AnyAnomaly, ``checkpoint=...`` for AnomalyCLIP) or pass
    ``backends={"llm": my_llm}`` to use models you built yourself. ``timeout_s``,
    ``max_retries`` and ``api_key`` go to served models (``llm_model="openai:<name>@<url>"``,
    see :mod:`vadnb.models.served`).

    The video and every setting are checked before any model is loaded.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    check_video_input(video)
    module = importlib.import_module(METHODS[method])
    from .stages import configure

    run_args = {name for name, p in inspect.signature(module.run).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}  # config, backends, cache, ...
    fields = {k: v for k, v in overrides.items() if k not in run_args}
    config = getattr(module, "Config", None)
    if config is not None:  # unknown or absurd settings fail here, before any model loads
        configure(config, overrides.get("config"), fields, method)
    options = {k: v for k, v in (("timeout_s", timeout_s), ("max_retries", max_retries),
                                 ("api_key", api_key)) if v is not None}
    assert set(options) <= set(SERVED_OPTIONS)
    built: dict[str, Any] = {}
    if options:
        given = dict(overrides.get("backends") or {})
        built = {k: b for k, b in _served_backends(method, fields, options).items()
                 if k not in given}
        overrides["backends"] = {**built, **given}
    try:
        return module.run(video, profile=profile, **overrides)
    finally:
        for backend in built.values():
            backend.release()
