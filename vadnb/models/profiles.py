"""Model profiles: which model plays each role (notebook 00 shows them, notebook 20 uses them).

- ``tiny``: small random-init models of the real architectures, built offline in seconds;
  their outputs are meaningless and every result computed with them says so.
- ``colab``: real models that fit a 16 GB T4 together with the pipeline.
- ``paper``: the models the papers used, for an A100.
- ``auto``: ``colab`` when CUDA is available and the Hugging Face hub is reachable, else
  ``tiny`` with a one-line banner saying why.

``$VADNB_PROFILE`` sets the default profile.
"""

from __future__ import annotations

import os

__all__ = ["PROFILES", "resolve_profile", "default_profile"]

PROFILES = ("tiny", "colab", "paper", "auto")


def default_profile() -> str:
    return os.environ.get("VADNB_PROFILE", "auto").strip().lower() or "auto"


def _hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_profile(profile: str | None = None, verbose: bool = True) -> str:
    """The concrete profile to use: ``profile`` or ``$VADNB_PROFILE``, with ``auto`` decided."""
    name = (profile or default_profile()).strip().lower()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {PROFILES} "
                         "(or set VADNB_PROFILE)")
    if name != "auto":
        return name
    import torch

    if not torch.cuda.is_available():
        why = "no CUDA GPU"
    elif not _hub_reachable():
        why = "the Hugging Face hub is not reachable (offline)"
    else:
        return "colab"
    if verbose:
        print(f"[vadnb] profile auto -> tiny: {why}; tiny models give meaningless scores.")
    return "tiny"
