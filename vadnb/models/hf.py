"""Hugging Face transformers backends: captioner, chat LLM, vision-language model.

Each loads with ``from_pretrained`` from a hub id or a local folder (the tiny profile saves
its models to a folder and comes through here too), in fp16/bf16 on a GPU, and generates
greedily unless a temperature is given. Batched generation pads on the left, so every
prompt ends where its reply starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Backend, as_uint8_rgb, pick_dtype, run_batched
from .hub import ModelUnavailableError, hub_offline, is_local, require_available, unavailable_message

__all__ = ["HFCaptioner", "HFLLM", "HFVLM", "InternVLVLM"]

Messages = list[dict[str, Any]]


def _to_pil(image: Any):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    return Image.fromarray(as_uint8_rgb(image))


def _dtype_kwargs(dtype) -> dict[str, Any]:
    """``from_pretrained``'s dtype argument: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers
    from packaging.version import Version

    old = Version(transformers.__version__.split("+")[0]) < Version("4.56")
    return {"torch_dtype" if old else "dtype": dtype}


def _from_pretrained(loader, role: str, model: str, **kwargs):
    """``loader.from_pretrained(model, **kwargs)`` with an actionable error when offline or gated."""
    if "dtype" in kwargs:
        kwargs.update(_dtype_kwargs(kwargs.pop("dtype")))
    try:
        return loader.from_pretrained(model, **kwargs)
    except OSError as err:
        text = str(err).lower()
        if "gated" in text or "401" in text or "restricted" in text:
            raise ModelUnavailableError(
                f"The {role} model {model!r} is gated on the Hugging Face hub: open its page, "
                "accept the licence, then log in on this machine (`hf auth login`, or set "
                "HF_TOKEN). Or pick a non-gated model with model=..., or profile='colab'."
            ) from err
        if not is_local(model) and hub_offline():
            raise ModelUnavailableError(unavailable_message(role, model)) from err
        raise


def _generate_kwargs(max_new_tokens: int, temperature: float, top_p: float,
                     model: Any = None) -> dict[str, Any]:
    limits: dict[str, Any] = {"max_new_tokens": max_new_tokens}
    configured = getattr(getattr(model, "generation_config", None), "min_new_tokens", None)
    if configured:  # never ask for more new tokens at least than at most
        limits["min_new_tokens"] = min(configured, max_new_tokens)
    if temperature and temperature > 0:
        return {**limits, "do_sample": True, "temperature": float(temperature),
                "top_p": float(top_p)}
    # greedy: unset the sampling knobs a model's generation_config may carry
    return {**limits, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}


