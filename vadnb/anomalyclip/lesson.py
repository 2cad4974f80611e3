"""Teaching helpers for notebook 50: the latent space in 2-D, how far each class's frames lie
along its direction, loss curves, and a perfect-perception CLIP (:func:`oracle_clip`)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .core import LOSS_TERMS, NORMAL


def latent_space(model: Any, features: Mapping[str, np.ndarray],
                 frame_labels: Mapping[str, np.ndarray], video_classes: Mapping[str, str],
                 max_points: int = 4000, seed: int = 0) -> dict[str, Any]:
    """A 2-D PCA of the re-centred frame features: ``points``, ``centroid``, ``directions``."""
    from sklearn.decomposition import PCA
    rng = np.random.default_rng(seed)
    rows, xs = [], []
    for v, x, y in _centred(model, features, frame_labels):
        xs.append(x)
        rows.append(pd.DataFrame({"video": v, "kind": np.where(y > 0, video_classes[v], NORMAL)}))
    x = np.concatenate(xs)
    meta = pd.concat(rows, ignore_index=True)
    if len(x) > max_points:
        keep = np.sort(rng.choice(len(x), max_points, replace=False))
        x, meta = x[keep], meta.iloc[keep].reset_index(drop=True)
    pca = PCA(n_components=2, random_state=seed).fit(x)
    xy = pca.transform(x)
    with torch.no_grad():
        d = model.directions().cpu().numpy()
    d2 = d @ pca.components_.T  # length < 1: the part of the direction lying in this plane
    meta["x"], meta["y"] = xy[:, 0], xy[:, 1]
    return {"points": meta, "centroid": pca.transform(np.zeros((1, x.shape[1])))[0],
            "directions": dict(zip(model.class_names, d2)),
            "explained_variance": pca.explained_variance_ratio_.tolist()}


def _centred(model: Any, features: Mapping[str, np.ndarray],
             frame_labels: Mapping[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray, Any]]:
    """Per video: its re-centred features, and its frame labels at their stride, cut or
    edge-padded to the features' length."""
    centroid, stride = model.centroid.cpu().numpy(), model.config.feature_stride
    for v, f in features.items():
        y = np.asarray(frame_labels[v])[::stride][:len(f)]
        yield (v, np.asarray(f, np.float32) - centroid,
               np.pad(y, (0, len(f) - len(y)), mode="edge") if len(y) < len(f) else y)


def direction_separation(model: Any, features: Mapping[str, np.ndarray],
                         frame_labels: Mapping[str, np.ndarray],
                         video_classes: Mapping[str, str]) -> pd.DataFrame:
    """Per class: its anomalous frames' mean gap from normal frames along its direction (in SD)."""
    with torch.no_grad():
        d = model.directions().cpu().numpy()
    normal, odd = [], {c: [] for c in model.class_names}
    for v, x, y in _centred(model, features, frame_labels):
        proj = x @ d.T
        normal.append(proj[y == 0])
        if video_classes[v] in odd:
            odd[video_classes[v]].append(proj[y > 0, model.class_names.index(video_classes[v])])
    normal_proj = np.concatenate(normal)
    rows = []
    for i, c in enumerate(model.class_names):
        x = np.concatenate(odd[c]) if odd[c] else np.zeros(0)
        spread = float(normal_proj[:, i].std()) or 1.0
        rows.append({"class": c, "anomalous_frames": len(x),
                     "separation": float((x.mean() - normal_proj[:, i].mean()) / spread)
                     if len(x) else float("nan")})
    return pd.DataFrame(rows)


def describe_separation(table: pd.DataFrame, apart: float = 2.0) -> str:
    """One computed sentence per class of :func:`direction_separation` (Markdown)."""
    lines = []
    for row in table.to_dict(orient="records"):
        name = row["class"]
        if not row["anomalous_frames"]:
            lines.append(f"- **{name}**: no anomalous frame in these videos.")
            continue
        sep = row["separation"]
        verdict = ("apart from" if sep >= apart else
                   "somewhat apart from" if sep >= apart / 2 else "mixed with")
        lines.append(f"- **{name}**: its {row['anomalous_frames']} anomalous frames lie "
                     f"{sep:+.1f} normal-frame standard deviations along its direction: "
                     f"{verdict} normal frames.")
    return "\n".join(lines)


