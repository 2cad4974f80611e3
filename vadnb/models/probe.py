"""Ask an LLM a few prompts and report how its replies read (notebook 30 uses it).

A method's own stages cache the reply texts; this asks again, live, so the report can say
how many replies were cut at the token budget (:attr:`vadnb.models.base.Reply.truncated`)
beside how many could be parsed, and how many tokens the replies took.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .base import is_truncated


def ask_and_parse(llm: Any, conversations: Sequence[list[dict[str, Any]]],
                  parse: Callable[[str], float | None], max_new_tokens: int) -> dict[str, Any]:
    """Send ``conversations`` in one ``llm.batch`` and parse every reply with ``parse``.

    Returns a JSON-ready dict: ``asked``, ``parsed``, ``parse_rate``, ``truncated``,
    ``truncated_unparsed`` (cut and unreadable: a budget problem, not a format problem),
    ``mean_new_tokens`` (None when the backend does not count), ``values`` (None where a
    reply gave no value), ``replies`` (their text) and ``max_new_tokens``.
    """
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
