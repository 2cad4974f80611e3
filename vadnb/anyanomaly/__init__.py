"""AnyAnomaly: customizable video anomaly detection (C-VAD), taught in notebook 60.

The user *types* the anomaly ("a person falling") and a VLM is asked, per 24-frame segment,
whether it sees it in three views (key frame, masked key frame, 2x2 time grid).

>>> det = vadnb.detect("video.mp4", method="anyanomaly", prompts=["a fall"])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from .core import (TEMPLATES, VIEWS, Config, class_names, context_frames,
                   ensemble, pipeline, segment_bounds, select_key_frames)
from .prompts import _FORMAT, _TASK  # noqa: F401  (tests read the prompt parts)
from .prompts import OFFICIAL_SYSTEM, build_prompt
from .differences import DIFFERENCES
from .fusion import fuse, fused_frame_scores, official_score, parse_score, smooth
from .lesson import (FusionTuning, oracle_backends, prompt_scores, segment_views,
                     text_embeddings, tune_fusion)
from .official import DATASET_WINDOWS, official_frame_scores, official_fusion
from .run import parse_reason, run
from .views import (best_window, cut_windows, grid_image, heat_map, masked_frame, minmax,
                    window_boxes, window_probabilities)

__all__ = [
    "Config", "DATASET_WINDOWS", "DIFFERENCES", "TEMPLATES", "VIEWS", "run", "pipeline",
    "segment_bounds", "context_frames", "window_boxes", "cut_windows", "window_probabilities",
    "heat_map", "masked_frame", "best_window", "grid_image", "text_embeddings", "class_names",
    "ensemble", "select_key_frames", "build_prompt", "official_score", "parse_score", "parse_reason", "fuse",
    "smooth", "fused_frame_scores", "minmax", "official_fusion", "official_frame_scores",
    "segment_views", "prompt_scores", "oracle_backends", "tune_fusion", "FusionTuning",
]


# ------------------------------------------- the declaration (vadnb.registry): read by every table
from ..registry import protocol, register  # noqa: E402
from .run import ROLES  # noqa: E402


def _cost(fps: float, keywords: int = 1, **_: Any) -> list[tuple[str, str, float, str]]:
    """Model calls per minute of video for ``keywords`` texts."""
    n, c = 60.0 * fps, Config()
    s = n / c.segment_length
    windows = sum((c.position_size // w) ** 2 for w in c.window_sizes)
    return [("vlm", "vlm_1_image", 3 * keywords * s,
             f"3 views x {keywords} keyword(s) x frames/{c.segment_length}"),
            ("clip", "clip", n + c.context_frames * windows * s,
             (f"every frame + {c.context_frames} frames x {windows} windows x "
              f"frames/{c.segment_length}"))]


register(
    "anyanomaly", config=Config, run=run, roles=ROLES, cost=_cost,
    title="AnyAnomaly (zero-shot, user's text): context-aware VQA per segment",
    stages=[
        ("frames", "segments of\n24 frames", "segment frames", "data"),
        ("key frame", "CLIP ViT-B/32 vs\nthe typed description", "best frame +\n4 context frames", "model"),
        ("contexts", "WinCLIP windows,\n2x2 time grid", "key / masked /\ngrid images", "model"),
        ("ask", "VLM (Qwen2.5-VL), 3\ncalls per description", "3 scores + reasons\nper segment", "model"),
        ("fuse", "0.6 key + 0.3 position\n+ 0.1 temporal", "segment score", "math"),
        ("to frames", "repeat x24, Gaussian,\nmax over descriptions", "frame scores\n(no per-video min-max)", "out"),
    ],
    paper=("AnyAnomaly: Zero-Shot Customizable Video Anomaly Detection with LVLM",
           "Sunghyun Ahn, Youngwan Jo, Kijung Lee, Sein Kwon, Inpyo Hong, Sanghyun Park",
           "WACV 2026", "2503.04504", "github.com/SkiddieAhn/Paper-AnyAnomaly"),
    protocols=[
        protocol("C-ShT", "test (ShanghaiTech)",
                 "frame AUC per anomaly type (C-VAD protocol), averaged", 85.72,
                 "load_cvad(ground_truth_dir, dataset='shanghaitech', anomaly_type=...)",
                 class_metrics="per type"),
        protocol("C-Ave", "test (Avenue)",
                 "frame AUC per anomaly type (C-VAD protocol), averaged", 90.27,
                 "load_cvad(ground_truth_dir, dataset='avenue', anomaly_type=...)",
                 class_metrics="per type"),
        protocol("Avenue", "test (21)", "frame AUC", 87.3, "load_avenue(root)"),
        protocol("ShanghaiTech", "test (107)", "frame AUC", 79.7, "load_shanghaitech(root)"),
        protocol("UBnormal", "test", "frame AUC", 74.5, "load_ubnormal(root)")],
)
