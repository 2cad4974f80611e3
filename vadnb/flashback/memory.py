"""Flashback's "recall": an LLM writes a memory of paired normal/anomalous captions, once.

A malformed reply is counted and asked again with its error shown; the memory is saved as
``<name>.json`` + ``<name>.safetensors`` (no pickle). Trap: a random-init tiny LLM writes no
JSON, so the tiny profile uses a memory **written by a person** (:data:`HANDWRITTEN_PATH`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime import Chat, EncodeText, Runtime

FORMAT = "vadnb-flashback-memory"
VERSION = 1
HANDWRITTEN_PATH = Path(__file__).resolve().parents[2] / "data" / "flashback_memory_handwritten.json"

#: The structure the LLM is asked for (the research code's response format, in words).
SCHEMA = ('{"descriptions": [{"normal": {"category": "Normal", "description": "..."}, '
          '"anomalous": {"category": "<the anomalous action>", "description": "..."}}, ...]}')

SYSTEM_PROMPT = (
    "You help build a video anomaly detector. In surveillance video, anomalous events are "
    "rare, but their kinds are many. Write example scene descriptions in pairs: one normal "
    "scene and one anomalous scene. A multi-modal retrieval model will match video clips "
    "against these descriptions, so each description must be short and concrete: what can "
    "be seen, in one sentence. The category of a normal scene is \"Normal\"; the category "
    "of an anomalous scene names its action (for example \"Fighting\"). Reply with only one "
    "JSON object of this form: " + SCHEMA)


class RecallError(RuntimeError):
    """Recall produced no usable caption: every LLM call stayed malformed."""


def recall_messages(pairs: int, seed: int) -> list[dict[str, str]]:
    """The conversation of one recall call (the seed is written into it: see differences)."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Generate {pairs} example scene descriptions. "
                                        f"Seed: {seed}."}]


_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$", re.I)


def _side(item: Any, key: str) -> tuple[str, str] | None:
    side = item.get(key) if isinstance(item, dict) else None
    if not isinstance(side, dict):
        return None
    text, cat = side.get("description"), side.get("category")
    if not isinstance(text, str) or not text.strip() or not isinstance(cat, str):
        return None
    return " ".join(text.split()), cat.strip()


def parse_reply(reply: str) -> tuple[list[tuple[tuple[str, str], tuple[str, str]]], int, str | None]:
    """``(pairs, bad_items, error)`` of one reply, a pair being ((normal, category),
    (anomalous, category)); ``error`` is None when at least one item is complete."""
    if getattr(reply, "failed", False):
        return [], 0, f"no reply ({getattr(reply, 'error', '') or 'empty'})"
    text = _FENCE.sub("", str(reply))
    start, end = text.find("{"), text.rfind("}")
    if start < 0:
        return [], 0, "no JSON object in the reply"
    try:  # a reply cut at its token budget has no closing brace: invalid JSON, said so
        obj = json.loads(text[start:end + 1] if end > start else text[start:])
    except json.JSONDecodeError as err:
        return [], 0, f"invalid JSON ({err.msg} at character {err.pos})"
    items = obj.get("descriptions") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        return [], 0, 'the object has no "descriptions" list'
    sides = [(_side(item, "normal"), _side(item, "anomalous")) for item in items]
    pairs = [(normal, anomalous) for normal, anomalous in sides if normal and anomalous]
    bad = len(items) - len(pairs)
    return pairs, bad, None if pairs else "no item has a normal and an anomalous description"


