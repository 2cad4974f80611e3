"""Tiny random-init models of the real architectures, built offline in seconds on a CPU.

Each builder makes the real profile's architecture, tiny and random (``meaningless=True``),
with its tokenizer built offline (a small BPE trained here for Hugging Face models), and
saves it with the library's own code to ``<cache_dir>/models/tiny/v<N>/<name>/``, ``BUILT``
marker last; the backends load that folder through the same code as a hub id.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cache import cache_dir
from .hub import build_folder

MARKER = "BUILT"
#: Bumped whenever a builder changes: folders and backend names carry it, so stage caches
#: computed with older tiny models are not reused.
TINY_VERSION = 5
SEED = 0

# The tiny tokenizers' corpus: words the pipelines use, so the trained merges are plausible.
_WORDS = (
    "a person is walking running riding a bicycle car street road park people crowd man woman "
    "child dog fighting falling fire smoke explosion robbery stealing vandalism accident normal "
    "abnormal anomaly anomalous event scene video frame camera surveillance security the of in "
    "on at with and is are was were there no yes score rate how likely from 0 to 1 0.0 0.5 1.0 "
    "describe image caption summary of the following descriptions please answer only with a "
    "number between brackets [ ] ( ) , . : ? ! ' \" - user assistant system you are a police "
    "investigator suspicious activity question what happening does this contain shop store "
    "building night day light dark inside outside standing sitting holding bag throws hits "
    "kicks pushes chases"
).split()


def _corpus() -> list[str]:
    """Deterministic pseudo-sentences built from ``_WORDS``."""
    import random

    rng = random.Random(SEED)
    return [" ".join(_WORDS)] + [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14)))
                                 for _ in range(400)]


def _byte_symbol(byte: int) -> str:
    """The symbol a byte-level BPE writes for ``byte`` (e.g. space -> ``Ġ``, newline -> ``Ċ``)."""
    from tokenizers import pre_tokenizers

    level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return level.pre_tokenize_str(chr(byte))[0][0]


def train_bpe(vocab_size: int = 600) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """``(vocab, merges)`` of a byte-level BPE over printable ASCII plus newline (a random
    model's control bytes broke contact sheets and tables, issue 25)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = [_byte_symbol(b) for b in [*range(32, 127), ord("\n")]]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=alphabet)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    state = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return dict(state["vocab"]), merges


# A ChatML template (Qwen's format); content is a string or a list of text/image/video parts.
CHATML_TEMPLATE = (
    "{%- for m in messages -%}"
    "{{ '<|im_start|>' + m['role'] + '\\n' }}"
    "{%- if m['content'] is string -%}{{ m['content'] }}"
    "{%- else -%}{%- for part in m['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' -%}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- else -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_NEVER = [t for t in QWEN_SPECIALS if t != "<|im_end|>"]  # end of turn stays allowed


def _qwen_tokenizer():
    """Qwen's own tokenizer class over the small BPE, with ChatML and vision tokens."""
    from transformers import Qwen2Tokenizer

    vocab, merges = train_bpe()
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS[1:]})
    tok.add_tokens(["<|endoftext|>"], special_tokens=True)
    tok.chat_template = CHATML_TEMPLATE
    return tok


#: A random model tends to end its turn at once: tiny chat models say a few tokens first.
MIN_NEW_TOKENS = 6


def _generation(tok, never: list[str], **settings: Any):
    """Greedy, at least ``MIN_NEW_TOKENS``, never ``never`` (special tokens) or a newline."""
    from transformers import GenerationConfig

    suppress = [tok.convert_tokens_to_ids(t) for t in [*never, _byte_symbol(ord("\n"))]]
    return GenerationConfig(do_sample=False, suppress_tokens=suppress,
                            min_new_tokens=MIN_NEW_TOKENS, **settings)


#: The language model of the tiny LLM and VLM: 2 Qwen2 layers, 64 wide.
_QWEN_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                  initializer_range=0.5, bos_token_id=None)


def tiny_dir(name: str) -> Path:
    return cache_dir() / "models" / "tiny" / f"v{TINY_VERSION}" / name


