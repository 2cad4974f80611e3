"""The paper's own settings per dataset, and readers of the authors' released results
(captions, summaries, scores, neighbours) as Detections: no model call (notebook 40)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import stages
from ..result import Detection
from .core import SCORE_CONTEXT, Config, to_frames

#: The paper's XD-Violence context (no law-enforcement framing), in our words.
XD_VIOLENCE_SCORE_CONTEXT = (
    "How would you rate the scene described below on a scale from 0 to 1, where 0 is an "
    "ordinary, standard scene and 1 is a scene with suspicious or possibly criminal activity?"
)
SCORE_CONTEXTS = {"ucf-crime": SCORE_CONTEXT, "xd-violence": XD_VIOLENCE_SCORE_CONTEXT}

#: The five BLIP-2 captioners whose captions the paper pooled into UCF-Crime's caption index.
PAPER_CAPTIONERS = ("Salesforce/blip2-opt-6.7b-coco", "Salesforce/blip2-opt-6.7b",
                    "Salesforce/blip2-flan-t5-xxl", "Salesforce/blip2-flan-t5-xl",
                    "Salesforce/blip2-flan-t5-xl-coco")
#: The single captioner of the paper's XD-Violence run.
XD_VIOLENCE_CAPTIONER = "Salesforce/blip2-flan-t5-xxl"


def paper_config(dataset: str = "ucf-crime", **overrides: Any) -> Config:
    """The paper's settings for ``dataset`` ("ucf-crime": five BLIP-2 captioners pooled;
    "xd-violence": flan-t5-xxl alone and its own context), llama-2-13b-chat. Decoding stays
    greedy: pass ``llm_decoding="paper"`` for the paper's sampling."""
    key = str(dataset).lower().replace("_", "-")
    if key not in SCORE_CONTEXTS:
        raise ValueError(f"no paper configuration for {dataset!r}; use one of "
                         f"{sorted(SCORE_CONTEXTS)}")
    base: dict[str, Any] = {"llm_model": "meta-llama/Llama-2-13b-chat-hf",
                            "embedder_model": "imagebind_huge",
                            "score_context": SCORE_CONTEXTS[key]}
    if key == "ucf-crime":
        base["captioner_models"] = PAPER_CAPTIONERS
    else:
        base["captioner_model"] = XD_VIOLENCE_CAPTIONER
    return Config(**{**base, **overrides})


#: Frame rates of the benchmarks whose results the paper released.
RELEASED_FPS = {"ucf_crime": 30.0, "xd_violence": 24.0}


def refine_from_neighbours(similarities: np.ndarray, neighbour_scores: np.ndarray,
                           temperature: float = 1.0) -> np.ndarray:
    """The refinement from the neighbours alone (``src/eval.py`` at ``temperature=1``):
    softmax(sim / temperature) times their scores; both arrays [P, k], best first."""
    sims = np.asarray(similarities, dtype=np.float64)
    vals = np.asarray(neighbour_scores, dtype=np.float64)
    if sims.shape != vals.shape or sims.ndim != 2:
        raise ValueError(f"expected similarities and scores of one shape [P, k], got "
                         f"{sims.shape} and {vals.shape}")
    w = stages._softmax(sims / temperature, axis=1)
    return (w * vals).sum(axis=1)


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON file of LAVAD's release ({err})") from err


def _pick(root: Path, pattern: str, what: str, choose: str | None, flag: str) -> Path | None:
    """The one folder matching ``pattern`` under ``root`` (``choose`` filters)."""
    found = sorted(p for p in root.glob(pattern) if p.is_dir())
    if choose is not None:
        found = [p for p in found if choose in p.relative_to(root).as_posix()]
    if not found:
        return None
    if len(found) > 1:
        names = [p.relative_to(root).as_posix() for p in found]
        raise ValueError(f"{root}: several {what} folders {names}; pick one with {flag}=...")
    return found[0]


def _by_frame(mapping: dict[str, Any], path: Path) -> list[tuple[int, Any]]:
    try:
        return sorted((int(k), v) for k, v in mapping.items())
    except (TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: expected an object keyed by frame index "
                         f"('0', '16', ...), as LAVAD writes it") from err


def _neighbours(mapping: dict[str, Any], centres: list[int], path: Path) -> np.ndarray:
    """{centre: {rank: value}} -> [P, k] in rank order."""
    rows = []
    for c in centres:
        entry = mapping.get(str(c))
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: no neighbours for centre frame {c}")
        rows.append([entry[str(r)] for r in range(len(entry))])
    return np.asarray(rows, dtype=np.float64)


