"""Served models: the ``llm`` and ``vlm`` roles answered by an OpenAI-compatible server.

A model server such as vLLM (``vllm serve Qwen/Qwen2.5-VL-3B-Instruct``) batches requests
from many clients on its own GPUs, far better than one Python process can. This backend
speaks its ``/v1/chat/completions`` API through the ``openai`` client and keeps the same
calls as the Hugging Face backends, so a method cannot tell the difference::

    llm = vadnb.models.load("llm", model="openai:Qwen/Qwen2.5-3B-Instruct@http://gpu-box:8000/v1")
    llm([{"role": "user", "content": "Say hi"}])            # -> str
    llm.batch([messages_1, messages_2])                     # -> list[str], sent concurrently
    vlm = vadnb.models.load("vlm", model="openai:Qwen/Qwen2.5-VL-3B-Instruct@http://gpu-box:8000/v1")
    vlm(images, "What happens here?")                       # images go as base64 data URLs

The model string is ``openai:<served model name>@<base URL ending in /v1>``; because it is
a plain string it travels through a method's ``llm_model=`` / ``vlm_model=`` Config fields
and through Ray (``vadnb.scale.run_dataset``) unchanged. Notebook 90 explains it.

What the client does for you:

- **concurrency limit**: ``batch`` sends at most ``max_concurrency`` requests at a time
  (a thread pool); the server batches them on the GPU.
- **timeouts**: each request gives up after ``timeout_s`` seconds.
- **retries with back-off**: connection errors, timeouts, 429 and 5xx replies are retried
  up to ``max_retries`` times, waiting ``backoff_s * 2**attempt`` seconds (capped at
  ``max_backoff_s``) in between. Other errors (400, 401, 404) are raised at once: retrying
  cannot fix a wrong model name.
- **call counting**: every ``__call__`` / ``batch`` is counted in
  :func:`vadnb.models.call_stats` like any other backend.

A served model whose name starts with ``tiny:`` (the suite's test server) is flagged
``meaningless`` with profile ``tiny``; any other served model has profile ``custom``.
"""

from __future__ import annotations

import base64
import io
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .base import Backend, as_uint8_rgb

__all__ = ["ServedLLM", "ServedVLM", "ServedModelError", "parse_model_string", "load_served",
           "image_data_url", "PREFIX"]

#: The prefix that routes ``vadnb.models.load(role, model=...)`` here.
PREFIX = "openai:"

_MODEL_STRING = re.compile(r"^openai:(?P<model>.+?)@(?P<url>https?://\S+)$")

Messages = list[dict[str, Any]]


class ServedModelError(RuntimeError):
    """A served model did not answer (after the retries), or answered with an error."""


def parse_model_string(spec: str) -> tuple[str, str]:
    """Split ``"openai:<model>@<base_url>"`` into ``(model, base_url)``.

    >>> parse_model_string("openai:Qwen/Qwen2.5-3B-Instruct@http://127.0.0.1:8000/v1")
    ('Qwen/Qwen2.5-3B-Instruct', 'http://127.0.0.1:8000/v1')
    """
    m = _MODEL_STRING.match(str(spec).strip())
    if not m:
        raise ValueError(
            f"served model {spec!r} is not of the form 'openai:<model name>@<base url>', e.g. "
            "'openai:Qwen/Qwen2.5-3B-Instruct@http://127.0.0.1:8000/v1' (the URL your "
            "`vllm serve` prints, ending in /v1)")
    return m.group("model"), m.group("url").rstrip("/")


def image_data_url(image: Any, image_format: str = "jpeg", quality: int = 90) -> str:
    """An image (uint8 RGB array or PIL) as a ``data:image/...;base64,...`` URL."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(as_uint8_rgb(image))
    buf = io.BytesIO()
    fmt = "JPEG" if image_format.lower() in ("jpg", "jpeg") else image_format.upper()
    kwargs = {"quality": quality} if fmt == "JPEG" else {}
    image.convert("RGB").save(buf, format=fmt, **kwargs)
    mime = "jpeg" if fmt == "JPEG" else fmt.lower()
    return f"data:image/{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _reply_text(response: Any, where: str) -> str:
    """The text of the first choice of a chat completion (list-of-parts content joined)."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise ServedModelError(f"{where}: the server's reply has no choices: {response!r:.300}")
    content = getattr(choices[0].message, "content", None)
    if content is None:
        return ""
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content).strip()


