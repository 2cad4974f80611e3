"""Measure every model role at its full real size on a CUDA card: peak memory, time, dtype.

No hub and no download: each role's model is built from its architecture's configuration
(written here from the models' published configs) with random weights, directly on the
card in the dtype vadnb would choose (:func:`vadnb.models.base.choose_dtype`), then run on
the default batch of the methods that use it (synthetic inputs of the real shapes:
prompt lengths, image sizes, new-token budgets). Random weights never end a reply early,
so every generation runs its whole token budget: the figures are upper bounds.

    python scripts/gpu_check.py                      # colab profile, every role (< 10 min on a T4)
    python scripts/gpu_check.py --profile paper --roles vlm llm
    python scripts/gpu_check.py --dry-run            # no GPU needed: configs and parameter counts
    python scripts/gpu_check.py --small --device cpu # the whole run path at tiny sizes, on a CPU

Status: written without access to a GPU and **not yet run on one**; the profile tables in
``vadnb/models/profiles.py`` therefore hold estimates. Whoever runs it on a card: paste
the printed table into that docstring in place of the estimates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# --------------------------------------------------------------------------- workloads

#: The default batch each role serves in the methods (what one call carries).
WORKLOADS = {
    "captioner": dict(batch=16, image=224, new_tokens=30, methods="LAVAD"),
    "llm": dict(batch=8, prompt=512, new_tokens=160, methods="LAVAD (summary budget)"),
    "vlm": dict(batch=4, images=3, image=448, prompt=400, new_tokens=256, methods="VERA"),
    "vlm-3b": dict(batch=4, images=1, image=448, prompt=300, new_tokens=50,
                   methods="AnyAnomaly"),
    "clip": dict(batch=64, methods="AnomalyCLIP"),
    "clip-b32": dict(batch=64, methods="AnyAnomaly"),
    "embedder": dict(batch=32, methods="LAVAD"),
    "text_embedder": dict(batch=64, methods="LAVAD"),
}


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


def build_open_clip(model_id: str, small: bool, device: str, dtype=None):
    import open_clip

    from vadnb.models.openclip import open_clip_names

    arch, _ = open_clip_names(model_id)
    if small:
        model = open_clip.CLIP(embed_dim=32, quick_gelu=True,
                               vision_cfg={"image_size": 64, "layers": 1, "width": 64,
                                           "patch_size": 32 if "B-32" in arch else 16},
                               text_cfg={"context_length": 77, "vocab_size": 49408,
                                         "width": 64, "heads": 2, "layers": 1})
    else:
        model = open_clip.create_model(arch, pretrained=None)
    return model.to(device=device, dtype=dtype).eval()


def build_imagebind(small: bool, device: str, dtype=None):
    from vadnb.models.imagebind import IMAGEBIND_HUGE, TINY_IMAGEBIND, import_imagebind

    ib = import_imagebind()
    return ib.ImageBindModel(**(TINY_IMAGEBIND if small else IMAGEBIND_HUGE)).to(
        device=device, dtype=dtype).eval()


def build(role: str, model_id: str, small: bool, device: str, dtype):
    if model_id in HF_BUILDERS:
        return build_hf(model_id, small, device, dtype)
    if model_id.endswith(":openai"):
        return build_open_clip(model_id, small, device, dtype)
    if model_id == "imagebind_huge":
        return build_imagebind(small, device, dtype)
    if role == "text_embedder":
        from vadnb.models.text import SentenceEmbedder

        return SentenceEmbedder(model_id, device=device, dtype=dtype)
    raise ValueError(f"gpu_check has no builder for {role}: {model_id}")


def count_params(role: str, model_id: str) -> int:
    """Parameters of the full-size model, counted on the meta device (no memory used)."""
    import torch

    if role == "text_embedder":
        return sum(p.numel() for p in build(role, model_id, False, "cpu", None).model.parameters())
    try:
        with torch.device("meta"):
            model = build(role, model_id, False, "meta", None)
    except Exception:  # noqa: BLE001 - an initialiser the meta device lacks: build for real
        model = build(role, model_id, False, "cpu", torch.float32)
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- running


def _gen_ids(batch: int, length: int, vocab: int, device: str):
    import torch

    return torch.randint(10, vocab - 10, (batch, length), device=device)


def run_role(role: str, model_id: str, model: Any, device: str, dtype, small: bool) -> None:
    """One call of the role's default batch (synthetic inputs of the real shapes)."""
    import torch

    work = WORKLOADS.get(role, WORKLOADS.get(role.split("-")[0], {}))
    b = work.get("batch", 1)
    with torch.inference_mode():
        if role == "text_embedder":
            model.encode(["a person walks across the campus at night"] * b)
        elif role.startswith("clip"):
            size = model.visual.image_size
            size = size[0] if isinstance(size, (tuple, list)) else size
            model.encode_image(torch.randn(b, 3, size, size, device=device, dtype=dtype))
            model.encode_text(torch.randint(1, 49000, (b, 77), device=device))
        elif role == "embedder":
            from vadnb.models.imagebind import import_imagebind

            mod = import_imagebind().ModalityType
            model({mod.VISION: torch.randn(b, 3, 224, 224, device=device, dtype=dtype)})
            model({mod.TEXT: torch.randint(1, 49000, (b, 77), device=device)})
        elif role == "llm":
            cfg = model.config
            ids = _gen_ids(b, _scale(small, work["prompt"], 32), cfg.vocab_size, device)
            n = _scale(small, work["new_tokens"], 4)
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                           min_new_tokens=n, do_sample=False, pad_token_id=0)
        elif role == "captioner":
            cfg = model.config
            n_img = cfg.num_query_tokens
            ids = torch.full((b, n_img + 1), cfg.image_token_index, device=device)
            ids[:, -1] = 2
            pixels = torch.randn(b, 3, 224, 224, device=device, dtype=dtype)
            n = _scale(small, work["new_tokens"], 4)
            model.generate(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids),
                           max_new_tokens=n, min_new_tokens=n, do_sample=False)
        elif role.startswith("vlm"):
            _run_vlm(model, work, device, dtype, small)
        else:
            raise ValueError(role)