def plot_latent_space(space: Mapping[str, Any], title: str = "", warning: str = ""):
    """Scatter of :func:`latent_space`, with the centroid and one arrow per class direction."""
    import matplotlib.pyplot as plt
    pts = space["points"]
    fig, ax = plt.subplots(figsize=(7, 6))
    normal = pts[pts["kind"] == NORMAL]
    ax.scatter(normal["x"], normal["y"], s=5, c="0.75", label="normal frames")
    colours = plt.get_cmap("tab10")
    cx, cy = space["centroid"]
    span = float(np.abs(pts[["x", "y"]].to_numpy() - [cx, cy]).max()) or 1.0
    for i, (cls, (dx, dy)) in enumerate(space["directions"].items()):
        colour = colours(i % 10)
        frames = pts[pts["kind"] == cls]
        if len(frames):
            ax.scatter(frames["x"], frames["y"], s=9, color=colour, label=f"{cls} frames")
        tip = (cx + span * dx, cy + span * dy)
        ax.annotate("", xy=tip, xytext=(cx, cy),
                    arrowprops={"arrowstyle": "->", "color": colour, "lw": 2})
        ax.text(*tip, f" {cls}", color=colour, fontsize=9)
        ax.update_datalim([tip])
    ax.scatter([cx], [cy], marker="X", s=90, c="k", label="normal centroid", zorder=5)
    ax.autoscale_view()
    var = space.get("explained_variance", [0, 0])
    ax.set(xlabel=f"PC 1 ({100 * var[0]:.0f} % of variance)",
           ylabel=f"PC 2 ({100 * var[1]:.0f} % of variance)",
           title=title or "Re-centred CLIP frame features and learned class directions")
    ax.legend(loc="best", fontsize=8)
    if warning:
        fig.text(0.5, 0.01, warning, ha="center", color="crimson", fontsize=8, wrap=True)
    fig.tight_layout()
    return fig


def plot_loss_curves(curves: pd.DataFrame, warning: str = ""):
    """One panel per loss term (and the total, and the learning rate) against the step."""
    import matplotlib.pyplot as plt
    terms = [*LOSS_TERMS, "total", "lr"]
    fig, axes = plt.subplots(2, 4, figsize=(13, 5.5), sharex=True)
    for ax, term in zip(axes.ravel(), terms):
        ax.plot(curves["step"], curves[term], lw=1)
        ax.set_title(term, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(terms):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    if warning:
        fig.suptitle(warning, color="crimson", fontsize=9)
    fig.tight_layout()
    return fig


def oracle_clip(benchmark: Any, text_clip: Any, separation: float = 4.0, noise: float = 0.5,
                seed: int = 0, stride: int = 1) -> Any:
    """A CLIP double that *knows the ground truth* of ``benchmark``'s frames (by pixel hash);
    the text tower is ``text_clip``'s."""
    import hashlib

    from ..lesson import frame_truth, pixel_key
    from ..models.base import as_uint8_rgb
    from ..models.scripted import ScriptedClip
    classes = [c for c in benchmark.classes if c != NORMAL]
    dim = int(text_clip.model.text_projection.shape[-1])
    rng = np.random.default_rng(seed)
    base = rng.normal(size=dim)
    base *= 10.0 / np.linalg.norm(base)  # a raw-scale point (ViT-B/16 features are not unit)
    dirs = np.linalg.qr(rng.normal(size=(dim, max(len(classes), 1))))[0].T
    truth = {k: shown for k, (shown, _) in frame_truth(benchmark, stride=stride).items()}
    tag = hashlib.sha1(json.dumps(sorted(truth.items())).encode()).hexdigest()[:10]

    def vector(image: np.ndarray) -> np.ndarray:
        key = pixel_key(image)
        if key not in truth:
            raise ValueError("the oracle only knows the frames of the benchmark it was built "
                             "from; run it on those videos")
        x = base + noise * np.random.default_rng(int(key[:12], 16)).normal(size=dim)
        if truth[key] != NORMAL:
            x = x + separation * dirs[classes.index(truth[key])]
        return x.astype(np.float32)

    class OracleClip(ScriptedClip):
        def encode_image_raw(self, images: Sequence[Any]) -> np.ndarray:  # what AnomalyCLIP reads
            images = list(images)
            with self._count(len(images)):
                return np.stack([vector(as_uint8_rgb(im)) for im in images])

    clip = OracleClip(vector, name=f"oracle-clip-{tag}-s{separation}-n{noise}-{seed}")
    clip.model, clip.tokenizer = text_clip.model, text_clip.tokenizer
    return clip

