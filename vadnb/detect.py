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

from . import models, registry
from .models.served import redact
from .result import SAVED_FILES, TINY_WARNING, Detection
from .stages import configure
from .video import VideoError, probe

__all__ = ["Detection", "detect", "METHODS", "TINY_WARNING", "SAVED_FILES"]

METHODS = registry.MODULES  # method -> module of its run(video, ...) -> Detection (live)


def detect(video: str | os.PathLike, method: str = "lavad", profile: str | None = None, *,
           timeout_s: float | None = None, max_retries: int | None = None,
           api_key: str | None = None, **overrides: Any) -> Detection:
    """Score every frame of ``video`` with ``method``.

    ``profile``: "tiny", "colab", "paper", "auto" (default ``$VADNB_PROFILE``). Other keywords
    are the method's Config fields (``prompts=[...]``, ``checkpoint=...``) or ``backends={"llm":
    my_llm}``; ``timeout_s``, ``max_retries``, ``api_key`` go to served models
    (``llm_model="openai:<name>@<url>"``). Method, video (probed: cached, so the method's probe
    is free) and settings are checked before any model loads.
    """
    where = registry.module_of(method)  # an unknown method is an error, before the video is read
    if not isinstance(video, (str, os.PathLike)):
        raise TypeError(f"detect() needs a video path (str or pathlib.Path, a file or a folder "
                        f"of frames), got {type(video).__name__} {video!r:.80}")
    if "://" in os.fspath(video):
        raise VideoError(f"{redact(os.fspath(video))!r} is a URL; vadnb reads local files only: "
                         "download the video first and pass its path")
    path = Path(os.fspath(video)).expanduser()
    if not path.exists():
        raise VideoError(f"video not found: {path} (check the path; relative paths are "
                         f"resolved from {Path.cwd()})")
    try:
        probe(path)
    except OSError as err:  # (a VideoError is a ValueError: it passes as it is)
        kind = "folder" if path.is_dir() else "file"
        raise VideoError(f"{path} cannot be read as a video ({kind}): {type(err).__name__}: "
                         f"{err}; pass a video file or a folder of frames") from err
    module = importlib.import_module(where)
    run_args = {name for name, p in inspect.signature(module.run).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}  # config, backends, cache, ...
    fields = {k: v for k, v in overrides.items() if k not in run_args}
    config = getattr(module, "Config", None)
    if config is not None:  # unknown or absurd settings fail here, before any model loads
        configure(config, overrides.get("config"), fields, method)
    options = {k: v for k, v in (("timeout_s", timeout_s), ("max_retries", max_retries),
                                 ("api_key", api_key)) if v is not None}
    built: dict[str, Any] = {}
    if options:  # built here: the served models among the settings (<role>_model="openai:...")
        served = {k[: -len("_model")]: v for k, v in fields.items()
                  if k.endswith("_model") and str(v or "").startswith("openai:")}
        if not served:
            raise ValueError(f"{', '.join(sorted(options))} apply to served models only: give "
                             "one as e.g. llm_model='openai:<name>@<base url>' or vlm_model=...")
        given = dict(overrides.get("backends") or {})
        built = {role: models.load(role, model=spec, **options)
                 for role, spec in served.items() if role not in given}
        overrides["backends"] = {**built, **given}
    try:
        return module.run(video, profile=profile, **overrides)
    finally:
        for backend in built.values():
            backend.release()