def recall(rt: Runtime, cfg: Any) -> tuple[list, dict[str, int]]:
    """``(pairs, counts)`` of ``cfg.calls`` llm calls (seeds 0..calls-1), malformed ones retried."""
    convs = {seed: recall_messages(cfg.pairs_per_call, seed) for seed in range(cfg.calls)}
    pairs: list = []
    counts = {"calls": cfg.calls,
              **dict.fromkeys(("replies", "malformed_replies", "bad_items", "failed_calls"), 0)}
    errors: list[str] = []
    for attempt in range(cfg.max_retries + 1):
        seeds = list(convs)
        replies = rt.map("llm", [Chat(convs[s], cfg.max_new_tokens, cfg.temperature)
                                 for s in seeds], batch_size=cfg.llm_batch_size,
                         desc=f"Flashback recall (attempt {attempt + 1})")
        convs_next = {}
        for seed, reply in zip(seeds, replies):
            got, bad, error = parse_reply(reply)
            counts["replies"] += 1
            counts["bad_items"] += bad
            if error is None:
                pairs.extend(got)
                continue
            counts["malformed_replies"] += 1
            errors.append(f"seed {seed}: {error}")
            convs_next[seed] = convs[seed] + [
                {"role": "assistant", "content": str(reply)[:2000]},
                {"role": "user", "content": f"That reply is not usable: {error}. Answer "
                                            f"again with only the JSON object: {SCHEMA}"}]
        convs = convs_next
        if not convs:
            break
    counts["failed_calls"] = len(convs)
    if not pairs:
        raise RecallError(
            f"Flashback recall: the llm {rt.roles.identity('llm')!r} wrote no usable caption "
            f"pair: all {cfg.calls} call(s) stayed malformed after {cfg.max_retries} "
            f"retries ({counts['replies']} replies, first error: {errors[0]}). A random-init "
            "tiny LLM cannot write JSON: use memory='handwritten' (a small memory a person "
            "wrote) or a real LLM (profile 'colab').")
    if convs:
        warnings.warn(f"Flashback recall: {len(convs)} of {cfg.calls} call(s) stayed "
                      "malformed and were left out (counted in the memory's counts)",
                      stacklevel=2)
    return pairs, counts


def deduplicate(pairs: list) -> tuple[dict[str, list[tuple[str, str]]], dict[str, int]]:
    """Exact-string de-duplication within each class (first kept), with the counts."""
    out: dict[str, list[tuple[str, str]]] = {}
    counts = {}
    for c, i in (("normal", 0), ("anomalous", 1)):
        seen: dict[str, str] = {}
        for pair in pairs:
            seen.setdefault(*pair[i])
        out[c] = list(seen.items())
        counts.update({f"{c}_written": len(pairs), f"{c}_duplicates": len(pairs) - len(seen)})
    return out, counts


def _write_atomic(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)


@dataclass
class CaptionMemory:
    """Captions and categories per class, their embeddings, the recipe and the counts."""
    normal: list[str]
    anomalous: list[str]
    normal_categories: list[str]
    anomalous_categories: list[str]
    normal_embeddings: np.ndarray
    anomalous_embeddings: np.ndarray
    recipe: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def captions(self) -> list[str]:
        """All captions in memory order: normal first, then anomalous."""
        return self.normal + self.anomalous

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<path>.json`` and ``<path>.safetensors``; returns the JSON's path."""
        from safetensors.numpy import save
        stem = Path(path).with_suffix("")
        stem.parent.mkdir(parents=True, exist_ok=True)
        tensors, out = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
        blob = save({"normal": np.ascontiguousarray(self.normal_embeddings, np.float32),
                     "anomalous": np.ascontiguousarray(self.anomalous_embeddings, np.float32)})
        _write_atomic(tensors, blob)
        meta = {"format": FORMAT, "version": VERSION, "recipe": self.recipe,
                "counts": self.counts, "embeddings": tensors.name,
                "embeddings_sha256": hashlib.sha256(blob).hexdigest(),
                **{k: [{"description": t, "category": c}
                       for t, c in zip(getattr(self, k), getattr(self, f"{k}_categories"))]
                   for k in ("normal", "anomalous")}}
        _write_atomic(out, json.dumps(meta, indent=1, ensure_ascii=False).encode())
        return out

    @classmethod
    def load(cls, path: str | os.PathLike, expect: dict[str, Any] | None = None
             ) -> CaptionMemory:
        """Read a saved memory, refusing one whose recipe differs in ``expect``'s fields."""
        from safetensors.numpy import load_file
        path = Path(path).with_suffix(".json")
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"Flashback memory {path}: cannot be read ({err})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"Flashback memory {path}: not a {FORMAT} file")
        if meta.get("version") != VERSION:
            raise ValueError(f"Flashback memory {path}: version {meta.get('version')!r}, "
                             f"this vadnb reads version {VERSION}; rebuild it")
        tensors = path.with_name(str(meta.get("embeddings", "")))
        if not tensors.is_file() or hashlib.sha256(tensors.read_bytes()).hexdigest() != \
                meta.get("embeddings_sha256"):
            raise ValueError(f"Flashback memory {path}: its embeddings file {tensors.name} is "
                             "missing or does not match the captions (sha256)")
        recipe = meta["recipe"]
        wrong = sorted(k for k, v in (expect or {}).items() if recipe.get(k) != v)
        if wrong:
            said = "; ".join(f"{k}: file {recipe.get(k)!r}, wanted {expect[k]!r}" for k in wrong)
            raise ValueError(f"Flashback memory {path} was made with another recipe ({said}); "
                             "rebuild it or use the matching settings")
        arrays = load_file(str(tensors))
        normal, anomalous = meta["normal"], meta["anomalous"]
        return cls(normal=[d["description"] for d in normal],
                   anomalous=[d["description"] for d in anomalous],
                   normal_categories=[d["category"] for d in normal],
                   anomalous_categories=[d["category"] for d in anomalous],
                   normal_embeddings=arrays["normal"], anomalous_embeddings=arrays["anomalous"],
                   recipe=recipe, counts=dict(meta.get("counts", {})))


