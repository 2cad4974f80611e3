"""AnomalyCLIP (Zanella et al., CVIU 2024; notebook 50): weakly supervised detection and
recognition in CLIP's latent space, trained from video-level labels only.

Trap: it reads the *raw* CLIP visual output, never L2-normalised features.
"""

from __future__ import annotations

from typing import Any

from ..registry import protocol, register
from .core import (LOSS_TERMS, NORMAL, Config, class_directions, embed_frames,
                   normal_centroid, pad_wraparound, pipeline, repeat_strided, score_features)
from .differences import DIFFERENCES
from .lesson import (describe_separation, direction_separation, latent_space, oracle_clip,
                     plot_latent_space, plot_loss_curves)
from .model import (AnomalyCLIP, AxialTemporalModel, PromptLearner, load_checkpoint,
                    save_checkpoint)
from .official import (RECIPES, RELEASE_CLASSES, convert_release, load_features,
                       map_release_state, recipe, release_benchmark)
from .run import (Evaluation, check_feature_scale, evaluate, extract_features, feature_scale,
                  predict, recognition_metrics, run, video_class)
from .train import (_warmup_cosine, _warmup_cosine_per_epoch, anomalyclip_loss, fit,
                    sample_training_indices, select_segments, train)

__all__ = [
    "Config", "AnomalyCLIP", "AxialTemporalModel", "PromptLearner", "extract_features",
    "load_features", "normal_centroid", "sample_training_indices", "pad_wraparound",
    "select_segments", "anomalyclip_loss", "fit", "train", "predict", "evaluate",
    "Evaluation", "recognition_metrics", "save_checkpoint", "load_checkpoint", "run",
    "pipeline", "score_features", "latent_space", "plot_latent_space", "plot_loss_curves",
    "direction_separation", "describe_separation", "video_class", "LOSS_TERMS",
    "DIFFERENCES", "RECIPES", "RELEASE_CLASSES", "recipe", "feature_scale",
    "check_feature_scale", "class_directions", "convert_release", "release_benchmark",
    "oracle_clip"]


# ------------------------------------------- the declaration (vadnb.registry): read by every table
def _cost(fps: float, **_: Any) -> list[tuple[str, str, float, str]]:
    """Model calls per minute of video (training, paid once, not included)."""
    return [("clip", "clip", 60.0 * fps, "every frame")]


register(
    "anomalyclip", config=Config, run=run, roles={"clip": "clip"}, cost=_cost, keep_loaded=False,
    title="AnomalyCLIP (weakly supervised): CLIP features -> class directions -> scores",
    stages=[
        ("frames", "every frame", "RGB frames", "data"),
        ("encode", "CLIP ViT-B/16 image\nencoder (frozen)", "512-d feature\nper frame", "model"),
        ("re-centre", "minus the normal\ncentroid", "features around\nnormality", "math"),
        ("project", "learned prompts (CoOp)\n-> class directions", "likelihood per class\nper frame", "model"),
        ("temporal", "axial transformer\n(trained with MIL)", "anomaly score\nper frame", "model"),
        ("classify", "softmax x score", "frame scores +\nclass per frame", "out"),
    ],
    paper=("Delving into CLIP latent space for Video Anomaly Recognition",
           "Luca Zanella, Benedetta Liberatori, Willi Menapace, Fabio Poiesi, Yiming Wang, "
           "Elisa Ricci", "Computer Vision and Image Understanding (CVIU) 249, 2024",
           "2310.02835", "github.com/lucazanella/AnomalyCLIP"),
    protocols=[
        protocol("UCF-Crime", "train 1610 / test 290", "frame AUC", 86.36,
                 "load_ucf_crime(root, val=None)", class_metrics="mean one-vs-rest AUC/AP over "
                 "classes, top-1/top-5 video accuracy"),
        protocol("XD-Violence", "train 3954 / test 800", "frame AP", 78.51,
                 "load_xd_violence(root)", ap_variant="step", class_metrics="as UCF-Crime"),
        protocol("ShanghaiTech (weak split)", "train 238 / test 199", "frame AUC", 98.07,
                 "load_shanghaitech(root, split='weak', train_list=..., test_list=...)",
                 class_metrics="as UCF-Crime (17 classes)")],
)
