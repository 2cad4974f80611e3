"""AnomalyCLIP's Config checks, kept out of :mod:`.core` so its Config reads as the paper's."""

from __future__ import annotations

from typing import Any


def fields_agree(cfg: Any) -> Any:
    """The heads split the temporal width; top-k / bottom-k fit in a video's segments."""
    if cfg.emb_size % cfg.heads:
        raise ValueError(f"Config.emb_size ({cfg.emb_size}) must be divisible by "
                         f"Config.heads ({cfg.heads})")
    if max(cfg.top_k, cfg.bottom_k) > cfg.num_segments:
        raise ValueError(f"Config.top_k ({cfg.top_k}) and Config.bottom_k ({cfg.bottom_k}) cannot "
                         f"exceed Config.num_segments ({cfg.num_segments})")
    return cfg