def recipe_of(rt: Runtime, cfg: Any) -> dict[str, Any]:
    """What makes a memory (source, embedder, text template), known without loading a model."""
    from ..models.profiles import MEANINGLESS_PROFILES
    source = cfg.memory
    if source == "auto":
        source = "handwritten" if rt.roles.profile_name("llm") in MEANINGLESS_PROFILES else "llm"
    common = {"embedder": rt.roles.identity("embedder"), "text_prefix": cfg.text_prefix}
    if source == "llm":
        return {"source": "llm", "llm": rt.roles.identity("llm"), "system_prompt": SYSTEM_PROMPT,
                "user_prompt": recall_messages(cfg.pairs_per_call, 0)[1]["content"],
                "seeds": f"0..{cfg.calls - 1}", "pairs_per_call": cfg.pairs_per_call,
                "temperature": cfg.temperature, "max_new_tokens": cfg.max_new_tokens,
                "max_retries": cfg.max_retries, **common}
    if source == "handwritten":
        digest = hashlib.sha256(HANDWRITTEN_PATH.read_bytes()).hexdigest()
        return {"source": "handwritten (written by a person, not by an LLM)",
                "file": HANDWRITTEN_PATH.name, "sha256": digest, **common}
    return {"source": "file", "path": str(source), **common}


def _build(rt: Runtime, cfg: Any, recipe: dict[str, Any]) -> CaptionMemory:
    if recipe["source"] == "llm":
        pairs, counts = recall(rt, cfg)
        rt.release("llm")
    else:
        pairs, bad, error = parse_reply(HANDWRITTEN_PATH.read_text())
        if error:
            raise ValueError(f"{HANDWRITTEN_PATH}: {error}")
        counts = {"calls": 0, "replies": 0, "malformed_replies": 0, "bad_items": bad,
                  "failed_calls": 0}
    kept, dedup = deduplicate(pairs)
    # what is embedded: the raw caption, or with the research code's label prefix
    prefix = {"normal": "[normal] ", "anomalous": "[Anomalous]: "} if cfg.text_prefix else {}
    vecs = [np.stack(rt.map("embedder", [EncodeText(prefix.get(c, "") + t) for t, _ in kept[c]],
                            batch_size=256, desc="Flashback memory embeddings")).astype(np.float32)
            for c in ("normal", "anomalous")]
    return CaptionMemory(normal=[text for text, _ in kept["normal"]],
                         anomalous=[text for text, _ in kept["anomalous"]],
                         normal_categories=[cat for _, cat in kept["normal"]],
                         anomalous_categories=[cat for _, cat in kept["anomalous"]],
                         normal_embeddings=vecs[0], anomalous_embeddings=vecs[1],
                         recipe=recipe, counts={**counts, **dedup})


def obtain(rt: Runtime, cfg: Any) -> CaptionMemory:
    """The memory ``cfg`` asks for: a saved file, the cached one, or built now and cached."""
    from ..cache import make_key
    recipe = recipe_of(rt, cfg)
    if recipe["source"] == "file":
        return CaptionMemory.load(recipe["path"], expect={
            "embedder": recipe["embedder"], "text_prefix": cfg.text_prefix})
    path = rt.cache.root / "flashback" / f"memory-{make_key(recipe)[:20]}.json"
    if path.is_file():
        try:
            return CaptionMemory.load(path, expect=recipe)
        except ValueError as err:  # a damaged cache entry is rebuilt, and said so
            warnings.warn(f"{err}; rebuilding it", stacklevel=2)
    memory = _build(rt, cfg, recipe)
    memory.save(path)
    return memory
