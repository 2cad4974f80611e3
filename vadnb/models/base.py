"""What every model role has in common: call counting, device, batching, release.

The methods see only these calls (one role each)::

    captions = captioner(images)                 # list[str], one per image
    reply    = llm(messages)                     # str;  llm.batch([messages, ...]) -> list[str]
    reply    = vlm(images, prompt)               # str;  vlm.batch([(images, prompt), ...])
    emb      = clip.encode_image(images)         # float32 [N, D], L2-normalised
    emb      = clip.encode_text(texts)
    emb      = embedder.encode_image(images)     # ImageBind (or open_clip fallback)
    emb      = embedder.encode_video(clips)      # one embedding per clip (list of frames)
    emb      = embedder.encode_text(texts)
    emb      = text_embedder.encode(texts)

Images are uint8 RGB arrays [H, W, 3] (or PIL images). Calls are counted: :func:`call_stats`.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

ROLES = ("captioner", "llm", "vlm", "clip", "embedder", "text_embedder")


def clean_text(text: str) -> str:
    """``text`` with every unpaired UTF-16 surrogate (a reply cut inside an emoji) replaced by
    U+FFFD, a pair joined: UTF-8 cannot write one, so a CSV, JSON file or widget would fail."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Reply(str):
    """A generated reply (a ``str``, through :func:`clean_text`); ``truncated``: it used its
    whole ``max_new_tokens`` without ending its turn; ``num_tokens``: new tokens or None."""

    truncated: bool
    num_tokens: int | None

    def __new__(cls, text: str = "", truncated: bool = False, num_tokens: int | None = None):
        obj = super().__new__(cls, clean_text(str(text)))
        obj.truncated = bool(truncated)
        obj.num_tokens = num_tokens
        return obj

    def __reduce__(self):
        return (Reply, (str(self), self.truncated, self.num_tokens))

    def __repr__(self) -> str:
        cut = ", truncated" if self.truncated else ""
        return f"Reply({str.__repr__(self)}{cut})"


#: LAVAD's score replies, exactly as its prompt asks for them (``[0]`` ... ``[1.0]``).
LAVAD_SCORE_CHOICES = ("[0]", "[0.1]", "[0.2]", "[0.3]", "[0.4]", "[0.5]", "[0.6]", "[0.7]",
                       "[0.8]", "[0.9]", "[1.0]")
#: VERA's class labels.
VERA_LABEL_CHOICES = ("0", "1")


class ChosenReply(Reply):
    """The allowed reply (``choices=``) the model finds likeliest; ``logprobs`` maps each
    allowed reply to log P(its tokens, then end of turn)."""

    logprobs: dict[str, float]

    def __new__(cls, text: str = "", logprobs: dict[str, float] | None = None,
                num_tokens: int | None = None):
        obj = super().__new__(cls, text, truncated=False, num_tokens=num_tokens)
        obj.logprobs = dict(logprobs or {})
        return obj


def is_truncated(reply: object) -> bool:
    """True for a :class:`Reply` cut at its token budget (plain strings: False)."""
    return bool(getattr(reply, "truncated", False))


class FailedReply(Reply):
    """A reply that did not come (empty, or null after the retries): it reads as ``""``,
    and :class:`vadnb.cache.Cache` never stores it, so a re-run asks again. ``error`` says why."""

    failed = True

    def __new__(cls, error: str = "", text: str = ""):
        obj = super().__new__(cls, text)
        obj.error = clean_text(str(error))
        return obj

    def __reduce__(self):
        return (FailedReply, (self.error, str(self)))

    def __repr__(self) -> str:
        return f"FailedReply({self.error!r})"


def is_failed(reply: object) -> bool:
    """True for a :class:`FailedReply` (a reply that must not be cached)."""
    return getattr(reply, "failed", False) is True


@dataclass
class _Stat:
    role: str
    model: str
    profile: str
    calls: int = 0
    items: int = 0
    seconds: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0


_STATS: dict[tuple[str, str, str], _Stat] = {}


def call_stats():
    """Calls, items, seconds and tokens (Hugging Face LLM/VLM only; image tokens count as
    prompt tokens) per role and model since the last reset, as a DataFrame."""
    rows = [vars(s).copy() for s in _STATS.values()]
    return pd.DataFrame(rows, columns=[f.name for f in fields(_Stat)])


