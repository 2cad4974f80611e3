"""Hub-format snapshots: every role of the colab and paper profiles, loaded like a hub id.

For each model family a small model of the *real* architecture class is saved the way a
hub snapshot is laid out (config.json, generation_config.json, weights, tokenizer files
with that family's chat-template format, processor config), then loaded through the code
path a hub id takes (``models.load(role, model=<folder>)``: ``from_pretrained`` on the
folder, no tiny-profile route, no tiny-only generation settings such as
``min_new_tokens``), and answers one call. The chat templates are written here in each
family's format (system block, turn markers, image placeholders); they are not the
families' template files.

Covered elsewhere: open_clip OpenAI CLIP with QuickGELU through the hub-id path
(``test_models.py::test_openai_clips_use_quickgelu``); the real SmolLM2 GGUF path
(``test_notebook_30_cpu.py``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vadnb import models
from vadnb.models.tiny import _WORDS, _corpus, train_bpe

RNG = np.random.default_rng(1)
IMAGES = [RNG.integers(0, 256, size=(120 + 16 * i, 160, 3), dtype=np.uint8) for i in range(3)]

# --------------------------------------------------------------------------- chat templates

# Qwen2.5 (text): ChatML, with Qwen2.5's default system prompt when none is given.
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}{%- endif -%}"
    "{%- for m in messages -%}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# Qwen2-VL / Qwen2.5-VL: ChatML, default system prompt, one vision block per image.
QWEN_VL_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif -%}"
    "{%- for m in messages -%}{{ '<|im_start|>' + m['role'] + '\\n' }}"
    "{%- if m['content'] is string -%}{{ m['content'] }}{%- else -%}"
    "{%- for part in m['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{ '<|im_end|>\\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# Llama-2 chat: [INST] ... [/INST], the system prompt inside <<SYS>> of the first turn,
# the BOS token written by the template.
LLAMA2_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set system = none -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for m in turns -%}"
    "{%- if m['role'] == 'user' -%}"
    "{%- if loop.first and system -%}"
    "{{ bos_token + '[INST] <<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + m['content'] + ' [/INST]' }}"
    "{%- else -%}{{ bos_token + '[INST] ' + m['content'] + ' [/INST]' }}{%- endif -%}"
    "{%- else -%}{{ ' ' + m['content'] + ' ' + eos_token }}{%- endif -%}"
    "{%- endfor -%}"
)

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def _qwen_tokenizer(template: str):
    from transformers import Qwen2Tokenizer

    vocab, merges = train_bpe()
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS[1:]})
    tok.add_tokens(["<|endoftext|>"], special_tokens=True)
    tok.chat_template = template
    return tok


def _llama_tokenizer():
    """A Llama tokenizer (sentencepiece-style BPE on "▁" word pieces) without a pad token."""
    from tokenizers import Tokenizer, models as tm, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    bpe = Tokenizer(tm.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"],
                                  show_progress=False)
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = LlamaTokenizer(vocab=state["vocab"], merges=merges)
    tok.chat_template = LLAMA2_TEMPLATE
    assert tok.pad_token is None  # as Llama-2: HFLLM must pad with EOS
    return tok


def _t5_tokenizer():
    """A T5 (unigram) tokenizer over the suite's words."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + w, -1.0 - i / 1000) for i, w in enumerate(dict.fromkeys(_WORDS))]
    pieces += [(c, -20.0) for c in sorted(set("".join(_WORDS)))] + [("▁", -15.0)]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


# --------------------------------------------------------------------------- snapshots


