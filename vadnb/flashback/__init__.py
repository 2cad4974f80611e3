"""Flashback: anomaly detection as retrieval from a memory of captions (notebook 75).

An LLM writes, once, a memory of paired normal and anomalous captions (recall,
:mod:`.memory`); each 1 s segment is then scored by the captions it retrieves in a shared
video-text space (respond, :mod:`.core`): no LLM call while it watches.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from ..cache import Cache
from ..result import Detection
from ..registry import protocol, register
from ..runtime import Roles, Runtime
from ..stages import configure
from . import memory
from .core import (PAPER_MEMORY, SMOOTHING_KERNEL, Config, OnlineScorer, clip_order,
                   memory_matrix, pipeline, retrieve, sample_frames, segment_scores,
                   segment_starts, segments_to_frames, smooth)
from .differences import DIFFERENCES
from .memory import CaptionMemory, RecallError

__all__ = ["Config", "run", "pipeline", "explanations", "CaptionMemory", "RecallError",
           "OnlineScorer", "segment_starts", "sample_frames", "clip_order", "memory_matrix",
           "retrieve", "segment_scores", "segments_to_frames", "smooth", "SMOOTHING_KERNEL",
           "PAPER_MEMORY", "DIFFERENCES", "memory"]


def explanations(mem: CaptionMemory, indices: np.ndarray, sims: np.ndarray,
                 shown: int = 3) -> list[str]:
    """Each segment's first ``shown`` retrieved captions with their class and similarity."""
    captions, n = mem.captions, len(mem.normal)
    return [" | ".join(f"{'anomalous' if j >= n else 'normal'} {d:.3f}: {captions[j]}"
                       for j, d in zip(row[:shown], ds[:shown]))
            for row, ds in zip(indices, sims)]


def _respond(video: str | os.PathLike, cfg: Config, profile: str | None,
             backends: dict[str, Any] | None, cache: Cache | str | None
             ) -> tuple[Runtime, Any, CaptionMemory, dict[str, Any]]:
    """The runtime (models released), the video, the memory and the pipeline's output."""
    roles = Roles(profile, models={"llm": cfg.llm_model, "embedder": cfg.embedder_model},
                  backends=backends)
    rt = Runtime(roles, cache)
    try:
        v = rt.video(video)
        mem = memory.obtain(rt, cfg)
        return rt, v, mem, pipeline(rt, v, mem, cfg)
    finally:
        roles.release()


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: dict[str, Any] | None = None, cache: Cache | str | None = None,
        **overrides: Any) -> Detection:
    """Score every frame of ``video`` with Flashback: the caption memory (the only LLM calls,
    once per recipe), then retrieval per segment (``segments`` keeps what it retrieved)."""
    cfg = configure(Config, config, overrides, "Flashback")
    rt, v, mem, out = _respond(video, cfg, profile, backends, cache)
    starts, length = out["starts"], out["length"]
    fps = cfg.frame_rate or v.fps
    segments = pd.DataFrame({
        "start_frame": starts, "end_frame": np.minimum(starts + length, v.num_frames),
        "centre_frame": starts + length // 2, "time_s": starts / fps,
        "score": out["segment_scores"],
        "explanation": explanations(mem, out["indices"], out["similarities"]),
        "captions": [" || ".join(mem.captions[j] for j in row) for row in out["indices"]],
        "similarities": [" ".join(f"{d:.4f}" for d in ds) for ds in out["similarities"]],
        "anomalous": [" ".join(str(int(f)) for f in fl) for fl in out["flags"]]})
    used = ["embedder"] + (["llm"] if mem.recipe.get("source") == "llm" else [])
    return Detection(
        video=str(v.path), method="flashback", profile=rt.roles.detection_profile(used),
        frame_scores=out["frame_scores"].astype(np.float32), fps=v.fps, segments=segments,
        model_calls=rt.model_calls(),
        extras={"memory_recipe": mem.recipe, "memory_counts": mem.counts,
                "memory_size": {"normal": len(mem.normal), "anomalous": len(mem.anomalous)},
                "segment_frames": int(length), "config": asdict(cfg)})


# ------------------------------------------- the declaration (vadnb.registry): read by every table
def _cost(fps: float, **_: Any) -> list[tuple[str, str, float, str]]:
    """Model calls per minute of video (the memory's LLM calls are made once, not per video)."""
    c = Config()
    return [("embedder", "embedder_video", 60.0 / c.hop_s,
             f"one {c.frames_per_segment}-frame segment per {c.hop_s} s")]


register(
    "flashback", config=Config, run=run, roles={"llm": "llm", "embedder": "embedder"},
    cost=_cost, latency_s=Config().segment_s,
    title="Flashback (recall, respond): a caption memory written once, then retrieval",
    stages=[
        ("recall", "LLM, once\n(paired captions)", "normal + anomalous\ncaption memory", "model"),
        ("embed memory", "embedder,\ntext side", "caption vectors", "model"),
        ("segments", "1 s, 0.5 s hop,\n16 frames each", "segment clips", "data"),
        ("embed segments", "embedder,\nvideo side", "segment vectors", "model"),
        ("respond", "top-10 captions,\nsoftmax weights", "anomalous share\n= segment score", "math"),
        ("to frames", "mean of covering\nsegments, 5-tap smoothing", "frame scores", "out"),
    ],
    paper=("Flashback: Memory-Driven Zero-shot, Real-time Video Anomaly Detection",
           "H. Lee, H. Kim, I.-J. Kim, Y. Choi", "arXiv 2025 (v2)", "2505.15205",
           "github.com/Haawron/agent-based-vad"),
    protocols=[
        protocol("UCF-Crime", "test 290", "frame AUC (micro)", 87.3,
                 "load_ucf_crime(root)  # zero-shot: no training split used"),
        protocol("XD-Violence", "test 800", "frame AP", 75.1,
                 "load_xd_violence(root)  # protocol details not retrievable", ap_variant="step")],
)