def reset_call_stats() -> None:
    _STATS.clear()


#: Model loads since the last reset: (role, model, profile) -> [loads, seconds].
_LOADS: dict[tuple[str, str, str], list[float]] = {}


def record_load(role: str, model: str, profile: str, seconds: float) -> None:
    """Count one model load (``vadnb.models.load`` calls it for every backend it builds)."""
    entry = _LOADS.setdefault((role, model, profile), [0, 0.0])
    entry[0] += 1
    entry[1] += seconds


def load_stats():
    """Model loads and their seconds per role and model since the last reset, as a DataFrame."""
    rows = [{"role": r, "model": m, "profile": p, "loads": int(n), "seconds": s}
            for (r, m, p), (n, s) in _LOADS.items()]
    return pd.DataFrame(rows, columns=["role", "model", "profile", "loads", "seconds"])


def reset_load_stats() -> None:
    _LOADS.clear()


def pick_device(device: str | None = None) -> str:
    """``device`` if given, else "cuda" when a GPU is visible, else "cpu"."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


#: Model families whose fp16 activations overflow (Qwen2.5 replies "!!!!" or NaNs in fp16).
FP16_UNSAFE_FAMILIES = ("qwen2.5",)

#: Share of the card's memory that fp32 weights may take before fp32 is ruled out.
FP32_FIT_SHARE = 0.85


def compute_capability(device: str = "cuda") -> tuple[int, int] | None:
    """The CUDA card's compute capability, e.g. (7, 5) for a T4, (8, 0) for an A100; None on CPU."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def choose_dtype(device: str, dtype: Any = None, model: str | None = None,
                 params_b: float | None = None, *,
                 capability: tuple[int, int] | None = None,
                 memory_gb: float | None = None) -> tuple[Any, str]:
    """``(torch dtype, reason)`` for a model on ``device``: a precision the card really has.

    CPU: fp32; compute capability >= 8.0: bf16; below (a T4 is 7.5; bf16 is only emulated
    there, though ``torch.cuda.is_bf16_supported()`` says True): fp16, but fp32 for an
    fp16-overflowing family whose weights fit (else fp16, flagged UNVERIFIED).
    """
    import torch

    if dtype is not None:
        return (getattr(torch, dtype) if isinstance(dtype, str) else dtype), "asked for"
    if not str(device).startswith("cuda"):
        return torch.float32, "CPU"
    cap = tuple(capability) if capability is not None else compute_capability(device)
    if cap >= (8, 0):
        return torch.bfloat16, f"native bf16 (compute capability {cap[0]}.{cap[1]})"
    where = f"compute capability {cap[0]}.{cap[1]}: no native bf16"
    name = str(model or "").lower().replace("_", ".")
    if not any(family in name for family in FP16_UNSAFE_FAMILIES):
        return torch.float16, where
    if memory_gb is None:
        memory_gb = torch.cuda.get_device_properties(device).total_memory / 1e9
    if params_b is not None and params_b * 4 <= FP32_FIT_SHARE * memory_gb:
        return torch.float32, f"{where}; fp32 because this family overflows in fp16"
    return torch.float16, (f"{where}; fp16 because fp32 weights do not fit; UNVERIFIED: this "
                           "family's text models overflow in fp16 (run scripts/gpu_check.py "
                           "--real-weights on the card)")