def _llm_snapshot(out, family: str):
    from transformers import (GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM)

    if family == "qwen2.5":
        tok = _qwen_tokenizer(QWEN25_TEMPLATE)
        end, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
        cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          tie_word_embeddings=True, bos_token_id=pad, eos_token_id=end)
        model = Qwen2ForCausalLM(cfg)
        # as Qwen2.5-Instruct's generation_config: two end tokens, sampling defaults
        model.generation_config = GenerationConfig(
            bos_token_id=pad, eos_token_id=[end, pad], pad_token_id=pad, do_sample=True,
            temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)
    else:
        tok = _llama_tokenizer()
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                          bos_token_id=1, eos_token_id=2, pad_token_id=None)
        model = LlamaForCausalLM(cfg)
        model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2,
                                                   do_sample=True, temperature=0.6, top_p=0.9)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _vlm_snapshot(out, family: str):
    from transformers import (GenerationConfig, Qwen2_5_VLConfig,
                              Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    tok = _qwen_tokenizer(QWEN_VL_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [2, 3, 3]},
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    special = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                   vision_start_token_id=ids["<|vision_start|>"],
                   vision_end_token_id=ids["<|vision_end|>"])
    if family == "qwen2.5-vl":
        vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                      out_hidden_size=64, fullatt_block_indexes=[0])
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
            text_config=text, vision_config=vision, **special))
        processor_cls = Qwen2_5_VLProcessor
    else:
        vision = dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
        model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(
            text_config=text, vision_config=vision, **special))
        processor_cls = Qwen2VLProcessor
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad_token_id=ids["<|endoftext|>"],
        do_sample=True, temperature=0.01, top_p=0.001, top_k=1)
    # the real processors' pixel limits (min 56x56, max 12.8 M pixels)
    processor = processor_cls(image_processor=Qwen2VLImageProcessor(),
                              video_processor=Qwen2VLVideoProcessor(), tokenizer=tok,
                              chat_template=QWEN_VL_TEMPLATE)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _blip2_snapshot(out, family: str):
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor,
                              BlipImageProcessor, GPT2Tokenizer, OPTConfig, T5Config)

    if family == "opt":
        vocab, merges = train_bpe()
        tok = GPT2Tokenizer(vocab=vocab, merges=merges, unk_token="</s>", bos_token="</s>",
                            eos_token="</s>", pad_token="<pad>")
        tok.add_special_tokens({"pad_token": "<pad>"})
    else:
        tok = _t5_tokenizer()
    # as the real BLIP-2 preprocessor_config: 224x224, bicubic, CLIP's mean and std
    clip_mean, clip_std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    processor = Blip2Processor(image_processor=BlipImageProcessor(
        size={"height": 224, "width": 224}, image_mean=clip_mean, image_std=clip_std,
        resample=3), tokenizer=tok, num_query_tokens=4)
    image_token = tok.convert_tokens_to_ids("<image>")
    if family == "opt":
        text = OPTConfig(vocab_size=len(tok), hidden_size=64, ffn_dim=128, num_hidden_layers=2,
                         num_attention_heads=4, word_embed_proj_dim=64,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id).to_dict()
    else:
        text = T5Config(vocab_size=len(tok), d_model=64, d_ff=128, num_layers=2,
                        num_decoder_layers=2, num_heads=4, d_kv=16,
                        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                        decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                        eos_token_id=tok.eos_token_id).to_dict()
    cfg = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=224, patch_size=14),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=2, encoder_hidden_size=32),
        text_config=text, num_query_tokens=4, image_token_index=image_token)
    model = Blip2ForConditionalGeneration(cfg)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-snapshots")
    built = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for family in ("qwen2.5", "llama-2"):
            built[family] = _llm_snapshot(root / family, family)
        for family in ("qwen2.5-vl", "qwen2-vl"):
            built[family] = _vlm_snapshot(root / family, family)
        for family in ("opt", "flan-t5"):
            built[f"blip2-{family}"] = _blip2_snapshot(root / f"blip2-{family}", family)
    return built


