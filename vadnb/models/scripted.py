"""Function-backed models: any Python function can play a model role.

They count calls like the real backends and plug into every method, which makes them the
test doubles of the suite (a captioner that knows what is really in the frame, an LLM that
scores by content) and a teaching device ("what if the model were perfect?").

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

__all__ = [
    "ScriptedCaptioner",
    "ScriptedLLM",
    "ScriptedVLM",
    "ScriptedEncoder",
    "ScriptedClip",
    "ScriptedEmbedder",
    "ScriptedTextEmbedder",
    "as_reply",
]


def as_reply(value: Any) -> Reply:
    """A function's answer as a :class:`Reply`: a ``Reply`` passes through unchanged (so a
    double can play a reply cut at its budget), anything else is its text, not truncated."""
    return value if isinstance(value, Reply) else Reply(str(value))


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class ScriptedCaptioner(Backend):
    """``fn(image) -> caption`` as a captioner."""

    role = "captioner"

    def __init__(self, fn: Callable[[np.ndarray], str], name: str = "scripted-captioner"):
        super().__init__(name, profile="scripted")
        self.fn = fn

    def __call__(self, images: Sequence[Any], **generate: Any) -> list[str]:
        self.last_generate = dict(generate)  # what a real captioner would be asked (its cap)
        images = list(images)
        with self._count(len(images)):
            return [str(self.fn(as_uint8_rgb(im))) for im in images]


class ScriptedLLM(LLMBackend):
    """``fn(messages) -> reply`` as a chat LLM (replies are :class:`Reply`; see :func:`as_reply`)."""

    def __init__(self, fn: Callable[[Messages], str], name: str = "scripted-llm"):
        super().__init__(name, profile="scripted")
        self.fn = fn

    def batch(self, conversations: Sequence[Messages], **generate: Any) -> list[Reply]:
        conversations = list(conversations)
        with self._count(len(conversations)):
            return [as_reply(self.fn(m)) for m in conversations]


class ScriptedVLM(VLMBackend):
    """``fn(images, prompt) -> reply`` as a vision-language model (replies as :func:`as_reply`)."""

    def __init__(self, fn: Callable[[list[np.ndarray], str], str], name: str = "scripted-vlm"):
        super().__init__(name, profile="scripted")
        self.fn = fn

    def batch(self, requests: Sequence[tuple[Sequence[Any], str]], **generate: Any) -> list[Reply]:
        requests = list(requests)
        with self._count(len(requests)):
            return [as_reply(self.fn([as_uint8_rgb(i) for i in ims], p)) for ims, p in requests]


class ScriptedEncoder(Backend):
    """Shared by the embedding doubles: ``image_fn(image) -> vector``, ``text_fn(text) -> vector``.

    Outputs are L2-normalised float32, as the real encoders return them.
    """

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
    """Adds ``encode_video``: the normalised mean of its frames' image vectors (as the
    open_clip fallback of the real embedder does)."""

    role = "embedder"

    def encode_video(self, clips: Sequence[Sequence[Any]]) -> np.ndarray:
        clips = [list(c) for c in clips]
        with self._count(len(clips)):
            vecs = [_normalise(np.stack([self.image_fn(as_uint8_rgb(f)) for f in c])).mean(0)
                    for c in clips]
        return _normalise(np.stack(vecs))


class ScriptedTextEmbedder(ScriptedEncoder):
    role = "text_embedder"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_text(texts)
