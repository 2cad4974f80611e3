"""Where a model's files come from: a local folder, the Hugging Face cache, or the hub.

:func:`require_available` runs before any real model is loaded, so a machine without the
internet fails in a second or two with a message saying what to do, instead of hanging on
a download or failing deep inside a library.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["ModelUnavailableError", "is_local", "hub_offline", "hub_reachable", "hub_endpoint",
           "in_hf_cache", "require_available", "unavailable_message", "offline_advice",
           "build_folder"]


class ModelUnavailableError(RuntimeError):
    """A real model was asked for but its files are neither local nor downloadable."""


def is_local(model: str) -> bool:
    """True when ``model`` names an existing local folder or file."""
    try:
        return Path(model).expanduser().exists()
    except (OSError, ValueError):
        return False


#: Environment variables that mean "do not contact the hub" (huggingface_hub, transformers).
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
DEFAULT_ENDPOINT = "https://huggingface.co"

_PROBES: dict[tuple[str, int], tuple[float, bool]] = {}
_PROBE_TTL_S = 60.0


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("0", "", "false", "no", "off")


def hub_endpoint() -> str:
    """The hub the downloads go to: ``$HF_ENDPOINT`` (a mirror) or https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when a TCP connection to the hub endpoint's host opens within ``timeout`` s.

    The endpoint is :func:`hub_endpoint` (so a mirror set with ``HF_ENDPOINT`` is the one
    probed); the answer is remembered for a minute, so a run offline pays the timeout once.
    """
    import socket
    import time
    from urllib.parse import urlsplit

    url = urlsplit(hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    now = time.monotonic()
    seen = _PROBES.get((host, port))
    if seen is not None and now - seen[0] < _PROBE_TTL_S:
        return seen[1]
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        ok = True
    except OSError:
        ok = False
    _PROBES[(host, port)] = (now, ok)
    return ok


def hub_offline() -> bool:
    """True when the Hugging Face hub must not (or cannot) be contacted.

    Offline when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set to a true value
    (nothing is probed then), else when the endpoint (``HF_ENDPOINT``, default
    huggingface.co) does not answer.
    """
    if any(_truthy(os.environ.get(var)) for var in OFFLINE_VARIABLES):
        return True
    return not hub_reachable(timeout=2.0)


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


@contextlib.contextmanager
def offline_advice(role: str, model: str,
                   errors: tuple[type[BaseException], ...] = (OSError,)) -> Iterator[None]:
    """Turn a library's load failure of a hub ``model`` into :class:`ModelUnavailableError`
    (saying what to do) when the hub cannot be reached; other failures pass unchanged."""
    try:
        yield
    except errors as err:
        if not is_local(model) and hub_offline():
            raise ModelUnavailableError(unavailable_message(role, model)) from err
        raise


def require_available(role: str, model: str, filename: str = "config.json") -> None:
    """Raise :class:`ModelUnavailableError` unless ``model`` can be loaded now.

    A local folder, a cached hub repo, or a reachable hub are fine; anything else fails fast.
    """
    if is_local(model) or in_hf_cache(model, filename):
        return
    if hub_offline():
        raise ModelUnavailableError(unavailable_message(role, model))


def build_folder(final: Path, build: Callable[[Path], None], note: str,
                 marker: str = "BUILT") -> Path:
    """``final``, made once by ``build(folder)`` (tiny models, converted downloads).

    Built in a temporary sibling folder and renamed into place, ``marker`` written last, so
    a concurrent or interrupted build never leaves a half-written folder that looks
    complete; a folder without its marker is rebuilt.
    """
    if (final / marker).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        (tmp / marker).write_text(note)
        if not (final / marker).exists():  # else another process finished first: keep theirs
            if final.exists():  # an unfinished earlier build: replace it
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.replace(tmp, final)
            except OSError:  # another process finished first: use theirs
                if not (final / marker).exists():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
