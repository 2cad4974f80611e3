"""Flashback's "respond", read top to bottom: score each 1 s segment by the captions it recalls.

Flashback (Lee, Kim, Kim, Choi; arXiv 2505.15205) never calls an LLM while it watches. An
LLM wrote a memory of paired normal and anomalous scene captions once
(:mod:`vadnb.flashback.memory`, "recall"); every segment of video is then embedded in the
same video-text space as those captions, its ``top_k`` nearest captions are retrieved, and
the softmax-weighted share of anomalous ones among them is the segment's score
("respond"). Each step below is a small pure function; :func:`pipeline` composes them.
Every step uses only the segments seen so far (plus two frames of smoothing), so the
scores can be computed as segments arrive (:class:`OnlineScorer`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from ..runtime import EncodeVideo, Runtime, VideoRef
from ..stages import ModelId, config_dataclass

#: The five-tap smoothing kernel of the research code, over frames.
SMOOTHING_KERNEL = (0.1, 0.2, 0.4, 0.2, 0.1)

#: The memory at the paper's scale (1000 LLM calls x 100 pairs): ``run(..., **PAPER_MEMORY)``.
PAPER_MEMORY: dict[str, Any] = {"calls": 1000, "pairs_per_call": 100}


@config_dataclass
class Config:
    """Flashback's settings: the research code's defaults (FLASHBACK.md §2), a small memory.

    The paper reports frame AUC 87.3 on UCF-Crime and AP 75.1 on XD-Violence (arXiv v2;
    87.7 / 75.0 in the ICLR 2026 submission) with GPT-4o writing the memory and ImageBind
    huge retrieving it. Where vadnb departs from the research code, ``DIFFERENCES`` says so.
    """

    llm_model: ModelId | None = None
    """Model that writes the caption memory (None: the profile's LLM)."""
    embedder_model: ModelId | None = None
    """Model whose video and text sides share one space (None: the profile's; ImageBind)."""

    # --- recall: the caption memory (written once, cached) ---
    memory: str = "auto"
    """Where the memory comes from: ``"llm"`` (recall with the llm role), ``"handwritten"``
    (the small memory a person wrote, ``data/flashback_memory_handwritten.json``), a saved
    memory file, or ``"auto"``: ``"llm"``, except ``"handwritten"`` when the llm role is a
    random-init tiny model (it cannot write JSON)."""
    calls: Annotated[int, Field(ge=1, le=100_000)] = 8
    """LLM calls that write the memory, one seed each (the paper's scale: 1000)."""
    pairs_per_call: Annotated[int, Field(ge=1, le=1000)] = 25
    """Normal/anomalous caption pairs asked for per call (the paper's scale: 100)."""
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    """Sampling temperature of the recall calls (1.0, the OpenAI API default the code keeps)."""
    max_new_tokens: Annotated[int, Field(ge=16, le=32_768)] = 4096
    """Token budget of one recall reply (25 pairs of short captions need ~1500)."""
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    """A malformed reply is shown its error and asked again up to this many times."""
    llm_batch_size: Annotated[int, Field(ge=1, le=512)] = 8
    """Recall requests per batched LLM call (and per resumable cache entry)."""
    text_prefix: bool = False
    """Embed ``"[normal] caption"`` / ``"[Anomalous]: caption"`` instead of the raw caption
    (the research code's option; one reading of the paper's "repulsive prompting")."""

    # --- respond: scoring segments ---
    segment_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    """Segment length in seconds (30 frames at the code's fixed 30 fps)."""
    hop_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    """Seconds between segment starts (15 frames at 30 fps)."""
    frame_rate: Annotated[float | None, Field(gt=0, le=1000)] = None
    """Frame rate that converts seconds to frames (None: the video's real rate; 30: the code)."""
    frames_per_segment: Annotated[int, Field(ge=2, le=64)] = 16
    """Frames sampled from a segment, ``linspace(start, end, n + 2)[1:-1]``."""
    pairing: Literal["interleaved", "consecutive"] = "interleaved"
    """How ImageBind's 2-frame clips are formed: {k, k + n/2} as the code, or {2k, 2k+1}."""
    top_k: Annotated[int, Field(ge=1, le=10_000)] = 10
    """Captions retrieved per segment."""
    anomalous_scale: Annotated[float, Field(gt=0, le=10)] = 1.0
    """alpha: anomalous caption vectors are multiplied by it before retrieval (< 1 penalises)."""
    logit_scale: Annotated[float, Field(gt=0, le=1000)] = 100.0
    """Multiplies the similarities before the softmax (vadnb's vectors are unit-norm)."""
    tail: Literal["last", "zero"] = "last"
    """Frames after the last whole segment: the last segment's score, or 0 as the code."""
    embedder_batch_size: Annotated[int, Field(ge=1, le=512)] = 8
    """Segments per embedder call (and per resumable cache entry)."""


# ----------------------------------------------------------------------------------------
# the steps: pure functions on one video (tested against a transcription of the code)
# ----------------------------------------------------------------------------------------

def segment_starts(num_frames: int, fps: float, segment_s: float = 1.0,
                   hop_s: float = 0.5) -> tuple[np.ndarray, int]:
    """First frame of every whole segment and the segment length in frames.

    ``round(segment_s * fps)`` frames, a hop of ``round(hop_s * fps)``; the trailing partial
    segment is dropped. A video shorter than one segment is one segment of all its frames.
    """
    if num_frames <= 0:
        raise ValueError(f"video has {num_frames} frames; nothing to score")
    length = max(1, round(segment_s * fps))
    hop = max(1, round(hop_s * fps))
    if num_frames < length:
        return np.zeros(1, np.int64), num_frames
    return np.arange(0, num_frames - length + 1, hop, dtype=np.int64), length


def sample_frames(start: int, length: int, n: int = 16) -> np.ndarray:
    """``n`` frames of the segment ``[start, start + length)``: ``linspace(start, end,
    n + 2, dtype=int)[1:-1]``, the two end points left out, as the code samples them."""
    return np.linspace(start, start + length, n + 2, dtype=np.int64)[1:-1]


def clip_order(n: int, pairing: str = "interleaved") -> np.ndarray:
    """Order in which to send ``n`` sampled frames so that the embedder's consecutive pairs
    are ImageBind's 2-frame clips: interleaved ``{k, k + n/2}`` (the code's ``(t s) -> s t``
    with t = 2) gives ``[0, n/2, 1, n/2 + 1, ...]``; consecutive keeps ``0..n-1``."""
    if pairing == "consecutive" or n % 2:
        return np.arange(n)
    return np.stack([np.arange(n // 2), np.arange(n // 2, n)], axis=1).reshape(-1)


def memory_matrix(normal: np.ndarray, anomalous: np.ndarray,
                  alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``Z = [Z_N ; alpha * Z_A]`` and the flags ``y`` (1 for an anomalous row)."""
    z = np.concatenate([normal, alpha * anomalous]).astype(np.float32)
    y = (np.arange(len(z)) >= len(normal)).astype(np.float32)  # >=: the code's > is off by one
    return z, y


def retrieve(segments: np.ndarray, z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each segment's ``k`` largest inner products with the memory: (indices, similarities),
    best first (ties by index)."""
    d = np.asarray(segments, np.float32) @ z.T
    k = min(k, z.shape[0])
    idx = np.argsort(-d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


def segment_scores(sims: np.ndarray, flags: np.ndarray, logit_scale: float) -> np.ndarray:
    """``clip(sum_j softmax(logit_scale * d)_j * y_j, 0, 1)`` over each segment's top k."""
    logits = logit_scale * np.asarray(sims, np.float64)
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    return np.clip((w * flags).sum(axis=1), 0.0, 1.0)


def segments_to_frames(starts: np.ndarray, length: int, scores: np.ndarray, num_frames: int,
                       tail: str = "last") -> np.ndarray:
    """Each frame's score: the mean over the segments covering it. Frames no segment covers
    (after the last one) get the last segment's score (``tail="last"``) or 0 (the code)."""
    total = np.zeros(num_frames)
    count = np.zeros(num_frames)
    for s, v in zip(starts, scores):
        total[s:s + length] += v
        count[s:s + length] += 1
    out = np.divide(total, count, out=np.zeros(num_frames), where=count > 0)
    if tail == "last" and len(scores):
        out[count == 0] = scores[-1]
    return out


def smooth(frame_scores: np.ndarray) -> np.ndarray:
    """The five-tap kernel over frames, ``np.convolve(p, kernel, "same")`` (zeros beyond)."""
    return np.convolve(np.asarray(frame_scores, np.float64), SMOOTHING_KERNEL, "same")


# ----------------------------------------------------------------------------------------
# the pipeline
# ----------------------------------------------------------------------------------------

def pipeline(rt: Runtime, video: VideoRef, memory: Any, cfg: Config) -> dict[str, Any]:
    """Flashback's respond on one video, given the caption ``memory`` that recall wrote
    (:func:`vadnb.flashback.memory.obtain`): segments, their embeddings, the retrieved
    captions and scores, and the frame scores."""
    fps = cfg.frame_rate or video.fps

    # 1. cut the video into 1 s segments with a 0.5 s hop, at its real frame rate
    starts, length = segment_starts(video.num_frames, fps, cfg.segment_s, cfg.hop_s)
    order = clip_order(cfg.frames_per_segment, cfg.pairing)
    sampled = [sample_frames(s, length, cfg.frames_per_segment) for s in starts]

    # 2. embed each segment's 16 frames with the video side of the embedder (2-frame clips)
    requests = [EncodeVideo(tuple(video.frames(idx[order]))) for idx in sampled]
    embeddings = np.stack(rt.map("embedder", requests, batch_size=cfg.embedder_batch_size,
                                 desc="Flashback segments"))

    # 3. retrieve each segment's top-k captions; the anomalous share is its score
    z, flags = memory_matrix(memory.normal_embeddings, memory.anomalous_embeddings,
                             cfg.anomalous_scale)
    idx, sims = retrieve(embeddings, z, cfg.top_k)
    scores = segment_scores(sims, flags[idx], cfg.logit_scale)

    # 4. segments -> frames (mean of the covering segments), then five-tap smoothing
    raw = segments_to_frames(starts, length, scores, video.num_frames, cfg.tail)
    return {"starts": starts, "length": length, "sampled": sampled, "embeddings": embeddings,
            "indices": idx, "similarities": sims, "flags": flags[idx], "segment_scores": scores,
            "raw_frame_scores": raw, "frame_scores": smooth(raw)}


class OnlineScorer:
    """Respond as segments arrive: ``feed(score)`` for each new segment returns the frames
    whose smoothed score is now final, as ``(first_frame, scores)``; ``finish(num_frames)``
    returns the rest. The concatenation equals :func:`pipeline`'s ``frame_scores``.

    A frame is final once no later segment can cover it and the two frames after it are
    known (the smoothing's look-ahead): the latency is one segment plus two frames.
    """

    def __init__(self, length: int, hop: int, tail: str = "last"):
        self.length, self.hop, self.tail = length, hop, tail
        self.scores: list[float] = []
        self.emitted = 0

    def _frames(self, num_frames: int) -> np.ndarray:
        starts = np.arange(len(self.scores), dtype=np.int64) * self.hop
        return smooth(segments_to_frames(starts, self.length, np.asarray(self.scores),
                                         num_frames, self.tail))

    def feed(self, score: float) -> tuple[int, np.ndarray]:
        self.scores.append(float(score))
        settled = (len(self.scores) - 1) * self.hop + self.hop  # the next segment starts here
        ready = max(self.emitted, settled - 2)  # two frames of look-ahead for the kernel
        out = self._frames(settled + 2)[self.emitted:ready]
        first, self.emitted = self.emitted, ready
        return first, out

    def finish(self, num_frames: int) -> tuple[int, np.ndarray]:
        first = self.emitted
        self.emitted = num_frames
        return first, self._frames(num_frames)[first:]
