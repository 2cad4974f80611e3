"""LAVAD, top to bottom (Zanella et al., CVPR 2024; notebooks 20-40): the Config, the
paper's steps as small pure functions, and :func:`pipeline`, its numbered steps. Models,
frames and the cache are the runtime's (:mod:`vadnb.runtime`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from .. import metrics, stages
from ..models.base import LAVAD_SCORE_CHOICES
from ..runtime import Caption, EncodeImage, EncodeText, Runtime
from ..stages import SEQUENCE, ModelId, config_dataclass
from .budget import DECODING, Messages, chats, summary_budgets  # noqa: F401
from .video_clip import embed_clips, mean_unit, window_clip


SUMMARY_PROMPT = (
    "Below is a temporal description of a scene: one caption per moment, in time order. "
    "Summarise in a few sentences what happened in the scene, based only on this "
    "description. Leave out details that do not matter.")
SCORE_CONTEXT = (
    "Imagine you work for a law enforcement agency. How would you rate the scene described "
    "below on a scale from 0 to 1, where 0 is an ordinary, standard scene and 1 is a scene "
    "with suspicious activity?")
SCORE_FORMAT = (
    "Reply with a Python list holding exactly one value chosen from "
    "[0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] and no other text: "
    "the reply starts with '[' and ends with ']'.")


# Limits: generous for real use, there to turn a typo into an error instead of an
# out-of-memory crash (batches x window frames are held at once; token budgets <= 8192).
@config_dataclass
class Config:
    """LAVAD's settings, with the paper's defaults.

    Paper (CVPR 2024): BLIP-2 captioners (five), ImageBind embeddings, llama-2-13b-chat;
    UCF-Crime frame AUC 80.28, XD-Violence AP 62.01 / AUC 85.36, on 2x A100 64 GB; positions
    every 16 frames at the native rate (UCF-Crime 30 fps, XD-Violence 24 fps). Differences
    from the official code: ``lavad.DIFFERENCES``; per-dataset settings: ``paper_config``.
    """

    stride: Annotated[int, Field(ge=1, le=10_000)] = 16
    """Frames between two scored positions (centre frames), at the video's native rate;
    a position's score covers its 16 frames."""
    window_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    """Seconds of the window around each centre frame (300 frames at 30 fps, 100 at 10 fps),
    clipped (not shifted) at the video's ends."""
    frames_per_window: Annotated[int, Field(ge=1, le=256)] = 10
    """Frames sampled evenly in each window: the length of a temporal description."""
    caption_k: Annotated[int, Field(ge=1, le=100)] = 1
    """Nearest captions kept per window frame when cleaning (paper: 1)."""
    refine_k: Annotated[int, Field(ge=1, le=1000)] = 10
    """Nearest summaries (same video) that vote on a position's refined score (paper: 10)."""
    temperature: Annotated[float, Field(gt=0)] = 1.0
    """Softmax temperature of the refinement weights over cosine similarities (paper: 1)."""
    llm_decoding: Literal["greedy", "paper"] = "greedy"
    """``"paper"``: the official sampling (temperature 0.6, top_p 0.9), every position asked
    apart, as the official code samples each one. ``"greedy"`` (default, REFERENCE.md's
    choice): temperature 0, so a run is reproducible, a cached reply is the reply you would
    get again and identical prompts are asked once; the only default not the official one."""
    summary_max_new_tokens: Annotated[int, Field(ge=1, le=8192)] | None = None
    """Token budget of a summary reply. None (official): ``llm_context_tokens`` minus the
    prompt's tokens (chat template included, counted with the llm role's tokenizer), so each
    prompt has its own budget; an int (vadnb's earlier 160) is one budget for all, so the
    prompts batch together."""
    llm_context_tokens: Annotated[int, Field(ge=16, le=131_072)] = 512
    """The LLM's context (official ``max_seq_len``): prompt plus summary reply."""
    caption_max_new_tokens: Annotated[int, Field(ge=1, le=512)] | None = None
    """Caption length cap. None (official): the captioner's own settings (BLIP-2: 20)."""
    score_max_new_tokens: Annotated[int, Field(ge=1, le=8192)] = 48
    """Token budget of a score reply: ``[0.7]`` plus room for a chatty preamble (the
    official let it run to the context end); cut replies are counted."""
    score_decoding: Literal["free", "choices"] = "free"
    """How a score is asked. ``"free"`` (default, the paper's): the LLM writes free text and
    the parser reads ``[x]`` from it. ``"choices"`` (vadnb's option, for small models that
    rarely write a bracket): the reply is the value of ``[0]``, ``[0.1]``, ..., ``[1.0]``
    the model itself finds most likely (``llm.batch(..., choices=LAVAD_SCORE_CHOICES)``),
    so every reply parses; needs a locally loaded LLM (a served one cannot score choices)."""
    summary_prompt: str = SUMMARY_PROMPT
    """Instruction placed above the temporal description (one caption per line)."""
    score_context: str = SCORE_CONTEXT
    """First part of the score prompt: the law-enforcement framing and the 0..1 scale."""
    score_format: str = SCORE_FORMAT
    """Second part of the score prompt: one value as a Python list; the summary follows."""
    captioner_model: ModelId | None = None
    """Captioner to load (a model id); None = the profile's default."""
    captioner_models: Annotated[tuple[ModelId, ...], SEQUENCE, Field(max_length=16)] = ()
    """Captioner pool: each captions the centre frames and the caption index holds all
    their unique captions (paper: five BLIP-2 for UCF-Crime). Empty = ``captioner_model``."""
    video_clip: Literal["imagebind", "pairs"] = "imagebind"
    """The refinement's window embedding: ``"imagebind"`` (official) reads the first and last
    sampled frames as one 2-frame clip in 3 square crops, averaged; ``"pairs"``: all window
    frames as 2-frame pairs, centre crop only."""
    llm_model: ModelId | None = None
    """LLM to load; None = the profile's default."""
    embedder_model: ModelId | None = None
    """Image/video/text embedder (ImageBind in the paper); None = the profile's default."""
    caption_batch_size: Annotated[int, Field(ge=1, le=512)] = 16
    """Centre frames per captioner call (and per cached, resumable batch)."""
    window_batch_size: Annotated[int, Field(ge=1, le=256)] = 16
    """Positions whose window frames and clips are embedded together."""
    llm_batch_size: Annotated[int, Field(ge=1, le=512)] = 8
    """Prompts per LLM call (and per cached, resumable batch)."""