def load_released(root: str | os.PathLike, videos: Sequence[str] | None = None, *,
                  index_name: str | None = None, experiment: str | None = None,
                  fps: float | None = None, stride: int = 16) -> dict[str, Detection]:
    """LAVAD's released intermediate results as one :class:`Detection` per video.

    ``root`` is one dataset folder of the release (``ucf_crime/`` or ``xd_violence/``)::

        annotations/test.txt | anomaly_test.txt        video rows: path start end label
        captions/clean/<index>/<video>.json            {centre: {frame: caption}}
        captions/summary/<llm>/<index>/<video>.json    {centre: summary}
        scores/raw/<llm>/<index>/<experiment>/<video>.json      {centre: score}
        scores/refined/<llm>/<index>/<experiment>/<video>.json  {centre: {rank: score}}
        similarity/clean_summary/<llm>/<index>/<video>.json     {centre: {rank: cosine}}

    Summaries and raw scores are required; the refinement files, when present, give the
    refined ``score`` (else the raw one). Frame counts come from the annotations (else the
    last centre + ``stride``). ``index_name`` / ``experiment`` pick among several folders.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"LAVAD release folder not found: {base} (unzip the "
                                "dataset's archive from the official README there)")
    summary_dir = _pick(base, "captions/summary/*/*", "summary", index_name, "index_name")
    raw_dir = _pick(base, "scores/raw/*/*/*", "raw score", experiment, "experiment")
    if summary_dir is None or raw_dir is None:
        raise FileNotFoundError(
            f"{base}: expected captions/summary/<llm>/<index>/ and "
            "scores/raw/<llm>/<index>/<experiment>/ (LAVAD's release layout)")
    clean_dir = _pick(base, "captions/clean/*", "clean caption", index_name, "index_name")
    refined_dir = _pick(base, "scores/refined/*/*/*", "refined score", experiment, "experiment")
    sim_dir = _pick(base, "similarity/clean_summary/*/*", "similarity", index_name,
                    "index_name")
    key = base.name.lower().replace("-", "_")
    rate = float(fps or RELEASED_FPS.get(key, 0) or 30.0)
    lengths: dict[str, int] = {}
    for ann in ("test.txt", "anomaly_test.txt"):
        path = base / "annotations" / ann
        if path.exists():
            for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    lengths[Path(parts[0]).name] = int(parts[2]) - int(parts[1]) + 1
                except (IndexError, ValueError) as err:
                    raise ValueError(f"{path}, line {n}: expected 'path start end label'") \
                        from err
    names = list(videos) if videos is not None else sorted(
        p.stem for p in summary_dir.glob("*.json"))
    out: dict[str, Detection] = {}
    for name in names:
        spath, rpath = summary_dir / f"{name}.json", raw_dir / f"{name}.json"
        for path in (spath, rpath):
            if not path.exists():
                raise FileNotFoundError(f"{path}: missing for video {name!r}")
        summaries = _by_frame(_read_json(spath), spath)
        raw_map = {c: float(x) for c, x in _by_frame(_read_json(rpath), rpath)}
        centres = [c for c, _ in summaries]
        if set(raw_map) != set(centres):
            raise ValueError(f"{rpath}: its centre frames differ from {spath}'s")
        raw = np.array([raw_map[c] for c in centres])
        descriptions = [""] * len(centres)
        cpath = None if clean_dir is None else clean_dir / f"{name}.json"
        if cpath is not None and cpath.exists():
            clean = _read_json(cpath)
            descriptions = ["\n".join(v for _, v in _by_frame(clean.get(str(c), {}), cpath))
                            for c in centres]
        extras: dict[str, Any] = {"stride": stride, "positions": len(centres),
                                  "released": True, "source": str(base),
                                  "config": {"refine_k": 10, "temperature": 1.0}}
        score = raw
        npath = None if refined_dir is None else refined_dir / f"{name}.json"
        mpath = None if sim_dir is None else sim_dir / f"{name}.json"
        if npath is not None and mpath is not None and npath.exists() and mpath.exists():
            nscores = _neighbours(_read_json(npath), centres, npath)
            sims = _neighbours(_read_json(mpath), centres, mpath)
            score = refine_from_neighbours(sims, nscores)
            extras.update(neighbour_scores=nscores, neighbour_similarities=sims)
            extras["config"]["refine_k"] = int(sims.shape[1])
        num_frames = lengths.get(name, centres[-1] + stride)
        starts = np.asarray(centres, dtype=np.int64)
        segments = pd.DataFrame({
            "start_frame": starts, "end_frame": np.minimum(starts + stride, num_frames),
            "centre_frame": starts, "time_s": starts / rate,
            "temporal_description": descriptions, "summary": [t for _, t in summaries],
            "raw_score": raw, "score": score,
            "explanation": [f"{t} (LLM score {r:.1f}, refined {f:.2f})"
                            for (_, t), r, f in zip(summaries, raw, score)]})
        extras["raw_frame_scores"] = to_frames(raw, num_frames, stride)
        out[name] = Detection(video=name, method="lavad", profile="paper",
                              frame_scores=to_frames(score, num_frames, stride), fps=rate,
                              segments=segments, model_calls=pd.DataFrame(), extras=extras)
    return out

