"""Where a model's files come from: a local folder, the Hugging Face cache, or the hub.

:func:`require_available` runs before any real model loads, so a machine offline fails in a
second or two saying what to do, instead of hanging on a download.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


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

_PROBES: dict[tuple[str, int], tuple[float, bool]] = {}  # (host, port) -> (when, offline)
_PROBE_TTL_S = 60.0


def hub_endpoint() -> str:
    """The hub the downloads go to: ``$HF_ENDPOINT`` (a mirror) or https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").strip().rstrip("/")


def hub_offline(timeout: float = 2.0) -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is true, else when no TCP
    connection to :func:`hub_endpoint` opens within ``timeout`` s (an answer is remembered
    for a minute: a run offline pays the timeout once)."""
    import socket
    import time
    from urllib.parse import urlsplit

    if any((os.environ.get(var) or "").strip().lower() not in ("0", "", "false", "no", "off")
           for var in OFFLINE_VARIABLES):
        return True
    url = urlsplit(hub_endpoint())
    where = (url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443))
    now = time.monotonic()
    if where not in _PROBES or now - _PROBES[where][0] >= _PROBE_TTL_S:
        try:
            socket.create_connection(where, timeout=timeout).close()
            _PROBES[where] = (now, False)
        except OSError:
            _PROBES[where] = (now, True)
    return _PROBES[where][1]


def unavailable_message(role: str, model: str) -> str:
    return (f"The {role} model {model!r} is not available on this machine: it is not in the "
            "Hugging Face cache and the model hub cannot be reached (offline: "
            "HF_HUB_OFFLINE=1 or no internet).\nWhat to do:\n"
            "  - run with profile='tiny' (small random models: the code runs, the scores are "
            "meaningless), or\n"
            f"  - on a machine with internet, pre-fill the cache (`hf download {model}`) and "
            "copy ~/.cache/huggingface here, or\n"
            "  - pass model='/path/to/a/local/folder' holding the saved model.")


@contextlib.contextmanager
def offline_advice(role: str, model: str,
                   errors: tuple[type[BaseException], ...] = (OSError,)) -> Iterator[None]:
    """A load failure of a hub ``model`` while offline as :class:`ModelUnavailableError`."""
    try:
        yield
    except errors as err:
        if not is_local(model) and hub_offline():
            raise ModelUnavailableError(unavailable_message(role, model)) from err
        raise


def require_available(role: str, model: str) -> None:
    """Raise :class:`ModelUnavailableError` unless ``model`` is local, cached or reachable."""
    from huggingface_hub import try_to_load_from_cache

    if is_local(model):
        return
    try:
        hit = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id is simply "not cached"
        hit = None
    if not (isinstance(hit, str) and os.path.exists(hit)) and hub_offline():
        raise ModelUnavailableError(unavailable_message(role, model))


def build_folder(final: Path, build: Callable[[Path], None], note: str,
                 marker: str = "BUILT") -> Path:
    """``final``, made once by ``build(folder)`` in a temporary sibling renamed into place,
    ``marker`` last: a concurrent or interrupted build never looks complete."""
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