# --------------------------------------------------------------------------- the steps

window_frames = stages.window_frames_half_open  # the official window sampling (notebook 20)


def clean_captions(frame_embeddings: np.ndarray, caption_embeddings: np.ndarray,
                   captions: Sequence[str], k: int = 1) -> tuple[list[list[str]], np.ndarray]:
    """Each window frame [P, n, D] replaced by its ``k`` nearest captions [U, D] (cosine of
    unit vectors; k > 1 joined by "; "). Returns the temporal descriptions and ids [P, n, k]."""
    f = np.asarray(frame_embeddings, dtype=np.float32)
    c = np.asarray(caption_embeddings, dtype=np.float32)
    if f.ndim != 3 or c.ndim != 2 or f.shape[2] != c.shape[1]:
        raise ValueError(f"expected frame embeddings [P, n, D] and caption embeddings [U, D], "
                         f"got {f.shape} and {c.shape}")
    p, n, d = f.shape
    _, idx, _ = stages.knn_softmax(f.reshape(p * n, d), c, np.arange(len(c)), k=k)
    idx = idx.reshape(p, n, -1)
    return [["; ".join(captions[j] for j in idx[i, t]) for t in range(n)] for i in range(p)], idx


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
    """The reply's last non-empty line: chat models open with "Sure, here is a summary:"."""
    lines = [ln.strip() for ln in (reply or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def parse_scores(replies: Sequence[str]) -> tuple[np.ndarray, list[float | None], stages.ParseLog]:
    """``[x]`` from each score reply; unparseable ones are missing and filled linearly from
    the valid positions. Returns (filled scores, parsed values or None, ParseLog counting
    failures and replies cut at the budget, each ``Reply.truncated``)."""
    log = stages.ParseLog()
    parsed = [log.record(r, stages.parse_bracket_score(str(r))) for r in replies]
    return stages.interpolate_missing(parsed)[0], parsed, log


def summary_scores(summaries: Sequence[str], scores: Sequence[float]) -> tuple[list[str], np.ndarray]:
    """The summary index (unique summaries, first seen first) and each one's score: that of
    the first position that wrote it, as the official index records it."""
    first: dict[str, float] = {}
    for s, x in zip(summaries, scores):
        first.setdefault(s, float(x))
    return list(first), np.array(list(first.values()), dtype=np.float64)


def refine_scores(video_embeddings: np.ndarray, summary_embeddings: np.ndarray,
                  summary_scores: Sequence[float], k: int = 10,
                  temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each position's score := softmax(cos / temperature)-weighted mean of the scores of its
    ``k`` nearest summaries. Returns (refined [P], neighbour ids [P, k], weights [P, k])."""
    return stages.knn_softmax(video_embeddings, summary_embeddings, summary_scores,
                              k=k, temperature=temperature)


def to_frames(position_scores: Sequence[float], num_frames: int, stride: int = 16) -> np.ndarray:
    """Repeat each position's score over its ``stride`` frames and cut to ``num_frames``."""
    return metrics.segments_to_frames(position_scores, num_frames, segment_length=stride)


# --------------------------------------------------------------------------- the pipeline


def pipeline(rt: Runtime, videos: Sequence[Any], cfg: Config,
             captioners: Sequence[str] = ("captioner",)) -> list[dict[str, Any]]:
    """LAVAD on ``videos`` (runtime ``VideoRef``s), stage by stage so each model is loaded
    once; one dict of every intermediate result per video."""
    out = []
    for v in videos:
        centres = stages.centre_frames(v.num_frames, cfg.stride)
        windows = np.stack([window_frames(int(c), v.num_frames, v.fps, cfg.window_s,
                                          cfg.frames_per_window) for c in centres])
        out.append(dict(video=v, centres=centres, windows=windows, pooled_captions=[]))
        rt.plan(v.frames(np.union1d(centres, windows)))  # decoded in one pass
    # 1. caption the centre frames (with each captioner of the pool)
    for role in captioners:
        for r in out:
            r["pooled_captions"].append(rt.map(
                role, [Caption(f, cfg.caption_max_new_tokens)
                       for f in r["video"].frames(r["centres"])],
                cfg.caption_batch_size, f"captions {r['video'].path.name}"))
        rt.release(role)
    for r in out:
        r["captions"] = r["pooled_captions"][0]
        # 2. build the caption index: unique captions (all captioners), text embeddings
        r["caption_index"] = list(dict.fromkeys(c for p in zip(*r["pooled_captions"]) for c in p))
        r["caption_embeddings"] = np.stack(rt.map(
            "embedder", [EncodeText(c) for c in r["caption_index"]], len(r["caption_index"])))
        # 3. clean the captions: each sampled window frame -> its nearest caption
        frames = np.unique(r["windows"])
        vecs = rt.map("embedder", [EncodeImage(f) for f in r["video"].frames(frames)],
                      4 * cfg.window_batch_size, f"frames {r['video'].path.name}")
        r["frame_embeddings"] = np.stack(vecs)[np.searchsorted(frames, r["windows"])]
        descriptions, r["caption_ids"] = clean_captions(
            r["frame_embeddings"], r["caption_embeddings"], r["caption_index"], cfg.caption_k)
        r["temporal_descriptions"] = ["\n".join(d) for d in descriptions]
        #    (and, while the embedder is loaded, each window's video embedding for step 7)
        clips = [window_clip(r["video"], w, cfg.video_clip) for w in r["windows"]]
        vecs = embed_clips(rt, clips, cfg.window_batch_size, f"clips {r['video'].path.name}")
        r["video_embeddings"] = vecs[:, 0] if cfg.video_clip == "pairs" else mean_unit(vecs)
    rt.release("embedder")
    for r in out:  # 4. summarise each temporal description with the LLM (last line kept)
        msgs = [summary_messages(d.split("\n"), cfg) for d in r["temporal_descriptions"]]
        asks = chats(msgs, summary_budgets(rt, msgs, cfg), cfg, r["video"], r["centres"])
        r["summary_replies"] = rt.map("llm", asks, cfg.llm_batch_size, "summaries")
        r["summaries"] = [last_line(x) for x in r["summary_replies"]]
    for r in out:  # 5. score each summary with the LLM; parse, interpolate the missing
        msgs = [score_messages(s, cfg) for s in r["summaries"]]
        asks = chats(msgs, [cfg.score_max_new_tokens] * len(msgs), cfg, r["video"],
                     r["centres"], LAVAD_SCORE_CHOICES if cfg.score_decoding == "choices" else None)
        r["score_replies"] = rt.map("llm", asks, cfg.llm_batch_size, "scores")
        r["raw_scores"], r["parsed"], r["parse_log"] = parse_scores(r["score_replies"])
    rt.release("llm")
    for r in out:  # 6. build the summary index: unique summaries, text embeddings
        r["summary_index"], r["summary_scores"] = summary_scores(r["summaries"], r["raw_scores"])
        r["summary_embeddings"] = np.stack(rt.map(
            "embedder", [EncodeText(s) for s in r["summary_index"]], len(r["summary_index"])))
    rt.release("embedder")
    for r in out:  # 7. refine: softmax-weighted scores of the K nearest summaries
        r["scores"], r["neighbours"], r["weights"] = refine_scores(
            r["video_embeddings"], r["summary_embeddings"], r["summary_scores"],
            cfg.refine_k, cfg.temperature)
        # 8. expand to frames: each score over its 16 frames, cut to the video's length
        r["frame_scores"] = to_frames(r["scores"], r["video"].num_frames, cfg.stride)
    return out