def _run_vlm(model, work: dict[str, Any], device: str, dtype, small: bool) -> None:
    """Qwen2-VL / Qwen2.5-VL: ``images`` images of ``image`` px per request, plus text."""
    import torch

    cfg = model.config
    side = _scale(small, work["image"], 56)
    grid = side // 14  # patches per side
    per_image = (grid // 2) ** 2  # tokens after the 2x2 merge
    patch_dim = 3 * 2 * 14 * 14
    b, k = work["batch"], work["images"]
    text_len = _scale(small, work["prompt"], 16)
    rows = []
    for _ in range(b):
        row = []
        for _ in range(k):
            row += [cfg.vision_start_token_id] + [cfg.image_token_id] * per_image + [
                cfg.vision_end_token_id]
        row += torch.randint(10, 1000, (text_len,)).tolist()
        rows.append(row)
    ids = torch.tensor(rows, device=device)
    pixels = torch.randn(b * k * grid * grid, patch_dim, device=device, dtype=dtype)
    thw = torch.tensor([[1, grid, grid]] * (b * k), device=device)
    n = _scale(small, work["new_tokens"], 4)
    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                   image_grid_thw=thw, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                   pad_token_id=0)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="colab", choices=["colab", "paper"])
    p.add_argument("--roles", nargs="*", default=None, help="roles/variants (default: all)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dry-run", action="store_true",
                   help="no GPU: build the configs and count each model's parameters")
    p.add_argument("--small", action="store_true",
                   help="the same run at tiny sizes (to test the script on a CPU)")
    p.add_argument("--repeats", type=int, default=2, help="timed calls per role (after one warm-up)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    return p.parse_args(argv)


def roles_of(profile: str, wanted: list[str] | None) -> list[tuple[str, str]]:
    from vadnb.models.profiles import MODELS

    table = MODELS[profile]
    names = wanted or [r for r in table if not r.startswith("captioner-")]
    unknown = [r for r in names if r not in table]
    if unknown:
        raise SystemExit(f"unknown roles {unknown} for profile {profile!r}; known: {list(table)}")
    return [(r, table[r].model) for r in names]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    import torch

    from vadnb.models.base import choose_dtype
    from vadnb.models.profiles import MODELS

    rows: list[dict[str, Any]] = []
    roles = roles_of(args.profile, args.roles)
    if args.dry_run:
        for role, model_id in roles:
            n = count_params(role, model_id)
            rows.append({"role": role, "model": model_id, "params_b": round(n / 1e9, 3),
                         "table_params": MODELS[args.profile][role].params})
            print(f"{role:<14} {model_id:<40} {n / 1e9:7.3f} B (table: "
                  f"{MODELS[args.profile][role].params})")
    else:
        cuda = args.device.startswith("cuda")
        if cuda and not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU visible: run with --dry-run (configs only) or "
                             "--small --device cpu (the run path at tiny sizes)")
        name = torch.cuda.get_device_name(args.device) if cuda else "cpu"
        print(f"device: {name}; profile {args.profile}; {'small' if args.small else 'full'} sizes")
        for role, model_id in roles:
            spec = MODELS[args.profile][role]
            dtype, why = choose_dtype(args.device, None, model_id, spec.params_b)
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            model = build(role, model_id, args.small, args.device, dtype)
            built_s = time.perf_counter() - t0
            run_role(role, model_id, model, args.device, dtype, args.small)  # warm-up
            times = []
            for _ in range(max(1, args.repeats)):
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                run_role(role, model_id, model, args.device, dtype, args.small)
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            peak = torch.cuda.max_memory_allocated(args.device) / 1e9 if cuda else None
            row = {"role": role, "model": model_id, "dtype": str(dtype).replace("torch.", ""),
                   "why": why, "batch": WORKLOADS[role]["batch"],
                   "methods": WORKLOADS[role]["methods"], "build_s": round(built_s, 2),
                   "s_per_call": round(min(times), 3),
                   "peak_gb": None if peak is None else round(peak, 2),
                   "table_peak_gb_est": spec.peak_gb}
            rows.append(row)
            print(json.dumps(row))
            del model
            if cuda:
                torch.cuda.empty_cache()
        print("\nrole           dtype     batch  s/call  peak GB  (table estimate)")
        for r in rows:
            print(f"{r['role']:<14} {r['dtype']:<9} {r['batch']:>5}  {r['s_per_call']:>6}  "
                  f"{r['peak_gb']!s:>7}  ({r['table_peak_gb_est']})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
