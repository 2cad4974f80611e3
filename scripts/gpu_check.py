"""Will the ``colab`` profile run on this card (a T4), and how fast? One run answers.

For every role of a profile, on a CUDA card, in under ten minutes on a T4 and with no
download: the role's model is built at its full real size from its architecture's
configuration (written here from the published configs) with random weights, saved to a
local folder, and loaded back the way vadnb loads it (``from_pretrained`` with
``device_map`` for the transformers roles, :func:`vadnb.models.hf._load_weights`; open_clip's
mixed precision; ImageBind built on the meta device, :func:`vadnb.models.imagebind.build_from_state`),
in the dtype vadnb chooses for this card (:func:`vadnb.models.base.choose_dtype`). Then each
role runs its methods' real workload (batch, images per request and image size, prompt
length, new-token budget: :data:`WORKLOADS`). Random weights never end a reply early, so
every generation runs its whole budget: the times are upper bounds.

Recorded per role (and written as JSON): dtype and why, the attention implementation and
which fused SDPA kernels this card offers for that dtype, load time, seconds per call,
peak memory as the card sees it (the caching allocator's reserved peak plus the CUDA
context, which is what runs out on a 14.75 GiB T4), whether every output was finite
(no inf/NaN on the forward pass), and whether the role fits the card. The report also holds
the GPU's name, compute capability and memory, and the library versions.

Random weights check the mechanics (memory, speed, kernels), not the numerics of a trained
model: fp16 overflow is a property of trained weights. ``--real-weights`` (downloads the
profile's models, ~35 GB for colab) runs one real forward per role and checks it for
inf/NaN too; run it on Colab before trusting an fp16 role marked UNVERIFIED by
``vadnb.models.dtype_plan``.

    python scripts/gpu_check.py                      # colab profile, every role -> gpu_check.json
    python scripts/gpu_check.py --profile paper --roles vlm llm
    python scripts/gpu_check.py --real-weights --roles vlm-3b   # numerics of the real model
    python scripts/gpu_check.py --dry-run            # no GPU needed: the plan, parameter counts
    python scripts/gpu_check.py --dry-run --capability 7.5 --memory-gb 15.8   # a T4's plan
    python scripts/gpu_check.py --small --device cpu # the whole run path at tiny sizes, on a CPU

Status: written without access to a GPU and **not yet run on one** (labelled needs-GPU in
issue 24); the profile tables in ``vadnb/models/profiles.py`` therefore hold estimates.
Whoever runs it on a card: commit the JSON and paste the table into that docstring.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# --------------------------------------------------------------------------- workloads

#: What one call of each role carries in the methods (Config defaults; the backend's batch).
#: ``images`` per request at ``image`` pixels (the role's cap, vadnb.models.hf.ROLE_MAX_PIXELS).
WORKLOADS = {
    "captioner": dict(batch=16, image=(224, 224), new_tokens=30, methods="LAVAD"),
    "llm": dict(batch=8, prompt=256, new_tokens=256,
                methods="LAVAD (official: prompt + summary fill the 512-token context)"),
    "vlm": dict(batch=4, images=8, image=(448, 448), prompt=400, new_tokens=1024,
                methods="VERA (8 frames, 1024 new tokens)"),
    "vlm-3b": dict(batch=4, images=1, image=(854, 480), prompt=300, new_tokens=50,
                   methods="AnyAnomaly (856x480 cap)"),
    "clip": dict(batch=64, methods="AnomalyCLIP"),
    "clip-b32": dict(batch=64, methods="AnyAnomaly"),
    "embedder": dict(batch=32, methods="LAVAD, VERA"),
    "text_embedder": dict(batch=64, methods="none (optional [text] extra)"),
}

LIBRARIES = ("torch", "transformers", "accelerate", "open_clip_torch", "safetensors",
             "imagebind-unofficial", "numpy")


def _scale(small: bool, full: int, tiny: int) -> int:
    return tiny if small else full


# --------------------------------------------------------------------------- configs


def qwen25_text(small: bool) -> dict[str, Any]:
    """Qwen2.5-3B-Instruct's language model."""
    return dict(vocab_size=_scale(small, 151936, 1024), hidden_size=_scale(small, 2048, 64),
                intermediate_size=_scale(small, 11008, 128),
                num_hidden_layers=_scale(small, 36, 2), num_attention_heads=_scale(small, 16, 4),
                num_key_value_heads=2, max_position_embeddings=32768, tie_word_embeddings=True,
                rope_theta=1000000.0)


