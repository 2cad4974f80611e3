"""How many tokens the LLM reads for a summary prompt: the official summary budget is the
LLM's context (512) minus the prompt, so the prompt's tokens are counted with the llm
role's own tokenizer. The counts are cached, so a re-run loads no model to count."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..runtime import Runtime

Messages = list[dict[str, str]]


def prompt_token_counter(llm: Any) -> Callable[[Messages], int]:
    """Tokens ``llm`` reads for a conversation: its ``count_tokens``, its tokenizer on the
    chat-templated prompt (transformers backends), else the words (a served API or a
    scripted double without a tokenizer: fewer than its tokens, so a larger budget)."""
    if callable(getattr(llm, "count_tokens", None)):
        return llm.count_tokens
    if hasattr(llm, "tokenizer") and callable(getattr(llm, "prompt", None)):
        return lambda m: len(llm.tokenizer(llm.prompt(m), add_special_tokens=False)["input_ids"])
    return lambda m: sum(len(str(x.get("content", "")).split()) for x in m)


def prompt_tokens(rt: Runtime, messages: Sequence[Messages], role: str = "llm") -> list[int]:
    """Tokens of each conversation for ``role``'s model (cached by model and prompts)."""
    key = {"model": rt.roles.identity(role), "prompts": list(messages)}
    counts = rt.cache.get("lavad.prompt_tokens", key, None)
    if counts is None:
        count = prompt_token_counter(rt.roles.get(role))
        counts = [int(count(m)) for m in messages]
        rt.cache.put("lavad.prompt_tokens", key, counts)
    return list(counts)
