"""Where a model's files come from: a local folder, the Hugging Face cache, or the hub.

:func:`require_available` runs before any real model is loaded, so a machine without the
internet fails in a second or two with a message saying what to do, instead of hanging on
a download or failing deep inside a library.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ModelUnavailableError", "is_local", "hub_offline", "in_hf_cache", "require_available",
           "unavailable_message"]


class ModelUnavailableError(RuntimeError):
    """A real model was asked for but its files are neither local nor downloadable."""


def is_local(model: str) -> bool:
    """True when ``model`` names an existing local folder or file."""
    try:
        return Path(model).expanduser().exists()
    except (OSError, ValueError):
        return False


def hub_offline() -> bool:
    """True when the Hugging Face hub must not (or cannot) be contacted."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "0").strip().lower() not in ("0", "", "false", "no"):
            return True
    from .profiles import _hub_reachable

    return not _hub_reachable(timeout=2.0)


def in_hf_cache(repo_id: str, filename: str = "config.json") -> bool:
    """True when ``filename`` of ``repo_id`` is already in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, filename)
    except Exception:  # noqa: BLE001 - a malformed id is simply "not cached"
        return False
    return isinstance(hit, str) and os.path.exists(hit)


def unavailable_message(role: str, model: str, where: str = "the Hugging Face cache") -> str:
    return (
        f"The {role} model {model!r} is not available on this machine: it is not in {where} "
        "and the model hub cannot be reached (offline: HF_HUB_OFFLINE=1 or no internet).\n"
        "What to do:\n"
        "  - run with profile='tiny' (small random models: the code runs, the scores are "
        "meaningless), or\n"
        f"  - on a machine with internet, pre-fill the cache (`hf download {model}`) and copy "
        "~/.cache/huggingface here, or\n"
        "  - pass model='/path/to/a/local/folder' holding the saved model."
    )


def require_available(role: str, model: str, filename: str = "config.json") -> None:
    """Raise :class:`ModelUnavailableError` unless ``model`` can be loaded now.

    A local folder, a cached hub repo, or a reachable hub are fine; anything else fails fast.
    """
    if is_local(model) or in_hf_cache(model, filename):
        return
    if hub_offline():
        raise ModelUnavailableError(unavailable_message(role, model))
