"""Hugging Face transformers backends: captioner, chat LLM, vision-language model.

Each loads with ``from_pretrained`` from a hub id or a folder (the tiny profile's too), in
the dtype of :func:`vadnb.models.base.choose_dtype`, straight onto the card on a GPU.
Generation is greedy unless a temperature is given; batches pad on the left, so every
prompt ends where its reply starts. The LLM and VLM return :class:`~vadnb.models.base.Reply`
objects (``truncated``: the whole ``max_new_tokens`` used without an end-of-turn token).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from .base import (Backend, ChosenReply, LLMBackend, Messages, Reply, VLMBackend, choose_dtype,
                   run_batched, to_pil)
from .hub import ModelUnavailableError, offline_advice, require_available

#: Hub repos known to need their own code (no transformers-native class): opt-in only.
REMOTE_CODE_FAMILIES = ("internvl2-", "internvl2_5", "internvl2.5", "minicpm")

#: The VLM's default image-size cap (pixels per image): 448x448, 256 tokens for Qwen2-VL.
DEFAULT_MAX_PIXELS = 448 * 448

#: Per-method caps: VERA resizes each frame to one 448x448 InternVL tile; AnyAnomaly feeds
#: frames at native size (ShanghaiTech's 856x480 is the largest).
METHOD_MAX_PIXELS = {"vera": 448 * 448, "anyanomaly": 856 * 480}

#: The cap of each VLM role the methods load (``vlm``: VERA, ``vlm-3b``: AnyAnomaly).
ROLE_MAX_PIXELS = {"vlm": METHOD_MAX_PIXELS["vera"], "vlm-3b": METHOD_MAX_PIXELS["anyanomaly"]}


def max_pixels_for(role: str) -> int:
    """The default image cap (pixels) of a VLM role or variant."""
    return ROLE_MAX_PIXELS.get(role, DEFAULT_MAX_PIXELS)


def _from_pretrained(loader, role: str, model: str, **kwargs):
    """``loader.from_pretrained(model, **kwargs)``, saying what to do when offline or gated."""
    with offline_advice(role, model):
        try:
            return loader.from_pretrained(model, **kwargs)
        except OSError as err:
            text = str(err).lower()
            if "gated" in text or "401" in text or "restricted" in text:
                raise ModelUnavailableError(
                    f"The {role} model {model!r} is gated on the Hugging Face hub (Llama 2: "
                    "the Llama 2 Community License): open its page, accept the licence, then "
                    "log in on this machine (`hf auth login`, or set HF_TOKEN). Or pick a "
                    "non-gated model with model=..., or profile='colab'.") from err
            raise


def _load_weights(loader, role: str, model: str, *, device: str, dtype, **kwargs):
    """The model in ``dtype`` on ``device``, in eval mode; on a GPU each weight goes to the
    card as it is read (``device_map``): a 7-8 GB model never fills Colab's 12.7 GB of RAM."""
    placed = {"device_map": str(device)} if str(device).startswith("cuda") else {}
    net = _from_pretrained(loader, role, model, dtype=dtype, **placed, **kwargs)
    return (net if placed else net.to(device)).eval()


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token id that ends a turn for this model (generation config and tokenizer)."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None),
                   tokenizer):
        value = getattr(source, "eos_token_id", None)
        values = value if isinstance(value, (list, tuple)) else [value]
        ids.update(int(v) for v in values if v is not None)
    return ids


def _replies(tokenizer, new_ids, eos: set[int], max_new_tokens: int) -> list[Reply]:
    """Decode generated ids ``[N, T]`` (prompt removed) into :class:`Reply` objects."""
    out = []
    for row in new_ids.tolist():
        end = next((i for i, t in enumerate(row) if t in eos), None)
        used = row if end is None else row[:end + 1]
        truncated = end is None and len(row) >= max_new_tokens
        text = tokenizer.decode(used, skip_special_tokens=True).strip()
        out.append(Reply(text, truncated=truncated, num_tokens=len(used)))
    return out