def qwen2_llm(small: bool):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM, Qwen2Config(**qwen25_text(small))


def llama2_13b(small: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM, LlamaConfig(
        vocab_size=_scale(small, 32000, 1024), hidden_size=_scale(small, 5120, 64),
        intermediate_size=_scale(small, 13824, 128), num_hidden_layers=_scale(small, 40, 2),
        num_attention_heads=_scale(small, 40, 4), num_key_value_heads=_scale(small, 40, 4),
        max_position_embeddings=4096)


def qwen25_vl_3b(small: bool):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = qwen25_text(small)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0,
                               "mrope_section": [16, 24, 24] if not small else [2, 3, 3]}
    text.pop("rope_theta")
    vision = dict(depth=_scale(small, 32, 1), hidden_size=_scale(small, 1280, 32),
                  intermediate_size=_scale(small, 3420, 64), num_heads=_scale(small, 16, 2),
                  out_hidden_size=text["hidden_size"], patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, window_size=112,
                  fullatt_block_indexes=[7, 15, 23, 31] if not small else [0])
    return Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=text["vocab_size"] - 3,
        vision_start_token_id=text["vocab_size"] - 2, vision_end_token_id=text["vocab_size"] - 1,
        tie_word_embeddings=True)


def qwen2_vl_7b(small: bool):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    vocab = _scale(small, 152064, 1024)
    hidden = _scale(small, 3584, 64)
    text = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=_scale(small, 18944, 128),
                num_hidden_layers=_scale(small, 28, 2), num_attention_heads=_scale(small, 28, 4),
                num_key_value_heads=_scale(small, 4, 2), max_position_embeddings=32768,
                tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                 "mrope_section": [16, 24, 24] if not small else [2, 3, 3]})
    vision = dict(depth=_scale(small, 32, 1), embed_dim=_scale(small, 1280, 32),
                  hidden_size=hidden, num_heads=_scale(small, 16, 2), mlp_ratio=4,
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    return Qwen2VLForConditionalGeneration, Qwen2VLConfig(
        text_config=text, vision_config=vision, image_token_id=vocab - 3,
        vision_start_token_id=vocab - 2, vision_end_token_id=vocab - 1,
        tie_word_embeddings=False)


def _blip2_vision(small: bool) -> dict[str, Any]:
    """BLIP-2's EVA ViT-g/14 image encoder."""
    return dict(hidden_size=_scale(small, 1408, 32), intermediate_size=_scale(small, 6144, 64),
                num_hidden_layers=_scale(small, 39, 1), num_attention_heads=_scale(small, 16, 2),
                image_size=224, patch_size=14, qkv_bias=True)


def _blip2_qformer(small: bool) -> dict[str, Any]:
    return dict(hidden_size=_scale(small, 768, 32), num_hidden_layers=_scale(small, 12, 1),
                num_attention_heads=_scale(small, 12, 2),
                intermediate_size=_scale(small, 3072, 64),
                encoder_hidden_size=_scale(small, 1408, 32), vocab_size=30522)


def blip2_opt_27b(small: bool):
    from transformers import Blip2Config, Blip2ForConditionalGeneration, OPTConfig

    vocab = _scale(small, 50272, 1024)
    text = OPTConfig(vocab_size=vocab + 1, hidden_size=_scale(small, 2560, 64),
                     ffn_dim=_scale(small, 10240, 128), num_hidden_layers=_scale(small, 32, 2),
                     num_attention_heads=_scale(small, 32, 4),
                     word_embed_proj_dim=_scale(small, 2560, 64), max_position_embeddings=2048)
    return Blip2ForConditionalGeneration, Blip2Config(
        vision_config=_blip2_vision(small), qformer_config=_blip2_qformer(small),
        text_config=text.to_dict(), num_query_tokens=32, image_token_index=vocab)


def blip2_flan_t5_xxl(small: bool):
    from transformers import Blip2Config, Blip2ForConditionalGeneration, T5Config

    vocab = _scale(small, 32128, 1024)
    text = T5Config(vocab_size=vocab + 1, d_model=_scale(small, 4096, 64),
                    d_ff=_scale(small, 10240, 128), num_layers=_scale(small, 24, 2),
                    num_decoder_layers=_scale(small, 24, 2), num_heads=_scale(small, 64, 4),
                    d_kv=_scale(small, 64, 16), feed_forward_proj="gated-gelu",
                    tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
                    eos_token_id=1)
    return Blip2ForConditionalGeneration, Blip2Config(
        vision_config=_blip2_vision(small), qformer_config=_blip2_qformer(small),
        text_config=text.to_dict(), num_query_tokens=32, image_token_index=vocab)


HF_BUILDERS = {
    "Qwen/Qwen2.5-3B-Instruct": qwen2_llm,
    "meta-llama/Llama-2-13b-chat-hf": llama2_13b,
    "Qwen/Qwen2.5-VL-3B-Instruct": qwen25_vl_3b,
    "Qwen/Qwen2-VL-7B-Instruct": qwen2_vl_7b,
    "Salesforce/blip2-opt-2.7b": blip2_opt_27b,
    "Salesforce/blip2-flan-t5-xxl": blip2_flan_t5_xxl,
}


# --------------------------------------------------------------------------- building


def build_hf(model_id: str, small: bool, device: str, dtype):
    """The model of ``model_id`` from its config, random weights, on ``device`` in ``dtype``."""
    import torch

    cls, cfg = HF_BUILDERS[model_id](small)
    with torch.device(device):
        model = cls._from_config(cfg, dtype=dtype)
    return model.eval()


def save_random_hf(model_id: str, small: bool, folder: Path, device: str, dtype) -> Path:
    """Random weights of ``model_id`` saved as a hub-format folder (config + safetensors).

    Built on ``device`` (fast) and saved in small shards, so host memory holds one shard at
    a time (Colab has 12.7 GB)."""
    model = build_hf(model_id, small, device, dtype)
    model.save_pretrained(folder, max_shard_size="2GB")
    del model
    _empty_cache(device)
    return folder


def load_hf_like_vadnb(role: str, folder: Path, device: str, dtype):
    """The saved folder loaded exactly as vadnb's backends load a hub id:
    ``from_pretrained(..., dtype=..., device_map=device)`` (:func:`vadnb.models.hf._load_weights`)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from vadnb.models.hf import _load_weights

    loader = AutoModelForCausalLM if role.split("-")[0] == "llm" else AutoModelForImageTextToText
    return _load_weights(loader, role, str(folder), device=device, dtype=dtype)


def build_open_clip(model_id: str, small: bool, device: str, dtype=None):
    """open_clip's model in vadnb's precision mode (:func:`vadnb.models.openclip.open_clip_precision`:
    fp16/bf16 weights, LayerNorm fp32); random weights (the 0.6 GB download changes nothing)."""
    import open_clip
    import torch

    from vadnb.models.openclip import open_clip_names, open_clip_precision

    arch, _ = open_clip_names(model_id)
    if small:
        model = open_clip.CLIP(embed_dim=32, quick_gelu=True,
                               vision_cfg={"image_size": 64, "layers": 1, "width": 64,
                                           "patch_size": 32 if "B-32" in arch else 16},
                               text_cfg={"context_length": 77, "vocab_size": 49408,
                                         "width": 64, "heads": 2, "layers": 1})
        return model.to(device=device, dtype=dtype or torch.float32).eval()
    return open_clip.create_model(arch, pretrained=None, device=device,
                                  precision=open_clip_precision(dtype)).eval()


def build_imagebind(small: bool, device: str, dtype=None, folder: Path | None = None):
    """ImageBind with random weights saved to ``folder`` and loaded by vadnb's embedder
    (meta-device build, checkpoint assigned, LayerNorm fp32); returns its ``nn.Module``."""
    import torch

    from vadnb.models.imagebind import (IMAGEBIND_HUGE, TINY_IMAGEBIND, ImageBindEmbedder,
                                        import_imagebind, save_imagebind)

    config = TINY_IMAGEBIND if small else IMAGEBIND_HUGE
    ib = import_imagebind()
    with torch.device(device if folder is not None else "cpu"):
        net = ib.ImageBindModel(**config)
    if folder is None:
        return net.to(device=device, dtype=dtype).eval()
    folder.mkdir(parents=True, exist_ok=True)
    save_imagebind(net, dict(config), folder)
    del net
    _empty_cache(device)
    return ImageBindEmbedder(str(folder), device=device, dtype=dtype).model


def build(role: str, model_id: str, small: bool, device: str, dtype, folder: Path | None = None):
    """The role's model on ``device`` in ``dtype``: through vadnb's real loading path when
    ``folder`` (a scratch folder for the random weights) is given, else built directly."""
    if model_id in HF_BUILDERS:
        if folder is None:
            return build_hf(model_id, small, device, dtype)
        if not (folder / "config.json").exists():
            save_random_hf(model_id, small, folder, device, dtype)
        return load_hf_like_vadnb(role, folder, device, dtype)
    if model_id.endswith(":openai"):
        return build_open_clip(model_id, small, device, dtype)
    if model_id == "imagebind_huge":
        return build_imagebind(small, device, dtype, folder)
    if role == "text_embedder":
        from vadnb.models.text import SentenceEmbedder

        return SentenceEmbedder(model_id, device=device, dtype=dtype)
    raise ValueError(f"gpu_check has no builder for {role}: {model_id}")


def count_params(role: str, model_id: str) -> int:
    """Parameters of the full-size model, counted on the meta device (no memory used)."""
    import torch

    if role == "text_embedder":
        return sum(p.numel() for p in build(role, model_id, False, "cpu", None).model.parameters())
    if model_id == "imagebind_huge":
        from accelerate import init_empty_weights

        from vadnb.models.imagebind import IMAGEBIND_HUGE, import_imagebind

        with init_empty_weights():
            model = import_imagebind().ImageBindModel(**IMAGEBIND_HUGE)
        return sum(p.numel() for p in model.parameters())
    try:
        with torch.device("meta"):
            model = build(role, model_id, False, "meta", None)
    except Exception:  # noqa: BLE001 - an initialiser the meta device lacks: build for real
        model = build(role, model_id, False, "cpu", torch.float32)
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- inputs and runs


def qwen_grid(width: int, height: int) -> tuple[int, int]:
    """Qwen2-VL's patch grid (rows, cols of 14 px patches) for an image of this size: each
    side rounded to a multiple of 28 (the 2x2 merge), as its processor's smart_resize does."""
    return max(1, round(height / 28)) * 2, max(1, round(width / 28)) * 2


def _workload(role: str) -> dict[str, Any]:
    return WORKLOADS.get(role, WORKLOADS.get(role.split("-")[0], {}))


def make_inputs(role: str, model: Any, device: str, dtype, small: bool) -> dict[str, Any]:
    """Synthetic inputs of the real shapes for one call of ``role`` (keyword arguments of
    the model's ``forward``/``generate``; for clip/embedder the tensors to encode)."""
    import torch

    work, b = _workload(role), _workload(role).get("batch", 1)
    base = role.split("-")[0]
    if base == "llm":
        vocab = model.config.vocab_size
        ids = torch.randint(10, vocab - 10, (b, _scale(small, work["prompt"], 32)), device=device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if base == "captioner":
        cfg = model.config
        ids = torch.full((b, cfg.num_query_tokens + 1), cfg.image_token_index, device=device)
        ids[:, -1] = 2
        side = 224
        return {"pixel_values": torch.randn(b, 3, side, side, device=device, dtype=dtype),
                "input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if base == "vlm":
        return _vlm_inputs(model, work, device, dtype, small)
    if base == "clip":
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        return {"image": torch.randn(b, 3, size, size, device=device, dtype=dtype),
                "text": torch.randint(1, 49000, (b, 77), device=device)}
    if base == "embedder":
        return {"image": torch.randn(b, 3, 224, 224, device=device, dtype=dtype),
                "text": torch.randint(1, 49000, (b, 77), device=device)}
    if base == "text_embedder":
        return {"texts": ["a person walks across the campus at night"] * b}
    raise ValueError(role)


def _vlm_inputs(model, work: dict[str, Any], device: str, dtype, small: bool) -> dict[str, Any]:
    """Qwen2-VL / Qwen2.5-VL: ``images`` images of ``image`` px per request, then text."""
    import torch

    cfg = model.config
    width, height = (56, 56) if small else work["image"]
    rows_, cols = qwen_grid(width, height)
    per_image = rows_ * cols // 4  # tokens after the 2x2 merge
    b, k = work["batch"], work["images"]
    text_len = _scale(small, work["prompt"], 16)
    image = ([cfg.vision_start_token_id] + [cfg.image_token_id] * per_image
             + [cfg.vision_end_token_id])
    ids = torch.tensor([image * k + torch.randint(10, 1000, (text_len,)).tolist()
                        for _ in range(b)], device=device)
    patch_dim = 3 * 2 * 14 * 14
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "pixel_values": torch.randn(b * k * rows_ * cols, patch_dim, device=device,
                                        dtype=dtype),
            "image_grid_thw": torch.tensor([[1, rows_, cols]] * (b * k), device=device)}


def run_role(role: str, model: Any, inputs: dict[str, Any], small: bool,
             new_tokens: int | None = None) -> list[Any]:
    """One call of the role's workload; returns the output tensors (for the finite check).
    Generative roles run ``generate`` for ``new_tokens`` (default: the workload's budget)."""
    import torch

    base = role.split("-")[0]
    work = _workload(role)
    with torch.inference_mode():
        if base == "text_embedder":
            return [torch.as_tensor(model.encode(inputs["texts"]))]
        if base == "clip":
            return [model.encode_image(inputs["image"]), model.encode_text(inputs["text"])]
        if base == "embedder":
            from vadnb.models.imagebind import import_imagebind

            mod = import_imagebind().ModalityType
            return [model({mod.VISION: inputs["image"]})[mod.VISION],
                    model({mod.TEXT: inputs["text"]})[mod.TEXT]]
        n = new_tokens or _scale(small, work["new_tokens"], 4)
        model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                       pad_token_id=0)
        return []


def forward_outputs(role: str, model: Any, inputs: dict[str, Any], small: bool) -> list[Any]:
    """The outputs whose values are checked for inf/NaN: one forward pass over the prompt
    (the last position's logits: an overflow anywhere upstream reaches them), or the
    embeddings of the encoder roles."""
    import torch

    base = role.split("-")[0]
    if base in ("llm", "vlm"):
        with torch.inference_mode():
            return [model(**inputs, logits_to_keep=1).logits]
    if base == "captioner":
        with torch.inference_mode():
            return [model(**inputs).logits]
    return run_role(role, model, inputs, small)


def all_finite(tensors: list[Any]) -> bool:
    """True when no tensor holds an inf or a NaN."""
    import torch

    return all(bool(torch.isfinite(t.float()).all()) for t in tensors)


# --------------------------------------------------------------------------- the card


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def card_report(device: str) -> dict[str, Any]:
    """GPU name, compute capability, memory, CUDA context size and library versions."""
    import torch

    report: dict[str, Any] = {"device": device, "versions": library_versions()}
    if not device.startswith("cuda"):
        return {**report, "gpu": "cpu"}
    props = torch.cuda.get_device_properties(device)
    report.update(gpu=torch.cuda.get_device_name(device),
                  capability=list(torch.cuda.get_device_capability(device)),
                  total_gb=round(props.total_memory / 1e9, 2),
                  cuda=torch.version.cuda, context_gb=round(cuda_context_gb(device), 3))
    return report


def cuda_context_gb(device: str) -> float:
    """Memory the CUDA context (and anything else outside torch's allocator) holds on the
    card: what ``max_memory_reserved`` never shows, yet is not available to the models."""
    import torch

    torch.zeros(1, device=device)  # make sure the context exists
    free, total = torch.cuda.mem_get_info(device)
    return (total - free - torch.cuda.memory_reserved(device)) / 1e9


def attention_report(model: Any, device: str, dtype) -> dict[str, Any]:
    """The attention implementation transformers chose, and which fused SDPA kernels this
    card offers for ``dtype`` (flash needs compute capability 8.0; on a T4 fp16 gets the
    memory-efficient kernel, emulated bf16 only the slow math path)."""
    import torch

    config = getattr(model, "config", None)
    impl = getattr(config, "_attn_implementation", None)
    out: dict[str, Any] = {"implementation": impl}
    if not str(device).startswith("cuda"):
        return out
    q = torch.zeros(1, 2, 16, 64, device=device, dtype=dtype)
    try:
        params = torch.backends.cuda.SDPAParams(q, q, q, None, 0.0, True, False)
        out["flash"] = bool(torch.backends.cuda.can_use_flash_attention(params, False))
        out["mem_efficient"] = bool(torch.backends.cuda.can_use_efficient_attention(params,
                                                                                    False))
    except (AttributeError, TypeError, RuntimeError) as err:  # the API moves between versions
        out["kernels"] = f"unknown ({type(err).__name__})"
    return out


def _empty_cache(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- plan


DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def roles_of(profile: str, wanted: list[str] | None) -> list[tuple[str, str]]:
    from vadnb.models.profiles import MODELS

    table = MODELS[profile]
    names = wanted or [r for r in table if not r.startswith("captioner-")]
    unknown = [r for r in names if r not in table]
    if unknown:
        raise SystemExit(f"unknown roles {unknown} for profile {profile!r}; known: {list(table)}")
    return [(r, table[r].model) for r in names]


def plan(profile: str, roles: list[tuple[str, str]], device: str = "cuda",
         capability: tuple[int, int] | None = None,
         memory_gb: float | None = None) -> list[dict[str, Any]]:
    """Per role: model, dtype and why (for this card, or the one described), workload, and
    the weights' size in that dtype. Nothing is built; runs without a GPU."""
    from vadnb.models.base import choose_dtype
    from vadnb.models.profiles import MODELS

    rows = []
    for role, model_id in roles:
        spec = MODELS[profile][role]
        dtype, why = choose_dtype(device, None, model_id, spec.params_b,
                                  capability=capability, memory_gb=memory_gb)
        name = str(dtype).replace("torch.", "")
        weights = None if spec.params_b is None else round(spec.params_b * DTYPE_BYTES[name], 2)
        rows.append({"role": role, "model": model_id, "dtype": name, "why": why,
                     "workload": dict(_workload(role)), "weights_gb": weights,
                     "table_peak_gb_est": spec.peak_gb})
    return rows


def verdict(rows: list[dict[str, Any]], total_gb: float | None) -> dict[str, Any]:
    """Whether every measured role fits the card (peak incl. the CUDA context) and gave
    finite outputs; the roles that do not."""
    too_big = [r["role"] for r in rows if total_gb is not None and r.get("peak_gb") is not None
               and r["peak_gb"] > total_gb]
    not_finite = [r["role"] for r in rows if r.get("finite") is False]
    failed = [r["role"] for r in rows if r.get("error")]
    return {"fits": not too_big and not failed, "too_big": too_big,
            "finite": not not_finite, "not_finite": not_finite, "failed": failed}


# --------------------------------------------------------------------------- measuring


def measure(role: str, model_id: str, row: dict[str, Any], args: argparse.Namespace,
            context_gb: float, folder: Path | None) -> dict[str, Any]:
    """Load the role as vadnb does, run its workload, and fill ``row`` with the figures."""
    import torch

    device, cuda = args.device, args.device.startswith("cuda")
    dtype = getattr(torch, row["dtype"])
    _empty_cache(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    model = build(role, model_id, args.small, device, dtype, folder)
    row["load_s"] = round(time.perf_counter() - t0, 2)
    inputs = make_inputs(role, model, device, dtype, args.small)
    row["finite"] = all_finite(forward_outputs(role, model, inputs, args.small))
    run_role(role, model, inputs, args.small, new_tokens=2)  # warm-up: kernels, caches
    times = []
    for _ in range(max(1, args.repeats)):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        run_role(role, model, inputs, args.small)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    row["s_per_call"] = round(min(times), 3)
    new = _workload(role).get("new_tokens")
    if new:
        n = _scale(args.small, new, 4) * _workload(role)["batch"]
        row["new_tokens_per_s"] = round(n / row["s_per_call"], 1)
    row["attention"] = attention_report(getattr(model, "model", model), device, dtype)
    if cuda:
        reserved = torch.cuda.max_memory_reserved(device) / 1e9
        row["peak_reserved_gb"] = round(reserved, 2)
        row["peak_gb"] = round(reserved + context_gb, 2)
        row["peak_allocated_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
    del model, inputs
    _empty_cache(device)
    return row


def real_check(role: str, profile: str, device: str) -> dict[str, Any]:
    """The role's real model (downloaded), one real request: are its logits finite, and what
    does it say? For the numerics of trained weights (fp16 overflow), which random weights
    cannot show."""
    import numpy as np
    import torch

    from vadnb import models

    backend = models.load(role, profile=profile, device=device)
    x = np.linspace(0, 255, 448, dtype=np.uint8)
    image = np.dstack([np.tile(x, (336, 1)), np.tile(x[:336, None], (1, 448)),
                       np.full((336, 448), 90, np.uint8)])
    out: dict[str, Any] = {"model": backend.name, "dtype": str(backend.dtype)}
    base = role.split("-")[0]
    gen = dict(max_new_tokens=12, do_sample=False, output_logits=True,
               return_dict_in_generate=True)
    with torch.inference_mode():
        if base == "llm":
            enc = backend.tokenizer([backend.prompt("Say one sentence about a quiet street.")],
                                    return_tensors="pt", add_special_tokens=False).to(device)
            res = backend.model.generate(**enc, **gen, pad_token_id=backend.tokenizer.pad_token_id)
        elif base in ("vlm", "captioner"):
            from PIL import Image

            pil = Image.fromarray(image)
            if base == "vlm":
                enc = backend.processor(text=[backend.prompt(1, "What is in this image?")],
                                        images=[[pil]], return_tensors="pt").to(device)
            else:
                enc = backend.processor(images=[pil], return_tensors="pt").to(device)
            for key in ("pixel_values",):
                if key in enc:
                    enc[key] = enc[key].to(backend.dtype)
            res = backend.model.generate(**enc, **gen)
        else:
            emb = (backend.encode_image([image]) if hasattr(backend, "encode_image")
                   else backend.encode(["a quiet street"]))
            out["finite"] = bool(np.isfinite(emb).all())
            backend.release()
            return out
    out["finite"] = all_finite(list(res.logits))
    tokenizer = getattr(backend, "tokenizer", None) or backend.processor.tokenizer
    new = res.sequences[:, enc["input_ids"].shape[1]:] if base != "captioner" else res.sequences
    out["reply"] = tokenizer.batch_decode(new, skip_special_tokens=True)[0][:120]
    backend.release()
    return out


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="colab", choices=["colab", "paper"])
    p.add_argument("--roles", nargs="*", default=None, help="roles/variants (default: all)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dry-run", action="store_true",
                   help="no GPU: the dtype plan and each model's parameter count")
    p.add_argument("--capability", default=None,
                   help="with --dry-run: plan for this compute capability, e.g. 7.5 (T4)")
    p.add_argument("--memory-gb", type=float, default=None,
                   help="with --capability: the card's memory in GB (default 15.8, a T4)")
    p.add_argument("--small", action="store_true",
                   help="the same run at tiny sizes (to test the script on a CPU)")
    p.add_argument("--real-weights", action="store_true",
                   help="download the profile's real models and check one real forward each")
    p.add_argument("--repeats", type=int, default=1, help="timed calls per role (after a warm-up)")
    p.add_argument("--json", type=Path, default=Path("gpu_check.json"),
                   help="where the report goes (default gpu_check.json)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="scratch folder for the random weights (default: a temporary folder)")
    return p.parse_args(argv)


def _capability(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    major, _, minor = str(text).partition(".")
    return int(major), int(minor or 0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the check; print a table; write and return the report."""
    args = parse_args(argv)
    import torch

    roles = roles_of(args.profile, args.roles)
    cuda = args.device.startswith("cuda")
    if args.dry_run:
        cap = _capability(args.capability) or ((7, 5) if not torch.cuda.is_available() else None)
        memory = args.memory_gb or (15.8 if cap and not torch.cuda.is_available() else None)
        rows = plan(args.profile, roles, "cuda" if cap or torch.cuda.is_available() else "cpu",
                    cap, memory)
        for row in rows:
            row["params_b"] = round(count_params(row["role"], row["model"]) / 1e9, 3)
            print(f"{row['role']:<14} {row['model']:<40} {row['params_b']:7.3f} B  "
                  f"{row['dtype']:<9} {row['why']}")
        report = {"profile": args.profile, "dry_run": True,
                  "card": {"capability": list(cap) if cap else None, "total_gb": memory},
                  "rows": rows}
        args.json.write_text(json.dumps(report, indent=2))
        return report
    if cuda and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: run with --dry-run (the plan only) or "
                         "--small --device cpu (the run path at tiny sizes)")
    card = card_report(args.device)
    print(f"device: {card['gpu']}; profile {args.profile}; "
          f"{'small' if args.small else 'full'} sizes; {json.dumps(card['versions'])}")
    rows = plan(args.profile, roles, args.device)
    if args.real_weights:
        for row in rows:
            try:
                row["real"] = real_check(row["role"], args.profile, args.device)
                row["finite"] = row["real"]["finite"]
            except Exception as err:  # noqa: BLE001 - reported per role, the others go on
                row["error"] = f"{type(err).__name__}: {err}"[:300]
            print(json.dumps(row, default=str))
            _empty_cache(args.device)
    else:
        work = args.work_dir or Path(tempfile.mkdtemp(prefix="gpu_check_"))
        folders: dict[str, Path] = {}
        for i, row in enumerate(rows):
            model_id = row["model"]
            folder = folders.setdefault(model_id, work / model_id.replace("/", "--").replace(":", "-"))
            try:
                measure(row["role"], model_id, row, args, card.get("context_gb", 0.0), folder)
            except Exception as err:  # noqa: BLE001 - an OOM or a missing class: say which role
                row["error"] = f"{type(err).__name__}: {err}"[:300]
                _empty_cache(args.device)
            if all(r["model"] != model_id for r in rows[i + 1:]) and folder.exists():
                import shutil

                shutil.rmtree(folder, ignore_errors=True)  # the disk holds one model at a time
            print(json.dumps(row, default=str))
    report = {"profile": args.profile, "small": args.small, "real_weights": args.real_weights,
              "card": card, "rows": rows, "verdict": verdict(rows, card.get("total_gb"))}
    print_table(report)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print(f"report: {args.json}")
    return report


def print_table(report: dict[str, Any]) -> None:
    print("\nrole           dtype     batch  s/call  peak GB  finite  (table estimate)")
    for r in report["rows"]:
        peak = r.get("peak_gb")
        print(f"{r['role']:<14} {r['dtype']:<9} {r['workload'].get('batch', ''):>5}  "
              f"{r.get('s_per_call', '-')!s:>6}  {peak!s:>7}  {r.get('finite')!s:>6}  "
              f"({r['table_peak_gb_est']}){'  ERROR ' + r['error'] if r.get('error') else ''}")
    print(f"verdict: {json.dumps(report['verdict'])}")


if __name__ == "__main__":
    main()
