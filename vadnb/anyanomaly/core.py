"""AnyAnomaly (Ahn et al., WACV 2026; notebook 60), top to bottom: Config, steps, pipeline.
The images' pixel operations are in :mod:`.views`, the replies' arithmetic in :mod:`.fusion`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from ..runtime import Derived, EncodeImage, EncodeText, Runtime, VideoRef
from ..stages import SEQUENCE, ModelId, config_dataclass
from .checks import (ClassName, Prompt, Template, Weight, distinct, grid_of_four,
                     prompt_list, some_weight, windows_fit)
from .fusion import fuse, fused_frame_scores, normalised, parse_scores
from .prompts import OFFICIAL_SYSTEM, question
from .views import (best_window, question_images, view, window_boxes, window_crop,
                    window_probabilities)

#: Our prompt-template ensemble (the WinCLIP / CLIP zero-shot recipe).
TEMPLATES: tuple[str, ...] = (
    "a photo of {}.", "a surveillance camera frame showing {}.", "a blurry photo of {}.",
    "a cropped photo of {}.", "a low resolution photo of {}.", "a photo of {}, seen from above.")
#: The three views the VLM is asked about per segment.
VIEWS = ("key", "position", "temporal")


# Limits are generous for real use: they turn a typo into an error, not an out-of-memory crash.
@config_dataclass
class Config:
    """AnyAnomaly's settings, with the defaults of the paper and its public code
    (:meth:`for_dataset`: a benchmark's own window sizes).

    Paper (Ahn et al., 2025, Qwen2.5-VL-3B, training-free): C-ShT AUC 85.72 (baseline without
    context 78.01), C-Ave 90.27; on the usual benchmarks Avenue 87.3, ShanghaiTech 79.7,
    UBnormal 74.5, with fusion weights and sigma tuned on the test labels."""

    prompts: Annotated[list[Prompt], BeforeValidator(prompt_list), Field(max_length=256),
                       AfterValidator(distinct)] = field(default_factory=list)
    """The anomaly descriptions to look for ("a person falling"); the score is their max."""
    segment_length: Annotated[int, Field(ge=1, le=10_000)] = 24
    """Frames per segment; segments do not overlap and each gets one set of VLM calls."""
    clip_model: ModelId | None = None
    """CLIP for key frames and window maps; None = the profile's ``clip-b32`` (ViT-B/32, as
    the paper); or anything ``vadnb.models.load`` accepts as ``model=``."""
    vlm_model: ModelId | None = None
    """The VLM; None = the profile's ``vlm-3b`` (Qwen2.5-VL-3B-Instruct, as the newer code)."""
    context_frames: Annotated[int, AfterValidator(grid_of_four)] = 4
    """Frames in the temporal context (the 2x2 grid)."""
    context_spacing: Annotated[int | None, Field(ge=1, le=10_000)] = None
    """Frames between context frames; None = ``segment_length // context_frames`` (the
    official rule: 6 for 24-frame segments, so the 4 frames share the key frame's offset in
    each quarter of the segment, span it and include the key frame)."""
    position_size: Annotated[int, Field(ge=16, le=4096)] = 240
    """The key frame is resized to this square size (px) before cutting windows."""
    window_sizes: Annotated[tuple[Annotated[int, Field(ge=1, le=4096)], ...], SEQUENCE,
                            Field(min_length=1, max_length=16)] = (48, 80, 240)
    """Window side lengths (px at ``position_size``): 48 -> 5x5, 80 -> 3x3, 240 -> 1x1
    (Avenue's and the official default); ShanghaiTech uses 120 -> 2x2 as the large scale
    (:data:`DATASET_WINDOWS`, :meth:`for_dataset`)."""
    window_resize: Literal["linear", "area"] = "linear"
    """How the frame is squashed to ``position_size`` before cutting windows: bilinear (the
    official ``cv2.resize`` default) or ``"area"`` (pixel averaging, less aliasing)."""
    window_stride: Annotated[int | None, Field(ge=1, le=4096)] = None
    """Step between windows (px); None = the window size (non-overlapping tiles)."""
    templates: Annotated[tuple[Template, ...], SEQUENCE,
                         Field(min_length=1, max_length=100)] = TEMPLATES
    """Prompt templates, each with one ``{}`` for the class name, averaged in CLIP space."""
    normal_class: ClassName | None = "a normal scene where nothing unusual happens"
    """An extra class the position softmax compares each description with (None: none;
    the official code has none and compares with the benchmark's other anomaly types)."""
    other_classes: Annotated[tuple[ClassName, ...], SEQUENCE, Field(max_length=1000)] = ()
    """More competing class names for the position softmax (the paper's variant: the
    benchmark's anomaly types, ``vadnb.data.CVAD_TYPES``)."""
    softmax_scale: Annotated[float, Field(gt=0)] = 100.0
    """Multiplies the cosine similarities before the position softmax (CLIP's logit scale;
    the official code uses 1)."""
    weights: Annotated[tuple[Weight, Weight, Weight], SEQUENCE,
                       AfterValidator(some_weight)] = (0.6, 0.3, 0.1)
    """Fusion weights for the key-frame, position and temporal scores (untuned defaults)."""
    sigma: Annotated[float, Field(ge=0, le=10_000)] = 15.0
    """Gaussian smoothing, in frames, applied after repeating each segment score over its
    frames (so the axis is frames at the video's own rate); the kernel is cut at 4 sigma,
    as ``scipy.ndimage.gaussian_filter1d`` does."""
    normalise: bool = False
    """Min-max normalise each video's frame scores. Off: per-video rescaling stretches a
    normal video's wobble to the full range; the official normalises once over all test
    videos together (no effect on AUC), as :func:`official_frame_scores` does."""
    prompt_style: Literal["official", "vadnb"] = "official"
    """The VLM prompts' wording, official or vadnb's (:mod:`.prompts`)."""
    output_word: Literal["Output", "Response"] = "Output"
    """The official prompt's answer line: "Output" (Avenue), "Response" (ShanghaiTech)."""
    parser: Literal["official", "vadnb"] = "official"
    """Reading a reply: the first number anywhere, unclipped, 0 if none (official), or the
    number after "Score" in [0, 1], a missing one interpolated (:mod:`.fusion`)."""
    system_prompt: Annotated[str, Field(max_length=2000)] | None = OFFICIAL_SYSTEM
    """The system line sent before each question (None: no system message)."""
    max_new_tokens: Annotated[int, Field(ge=1, le=32_768)] = 50
    """VLM reply length (official: 50)."""
    temperature: Annotated[float, Field(ge=0, le=5)] = 0.1
    """VLM decoding as the official: temperature 0.1, ``top_p`` 0.001 (practically greedy),
    ``repetition_penalty`` 1.05; ``temperature=0`` is greedy decoding (vadnb's option)."""
    top_p: Annotated[float, Field(gt=0, le=1)] = 0.001
    repetition_penalty: Annotated[float, Field(gt=0, le=10)] = 1.05
    grid_cell: Annotated[int, Field(ge=16, le=4096)] = 224
    """Side (px) of each cell of the 2x2 temporal grid (the official grid: 112)."""
    view_max_side: Annotated[int, Field(ge=16, le=8192)] = 896
    """Key and context frames are read at most this many px on their longer side (aspect
    kept; ShanghaiTech's 856x480 and Avenue's 640x360 are read as they are), so memory
    per segment stays bounded for 1080p or 4K video."""
    vlm_batch_size: Annotated[int, Field(ge=1, le=512)] = 12
    """VLM requests per ``vlm.batch`` call; segments are streamed in batches of about
    this many requests and each batch's replies are cached as soon as it returns."""
    clip_batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    """Images per CLIP call."""

    _windows_fit = model_validator(mode="after")(windows_fit)

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> Config:
        """The official code's window sizes and answer word on ``dataset`` ("shanghaitech"
        or "avenue"); other fields from ``overrides``."""
        from .official import DATASET_OUTPUT_WORD, dataset_key, dataset_windows

        return cls(**{"window_sizes": dataset_windows(dataset),
                      "output_word": DATASET_OUTPUT_WORD[dataset_key(dataset)], **overrides})

    @property
    def spacing(self) -> int:
        """Frames between temporal-context frames (``context_spacing`` or the official rule)."""
        return int(self.context_spacing or max(1, self.segment_length // self.context_frames))


# --------------------------------------------------------------------------- the steps

def segment_bounds(num_frames: int, segment_length: int = 24) -> np.ndarray:
    """``[S, 2]`` start (inclusive) and end (exclusive) frames of non-overlapping segments
    (the last one shorter when the video length is not a multiple of the length)."""
    if num_frames <= 0:
        raise ValueError(f"video has {num_frames} frames; nothing to score")
    starts = np.arange(0, num_frames, segment_length, dtype=np.int64)
    return np.stack([starts, np.minimum(starts + segment_length, num_frames)], axis=1)


def context_frames(key: int, start: int, end: int, n: int = 4, spacing: int = 6) -> np.ndarray:
    """The ``n`` temporal-context frames of a segment ``[start, end)`` with key frame ``key``.

    As in the public code: the frames at the key frame's offset within each ``spacing``-frame
    block (``start + key_offset % spacing + k * spacing``), so with 24 frames, 4 frames and
    spacing 6 they cover the whole segment in time order and include the key frame. Frames
    past a short last segment's end are clipped to its last frame.
    """
    if not start <= key < end:
        raise ValueError(f"key frame {key} outside its segment [{start}, {end})")
    phase = (key - start) % spacing
    idx = start + phase + spacing * np.arange(n, dtype=np.int64)
    return np.minimum(idx, end - 1)


def select_key_frames(frame_emb: np.ndarray, text_emb: np.ndarray,
                      bounds: np.ndarray) -> np.ndarray:
    """``[P, S]``: for each description and segment, the frame with the highest cosine
    similarity to the description (ties: the earliest frame)."""
    sims = np.asarray(text_emb, np.float64) @ np.asarray(frame_emb, np.float64).T  # [P, N]
    keys = np.zeros((sims.shape[0], len(bounds)), dtype=np.int64)
    for s, (a, b) in enumerate(bounds):
        keys[:, s] = a + np.argmax(sims[:, a:b], axis=1)
    return keys


def class_names(cfg: Config) -> list[str]:
    """The CLIP classes: the descriptions first, then the competitors and the normal class."""
    others = [c for c in cfg.other_classes if c not in cfg.prompts]
    return list(cfg.prompts) + others + ([cfg.normal_class] if cfg.normal_class else [])


def ensemble(text_emb: Sequence[np.ndarray], n: int) -> np.ndarray:
    """``[n, D]``: each class's template embeddings averaged, then L2-normalised."""
    emb = np.asarray(text_emb, dtype=np.float64).reshape(n, len(text_emb) // n, -1).mean(axis=1)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return emb.astype(np.float32)


def pipeline(rt: Runtime, video: VideoRef, cfg: Config) -> dict[str, Any]:
    """AnyAnomaly on one video: the paper's steps, every model call through ``rt``."""
    n, P = video.num_frames, len(cfg.prompts)
    bounds = segment_bounds(n, cfg.segment_length)  # [S, 2] start, end
    S = len(bounds)
    boxes = window_boxes(cfg.position_size, cfg.window_sizes, cfg.window_stride)  # [W]

    # 1. CLIP embeds every frame, and each class as the mean over the prompt templates
    frame_emb = np.stack(rt.map("clip", [EncodeImage(f) for f in video.frames(range(n))],
                                batch_size=cfg.clip_batch_size, desc="CLIP frames"))
    classes = class_names(cfg)
    texts = [t.format(c) for c in classes for t in cfg.templates]
    class_emb = ensemble(rt.map("clip", [EncodeText(t) for t in texts],
                                batch_size=len(texts)), len(classes))  # [C, D]

    # 2. key frame: per description and segment, the frame closest to the description
    keys = select_key_frames(frame_emb, class_emb[:P], bounds)  # [P, S]

    # 3. temporal context: 4 frames over the segment, at the key frame's phase
    contexts = np.array([[context_frames(keys[p, s], a, b, cfg.context_frames, cfg.spacing)
                          for s, (a, b) in enumerate(bounds)] for p in range(P)])  # [P, S, 4]

    # 4. CLIP embeds every window of the key and context frames (read <= view_max_side px)
    frames = np.unique(np.concatenate([keys.ravel(), contexts.ravel()]))
    views = {int(i): Derived.of(view, [video.frame(i)], max_side=cfg.view_max_side)
             for i in frames}
    corners = [tuple(int(v) for v in b) for b in boxes[["x0", "y0", "x1", "y1"]].to_numpy()]
    crops = [EncodeImage(window_crop(views[i], b, cfg)) for i in views for b in corners]
    emb = np.reshape(rt.map("clip", crops, batch_size=cfg.clip_batch_size, desc="CLIP windows"),
                     (len(views), len(boxes), -1))
    win = dict(zip(views, emb.astype(np.float64)))  # frame -> [W, D]

    # 5. position context: each key-frame window's softmax over the classes -> heat map
    heat = np.array([[window_probabilities(win[keys[p, s]], class_emb, cfg.softmax_scale)[:, p]
                      for s in range(S)] for p in range(P)])  # [P, S, W]

    # 6. temporal context: the window that best matches the description in any context frame
    best = np.array([[best_window([win[f] @ class_emb[p] for f in contexts[p, s]])
                      for s in range(S)] for p in range(P)])  # [P, S]

    # 7. three questions to the VLM per segment and description: key, masked frame, grid
    images = {(p, s): question_images(views[keys[p, s]], [views[f] for f in contexts[p, s]],
                                      heat[p, s], corners[best[p, s]], cfg)
              for p in range(P) for s in range(S)}
    per = max(1, cfg.vlm_batch_size // (3 * P))  # segments per VLM batch, all descriptions
    order = [(p, s) for a in range(0, S, per) for p in range(P) for s in range(a, min(a + per, S))]
    asks = [question(image, cfg.prompts[p], v, cfg)
            for p, s in order for v, image in zip(VIEWS, images[p, s])]
    answers = rt.map("vlm", asks, batch_size=3 * P * per, desc="AnyAnomaly: VLM")
    replies = np.empty((P, S, 3), dtype=object)
    replies[tuple(np.array(order).T)] = np.array(answers, dtype=object).reshape(-1, 3)

    # 8. parse each score (the first number); a reply without one reads 0
    raw, filled, log = parse_scores(replies, cfg.parser)  # [P, S, 3] each

    # 9. fuse the views, spread over the frames, smooth; the maximum over the descriptions
    fused = fuse(filled[..., 0], filled[..., 1], filled[..., 2], cfg.weights)  # [P, S]
    per_prompt = {cfg.prompts[p]: fused_frame_scores(fused[p], n, cfg.segment_length,
                                                     cfg.sigma) for p in range(P)}
    top = np.max(np.stack(list(per_prompt.values())), axis=0)
    scores = normalised(top) if cfg.normalise else top
    return dict(frame_scores=scores, bounds=bounds, keys=keys, contexts=contexts, best=best,
                window_scores=heat, windows=boxes, replies=replies, raw=raw, filled=filled,
                fused=fused, prompt_frame_scores=per_prompt, log=log)