class _HFBackend(Backend):
    """Shared loading / release for the transformers backends."""

    def __init__(self, model: str, *, name: str | None, profile: str, device: str, dtype: Any,
                 batch_size: int, meaningless: bool, trust_remote_code: bool):
        super().__init__(name or model, profile=profile, device=device, batch_size=batch_size,
                         meaningless=meaningless)
        require_available(self.role, model)
        self.source = model
        self.dtype = pick_dtype(device, dtype)
        self.trust_remote_code = trust_remote_code

    def _free(self) -> None:
        self.model = None

    def _oom(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _decode_new(self, tokenizer, out, prompt_len: int) -> list[str]:
        return [t.strip() for t in tokenizer.batch_decode(out[:, prompt_len:],
                                                          skip_special_tokens=True)]


class HFLLM(_HFBackend):
    """A chat LLM: ``llm(messages) -> str``, ``llm.batch([messages, ...]) -> list[str]``.

    ``messages`` is the usual chat list ``[{"role": "system"|"user"|"assistant",
    "content": str}, ...]``, rendered with the model's own chat template.
    """

    role = "llm"

    def __init__(self, model: str, *, name: str | None = None, profile: str = "custom",
                 device: str = "cpu", dtype: Any = None, batch_size: int = 8,
                 meaningless: bool = False, trust_remote_code: bool = False,
                 max_new_tokens: int = 256):
        super().__init__(model, name=name, profile=profile, device=device, dtype=dtype,
                         batch_size=batch_size, meaningless=meaningless,
                         trust_remote_code=trust_remote_code)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = _from_pretrained(AutoTokenizer, self.role, model,
                                          trust_remote_code=trust_remote_code)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{model!r} has no chat template, so chat messages cannot be "
                             "rendered; use an instruction/chat model (e.g. "
                             "Qwen/Qwen2.5-3B-Instruct)")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = _from_pretrained(AutoModelForCausalLM, self.role, model, dtype=self.dtype,
                                      trust_remote_code=trust_remote_code).to(device).eval()
        self.max_new_tokens = max_new_tokens

    def prompt(self, messages: Messages) -> str:
        """The exact text the model sees for ``messages`` (chat template applied)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=True)

    def __call__(self, messages: Messages, **kwargs) -> str:
        return self.batch([messages], **kwargs)[0]

    def batch(self, list_of_messages: Sequence[Messages], max_new_tokens: int | None = None,
              temperature: float = 0.0, top_p: float = 1.0) -> list[str]:
        """One reply per conversation; greedy unless ``temperature > 0``."""
        prompts = [self.prompt(m) for m in list_of_messages]
        gen = _generate_kwargs(max_new_tokens or self.max_new_tokens, temperature, top_p,
                               self.model)

        def run(chunk: list[str]) -> list[str]:
            import torch

            enc = self.tokenizer(chunk, return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                out = self.model.generate(**enc, **gen, pad_token_id=self.tokenizer.pad_token_id)
            return self._decode_new(self.tokenizer, out, enc["input_ids"].shape[1])

        with self._count(len(prompts)):
            return run_batched(run, prompts, self.batch_size, desc="llm", on_oom=self._oom)


def _strip_prompt(out, input_ids):
    """Generated ids without the prompt (decoder-only models echo it; others do not)."""
    n = input_ids.shape[1]
    if out.shape[1] >= n and bool((out[:, :n] == input_ids.to(out.device)).all()):
        return out[:, n:]
    return out


class HFCaptioner(_HFBackend):
    """An image captioner: ``captioner(images) -> list[str]``, one caption per image.

    BLIP-2 (any of its language models) and other ``image-text-to-text`` captioners
    (BLIP, GIT-style) load through ``AutoProcessor`` + ``AutoModelForImageTextToText``.
    Unprompted by default, as LAVAD captions; ``prompt=`` conditions every caption.
    """

    role = "captioner"

    def __init__(self, model: str, *, name: str | None = None, profile: str = "custom",
                 device: str = "cpu", dtype: Any = None, batch_size: int = 16,
                 meaningless: bool = False, trust_remote_code: bool = False,
                 max_new_tokens: int = 30):
        super().__init__(model, name=name, profile=profile, device=device, dtype=dtype,
                         batch_size=batch_size, meaningless=meaningless,
                         trust_remote_code=trust_remote_code)
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = _from_pretrained(AutoProcessor, self.role, model,
                                          trust_remote_code=trust_remote_code)
        self.model = _from_pretrained(AutoModelForImageTextToText, self.role, model,
                                      dtype=self.dtype,
                                      trust_remote_code=trust_remote_code).to(device).eval()
        self.max_new_tokens = max_new_tokens

    def __call__(self, images: Sequence[Any], prompt: str | None = None,
                 max_new_tokens: int | None = None) -> list[str]:
        images = [_to_pil(im) for im in images]
        gen = _generate_kwargs(max_new_tokens or self.max_new_tokens, 0.0, 1.0, self.model)
        tokenizer = getattr(self.processor, "tokenizer", self.processor)

        def run(chunk: list[Any]) -> list[str]:
            import torch

            kwargs: dict[str, Any] = {"images": chunk, "return_tensors": "pt"}
            if prompt:
                kwargs.update(text=[prompt] * len(chunk), padding=True)
            enc = self.processor(**kwargs).to(self.device)
            if "pixel_values" in enc:
                enc["pixel_values"] = enc["pixel_values"].to(self.dtype)
            with torch.inference_mode():
                out = self.model.generate(**enc, **gen)
            if "input_ids" in enc:
                out = _strip_prompt(out, enc["input_ids"])
            return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]

        with self._count(len(images)):
            return run_batched(run, images, self.batch_size, desc="captioner", on_oom=self._oom)


def _vlm_messages(n_images: int, prompt: str) -> Messages:
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": prompt})
    return [{"role": "user", "content": content}]


class HFVLM(_HFBackend):
    """A vision-language chat model: ``vlm(images, prompt) -> str``.

    Qwen2.5-VL, LLaVA-style models and SmolVLM / Idefics3 load through ``AutoProcessor`` +
    ``AutoModelForImageTextToText``; the processor's chat template places one image
    placeholder per image before the prompt. ``vlm.batch([(images, prompt), ...])`` runs
    several requests per forward pass (left padding).
    """

    role = "vlm"

    def __init__(self, model: str, *, name: str | None = None, profile: str = "custom",
                 device: str = "cpu", dtype: Any = None, batch_size: int = 4,
                 meaningless: bool = False, trust_remote_code: bool = False,
                 max_new_tokens: int = 128):
        super().__init__(model, name=name, profile=profile, device=device, dtype=dtype,
                         batch_size=batch_size, meaningless=meaningless,
                         trust_remote_code=trust_remote_code)
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = _from_pretrained(AutoProcessor, self.role, model,
                                          trust_remote_code=trust_remote_code)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = _from_pretrained(AutoModelForImageTextToText, self.role, model,
                                      dtype=self.dtype,
                                      trust_remote_code=trust_remote_code).to(device).eval()
        self.max_new_tokens = max_new_tokens

    def prompt(self, n_images: int, prompt: str) -> str:
        """The text the model sees for ``n_images`` images and ``prompt`` (template applied)."""
        return self.processor.apply_chat_template(_vlm_messages(n_images, prompt),
                                                  tokenize=False, add_generation_prompt=True)

    def __call__(self, images: Sequence[Any], prompt: str, **kwargs) -> str:
        return self.batch([(images, prompt)], **kwargs)[0]

    def batch(self, requests: Sequence[tuple[Sequence[Any], str]], max_new_tokens: int | None = None,
              temperature: float = 0.0, top_p: float = 1.0) -> list[str]:
        """One reply per ``(images, prompt)`` request; greedy unless ``temperature > 0``."""
        reqs = [([_to_pil(im) for im in images], str(prompt)) for images, prompt in requests]
        gen = _generate_kwargs(max_new_tokens or self.max_new_tokens, temperature, top_p,
                               self.model)

        def run(chunk: list[tuple[list[Any], str]]) -> list[str]:
            import torch

            texts = [self.prompt(len(ims), p) for ims, p in chunk]
            images = [ims for ims, _ in chunk]
            if not any(images):
                images = None
            enc = self.processor(text=texts, images=images, padding=True,
                                 return_tensors="pt").to(self.device)
            for key in ("pixel_values", "pixel_values_videos"):
                if key in enc and enc[key].is_floating_point():
                    enc[key] = enc[key].to(self.dtype)
            with torch.inference_mode():
                out = self.model.generate(**enc, **gen, pad_token_id=self.tokenizer.pad_token_id)
            return self._decode_new(self.tokenizer, out, enc["input_ids"].shape[1])

        with self._count(len(reqs)):
            return run_batched(run, reqs, self.batch_size, desc="vlm", on_oom=self._oom)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InternVLVLM(_HFBackend):
    """InternVL2 / InternVL2.5 through their own hub code (``trust_remote_code=True`` only).

    The repo's ``model.chat`` API is used: each image is one 448x448 tile (ImageNet
    normalisation; the dynamic multi-tile split of the original demo is not used, which keeps
    the token budget fixed at 256 tokens per image), and the images are introduced as
    ``Frame1: <image>``, ``Frame2: <image>``, ... before the prompt, as in InternVL's
    multi-image examples. Requests in ``batch`` run one after the other.

    Note: the transformers-native ``-hf`` InternVL checkpoints (e.g. InternVL3) need no
    remote code and load with :class:`HFVLM`.
    """

    role = "vlm"
    tile = 448

    def __init__(self, model: str, *, name: str | None = None, profile: str = "custom",
                 device: str = "cpu", dtype: Any = None, batch_size: int = 1,
                 meaningless: bool = False, trust_remote_code: bool = False,
                 max_new_tokens: int = 128):
        if not trust_remote_code:
            raise ValueError(f"{model!r} runs its own code from the hub: pass "
                             "trust_remote_code=True to load it (only for repos you trust)")
        super().__init__(model, name=name, profile=profile, device=device, dtype=dtype,
                         batch_size=batch_size, meaningless=meaningless, trust_remote_code=True)
        from torchvision import transforms
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = _from_pretrained(AutoTokenizer, self.role, model, trust_remote_code=True,
                                          use_fast=False)
        self.model = _from_pretrained(AutoModel, self.role, model, dtype=self.dtype,
                                      trust_remote_code=True).to(device).eval()
        self.transform = transforms.Compose([
            transforms.Resize((self.tile, self.tile),
                              interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])
        self.max_new_tokens = max_new_tokens

    def __call__(self, images: Sequence[Any], prompt: str, **kwargs) -> str:
        return self.batch([(images, prompt)], **kwargs)[0]

    def batch(self, requests: Sequence[tuple[Sequence[Any], str]], max_new_tokens: int | None = None,
              temperature: float = 0.0, top_p: float = 1.0) -> list[str]:
        import torch

        gen = _generate_kwargs(max_new_tokens or self.max_new_tokens, temperature, top_p,
                               self.model)
        gen = {k: v for k, v in gen.items() if v is not None}
        requests = list(requests)

        def one(req: tuple[Sequence[Any], str]) -> str:
            images, prompt = req
            images = [_to_pil(im) for im in images]
            pixels = None
            question = str(prompt)
            if images:
                pixels = torch.stack([self.transform(im) for im in images])
                pixels = pixels.to(self.device, self.dtype)
                frames = "".join(f"Frame{i + 1}: <image>\n" for i in range(len(images)))
                question = frames + question
            with torch.inference_mode():
                reply = self.model.chat(self.tokenizer, pixels, question, gen,
                                        num_patches_list=[1] * len(images) if images else None)
            return str(reply).strip()

        with self._count(len(requests)):
            return run_batched(lambda chunk: [one(r) for r in chunk], requests, self.batch_size,
                               desc="vlm", on_oom=self._oom)


def load_vlm(model: str, *, trust_remote_code: bool = False, **kwargs) -> Backend:
    """:class:`InternVLVLM` for remote-code InternVL repos (opt-in), else :class:`HFVLM`."""
    if trust_remote_code and ("internvl" in model.lower()) and not model.lower().endswith("-hf"):
        return InternVLVLM(model, trust_remote_code=True, **kwargs)
    if not trust_remote_code and any(k in model.lower() for k in ("internvl2-", "internvl2_5",
                                                                   "minicpm")):
        raise ValueError(f"{model!r} needs its own code from the hub: pass "
                         "trust_remote_code=True to load it (only for repos you trust)")
    return HFVLM(model, trust_remote_code=trust_remote_code, **kwargs)
