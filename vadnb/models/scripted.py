"""Function-backed models: any Python function plays a role, counted like a real backend
(the suite's test doubles; in a lesson, "what if the model were perfect?").

>>> from vadnb.models.scripted import ScriptedLLM
>>> llm = ScriptedLLM(lambda messages: "[0.5]")
>>> reply = llm([{"role": "user", "content": "rate this"}])
>>> str(reply), reply.truncated
('[0.5]', False)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .base import Backend, LLMBackend, Messages, Reply, VLMBackend, as_uint8_rgb


def as_reply(value: Any) -> Reply:
    """A function's answer as a :class:`Reply` (a ``Reply``, e.g. one cut short, passes as is)."""
    return value if isinstance(value, Reply) else Reply(str(value))


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class _Scripted(Backend):
    """A backend around one function ``fn``, named ``scripted-<role>`` by default."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None):
        super().__init__(name or f"scripted-{self.role}", profile="scripted")
        self.fn = fn


class ScriptedCaptioner(_Scripted):
    """``fn(image) -> caption`` as a captioner."""

    role = "captioner"

    def __call__(self, images: Sequence[Any], **generate: Any) -> list[str]:
        self.last_generate = dict(generate)  # what a real captioner would be asked (its cap)
        images = list(images)
        with self._count(len(images)):
            return [str(self.fn(as_uint8_rgb(im))) for im in images]


class ScriptedLLM(_Scripted, LLMBackend):
    """``fn(messages) -> reply`` as a chat LLM (replies as :func:`as_reply`)."""

    def batch(self, conversations: Sequence[Messages], **generate: Any) -> list[Reply]:
        conversations = list(conversations)
        with self._count(len(conversations)):
            return [as_reply(self.fn(m)) for m in conversations]


class ScriptedVLM(_Scripted, VLMBackend):
    """``fn(images, prompt) -> reply`` as a vision-language model (replies as :func:`as_reply`)."""

    def batch(self, requests: Sequence[tuple[Sequence[Any], str]], **generate: Any) -> list[Reply]:
        requests = list(requests)
        with self._count(len(requests)):
            return [as_reply(self.fn([as_uint8_rgb(i) for i in ims], p)) for ims, p in requests]


class ScriptedEncoder(Backend):
    """``image_fn(image) -> vector`` and ``text_fn(text) -> vector``, outputs L2-normalised."""

    def __init__(self, image_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                 text_fn: Callable[[str], np.ndarray] | None = None, name: str = "scripted"):
        super().__init__(name, profile="scripted")
        self.image_fn = image_fn
        self.text_fn = text_fn

    def encode_image(self, images: Sequence[Any]) -> np.ndarray:
        if self.image_fn is None:
            raise NotImplementedError(f"{self.name} has no image function")
        images = list(images)
        with self._count(len(images)):
            return _normalise(np.stack([self.image_fn(as_uint8_rgb(im)) for im in images]))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        if self.text_fn is None:
            raise NotImplementedError(f"{self.name} has no text function")
        texts = list(texts)
        with self._count(len(texts)):
            return _normalise(np.stack([self.text_fn(t) for t in texts]))


class ScriptedClip(ScriptedEncoder):
    role = "clip"


class ScriptedEmbedder(ScriptedEncoder):
    """Adds ``encode_video``: the normalised mean of its frames' image vectors."""

    role = "embedder"

    def encode_video(self, clips: Sequence[Sequence[Any]]) -> np.ndarray:
        clips = [list(c) for c in clips]
        with self._count(len(clips)):
            vecs = [_normalise(np.stack([self.image_fn(as_uint8_rgb(f)) for f in c])).mean(0)
                    for c in clips]
        return _normalise(np.stack(vecs))


class ScriptedTextEmbedder(ScriptedEncoder):
    role = "text_embedder"
    encode = ScriptedEncoder.encode_text
