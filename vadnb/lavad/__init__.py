"""LAVAD: training-free video anomaly detection with captions and an LLM (notebooks 20-40).

Zanella et al., CVPR 2024: captions of every 16th frame, an LLM's summary and score per
window, refined by vision-language similarity. The algorithm reads top to bottom in
:mod:`.core`; :mod:`.differences`, :mod:`.official` and :mod:`.lesson` hold the rest.

>>> import vadnb.lavad as lavad
>>> det = lavad.run("my_video.mp4", profile="tiny")          # doctest: +SKIP
>>> det.segments[["time_s", "summary", "raw_score", "score"]]  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..cache import Cache
from ..result import TINY_WARNING, Detection
from ..runtime import Roles, Runtime
from ..stages import configure
from . import core
from .core import (SCORE_CONTEXT, SCORE_FORMAT, SUMMARY_PROMPT, Config, clean_captions, last_line,
                   parse_scores, pipeline, refine_scores, score_messages, summary_messages,
                   summary_scores, to_frames, window_frames)
from .differences import DIFFERENCES
from .video_clip import VIDEO_CLIPS, clip_frames, spatial_crops
from .lesson import (OPTIONS, options_statement, options_table, oracle_backends,
                     plot_contact_sheet, similarity_statement, stage_tables, truth_statement)
from .official import (PAPER_CAPTIONERS, SCORE_CONTEXTS, load_released, paper_config,
                       refine_from_neighbours)
from .runner import evaluate, frame_scores_of, rescore, to_detection

__all__ = [
    "Config", "paper_config", "DIFFERENCES", "PAPER_CAPTIONERS", "SCORE_CONTEXTS",
    "window_frames", "clip_frames", "spatial_crops", "summary_scores", "load_released",
    "refine_from_neighbours", "run", "run_many", "evaluate", "summary_messages",
    "score_messages", "last_line", "clean_captions", "refine_scores", "to_frames",
    "parse_scores", "frame_scores_of", "rescore", "stage_tables", "oracle_backends",
    "OPTIONS", "options_table", "options_statement",
    "pipeline", "Detection", "TINY_WARNING",
]


def run_many(videos: Sequence[str | os.PathLike], *, config: Config | None = None,
             profile: str | None = None, backends: dict[str, Any] | None = None,
             cache: Cache | str | os.PathLike | None = None,
             **overrides: Any) -> list[Detection]:
    """:func:`run` on several videos, stage by stage, so each model is loaded once (each
    Detection's ``model_calls`` holds the whole batch's calls)."""
    from ..video import VideoError

    cfg = configure(Config, config, overrides, "LAVAD")
    captioners = ["captioner"] + [f"captioner.{i}" for i in range(1, len(cfg.captioner_models))]
    models = {"llm": cfg.llm_model, "embedder": cfg.embedder_model,
              "captioner": cfg.captioner_model, **dict(zip(captioners, cfg.captioner_models))}
    rt = Runtime(Roles(profile, entries={r: "captioner" for r in captioners}, models=models,
                       backends=backends), cache)
    opened = []
    for video in videos:
        ref = rt.video(video)
        if not ref.fps > 0:  # LAVAD's windows are in seconds
            raise VideoError(f"video reports no frame rate: {video}; re-encode it with one, "
                             "e.g. `ffmpeg -i in.mp4 -r 30 out.mp4`")
        opened.append(ref)
    try:  # each stage shows its own bar over every video's model calls
        results = core.pipeline(rt, opened, cfg, captioners)
    finally:
        rt.release()
    prof = _detection_profile(rt.roles, captioners + ["embedder", "llm"])
    calls = rt.model_calls()
    return [to_detection(r, cfg, prof, calls) for r in results]


def _detection_profile(roles: Roles, names: list[str]) -> str:
    """The profile: "tiny" if a given backend is meaningless, else the roles' ("cpu" stays "cpu"
    though its image models are tiny); "custom" when given backends differ."""
    found = {str(roles.given[r].profile) if r in roles.given else roles.resolved_profile()
             for r in names}
    if "tiny" in found or any(getattr(roles.given.get(r), "meaningless", False) for r in names):
        return "tiny"
    return found.pop() if len(found) == 1 else "custom"


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: dict[str, Any] | None = None, cache: Cache | str | os.PathLike | None = None,
        **overrides: Any) -> Detection:
    """Score every frame of ``video`` with LAVAD. ``backends`` maps a role ("captioner",
    "embedder", "llm") to a backend you built; other keywords override :class:`Config`."""
    return run_many([video], config=config, profile=profile, backends=backends, cache=cache,
                    **overrides)[0]


# ------------------------------------------- the declaration (vadnb.registry): read by every table
from ..registry import protocol, register  # noqa: E402


def _cost(fps: float, captioners: int = 1, published: bool = False, **_: Any
          ) -> list[tuple[str, str, float, str]]:
    """Model calls per minute of video (``published``: 5 captioners on every frame)."""
    n, c = 60.0 * fps, Config()
    p = n / c.stride
    caption = ((5 * n, "5 captioners x every frame") if published else
               (captioners * p, f"{captioners} x frames/{c.stride}"))
    return [("captioner", "captioner", caption[0], caption[1]),
            ("llm", "llm", 2 * p, f"2 x frames/{c.stride} (summary + score)"),
            ("embedder", "embedder", c.frames_per_window * p,
             f"{c.frames_per_window} window frames x frames/{c.stride}"),
            ("embedder", "embedder_video", p, f"1 window video x frames/{c.stride}")]


register(
    "lavad", config=Config, run=run,
    roles={"captioner": "captioner", "embedder": "embedder", "llm": "llm"},
    cost=_cost, cost_variants={"lavad-published": {"published": True}}, keep_loaded=False,
    title="LAVAD (training-free): captions -> LLM scores -> refinement",
    stages=[
        ("frames", "video, native fps", "a centre frame\nevery 16 frames", "data"),
        ("caption", "captioner (BLIP-2)", "one caption per\ncentre frame", "model"),
        ("clean", "ImageBind image vs\ncaption text", "10 nearest captions\n= temporal description", "model"),
        ("summarise", "LLM", "one summary per\ncentre frame", "model"),
        ("score", "LLM", "score in [0, 1] per\ncentre frame", "model"),
        ("refine", "ImageBind video vs\nsummaries, K=10", "softmax-weighted\nscore per centre", "math"),
        ("to frames", "repeat x16", "frame scores", "out"),
    ],
    paper=("Harnessing Large Language Models for Training-free Video Anomaly Detection",
           "Luca Zanella, Willi Menapace, Massimiliano Mancini, Yiming Wang, Elisa Ricci",
           "CVPR 2024", "2404.01014", "github.com/lucazanella/lavad"),
    protocols=[
        protocol("UCF-Crime", "test (290)", "frame AUC", 80.28,
                 "load_ucf_crime(root).subset('test')"),
        protocol("XD-Violence", "test (800)", "frame AP", 62.01,
                 "load_xd_violence(root).subset('test')", ap_variant="trapezoid"),
        protocol("XD-Violence", "test (800)", "frame AUC", 85.36,
                 "load_xd_violence(root).subset('test')")],
)
