"""Ask an LLM a few prompts live and report how its replies read (notebook 30 uses it):
how many parse, how many were cut at the token budget, how many tokens they took."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .base import is_truncated


def ask_and_parse(llm: Any, conversations: Sequence[list[dict[str, Any]]],
                  parse: Callable[[str], float | None], max_new_tokens: int) -> dict[str, Any]:
    """Send ``conversations`` in one ``llm.batch``, parse every reply, and count (a JSON-ready
    dict); ``truncated_unparsed`` (cut and unreadable) is a budget problem, not a format one."""
    replies = list(llm.batch(list(conversations), max_new_tokens=max_new_tokens))
    values = [parse(str(r)) for r in replies]
    cut = [is_truncated(r) for r in replies]
    counts = [getattr(r, "num_tokens", None) for r in replies]
    counted = [c for c in counts if c is not None]
    ok = [v is not None for v in values]
    return {
        "asked": len(replies),
        "parsed": int(sum(ok)),
        "parse_rate": float(np.mean(ok)) if replies else 0.0,
        "truncated": int(sum(cut)),
        "truncated_unparsed": int(sum(c and not o for c, o in zip(cut, ok))),
        "mean_new_tokens": float(np.mean(counted)) if counted else None,
        "max_new_tokens": int(max_new_tokens),
        "values": [None if v is None else float(v) for v in values],
        "replies": [str(r) for r in replies],
    }
