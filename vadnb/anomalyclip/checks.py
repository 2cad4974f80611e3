"""The checks between AnomalyCLIP's Config fields, kept out of :mod:`.core` so that the
Config there reads as the paper's settings."""

from __future__ import annotations

from typing import Any


def fields_agree(cfg: Any) -> Any:
    """The attention heads split the temporal model's width, and top-k / bottom-k fit in the
    segments of a video."""
    if cfg.emb_size % cfg.heads:
        raise ValueError(f"Config.emb_size ({cfg.emb_size}) must be divisible by "
                         f"Config.heads ({cfg.heads})")
    if max(cfg.top_k, cfg.bottom_k) > cfg.num_segments:
        raise ValueError(f"Config.top_k ({cfg.top_k}) and Config.bottom_k "
                         f"({cfg.bottom_k}) cannot exceed Config.num_segments "
                         f"({cfg.num_segments})")
    return cfg