def run_batched(fn: Callable[[list[Any]], list[Any]], items: Sequence[Any], batch_size: int,
                desc: str = "") -> list[Any]:
    """``fn`` over ``items`` in batches (a progress bar past one batch); on CUDA
    out-of-memory the failed batch's memory goes back to the card and the batch is halved
    and retried, down to one item (whose OOM is raised)."""
    from ..progress import bar as progress_bar

    items = list(items)
    out: list[Any] = []
    size = max(1, int(batch_size))
    # one bar per stage: none inside a stage that shows its own, none for sub-second steps
    bar = progress_bar(total=len(items), desc=desc, disable=len(items) <= size)
    i = 0
    while i < len(items):
        chunk = items[i : i + size]
        try:
            res = list(fn(chunk))
        except Exception as err:  # noqa: BLE001 - only OOM is handled, the rest re-raised
            import torch

            oom = isinstance(err, torch.cuda.OutOfMemoryError) or (
                isinstance(err, RuntimeError) and "out of memory" in str(err).lower())
            if not oom or size == 1:
                raise
            size = max(1, min(size, len(chunk)) // 2)
            torch.cuda.empty_cache()  # a no-op where CUDA was never initialised
            continue
        if len(res) != len(chunk):
            raise RuntimeError(f"{desc}: model returned {len(res)} outputs for {len(chunk)} inputs")
        out.extend(res)
        i += len(chunk)
        bar.update(len(chunk))
    bar.close()
    return out


class Backend:
    """Base of every role's backend: subclasses set ``role`` and wrap each call's work in
    ``with self._count(n_items):``. ``meaningless``: a random-init (tiny) model."""

    role: str = ""

    def __init__(self, name: str, profile: str = "custom", device: str = "cpu",
                 batch_size: int = 8, meaningless: bool = False):
        self.name = name
        self.profile = profile
        self.device = device
        self.batch_size = batch_size
        self.meaningless = meaningless
        self.released = False

    def __repr__(self) -> str:
        flag = ", tiny: outputs are meaningless" if self.meaningless else ""
        return (f"{type(self).__name__}({self.name!r}, profile={self.profile!r}, "
                f"device={self.device!r}{flag})")

    @property
    def stat(self) -> _Stat:
        """This model's running count of calls, items and seconds since the last reset."""
        key = (self.role, self.name, self.profile)
        return _STATS.setdefault(key, _Stat(*key))

    @contextlib.contextmanager
    def _count(self, items: int) -> Iterator[_Stat]:
        """Count one call of ``items`` items and its seconds; yields this model's running stat."""
        if self.released:
            raise RuntimeError(f"{self!r} was released; load the {self.role} again")
        stat = self.stat
        t0 = time.perf_counter()
        try:
            yield stat
        finally:
            stat.calls += 1
            stat.items += items
            stat.seconds += time.perf_counter() - t0

    def release(self) -> None:
        """Free the model's memory (GPU included), so the next role fits on the card."""
        import torch

        self.model = None
        self.released = True
        gc.collect()
        torch.cuda.empty_cache()

    def _embed_all(self, fn: Callable[[list[Any]], list[Any]], items: Sequence[Any],
                   desc: str, dim: int) -> np.ndarray:
        """``fn`` over ``items`` in batches, counted, as float32 rows [N, dim] (none: [0, dim])."""
        items = list(items)
        with self._count(len(items)):
            if not items:
                return np.zeros((0, dim), np.float32)
            return np.stack(run_batched(fn, items, self.batch_size, desc=desc))

    def __enter__(self):
        return self

    def __exit__(self, *_exc) -> None:
        self.release()


Messages = list[dict[str, Any]]


class LLMBackend(Backend):
    """A chat LLM: ``llm(messages)`` is ``llm.batch([messages])[0]``."""

    role = "llm"

    def __call__(self, messages: Messages, **kwargs: Any) -> Reply:
        return self.batch([messages], **kwargs)[0]


class VLMBackend(Backend):
    """A vision-language model: ``vlm(images, prompt)`` is ``vlm.batch([(images, prompt)])[0]``."""

    role = "vlm"

    def __call__(self, images: Sequence[Any], prompt: str, **kwargs: Any) -> Reply:
        return self.batch([(images, prompt)], **kwargs)[0]


def text_list(texts: Sequence[str], call: str) -> list[str]:
    """``texts`` as a list of str; one bare string is refused (it would embed each letter)."""
    if isinstance(texts, str):
        raise TypeError(f"{call} takes a list of strings; wrap a single text in [...]")
    return [str(t) for t in texts]


def clip_list(clips: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """``clips`` as lists of frames; an empty clip is refused (it has no embedding)."""
    clips = [list(c) for c in clips]
    if any(len(c) == 0 for c in clips):
        raise ValueError("encode_video got an empty clip; every clip needs at least one frame")
    return clips


def unit_rows(x: Any) -> np.ndarray:
    """A torch tensor [N, D] as float32 numpy rows of length 1 (cosine similarity = dot)."""
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy().astype(np.float32)


def to_pil(image: Any):
    """A uint8 RGB array or a PIL image as an RGB PIL image."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    return Image.fromarray(as_uint8_rgb(image))


def as_uint8_rgb(image: Any) -> np.ndarray:
    """A PIL image or array as uint8 RGB [H, W, 3]."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return a