class _ServedBackend(Backend):
    """Shared client, thread pool, timeouts and retries of the served roles."""

    def __init__(self, model: str, base_url: str, *, name: str | None = None,
                 profile: str | None = None, meaningless: bool | None = None,
                 max_concurrency: int = 8, timeout_s: float = 120.0, max_retries: int = 3,
                 backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 max_new_tokens: int = 256, api_key: str | None = None,
                 batch_size: int | None = None):
        tiny = model.startswith("tiny:")
        # the name (used in cache keys) is the model, not the URL: moving a server keeps the cache
        super().__init__(name or f"{PREFIX}{model}",
                         profile=profile or ("tiny" if tiny else "custom"), device="served",
                         batch_size=batch_size or max_concurrency,
                         meaningless=tiny if meaningless is None else meaningless)
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        from openai import OpenAI

        self.model = model
        self.base_url = base_url.rstrip("/")
        self.max_concurrency = int(max_concurrency)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_new_tokens = int(max_new_tokens)
        self.retries = 0  # retried requests since creation (a health signal)
        self._lock = threading.Lock()
        # vLLM accepts any key unless started with --api-key; the client insists on one
        self.client = OpenAI(base_url=self.base_url, api_key=api_key or "EMPTY",
                             timeout=self.timeout_s, max_retries=0)

    def _free(self) -> None:
        self.client.close()

    def _retryable(self, err: Exception) -> bool:
        import openai

        if isinstance(err, (openai.APIConnectionError, openai.APITimeoutError)):
            return True
        status = getattr(err, "status_code", None)
        return isinstance(err, openai.APIStatusError) and (status == 429 or (status or 0) >= 500)

    def _complete(self, messages: Messages, max_new_tokens: int, temperature: float,
                  top_p: float) -> str:
        """One chat completion with retries and exponential back-off."""
        import openai

        where = f"served {self.role} {self.model!r} at {self.base_url}"
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=max_new_tokens,
                    temperature=float(temperature), top_p=float(top_p))
                return _reply_text(response, where)
            except openai.OpenAIError as err:
                if not self._retryable(err):
                    raise ServedModelError(
                        f"{where} refused the request: {err}. Check the model name "
                        f"(`curl {self.base_url}/models` lists them) and the request size."
                    ) from err
                if attempt == self.max_retries:
                    raise ServedModelError(
                        f"{where} failed {attempt + 1} times (last: {type(err).__name__}: "
                        f"{err}). Is the server up (`curl {self.base_url}/models`)? Raise "
                        "timeout_s for slow models or lower max_concurrency.") from err
                with self._lock:
                    self.retries += 1
                time.sleep(min(self.max_backoff_s, self.backoff_s * 2 ** attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _run_all(self, conversations: list[Messages], max_new_tokens: int | None,
                 temperature: float, top_p: float) -> list[str]:
        """Send every conversation, at most ``max_concurrency`` at a time, replies in order."""
        tokens = int(max_new_tokens or self.max_new_tokens)
        if len(conversations) <= 1:
            return [self._complete(c, tokens, temperature, top_p) for c in conversations]
        workers = min(self.max_concurrency, len(conversations))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="served") as pool:
            futures = [pool.submit(self._complete, c, tokens, temperature, top_p)
                       for c in conversations]
            return [f.result() for f in futures]

    def models(self) -> list[str]:
        """The model names the server offers (``GET /v1/models``)."""
        return [m.id for m in self.client.models.list().data]


class ServedLLM(_ServedBackend):
    """``llm(messages) -> str`` and ``llm.batch([messages, ...]) -> list[str]`` on a server.

    ``messages`` is the chat list ``[{"role": ..., "content": str}, ...]`` (or one string,
    sent as a user message); the server applies the model's chat template.
    """

    role = "llm"

    def __call__(self, messages: Messages | str, **kwargs: Any) -> str:
        return self.batch([messages], **kwargs)[0]

    def batch(self, list_of_messages: Sequence[Messages | str], max_new_tokens: int | None = None,
              temperature: float = 0.0, top_p: float = 1.0) -> list[str]:
        """One reply per conversation; greedy (temperature 0) unless told otherwise."""
        conversations = [[{"role": "user", "content": m}] if isinstance(m, str) else list(m)
                         for m in list_of_messages]
        with self._count(len(conversations)):
            return self._run_all(conversations, max_new_tokens, temperature, top_p)


class ServedVLM(_ServedBackend):
    """``vlm(images, prompt) -> str`` and ``vlm.batch([(images, prompt), ...])`` on a server.

    Each request is one user message: the images as base64 data URLs (in order), then the
    prompt, as the Hugging Face VLM backends lay them out.
    """

    role = "vlm"

    def __init__(self, model: str, base_url: str, *, image_format: str = "jpeg",
                 max_new_tokens: int = 128, **kwargs: Any):
        super().__init__(model, base_url, max_new_tokens=max_new_tokens, **kwargs)
        self.image_format = image_format

    def message(self, images: Sequence[Any], prompt: str) -> Messages:
        """The chat message sent for ``images`` and ``prompt``."""
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": image_data_url(im, self.image_format)}}
            for im in images]
        content.append({"type": "text", "text": str(prompt)})
        return [{"role": "user", "content": content}]

    def __call__(self, images: Sequence[Any], prompt: str, **kwargs: Any) -> str:
        return self.batch([(images, prompt)], **kwargs)[0]

    def batch(self, requests: Sequence[tuple[Sequence[Any], str]], max_new_tokens: int | None = None,
              temperature: float = 0.0, top_p: float = 1.0) -> list[str]:
        """One reply per ``(images, prompt)`` request; greedy unless ``temperature > 0``."""
        conversations = [self.message(images, prompt) for images, prompt in requests]
        with self._count(len(conversations)):
            return self._run_all(conversations, max_new_tokens, temperature, top_p)


_CLASSES = {"llm": ServedLLM, "vlm": ServedVLM}


def load_served(role: str, spec: str, batch_size: int | None = None, **kwargs: Any) -> Backend:
    """The served backend for ``role`` (``llm``/``vlm`` or a variant like ``vlm-3b``).

    ``spec`` is ``"openai:<model>@<base_url>"``; ``kwargs`` go to the backend
    (``max_concurrency``, ``timeout_s``, ``max_retries``, ``backoff_s``, ``api_key``...).
    ``batch_size``, when given, is used as the concurrency limit.
    """
    base = role.split("-", 1)[0]
    if base not in _CLASSES:
        raise ValueError(f"only the llm and vlm roles can be served (got {role!r}); load "
                         f"{role!r} locally with a hub id or a profile instead")
    model, url = parse_model_string(spec)
    if batch_size and "max_concurrency" not in kwargs:
        kwargs["max_concurrency"] = int(batch_size)
    return _CLASSES[base](model, url, **kwargs)