def fit_pixels(image: Any, max_pixels: int | None):
    """``image`` (PIL) downsized, aspect kept, to at most ``max_pixels`` pixels (never enlarged)."""
    from PIL import Image

    if not max_pixels or image.width * image.height <= max_pixels:
        return image
    scale = (max_pixels / (image.width * image.height)) ** 0.5
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def _generate_kwargs(max_new_tokens: int | None, temperature: float, top_p: float,
                     model: Any = None, repetition_penalty: float = 1.0) -> dict[str, Any]:
    """``generate`` settings; ``max_new_tokens`` None: the model's own length."""
    limits: dict[str, Any] = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    if repetition_penalty != 1.0:
        limits["repetition_penalty"] = float(repetition_penalty)
    configured = getattr(getattr(model, "generation_config", None), "min_new_tokens", None)
    if configured and max_new_tokens:  # never ask for more new tokens at least than at most
        limits["min_new_tokens"] = min(configured, max_new_tokens)
    if temperature and temperature > 0:
        return {**limits, "do_sample": True, "temperature": float(temperature),
                "top_p": float(top_p)}
    # greedy: unset the sampling knobs a model's generation_config may carry
    return {**limits, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}


class _HFBackend(Backend):
    """Loads ``_classes`` (preprocessor, model) of ``transformers``; the preprocessor is
    checked before the weights load, so a wrong repo fails before its download."""

    _classes = ("AutoProcessor", "AutoModelForImageTextToText")
    default_batch = 8
    default_max_new_tokens: int | None = 256

    def __init__(self, model: str, *, name: str | None = None, profile: str = "custom",
                 device: str = "cpu", dtype: Any = None, batch_size: int | None = None,
                 meaningless: bool = False, trust_remote_code: bool = False):
        import transformers

        super().__init__(name or model, profile=profile, device=device,
                         batch_size=batch_size or self.default_batch, meaningless=meaningless)
        require_available(self.role, model)
        self.dtype = choose_dtype(device, dtype, model)[0]
        self.max_new_tokens = self.default_max_new_tokens
        pre, auto = (getattr(transformers, c) for c in self._classes)
        self.processor = _from_pretrained(pre, self.role, model,
                                          trust_remote_code=trust_remote_code)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        if self.role == "llm" and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{model!r} has no chat template, so chat messages cannot be "
                             "rendered; use an instruction/chat model (e.g. "
                             "Qwen/Qwen2.5-3B-Instruct)")
        if self.role != "captioner":  # chat models pad on the left, eos as pad if none (Llama-2)
            self.tokenizer.padding_side = "left"
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = _load_weights(auto, self.role, model, device=device, dtype=self.dtype,
                                   trust_remote_code=trust_remote_code)

    def _generate_all(self, items: list[Any], encode: Any, desc: str, max_new_tokens: int | None,
                      temperature: float, top_p: float, repetition_penalty: float = 1.0
                      ) -> list[Reply]:
        """One :class:`Reply` per item, ``encode(chunk)`` giving a batch's model inputs."""
        import torch

        budget = max_new_tokens or self.max_new_tokens
        gen = _generate_kwargs(budget, temperature, top_p, self.model, repetition_penalty)

        def run(chunk: list[Any]) -> list[Reply]:
            enc = encode(chunk).to(self.device)
            with torch.inference_mode():
                out = self.model.generate(**enc, **gen, pad_token_id=self.tokenizer.pad_token_id)
            replies = _replies(self.tokenizer, out[:, enc["input_ids"].shape[1]:],
                               _eos_ids(self.model, self.tokenizer), budget)
            stat.tokens_in += int(enc["attention_mask"].sum()) if "attention_mask" in enc else 0
            stat.tokens_out += sum(r.num_tokens or 0 for r in replies)
            return replies

        with self._count(len(items)) as stat:
            return run_batched(run, items, self.batch_size, desc=desc)


