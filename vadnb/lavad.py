"""LAVAD: training-free video anomaly detection with captions and an LLM (notebooks 20-40).

Zanella et al., "Harnessing Large Language Models for Training-free Video Anomaly
Detection", CVPR 2024. No training at all: a captioner describes frames, an LLM reads the
descriptions and rates how suspicious the scene is, and vision-language embeddings tie the
text back to the frames. The pipeline, in the order :func:`run` executes it:

1. **Captions** (notebook 20). Positions are every ``stride``-th frame (0, 16, 32, ...):
   the *centre frames*. Only the centre frames are captioned. (The original code captions
   every frame but only ever reads the captions at ``idx % 16 == 0``; same result, 16x
   less work.)
2. **Caption cleaning** (notebook 20). The unique captions of the video form its *caption
   index* (text embeddings, L2-normalised). Around each centre frame, a ``window_s``-second
   window is sampled at ``frames_per_window`` evenly spread frames; each sampled frame is
   embedded with the *image* encoder and replaced by its nearest caption in the index. The
   retrieved captions, in time order, are the centre frame's *temporal description*.
3. **LLM** (notebook 30). A summary prompt turns the temporal description into a short
   summary (the reply's last line is kept); a score prompt asks for a rating in
   ``[0, 0.1, ..., 1.0]`` of that summary. Unparseable replies are counted and linearly
   interpolated from the neighbouring positions. Decoding is greedy, so identical prompts
   (frequent in static scenes) are asked once.
4. **Refinement** (notebook 40). The unique summaries of the video form its *summary index*
   (text embeddings). Each position's window is embedded as a *video*; its ``refine_k``
   nearest summaries vote with softmax(similarity / temperature) weights (a summary shared
   by several positions votes with the mean of their scores).
5. **To frames** (notebook 40). Each position's score covers its 16 frames
   ``[centre, centre + 16)`` (the "centre" frame is the centre of the *window*, and the
   first frame of its 16-frame segment, as in the original); the sequence is cut to the
   video's length. No smoothing.

Every model stage is cached (``vadnb.cache``) by the video's content hash, the stage's
parameters and the model's name, so a re-run makes no model calls and an interrupted run
resumes where it stopped. Model roles are loaded one at a time and released after their
stage, so a 16 GB GPU only ever holds one large model.

>>> import vadnb.lavad as lavad
>>> det = lavad.run("my_video.mp4", profile="tiny")          # doctest: +SKIP
>>> det.segments[["time_s", "summary", "raw_score", "score"]]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import metrics, stages
from .cache import Cache, file_digest, get_cache
from .detect import TINY_WARNING, Detection
from .models.base import call_stats, calls_since
from .stages import configure

__all__ = [
    "Config",
    "run",
    "run_many",
    "evaluate",
    "summary_messages",
    "score_messages",
    "last_line",
    "clean_captions",
    "refine_scores",
    "to_frames",
    "parse_scores",
    "frame_scores_of",
    "rescore",
    "stage_tables",
    "oracle_backends",
    "Detection",
    "TINY_WARNING",
]

SUMMARY_PROMPT = (
    "Below is a temporal description of a scene: one caption per moment, in time order. "
    "Summarise in a few sentences what happened in the scene, based only on this "
    "description. Leave out details that do not matter."
)
SCORE_CONTEXT = (
    "Imagine you work for a law enforcement agency. How would you rate the scene described "
    "below on a scale from 0 to 1, where 0 is an ordinary, standard scene and 1 is a scene "
    "with suspicious activity?"
)
SCORE_FORMAT = (
    "Reply with a Python list holding exactly one value chosen from "
    "[0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] and no other text: "
    "the reply starts with '[' and ends with ']'."
)


@dataclass
class Config:
    """LAVAD's settings, with the paper's defaults.

    Paper (CVPR 2024): BLIP-2 captioners (five of them), ImageBind embeddings,
    llama-2-13b-chat; UCF-Crime frame AUC 80.28, XD-Violence AP 62.01 / AUC 85.36, on
    2x A100 64 GB. Positions every 16 frames at the native frame rate (UCF-Crime 30 fps,
    XD-Violence 24 fps).

    Deliberate differences from the original code, explained in notebooks 20 and 30: only
    the centre frames are captioned (the others were captioned and never read); one
    captioner fills the caption index where the paper pooled the captions of five BLIP-2
    models (``captioner_model`` picks it); the LLM decodes greedily (temperature 0)
    instead of sampling, so identical prompts are asked once.
    """

    stride: int = 16
    """Frames between two scored positions, at the video's *native* rate. At 30 fps that
    is one position every 0.53 s; at 10 fps (the campus clips) one every 1.6 s. The score of a
    position covers its 16 frames."""

    window_s: float = 10.0
    """Length in seconds of the window around each centre frame that the cleaning and the
    refinement look at. Measured in seconds, not frames, so the method sees the same stretch
    of time at any frame rate: 300 frames at 30 fps, 100 frames at 10 fps. Clipped (not
    shifted) at the video's ends."""

    frames_per_window: int = 10
    """Frames sampled evenly (linspace) in each window: the length of a temporal description
    and the frames of the video embedding."""

    caption_k: int = 1
    """Nearest captions kept per window frame when cleaning (paper: 1, the single nearest)."""

    refine_k: int = 10
    """Nearest summaries (of the same video) that vote on a position's refined score."""

    temperature: float = 1.0
    """Softmax temperature of the refinement weights, applied to cosine similarities."""

    llm_temperature: float = 0.0
    """Sampling temperature of the LLM. The paper sampled (0.6, top_p 0.9); we decode
    greedily (0) so a run is reproducible and a cached reply is the reply you would get
    again. Sampling also makes identical prompts give different scores."""

    summary_max_new_tokens: int = 160
    """Token budget of a summary reply (a few sentences)."""

    score_max_new_tokens: int = 12
    """Token budget of a score reply (``[0.7]`` needs about 5 tokens)."""

    summary_prompt: str = SUMMARY_PROMPT
    """Instruction placed above the temporal description (one caption per line)."""

    score_context: str = SCORE_CONTEXT
    """First part of the score prompt: the law-enforcement framing and the 0..1 scale."""

    score_format: str = SCORE_FORMAT
    """Second part of the score prompt: answer as a Python list with one value; the
    summary follows it."""

    captioner_model: str | None = None
    """Captioner to load (a model id); None = the profile's default."""

    llm_model: str | None = None
    """LLM to load; None = the profile's default."""

    embedder_model: str | None = None
    """Image/video/text embedder (ImageBind in the paper); None = the profile's default."""

    caption_batch_size: int = 16
    """Centre frames per captioner call (and per cached, resumable batch)."""

    window_batch_size: int = 16
    """Positions whose window frames are read and embedded together."""

    llm_batch_size: int = 8
    """Prompts per ``llm.batch`` call (and per cached, resumable batch)."""

    def __post_init__(self) -> None:
        for name in ("stride", "frames_per_window", "caption_k", "refine_k",
                     "caption_batch_size", "window_batch_size", "llm_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"Config.{name} must be at least 1, got {getattr(self, name)}")
        if self.window_s <= 0:
            raise ValueError(f"Config.window_s must be positive, got {self.window_s}")
        if self.temperature <= 0:
            raise ValueError(f"Config.temperature must be positive, got {self.temperature}")


# ---------------------------------------------------------------------------------------
# Pure steps: no model, no disk. Each is small enough to test by hand.
# ---------------------------------------------------------------------------------------

Messages = list[dict[str, str]]


def summary_messages(temporal_description: Sequence[str], config: Config | None = None) -> Messages:
    """The summary prompt: the instruction, then the captions one per line, in time order."""
    cfg = config or Config()
    body = "\n".join(str(c).strip() for c in temporal_description)
    return [{"role": "user", "content": f"{cfg.summary_prompt}\n\n{body}"}]


def score_messages(summary: str, config: Config | None = None) -> Messages:
    """The score prompt: context, then format, then the summary."""
    cfg = config or Config()
    return [{"role": "user",
             "content": f"{cfg.score_context}\n{cfg.score_format}\n\n{summary.strip()}"}]


def last_line(reply: str) -> str:
    """The last non-empty line of a reply: chat models often open with "Sure, here is a
    summary:" and put the summary on the last line; LAVAD keeps only that line."""
    lines = [ln.strip() for ln in (reply or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def parse_scores(replies: Sequence[str]) -> tuple[np.ndarray, list[float | None], stages.ParseLog]:
    """Read ``[x]`` from each score reply; unparseable replies become missing and are filled
    by linear interpolation over the valid positions (ends: nearest valid value).

    Returns ``(filled scores, parsed values with None for failures, ParseLog)``.
    """
    log = stages.ParseLog()
    parsed = [log.record(str(r), stages.parse_bracket_score(str(r))) for r in replies]
    filled, _ = stages.interpolate_missing(parsed)
    return filled, parsed, log


def clean_captions(frame_embeddings: np.ndarray, caption_embeddings: np.ndarray,
                   captions: Sequence[str], k: int = 1) -> tuple[list[list[str]], np.ndarray]:
    """Replace each frame by its nearest caption(s) in the caption index.

    ``frame_embeddings`` is [P, n, D] (P positions x n window frames) and
    ``caption_embeddings`` [U, D], both L2-normalised, so the inner product is the cosine.
    Returns the temporal descriptions (P lists of n strings; with ``k > 1`` a frame's k
    captions are joined by "; ", best first) and the chosen caption ids [P, n, k].
    """
    f = np.asarray(frame_embeddings, dtype=np.float64)
    c = np.asarray(caption_embeddings, dtype=np.float64)
    if f.ndim != 3 or c.ndim != 2 or f.shape[2] != c.shape[1]:
        raise ValueError(f"expected frame embeddings [P, n, D] and caption embeddings [U, D], "
                         f"got {f.shape} and {c.shape}")
    p, n, d = f.shape
    _, idx, _ = stages.knn_softmax(f.reshape(p * n, d), c, np.arange(len(c)), k=k)
    idx = idx.reshape(p, n, -1)
    descriptions = [["; ".join(captions[j] for j in idx[i, t]) for t in range(n)]
                    for i in range(p)]
    return descriptions, idx


def refine_scores(video_embeddings: np.ndarray, summary_embeddings: np.ndarray,
                  summary_scores: Sequence[float], k: int = 10,
                  temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LAVAD's refinement: each position's score becomes the softmax(cos / temperature)
    weighted mean of the scores of its ``k`` nearest summaries (of the same video).

    Returns ``(refined [P], neighbour ids [P, k], weights [P, k])``.
    """
    return stages.knn_softmax(video_embeddings, summary_embeddings, summary_scores,
                              k=k, temperature=temperature)


def to_frames(position_scores: Sequence[float], num_frames: int, stride: int = 16) -> np.ndarray:
    """Repeat each position's score over its ``stride`` frames and cut to ``num_frames``."""
    return metrics.segments_to_frames(position_scores, num_frames, segment_length=stride)


def frame_scores_of(detection: Detection, column: str = "score") -> np.ndarray:
    """A detection's frame scores from one segments column: ``"score"`` (refined, the
    default and ``detection.frame_scores``) or ``"raw_score"`` (before refinement)."""
    stride = int(detection.extras.get("stride", 16))
    return to_frames(detection.segments[column].to_numpy(), detection.num_frames, stride)


def rescore(detection: Detection, refine_k: int | None = None,
            temperature: float | None = None) -> np.ndarray:
    """Frame scores of ``detection`` refined again with another ``refine_k`` or
    ``temperature``, from the embeddings it kept: no model call (notebook 40's ablation)."""
    ex = detection.extras
    if "video_embeddings" not in ex:
        raise ValueError("this detection has no embeddings (a Detection.load()ed one keeps "
                         "only the tables); re-run lavad.run: the cache makes it free")
    cfg = ex.get("config", {})
    k = int(refine_k if refine_k is not None else cfg.get("refine_k", 10))
    t = float(temperature if temperature is not None else cfg.get("temperature", 1.0))
    refined, _, _ = refine_scores(ex["video_embeddings"], ex["summary_embeddings"],
                                  ex["summary_scores"], k, t)
    return to_frames(refined, detection.num_frames, int(ex.get("stride", 16)))


def stage_tables(detection: Detection) -> dict[str, pd.DataFrame]:
    """Each stage's output of a LAVAD run as a table, to read or save.

    ``captions`` (one per centre frame), ``caption_index`` (unique captions and how many
    centre frames said them), ``cleaning`` (every window frame and the caption it
    retrieved), ``llm`` (summary, score reply, parsed or not, score) and ``refinement``
    (each position's neighbours in the summary index, with weights and scores).
    """
    seg, ex = detection.segments, detection.extras
    if "window_frames" not in ex:
        raise ValueError("this detection has no intermediate results (a Detection.load()ed "
                         "one keeps only the tables); re-run lavad.run: the cache makes it free")
    counts = seg["captions"].value_counts()
    cleaning = [{"centre_frame": int(c), "window_frame": int(f), "caption": cap}
                for c, frames, desc in zip(seg["centre_frame"], ex["window_frames"],
                                           seg["temporal_description"])
                for f, cap in zip(frames, desc.split("\n"))]
    refinement = [{"centre_frame": int(c), "rank": r, "summary": ex["summary_index"][j],
                   "weight": float(w), "summary_score": float(ex["summary_scores"][j])}
                  for c, idx, ws in zip(seg["centre_frame"], ex["neighbours"], ex["weights"])
                  for r, (j, w) in enumerate(zip(idx, ws))]
    return {
        "captions": seg[["centre_frame", "time_s", "captions"]].rename(
            columns={"captions": "caption"}),
        "caption_index": pd.DataFrame({"caption": ex["caption_index"],
                                       "centre_frames": [int(counts.get(c, 0))
                                                         for c in ex["caption_index"]]}),
        "cleaning": pd.DataFrame(cleaning),
        "llm": seg[["centre_frame", "summary", "score_reply", "parsed", "raw_score"]].copy(),
        "refinement": pd.DataFrame(refinement),
    }


def oracle_backends(benchmark: Any) -> dict[str, Any]:
    """Captioner, embedder and LLM that *read the ground truth*: LAVAD with perfect perception.

    A teaching device (notebook 40): every frame of ``benchmark``'s videos is looked up by a
    hash of its pixels. The captioner says "something unusual: <class>" on anomalous frames
    and "people walk along a path" otherwise; the embedder maps anomalous frames and captions
    to one direction and normal ones to another; the LLM's summary says in how many of the
    described moments something unusual happens, and its score is that share. What is left
    of the ground truth in the final scores is what LAVAD's windows, refinement and frame
    expansion keep. Works only on frames of ``benchmark``'s videos.
    """
    import hashlib
    import re

    from .models.scripted import ScriptedCaptioner, ScriptedEmbedder, ScriptedLLM
    from .video import read_frames

    truth: dict[str, str] = {}
    for name, path, label in zip(benchmark.videos.name, benchmark.videos.path,
                                 benchmark.videos.label):
        y = benchmark.frame_labels(name)
        for i, image in enumerate(read_frames(path).images[:len(y)]):
            key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
            if y[i] or key not in truth:
                truth[key] = str(label) if y[i] else "Normal"

    def what(image: np.ndarray) -> str:
        key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
        if key not in truth:
            raise ValueError("the oracle only knows the frames of the benchmark it was built "
                             "from; run it on those videos")
        return truth[key]

    def caption(image: np.ndarray) -> str:
        label = what(image)
        return "people walk along a path" if label == "Normal" else f"something unusual: {label}"

    def image_vector(image: np.ndarray) -> np.ndarray:
        return np.array([0.0, 1.0]) if what(image) == "Normal" else np.array([1.0, 0.0])

    def text_vector(text: str) -> np.ndarray:
        m = re.search(r"In (\d+) of (\d+) moments", text)
        if m:
            k, n = int(m.group(1)), int(m.group(2))
            return np.array([k, n - k], dtype=float)
        return np.array([1.0, 0.0]) if "unusual" in text else np.array([0.0, 1.0])

    def reply(messages: Messages) -> str:
        content = messages[-1]["content"]
        m = re.search(r"In (\d+) of (\d+) moments", content)
        if m:  # a score prompt: the share of unusual moments
            return f"[{round(int(m.group(1)) / int(m.group(2)), 1)}]"
        if "unusual" not in content and "people walk" not in content:
            return "[0]"  # a score prompt for a summary without anything unusual
        lines = [ln for ln in content.split("\n\n", 1)[-1].split("\n") if ln.strip()]
        k = sum("unusual" in ln for ln in lines)
        kinds = sorted({ln.split(": ", 1)[1] for ln in lines if "unusual" in ln})
        return (f"Here is a summary:\nIn {k} of {len(lines)} moments something unusual "
                f"happens{': ' + ', '.join(kinds) if kinds else ''}.")

    return {"captioner": ScriptedCaptioner(caption, name="oracle-captioner"),
            "embedder": ScriptedEmbedder(image_vector, text_vector, name="oracle-embedder"),
            "llm": ScriptedLLM(reply, name="oracle-llm")}


# ---------------------------------------------------------------------------------------
# Models: loaded lazily, one role at a time.
# ---------------------------------------------------------------------------------------


class _Roles:
    """The backends a run uses: given ones are used as they are (never released); missing
    ones are loaded from the profile on first use and released by :meth:`done`."""

    def __init__(self, backends: dict[str, Any] | None, profile: str | None, cfg: Config):
        self.given = dict(backends or {})
        self.profile = profile
        self.cfg = cfg
        self.loaded: dict[str, Any] = {}
        self._resolved: str | None = None

    def resolved_profile(self) -> str:
        if self._resolved is None:
            from .models.profiles import resolve_profile

            self._resolved = resolve_profile(self.profile)
        return self._resolved

    def model_field(self, role: str) -> str | None:
        return getattr(self.cfg, f"{role}_model")

    def key(self, role: str) -> str:
        """What identifies the model in cache keys, known without loading it."""
        if role in self.given:
            return str(self.given[role].name)
        if self.model_field(role):
            return str(self.model_field(role))
        try:  # the profile table's model id: the name the loaded backend will carry
            from .models.profiles import model_spec

            return str(model_spec(role, self.resolved_profile()).model)
        except (ImportError, KeyError, ValueError):
            return f"{self.resolved_profile()}:default"

    def get(self, role: str) -> Any:
        if role in self.given:
            return self.given[role]
        if role not in self.loaded:
            try:
                from .models import load
            except ImportError as err:  # pragma: no cover - models under construction
                raise RuntimeError(
                    f"vadnb.models.load is not available to load the {role}; pass "
                    f"backends={{'{role}': ...}} (e.g. a vadnb.models.scripted double)") from err
            self.loaded[role] = load(role, profile=self.resolved_profile(),
                                     model=self.model_field(role))
        return self.loaded[role]

    def done(self, role: str) -> None:
        backend = self.loaded.pop(role, None)
        if backend is not None:
            backend.release()

    def profiles(self, roles: Sequence[str]) -> str:
        """The Detection's profile: "tiny" if any role is tiny, else the common profile,
        else "custom"."""
        names = {self.given[r].profile if r in self.given else self.resolved_profile()
                 for r in roles}
        if "tiny" in names or any(getattr(self.given.get(r), "meaningless", False) for r in roles):
            return "tiny"
        return names.pop() if len(names) == 1 else "custom"


# ---------------------------------------------------------------------------------------
# The cached stages, run stage by stage over a list of videos.
# ---------------------------------------------------------------------------------------


@dataclass
class _Video:
    """Everything the stages learn about one video, filled in as they run."""

    path: Path
    digest: str
    num_frames: int
    fps: float
    centres: np.ndarray
    windows: np.ndarray  # [P, n] frame indices
    captions: list[str] = field(default_factory=list)
    caption_index: list[str] = field(default_factory=list)
    caption_embeddings: np.ndarray | None = None
    frame_embeddings: np.ndarray | None = None  # [P, n, D]
    video_embeddings: np.ndarray | None = None  # [P, D]
    caption_ids: np.ndarray | None = None  # [P, n, k]
    descriptions: list[list[str]] = field(default_factory=list)
    summary_replies: list[str] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)
    score_replies: list[str] = field(default_factory=list)


def _open(video: str | os.PathLike, cfg: Config) -> _Video:
    from .video import VideoError, probe

    path = Path(video)
    if not path.exists():
        raise VideoError(f"video not found: {path} (check the path, or pass a benchmark "
                         "video's 'path' column)")
    info = probe(path)
    if info.num_frames <= 0:
        raise VideoError(f"video has 0 decodable frames: {path}")
    if not info.fps or info.fps <= 0:
        raise VideoError(f"video reports no frame rate: {path}; re-encode it with one, e.g. "
                         "`ffmpeg -i in.mp4 -r 30 out.mp4`")
    centres = stages.centre_frames(info.num_frames, cfg.stride)
    windows = np.stack([stages.window_indices(int(c), info.num_frames, info.fps,
                                              cfg.window_s, cfg.frames_per_window)
                        for c in centres])
    return _Video(path, file_digest(path), int(info.num_frames), float(info.fps), centres,
                  windows)


def _read(path: Path, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """Frames at ``indices`` (unique, sorted read) as a dict index -> RGB image."""
    from .video import read_frames

    want = np.unique(np.asarray(indices, dtype=np.int64))
    frames = read_frames(path, indices=want)
    return {int(i): img for i, img in zip(frames.indices, frames.images)}


def _stage_captions(videos: list[_Video], roles: _Roles, cfg: Config, cache: Cache) -> None:
    """Stage 1: one caption per centre frame (batched, resumable)."""
    for v in videos:
        parts = {"video": v.digest, "captioner": roles.key("captioner"), "stride": cfg.stride}

        def caption(batch: list[int], v: _Video = v) -> list[str]:
            images = _read(v.path, batch)
            return roles.get("captioner")([images[i] for i in batch])

        v.captions = [str(c) for c in cache.map("lavad.captions", parts,
                                                [int(c) for c in v.centres], caption,
                                                batch_size=cfg.caption_batch_size,
                                                desc=f"captions {v.path.name}")]
    roles.done("captioner")


def _stage_embeddings(videos: list[_Video], roles: _Roles, cfg: Config, cache: Cache) -> None:
    """Stage 2: caption index (text), window frames (image) and windows (video) embeddings."""
    emb = roles.key("embedder")
    for v in videos:
        v.caption_index = list(dict.fromkeys(v.captions))  # unique, first-seen order
        v.caption_embeddings = np.asarray(cache.memo(
            "lavad.caption_index", {"embedder": emb, "captions": v.caption_index},
            lambda v=v: roles.get("embedder").encode_text(v.caption_index)), dtype=np.float32)

        parts = {"video": v.digest, "embedder": emb, "stride": cfg.stride,
                 "window_s": cfg.window_s, "n": cfg.frames_per_window}

        def embed(batch: list[int], v: _Video = v) -> list[dict[str, np.ndarray]]:
            rows = [np.flatnonzero(v.centres == c)[0] for c in batch]
            wins = [v.windows[r] for r in rows]
            images = _read(v.path, np.concatenate(wins))
            order = sorted(images)
            model = roles.get("embedder")
            img = np.asarray(model.encode_image([images[i] for i in order]), dtype=np.float32)
            pos = {i: j for j, i in enumerate(order)}
            vid = np.asarray(model.encode_video([[images[int(i)] for i in w] for w in wins]),
                             dtype=np.float32)
            return [{"image": img[[pos[int(i)] for i in w]], "video": vid[j]}
                    for j, w in enumerate(wins)]

        out = cache.map("lavad.windows", parts, [int(c) for c in v.centres], embed,
                        batch_size=cfg.window_batch_size, desc=f"windows {v.path.name}")
        v.frame_embeddings = np.stack([o["image"] for o in out])
        v.video_embeddings = np.stack([o["video"] for o in out])
        v.descriptions, v.caption_ids = clean_captions(
            v.frame_embeddings, v.caption_embeddings, v.caption_index, cfg.caption_k)
    roles.done("embedder")


def _llm_map(stage: str, prompts: list[str], build: Callable[[str], Messages],
             max_new_tokens: int, roles: _Roles,
             cfg: Config, cache: Cache, extra: dict[str, Any]) -> dict[str, str]:
    """Ask the LLM once per unique prompt input (batched, resumable); input -> reply."""
    unique = list(dict.fromkeys(prompts))
    parts = {"llm": roles.key("llm"), "temperature": cfg.llm_temperature,
             "max_new_tokens": max_new_tokens, **extra}

    def ask(batch: list[str]) -> list[str]:
        llm = roles.get("llm")
        return [str(r) for r in llm.batch([build(x) for x in batch],
                                          max_new_tokens=max_new_tokens,
                                          temperature=cfg.llm_temperature)]

    replies = cache.map(stage, parts, unique, ask, batch_size=cfg.llm_batch_size,
                        desc=stage.split(".")[-1])
    return dict(zip(unique, replies))


def _stage_llm(videos: list[_Video], roles: _Roles, cfg: Config, cache: Cache) -> None:
    """Stage 3: summary then score per position. Identical prompts are asked once (with
    greedy decoding they would get the identical reply). Batches are formed per video, so
    a video's cached replies are found again whatever other videos share the run."""
    for v in videos:
        texts = ["\n".join(d) for d in v.descriptions]
        summary_replies = _llm_map(
            "lavad.summaries", texts, lambda t: summary_messages(t.split("\n"), cfg),
            cfg.summary_max_new_tokens, roles, cfg, cache, {"prompt": cfg.summary_prompt})
        v.summary_replies = [summary_replies[t] for t in texts]
        v.summaries = [last_line(r) for r in v.summary_replies]
        score_replies = _llm_map(
            "lavad.scores", v.summaries, lambda x: score_messages(x, cfg),
            cfg.score_max_new_tokens, roles, cfg, cache,
            {"context": cfg.score_context, "format": cfg.score_format})
        v.score_replies = [score_replies[x] for x in v.summaries]
    roles.done("llm")


def _stage_summary_index(videos: list[_Video], roles: _Roles, cache: Cache) -> list[np.ndarray]:
    """Stage 4a: text embeddings of each video's unique summaries."""
    out = []
    for v in videos:
        index = list(dict.fromkeys(v.summaries))
        out.append(np.asarray(cache.memo(
            "lavad.summary_index", {"embedder": roles.key("embedder"), "summaries": index},
            lambda index=index: roles.get("embedder").encode_text(index)), dtype=np.float32))
    roles.done("embedder")
    return out


def _finish(v: _Video, summary_embeddings: np.ndarray, cfg: Config, profile: str,
            model_calls: pd.DataFrame) -> Detection:
    """Stages 4b and 5 (no model): parse, interpolate, refine, expand to frames."""
    raw, parsed, log = parse_scores(v.score_replies)
    n_missing = log.failed

    index = list(dict.fromkeys(v.summaries))
    row_of = {s: i for i, s in enumerate(index)}
    # one score per unique summary: the mean over the positions that share it
    per_summary = np.zeros(len(index))
    counts = np.zeros(len(index))
    for s, x in zip(v.summaries, raw):
        per_summary[row_of[s]] += x
        counts[row_of[s]] += 1
    per_summary /= counts
    refined, neighbours, weights = refine_scores(v.video_embeddings, summary_embeddings,
                                                 per_summary, cfg.refine_k, cfg.temperature)

    starts = v.centres
    ends = np.minimum(starts + cfg.stride, v.num_frames)
    segments = pd.DataFrame({
        "start_frame": starts,
        "end_frame": ends,
        "centre_frame": v.centres,
        "time_s": v.centres / v.fps,
        "captions": v.captions,
        "temporal_description": ["\n".join(d) for d in v.descriptions],
        "summary": v.summaries,
        "score_reply": v.score_replies,
        "parsed": [p is not None for p in parsed],
        "raw_score": raw,
        "score": refined,
    })
    segments["explanation"] = [f"{s} (LLM score {r:.1f}, refined {f:.2f})"
                               for s, r, f in zip(v.summaries, raw, refined)]
    extras: dict[str, Any] = {
        "stride": cfg.stride,
        "window_s": cfg.window_s,
        "frames_per_window": cfg.frames_per_window,
        "positions": len(v.centres),
        "parse_failures": n_missing,
        "parse_report": log.summary(),
        "parse_failure_examples": list(log.examples),
        "n_unique_captions": len(v.caption_index),
        "n_unique_summaries": len(index),
        "n_llm_prompts": len(dict.fromkeys("\n".join(d) for d in v.descriptions)) + len(index),
        "n_llm_calls": int(model_calls.loc[model_calls["role"] == "llm", "calls"].sum())
        if not model_calls.empty else 0,
        "config": dataclasses.asdict(cfg),
        # arrays for the notebooks (not written by Detection.save)
        "caption_index": list(v.caption_index),
        "caption_embeddings": v.caption_embeddings,
        "window_frames": v.windows,
        "window_caption_ids": v.caption_ids,
        "frame_embeddings": v.frame_embeddings,
        "video_embeddings": v.video_embeddings,
        "summary_index": index,
        "summary_embeddings": summary_embeddings,
        "summary_scores": per_summary,
        "neighbours": neighbours,
        "weights": weights,
        "raw_frame_scores": to_frames(raw, v.num_frames, cfg.stride),
    }
    return Detection(video=str(v.path), method="lavad", profile=profile,
                     frame_scores=to_frames(refined, v.num_frames, cfg.stride), fps=v.fps,
                     segments=segments, model_calls=model_calls, extras=extras)


def run_many(videos: Sequence[str | os.PathLike], *, config: Config | None = None,
             profile: str | None = None, backends: dict[str, Any] | None = None,
             cache: Cache | str | os.PathLike | None = None,
             **overrides: Any) -> list[Detection]:
    """Run LAVAD on several videos, stage by stage, so each model is loaded once.

    Same arguments as :func:`run`. ``model_calls`` of each Detection holds the calls of
    the whole batch of videos (the stages are shared).
    """
    cfg = configure(Config, config, overrides, "LAVAD")
    store = get_cache(cache)
    roles = _Roles(backends, profile, cfg)
    before = call_stats()
    opened = [_open(v, cfg) for v in videos]
    from .progress import bar as progress_bar

    # one bar for the whole run (no bar per video and stage inside it)
    bar = progress_bar(total=4, desc=f"LAVAD on {len(opened)} videos", disable=len(opened) < 2)
    try:
        _stage_captions(opened, roles, cfg, store)
        bar.update(1)
        _stage_embeddings(opened, roles, cfg, store)
        bar.update(1)
        _stage_llm(opened, roles, cfg, store)
        bar.update(1)
        summary_embeddings = _stage_summary_index(opened, roles, store)
        bar.update(1)
    finally:
        bar.close()
        for role in list(roles.loaded):
            roles.done(role)
    calls = calls_since(before)
    prof = roles.profiles(["captioner", "embedder", "llm"])
    return [_finish(v, e, cfg, prof, calls) for v, e in zip(opened, summary_embeddings)]


def run(video: str | os.PathLike, *, config: Config | None = None, profile: str | None = None,
        backends: dict[str, Any] | None = None, cache: Cache | str | os.PathLike | None = None,
        **overrides: Any) -> Detection:
    """Score every frame of ``video`` with LAVAD.

    ``profile`` picks the models ("tiny", "colab", "paper", "auto"; default
    ``$VADNB_PROFILE``); ``backends`` maps a role ("captioner", "embedder", "llm") to a
    backend you built (e.g. a ``vadnb.models.scripted`` double); other keyword arguments
    override :class:`Config` fields (``stride=8``, ``llm_model="..."``). ``cache`` is a
    :class:`vadnb.cache.Cache` or a folder (default: the shared cache).

    Returns a :class:`~vadnb.detect.Detection` whose ``segments`` table holds, per
    position, the centre frame's caption, its temporal description, the summary, the LLM's
    reply and score (``raw_score``) and the refined ``score``; ``extras`` holds parse
    failures, model-call counts and the intermediate embeddings.
    """
    return run_many([video], config=config, profile=profile, backends=backends, cache=cache,
                    **overrides)[0]


def evaluate(detections: dict[str, Detection], labels: dict[str, np.ndarray],
             classes: dict[str, str] | None = None) -> dict[str, Any]:
    """Frame-level micro AUC and AP of the raw (LLM) and refined scores over all videos.

    ``labels`` maps each video name to its 0/1 frame labels (``Benchmark.frame_labels``);
    ``classes`` (name -> class, "Normal" for normal videos) adds a per-class table.
    The result says whether the scores are meaningless (tiny profile).
    """
    missing = sorted(set(labels) - set(detections))
    if missing:
        raise ValueError(f"no detection for {missing[:5]}; run LAVAD on every labelled video")
    raw = {n: frame_scores_of(detections[n], "raw_score") for n in labels}
    refined = {n: np.asarray(detections[n].frame_scores) for n in labels}
    profiles = {d.profile for d in detections.values()}
    out: dict[str, Any] = {
        "videos": len(labels),
        "frames": int(sum(len(y) for y in labels.values())),
        "auc_raw": metrics.frame_auc(labels, raw),
        "ap_raw": metrics.frame_ap(labels, raw),
        "auc_refined": metrics.frame_auc(labels, refined),
        "ap_refined": metrics.frame_ap(labels, refined),
        "profile": profiles.pop() if len(profiles) == 1 else "mixed",
        "meaningless": any(d.meaningless for d in detections.values()),
    }
    if classes is not None:
        out["per_class_raw"] = metrics.per_class(labels, raw, classes)
        out["per_class_refined"] = metrics.per_class(labels, refined, classes)
    return out