def test_snapshots_are_laid_out_like_the_hub(snapshots):
    for family, folder in snapshots.items():
        names = {p.name for p in folder.iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= names, family
        assert "BUILT" not in names  # not a tiny-profile folder
    for family in ("qwen2.5-vl", "qwen2-vl", "blip2-opt", "blip2-flan-t5"):
        names = {p.name for p in snapshots[family].iterdir()}
        assert names & {"preprocessor_config.json", "processor_config.json"}, family


# --------------------------------------------------------------------------- one call each


def _chat():
    return [[{"role": "user", "content": "rate how suspicious this scene is"}],
            [{"role": "system", "content": "You are a police investigator."},
             {"role": "user", "content": "a man runs"}]]


def test_qwen25_chat_snapshot(snapshots):
    llm = models.load("llm", model=str(snapshots["qwen2.5"]), device="cpu")
    try:
        assert llm.profile == "custom" and not llm.meaningless
        assert type(llm.model).__name__ == "Qwen2ForCausalLM"
        first, second = _chat()
        assert llm.prompt(first).startswith("<|im_start|>system\nYou are Qwen, created by Alibaba")
        assert llm.prompt(second).startswith("<|im_start|>system\nYou are a police investigator.")
        replies = llm.batch([first, second], max_new_tokens=5)
        assert all(isinstance(r, models.Reply) for r in replies)
        # greedy despite the snapshot's sampling defaults, and batching does not change replies
        assert replies == [llm(first, max_new_tokens=5), llm(second, max_new_tokens=5)]
        assert all(1 <= r.num_tokens <= 5 for r in replies)
    finally:
        llm.release()


def test_llama2_chat_snapshot_without_a_pad_token(snapshots):
    llm = models.load("llm", model=str(snapshots["llama-2"]), device="cpu")
    try:
        assert type(llm.model).__name__ == "LlamaForCausalLM"
        assert llm.tokenizer.pad_token == llm.tokenizer.eos_token == "</s>"
        first, second = _chat()
        assert llm.prompt(first) == "<s>[INST] rate how suspicious this scene is [/INST]"
        assert llm.prompt(second).startswith("<s>[INST] <<SYS>>\nYou are a police investigator.")
        replies = llm.batch([first, second], max_new_tokens=4)  # different lengths: padded
        assert replies == [llm(first, max_new_tokens=4), llm(second, max_new_tokens=4)]
        assert all(isinstance(r, models.Reply) for r in replies)
    finally:
        llm.release()


@pytest.mark.parametrize("family, cls", [
    ("qwen2.5-vl", "Qwen2_5_VLForConditionalGeneration"),
    ("qwen2-vl", "Qwen2VLForConditionalGeneration"),
])
def test_qwen_vl_snapshots_with_several_images(snapshots, family, cls):
    vlm = models.load("vlm", model=str(snapshots[family]), device="cpu")
    try:
        assert type(vlm.model).__name__ == cls
        text = vlm.prompt(3, "what changes across the frames?")
        assert text.startswith("<|im_start|>system\nYou are a helpful assistant.")
        assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 3
        models.reset_call_stats()
        replies = vlm.batch([(IMAGES, "what changes across the frames?"), (IMAGES[:1], "and here?")],
                            max_new_tokens=3, max_pixels=112 * 112)
        assert len(replies) == 2 and all(isinstance(r, models.Reply) for r in replies)
        stats = models.call_stats().set_index("role")
        # 112x112 at most per image: at most (112/28)^2 = 16 tokens each, 4 images in all
        prompt_text = sum(len(vlm.tokenizer(vlm.prompt(n, p))["input_ids"]) - n
                          for n, p in ((3, "what changes across the frames?"), (1, "and here?")))
        image_tokens = stats.loc["vlm", "tokens_in"] - prompt_text
        assert 4 * 4 <= image_tokens <= 4 * 16
    finally:
        vlm.release()


@pytest.mark.parametrize("family, lm", [("blip2-opt", "OPTForCausalLM"),
                                        ("blip2-flan-t5", "T5ForConditionalGeneration")])
def test_blip2_snapshots_caption(snapshots, family, lm):
    cap = models.load("captioner", model=str(snapshots[family]), device="cpu")
    try:
        assert type(cap.model).__name__ == "Blip2ForConditionalGeneration"
        assert type(cap.model.language_model).__name__ in (lm, lm.replace("ForCausalLM", "Model")
                                                           .replace("ForConditionalGeneration", "Model"))
        caps = cap(IMAGES, max_new_tokens=5)
        assert len(caps) == 3 and all(isinstance(c, str) for c in caps)
        cap.batch_size = 1
        assert cap(IMAGES, max_new_tokens=5) == caps
    finally:
        cap.release()


def test_imagebind_huge_checkpoint_layout(tmp_path, monkeypatch):
    """A checkpoint saved like the official one (a plain state dict, torch.save) at the cache
    path loads through ``model="imagebind_huge"``, with huge's layout at small widths."""
    from vadnb.models import imagebind as ib

    small = {**ib.IMAGEBIND_HUGE, "vision_embed_dim": 32, "vision_num_blocks": 2,
             "vision_num_heads": 2, "text_embed_dim": 32, "text_num_blocks": 2,
             "text_num_heads": 2, "out_embed_dim": 24}
    monkeypatch.setattr(ib, "IMAGEBIND_HUGE", small)
    monkeypatch.setenv("VADNB_CACHE", str(tmp_path))
    net = ib.import_imagebind().ImageBindModel(**small)
    path = tmp_path / "models" / "imagebind" / "imagebind_huge.pth"
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    emb = models.load("embedder", model="imagebind_huge", device="cpu")
    try:
        assert type(emb).__name__ == "ImageBindEmbedder" and emb.dim == 24
        live = emb.model.state_dict()
        for key in ("modality_preprocessors.vision.rgbt_stem.proj.1.weight",
                    "modality_heads.vision.2.weight", "modality_trunks.text.blocks.1.attn.in_proj_weight"):
            assert torch.equal(live[key], net.state_dict()[key]), key
        img = emb.encode_image(IMAGES)
        vid = emb.encode_video([IMAGES[:2]])
        txt = emb.encode_text(["a man runs"])
        assert img.shape == (3, 24) and vid.shape == (1, 24) and txt.shape == (1, 24)
    finally:
        emb.release()
