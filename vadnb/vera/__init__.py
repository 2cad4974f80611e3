"""VERA: verbalized learning of guiding questions, then scoring with them (notebook 70).

No weight changes: VERA trains a short list of questions a frozen VLM asks itself
(:mod:`.learn`); inference (:mod:`.core`) asks it about windows around every 16th frame, then
refines the 0/1 answers with a retrieval ensemble and smoothing. :mod:`.prompts` holds the
prompts and reply readers, :mod:`.run` the public run, :mod:`.official` the released files.

>>> import vadnb
>>> det = vadnb.detect("clip.mp4", method="vera", questions="learned_questions.json")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from ..registry import protocol, register
from .core import (PAPER_STEP3, VADNB_STEP3, Config, neighbour_count, paper_kernel, pipeline,
                   position_prior, refine_answers, retrieval_ensemble, round_scores,
                   smooth_segments)
from .differences import DIFFERENCES
from .learn import (LearnResult, _batches, ask_learner, even_frame_indices, learn_questions,
                    optimizer_step)
from .lesson import (CAMPUS_QUESTIONS, auc_note, inference_summary, learning_summary,
                     oracle_backends, perfect_perception, plot_history)
from .official import (from_initial_scores, load_initial_scores, xd_violence_ap,
                       xd_violence_frame_scores)
from .prompts import (DEFAULT_QUESTIONS_PATH, default_questions, learner_prompt,
                      load_questions, optimizer_prompt, parse_label, parse_questions,
                      read_label, official_inference_label, official_training_label,
                      save_questions)
from .run import run, run_many

__all__ = [
    "Config", "LearnResult", "DEFAULT_QUESTIONS_PATH", "default_questions", "load_questions",
    "save_questions", "learner_prompt", "optimizer_prompt", "parse_questions", "parse_label",
    "read_label", "official_inference_label", "official_training_label", "even_frame_indices",
    "neighbour_count", "retrieval_ensemble", "paper_kernel", "smooth_segments", "round_scores",
    "position_prior", "refine_answers", "learn_questions", "ask_learner", "optimizer_step",
    "pipeline", "plot_history", "run", "run_many", "load_initial_scores",
    "from_initial_scores", "xd_violence_frame_scores", "xd_violence_ap", "oracle_backends",
    "perfect_perception", "learning_summary", "inference_summary", "auc_note",
    "CAMPUS_QUESTIONS", "PAPER_STEP3", "VADNB_STEP3", "DIFFERENCES",
]

# ------------------------------------------- the declaration (vadnb.registry): read by every table
def _cost(fps: float, **_: Any) -> list[tuple[str, str, float, str]]:
    """Model calls per minute of video with the Config defaults (training not included)."""
    c = Config()
    p = 60.0 * fps / c.stride
    return [("vlm", "vlm", p, f"frames/{c.stride}, {c.window_frames} frames per call"),
            ("embedder", "embedder_video", p, f"frames/{c.stride} segment embeddings")]


register(
    "vera", config=Config, run=run, roles={"vlm": "vlm", "embedder": "embedder"}, cost=_cost,
    title="VERA (verbalized learning): learned questions -> VLM answers -> smoothing",
    stages=[
        ("train", "VLM as learner and\noptimizer, video labels", "at most 5 guiding\nquestions", "model"),
        ("frames", "every 16 frames,\n8 frames over 10 s", "frame windows", "data"),
        ("ask", "VLM with the\nlearned questions", "0/1 answer +\nexplanation", "model"),
        ("ensemble", "ImageBind similarity,\ntop 15% neighbours", "softmax-weighted\nsegment score", "math"),
        ("smooth", "Gaussian over\nsegments", "smoothed score", "math"),
        ("to frames", "repeat x16", "frame scores", "out"),
    ],
    paper=("VERA: Explainable Video Anomaly Detection via Verbalized Learning of "
           "Vision-Language Models", "Muchao Ye, Weiyang Liu, Pan He", "CVPR 2025",
           "2412.01095", "github.com/vera-framework/VERA"),
    protocols=[
        protocol("UCF-Crime", "train 1449 / val 161 / test 290", "frame AUC", 86.55,
                 "load_ucf_crime(root, val=0.1)  # or val=<VERA's list>"),
        protocol("XD-Violence", "train / val / test 800", "frame AUC", 88.26,
                 "load_xd_violence(root, val=<names of VERA's xd_val.json>)")],
)
