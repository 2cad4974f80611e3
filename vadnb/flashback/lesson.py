"""Teaching helpers for notebook 75: perfect perception, and the memory and the segments in
one picture."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..cache import Cache
from ..stages import configure
from . import core, memory


#: Words by which a caption names a campus anomaly class (others: the class name itself).
_CLASS_WORDS = {"Vehicle": ("car", "truck", "van", "drives"), "Running": ("run", "sprint"),
                "Fallen": ("lies", "collapses", "falls", "fallen"),
                "Object_left": ("left alone", "unattended", "bag", "suitcase")}


def oracle_backends(benchmark: Any) -> dict[str, Any]:
    """An embedder that *reads the ground truth* of ``benchmark``'s frames (by pixel hash):
    Flashback with perfect perception."""
    from ..lesson import frame_truth, pixel_key
    from ..models.scripted import ScriptedEmbedder
    classes = sorted({str(c) for c in benchmark.videos.label} - {"Normal"})
    dim = 2 + len(classes) + 8
    truth = frame_truth(benchmark)

    def axis(i: int) -> np.ndarray:
        return np.eye(dim)[i]

    def image_vector(image: np.ndarray) -> np.ndarray:
        kind = truth.get(pixel_key(image), (None,))[0]
        if kind is None:
            raise ValueError("the oracle only knows the frames of the benchmark it was built "
                             "from; run it on those videos")
        return axis(0) if kind == "Normal" else axis(1) + axis(2 + classes.index(kind))

    words = {c: _CLASS_WORDS.get(c, (c.lower(),)) for c in classes}
    anomalous = {a[0] for _, a in memory.parse_reply(memory.HANDWRITTEN_PATH.read_text())[0]}

    def text_vector(text: str) -> np.ndarray:
        caption = text.split("]", 1)[-1].lstrip(": ") if text.startswith("[") else text
        rng = np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))
        noise = 0.15 * rng.normal(size=dim)
        if caption not in anomalous and not text.startswith("[Anomalous]"):
            return axis(0) + noise
        hit = [c for c in classes if any(w in caption.lower() for w in words[c])]
        return axis(1) + noise + (axis(2 + classes.index(hit[0])) if hit else 0)

    return {"embedder": ScriptedEmbedder(image_fn=image_vector, text_fn=text_vector,
                                         name="oracle-embedder")}


def respond(video: Any, *, profile: str | None = None, backends: dict[str, Any] | None = None,
            cache: Cache | str | None = None, **overrides: Any
            ) -> tuple[memory.CaptionMemory, dict[str, Any]]:
    """The memory and :func:`core.pipeline`'s whole output (segment embeddings included)."""
    from . import _respond
    _, _, mem, out = _respond(video, configure(core.Config, None, overrides, "Flashback"),
                              profile, backends, cache)
    return mem, out


def perfect_perception(benchmark: Any, *, cache: Cache | str | None = None,
                       split: str = "test") -> pd.DataFrame:
    """``variant``, ``settings``, ``auc``, ``ap`` of the oracle with the hand-written memory on
    ``split``, under vadnb's defaults, the research code's choices and a few ablations."""
    from .. import metrics
    from . import run
    oracle = oracle_backends(benchmark)
    videos = benchmark.subset(split).videos
    labels = {n: benchmark.frame_labels(n) for n in videos["name"]}
    variants = [("vadnb (default)", {}),
                ("research code's tail and 30 fps", {"tail": "zero", "frame_rate": 30.0}),
                ("alpha = 0.7", {"anomalous_scale": 0.7}),
                ("top-1 caption", {"top_k": 1}),
                ("label prefixes", {"text_prefix": True})]
    rows = []
    for name, settings in variants:
        scores = {n: run(p, backends=oracle, cache=cache, memory="handwritten",
                         **settings).frame_scores
                  for n, p in zip(videos["name"], videos["path"])}
        rows.append({"variant": name,
                     "settings": ", ".join(f"{k}={v!r}" for k, v in settings.items()) or "-",
                     "auc": metrics.frame_auc(labels, scores),
                     "ap": metrics.frame_ap(labels, scores)})
    return pd.DataFrame(rows)


def plot_memory_space(mem: memory.CaptionMemory, segments: np.ndarray,
                      segment_labels: Sequence[Any] | None = None, ax: Any = None,
                      title: str = "caption memory and segments (2-D PCA)") -> Any:
    """The captions and the segments on two principal components (``segment_labels``: 0/1)."""
    import matplotlib.pyplot as plt

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    parts = [unit(mem.normal_embeddings), unit(mem.anomalous_embeddings), unit(segments)]
    centred = np.concatenate(parts) - np.concatenate(parts).mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    n1, n2 = len(parts[0]), len(parts[0]) + len(parts[1])
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5))
    ax.scatter(*xy[:n1].T, marker="o", c="tab:blue", alpha=0.5, label="normal captions")
    ax.scatter(*xy[n1:n2].T, marker="^", c="tab:red", alpha=0.5, label="anomalous captions")
    seg = xy[n2:]
    if segment_labels is None:
        ax.scatter(*seg.T, marker="x", c="k", label="segments")
    else:
        lab = np.asarray(segment_labels, bool)
        ax.scatter(*seg[~lab].T, marker="x", c="tab:cyan", label="normal segments")
        ax.scatter(*seg[lab].T, marker="x", c="tab:orange", label="anomalous segments")
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend(fontsize=8)
    return ax