def ensure_tiny(name: str) -> Path:
    """The folder of tiny model ``name``, built once."""
    if name not in TINY_BUILDERS:
        raise KeyError(f"no tiny model {name!r}; known: {sorted(TINY_BUILDERS)}")

    def build(out: Path) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            TINY_BUILDERS[name](out)

    return build_folder(tiny_dir(name), build, "built by vadnb.models.tiny\n", MARKER)


def _build_clip(out: Path, patch_size: int = 16) -> None:
    """An open_clip CLIP at tiny widths, 64-px images, open_clip's 49,408-token BPE, QuickGELU."""
    import open_clip
    from safetensors.torch import save_file

    image_size = 64
    model_cfg = {
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": image_size, "layers": 2, "width": 64, "head_width": 32,
                       "patch_size": patch_size},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                     "layers": 2},
    }
    model = open_clip.CLIP(**model_cfg)
    preprocess_cfg = {"size": image_size, "mean": list(open_clip.OPENAI_DATASET_MEAN),
                      "std": list(open_clip.OPENAI_DATASET_STD), "interpolation": "bicubic",
                      "resize_mode": "shortest"}
    (out / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))


def _build_llm(out: Path) -> None:
    """A 2-layer Qwen2 causal LM (the Qwen2.5-Instruct architecture) with a ChatML template."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = _qwen_tokenizer()
    cfg = Qwen2Config(vocab_size=len(tok), max_position_embeddings=2048, **_QWEN_TEXT,
                      eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                      pad_token_id=tok.pad_token_id)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = _generation(tok, QWEN_NEVER, eos_token_id=cfg.eos_token_id,
                                          pad_token_id=cfg.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _build_vlm(out: Path) -> None:
    """A Qwen2.5-VL (1 vision block, 2 text layers), images capped at 112x112 (16 tokens)."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tok = _qwen_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = dict(vocab_size=len(tok), max_position_embeddings=4096, **_QWEN_TEXT,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [2, 3, 3]},
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                  out_hidden_size=64, fullatt_block_indexes=[0])
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision,
                           image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                           vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    model.generation_config = _generation(tok, QWEN_NEVER, eos_token_id=ids["<|im_end|>"],
                                          pad_token_id=ids["<|endoftext|>"])
    pixels = {"min_pixels": 56 * 56, "max_pixels": 112 * 112}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
        tokenizer=tok, chat_template=CHATML_TEMPLATE)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def _build_captioner(out: Path) -> None:
    """A BLIP-2 (ViT + Q-Former + OPT decoder), 4 query tokens, 64-pixel images."""
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor,
                              BlipImageProcessor, GPT2Tokenizer, OPTConfig)

    vocab, merges = train_bpe()
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, unk_token="</s>", bos_token="</s>",
                        eos_token="</s>", pad_token="<pad>")
    tok.add_special_tokens({"pad_token": "<pad>", "bos_token": "</s>", "eos_token": "</s>"})
    processor = Blip2Processor(image_processor=BlipImageProcessor(
        size={"height": 64, "width": 64}), tokenizer=tok, num_query_tokens=4)
    image_token_id = tok.convert_tokens_to_ids("<image>")
    text = OPTConfig(vocab_size=len(tok), hidden_size=64, ffn_dim=128, num_hidden_layers=2,
                     num_attention_heads=4, word_embed_proj_dim=64, max_position_embeddings=512,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id)
    cfg = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=64, patch_size=16),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=2, encoder_hidden_size=32, vocab_size=len(tok)),
        text_config=text.to_dict(), num_query_tokens=4, image_token_index=image_token_id)
    model = Blip2ForConditionalGeneration(cfg)
    model.generation_config = _generation(
        tok, ["<pad>", "<image>"], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, max_new_tokens=20)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def _build_embedder(out: Path) -> None:
    """ImageBind's own ``ImageBindModel`` class with every modality at tiny widths."""
    from .imagebind import TINY_IMAGEBIND, import_imagebind, save_imagebind

    ib = import_imagebind()
    save_imagebind(ib.ImageBindModel(**TINY_IMAGEBIND), dict(TINY_IMAGEBIND), out)


TINY_BUILDERS: dict[str, Callable[[Path], None]] = {
    "embedder": _build_embedder, "captioner": _build_captioner, "vlm": _build_vlm,
    "clip": _build_clip, "clip-b32": lambda out: _build_clip(out, patch_size=32),
    "llm": _build_llm,
}
