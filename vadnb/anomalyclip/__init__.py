"""AnomalyCLIP: weakly supervised anomaly detection and recognition in CLIP's latent space
(notebook 50 teaches it).

Zanella et al., "Delving into CLIP latent space for Video Anomaly Recognition" (CVIU 2024).
Only *video-level* labels are needed for training ("this video contains a Robbery"); the
method learns which frames are anomalous, and of which class, by itself:

1. **Frame features.** A frozen CLIP image encoder embeds every frame (``extract_features``;
   or read the authors' pre-extracted ``.npy`` files with ``load_features``).
2. **Normal centroid.** The mean feature over all frames of the *normal* training videos.
   Every feature is re-centred on it: normality becomes the origin of the space.
3. **Class directions.** A CoOp prompt learner (8 learnable context tokens per anomaly
   class, random init) goes through CLIP's frozen text encoder (its text projection is
   trained). Each class's text feature, re-centred on the centroid and normalised, is one
   direction ``d_c`` in the image space; the normal class has no direction.
4. **Likelihoods.** The projections ``x . d_c`` of a re-centred frame feature, batch-normalised
   (``BatchNorm1d(affine=False)``), are per-class likelihoods: far along ``d_c`` = looks like c.
5. **Multiple-instance learning.** A training video is sampled as 32 segments x 16
   consecutive frames. Per-frame likelihoods summed over a segment rank the segments; after
   random segment dropout, the top-3 segments along the true class (normal videos: along
   the sum of classes) and the bottom-3 of abnormal videos are *selected*.
6. **Temporal model.** Linear -> an axial transformer over the 32 x 16 grid (attention
   along the segments, then along the frames of a segment) -> LayerNorm -> Linear ->
   sigmoid: one anomaly score per frame.
7. **Loss** (``anomalyclip_loss``): push the top-k frames along their class direction,
   pull normal frames' largest projection down, a negative log-likelihood on
   ``p(c) = softmax(likelihoods)_c * score`` and ``p(normal) = 1 - score`` for the three
   selections, plus temporal smoothness and sparsity on abnormal videos' scores.

At test time every frame is scored: the (strided) feature sequence is padded by
wrap-around to a multiple of 32 x 16 and cut into grids of that shape.

Where vadnb departs from the public code, :data:`DIFFERENCES` says what, why and the
effect (notebook 50 renders it); :data:`RECIPES` holds the paper's per-dataset settings and
:func:`convert_release` turns the authors' released checkpoints into vadnb's format.
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
                       load_release_checkpoint, map_release_state, recipe, release_benchmark)
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
    "check_feature_scale", "class_directions", "convert_release", "load_release_checkpoint",
    "release_benchmark", "oracle_clip",
]


# ------------------------------------------- the declaration (vadnb.registry): read by every table
def _cost(fps: float, **_: Any) -> list[tuple[str, str, float, str]]:
    """Model calls per minute of video (training not included: it is paid once)."""
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