class HFLLM(_HFBackend, LLMBackend):
    """A chat LLM: ``llm(messages) -> Reply``, rendered with the model's own chat template."""

    _classes = ("AutoTokenizer", "AutoModelForCausalLM")

    def prompt(self, messages: Messages) -> str:
        """The exact text the model sees for ``messages`` (chat template applied)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=True)

    def batch(self, list_of_messages: Sequence[Messages], max_new_tokens: int | None = None,
              temperature: float = 0.0, top_p: float = 1.0,
              choices: Sequence[str] | None = None) -> list[Reply]:
        """One :class:`Reply` per conversation; greedy unless ``temperature > 0``. With
        ``choices``, instead of free text (the papers' protocol): the allowed reply the model
        finds likeliest, as a :class:`~vadnb.models.base.ChosenReply`."""
        if choices is not None:
            return self._choose(list_of_messages, choices)

        def encode(chunk: list[str]):
            return self.tokenizer(chunk, return_tensors="pt", padding=True,
                                  add_special_tokens=False)

        prompts = [self.prompt(m) for m in list_of_messages]
        return self._generate_all(prompts, encode, "llm", max_new_tokens, temperature, top_p)

    def _choose(self, list_of_messages: Sequence[Messages], choices: Sequence[str]
                ) -> list[Reply]:
        choices = [str(c) for c in choices]
        if not choices or any(not c for c in choices) or len(set(choices)) != len(choices):
            raise ValueError(f"choices must be distinct non-empty replies, got {choices!r}")
        end = self.tokenizer.eos_token_id
        options = [self.tokenizer(c, add_special_tokens=False)["input_ids"]
                   + ([] if end is None else [int(end)]) for c in choices]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        def run(chunk: list[str]) -> list[Reply]:
            replies = []
            for prompt in chunk:
                ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
                scores = _choice_logprobs(self.model, ids, options, self.device, pad)
                best = max(range(len(choices)), key=scores.__getitem__)
                replies.append(ChosenReply(choices[best], dict(zip(choices, scores)),
                                           num_tokens=len(options[best])))
                stat.tokens_in += len(ids) * len(options)
            return replies

        prompts = [self.prompt(m) for m in list_of_messages]
        with self._count(len(prompts)) as stat:
            return run_batched(run, prompts, self.batch_size, desc="llm choices")


def _choice_logprobs(model, prompt_ids: list[int], options: list[list[int]], device: str,
                     pad_id: int) -> list[float]:
    """log P(option tokens | prompt) for each option: the prompt runs once, its key/value
    cache is repeated for the options, which run together right-padded (a pad comes after
    every real position, so changes nothing read)."""
    import inspect

    import torch

    # forward's name for a key/value cache: ``cache`` in newer transformers
    cache_argument = ("cache" if "cache" in inspect.signature(model.forward).parameters
                      else "past_key_values")
    with torch.inference_mode():
        head = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True,
                     logits_to_keep=1)
        first = torch.log_softmax(head.logits[0, -1].float(), dim=-1)
        cache = getattr(head, "cache", None) or head.past_key_values
        cache.batch_repeat_interleave(len(options))
        ids, mask, positions = _options_after_prompt(options, len(prompt_ids), pad_id)
        tail = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                     position_ids=positions.to(device), **{cache_argument: cache}).logits
        logp = torch.log_softmax(tail.float(), dim=-1)  # position j predicts token j + 1
    out = []
    for i, o in enumerate(options):
        total = float(first[o[0]])
        total += sum(float(logp[i, j - 1, t]) for j, t in enumerate(o) if j > 0)
        out.append(total)
    return out


def _options_after_prompt(options: list[list[int]], prompt_len: int, pad_id: int) -> tuple:
    """``(ids, attention mask, positions)``: the options right-padded, after the prompt."""
    import torch

    k, width = len(options), max(len(o) for o in options)
    ids = torch.full((k, width), pad_id, dtype=torch.long)
    mask = torch.zeros((k, prompt_len + width), dtype=torch.long)
    mask[:, :prompt_len] = 1
    for i, o in enumerate(options):
        ids[i, :len(o)] = torch.tensor(o)
        mask[i, prompt_len:prompt_len + len(o)] = 1
    positions = torch.arange(prompt_len, prompt_len + width)[None].expand(k, -1)
    return ids, mask, positions


class HFCaptioner(_HFBackend):
    """An image captioner (BLIP-2 and other image-text-to-text models): ``captioner(images)
    -> list[str]``; unprompted by default, as LAVAD captions."""

    role = "captioner"
    default_batch = 16
    default_max_new_tokens = None

    def __init__(self, model: str, **kwargs: Any):
        super().__init__(model, **kwargs)
        # max_new_tokens None: the model's own length, as LAVAD calls generate(). T5 (Flan-T5)
        # has no BOS token, so its captions start from the empty prompt, as LAVIS does.
        text_config = getattr(self.model.config, "text_config", None)
        self._needs_text = getattr(text_config, "bos_token_id", None) is None

    def __call__(self, images: Sequence[Any], prompt: str | None = None,
                 max_new_tokens: int | None = None) -> list[str]:
        images = [to_pil(im) for im in images]
        gen = _generate_kwargs(max_new_tokens or self.max_new_tokens, 0.0, 1.0, self.model)

        def run(chunk: list[Any]) -> list[str]:
            import torch

            kwargs: dict[str, Any] = {"images": chunk, "return_tensors": "pt"}
            if prompt or self._needs_text:
                kwargs.update(text=[prompt or ""] * len(chunk), padding=True)
            enc = self.processor(**kwargs).to(self.device)
            if "pixel_values" in enc:
                enc["pixel_values"] = enc["pixel_values"].to(self.dtype)
            with torch.inference_mode(), warnings.catch_warnings():
                # no cap: the model's own length, as LAVAD's captioner (generate() warns each call)
                warnings.filterwarnings("ignore", message="Using the model-agnostic default",
                                        category=UserWarning)
                out = self.model.generate(**enc, **gen)
            ids = enc.get("input_ids")  # decoder-only models echo the prompt; others do not
            if ids is not None and out.shape[1] >= ids.shape[1] and bool(
                    (out[:, :ids.shape[1]] == ids.to(out.device)).all()):
                out = out[:, ids.shape[1]:]
            return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

        with self._count(len(images)):
            return run_batched(run, images, self.batch_size, desc="captioner")


def vlm_messages(images: list[dict[str, Any]], prompt: str, system: str | None = None
                 ) -> Messages:
    """One user message: the ``images`` parts, then the prompt (after ``system``, if any)."""
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": [*images, {"type": "text", "text": prompt}]}]


class HFVLM(_HFBackend, VLMBackend):
    """A vision-language chat model (Qwen2-VL, Qwen2.5-VL, LLaVA, ...): ``vlm(images, prompt)
    -> Reply``. Every image is first downsized to ``max_pixels`` (aspect kept): a 1080p frame
    would cost ~2.6k tokens. A repo that needs its own code (InternVL2, MiniCPM-V) is refused
    unless ``trust_remote_code=True``."""

    default_batch = 4
    default_max_new_tokens = 128

    def __init__(self, model: str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, **kwargs: Any):
        name = model.lower()
        if not kwargs.get("trust_remote_code") and not name.endswith("-hf") and any(
                k in name for k in REMOTE_CODE_FAMILIES):
            raise ValueError(f"{model!r} needs its own code from the hub: pass "
                             "trust_remote_code=True to load it (only for repos you trust), or "
                             "use a transformers-native VLM such as Qwen/Qwen2-VL-7B-Instruct")
        super().__init__(model, **kwargs)
        self.max_pixels = max_pixels

    def prompt(self, n_images: int, prompt: str, system: str | None = None) -> str:
        """The text the model sees for ``n_images`` images and ``prompt`` (template applied)."""
        messages = vlm_messages([{"type": "image"}] * n_images, prompt, system)
        return self.processor.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)

    def batch(self, requests: Sequence[tuple[Sequence[Any], str]],
              max_new_tokens: int | None = None, temperature: float = 0.0, top_p: float = 1.0,
              max_pixels: int | None = None, repetition_penalty: float = 1.0,
              system: str | None = None) -> list[Reply]:
        """One :class:`Reply` per ``(images, prompt)``; greedy unless ``temperature > 0``."""
        cap = max_pixels or self.max_pixels
        reqs = [([fit_pixels(to_pil(im), cap) for im in images], str(prompt))
                for images, prompt in requests]

        def encode(chunk: list[tuple[list[Any], str]]):
            texts = [self.prompt(len(ims), p, system) for ims, p in chunk]
            images = [ims for ims, _ in chunk]
            enc = self.processor(text=texts, images=images if any(images) else None,
                                 padding=True, return_tensors="pt")
            for key in ("pixel_values", "pixel_values_videos"):
                if key in enc and enc[key].is_floating_point():
                    enc[key] = enc[key].to(self.dtype)
            return enc

        return self._generate_all(reqs, encode, "vlm", max_new_tokens, temperature, top_p,
                                  repetition_penalty)
