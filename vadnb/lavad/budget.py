"""LAVAD's LLM requests: the decoding, and the official summary budget (the LLM's context
minus the prompt, counted with the llm role's own tokenizer; counts cached)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..runtime import Chat, Runtime

Messages = list[dict[str, str]]

#: LLM decoding -> (temperature, top_p): the official sampling, or greedy.
DECODING = {"greedy": (0.0, 1.0), "paper": (0.6, 0.9)}


def prompt_token_counter(llm: Any) -> Callable[[Messages], int]:
    """Tokens ``llm`` reads: ``count_tokens``, its tokenizer on the templated prompt, or words."""
    if callable(getattr(llm, "count_tokens", None)):
        return llm.count_tokens
    if hasattr(llm, "tokenizer") and callable(getattr(llm, "prompt", None)):
        return lambda m: len(llm.tokenizer(llm.prompt(m), add_special_tokens=False)["input_ids"])
    return lambda m: sum(len(str(x.get("content", "")).split()) for x in m)


def summary_budgets(rt: Runtime, messages: Sequence[Messages], cfg: Any) -> list[int]:
    """Each summary's budget: the context left after the prompt (token counts cached by model
    and prompts), or ``summary_max_new_tokens``."""
    if cfg.summary_max_new_tokens is not None:
        return [cfg.summary_max_new_tokens] * len(messages)
    key = {"model": rt.roles.identity("llm"), "prompts": list(messages)}
    counts = rt.cache.get("lavad.prompt_tokens", key, None)
    if counts is None:
        count = prompt_token_counter(rt.roles.get("llm"))
        counts = [int(count(m)) for m in messages]
        rt.cache.put("lavad.prompt_tokens", key, counts)
    return [max(1, cfg.llm_context_tokens - n) for n in counts]


def chats(messages: Sequence[Messages], budgets: Sequence[int], cfg: Any, video: Any,
          centres: Sequence[int], choices: tuple[str, ...] | None = None) -> list[Chat]:
    """One request per prompt: greedy, or the paper's sampling with one draw per position
    (named by video and centre frame); ``choices``: the likeliest allowed reply."""
    if choices is not None:
        return [Chat(m, choices=choices) for m in messages]
    temperature, top_p = DECODING[cfg.llm_decoding]
    return [Chat(m, b, temperature, top_p,
                 f"{video.path.name}#{c}" if temperature > 0 else None)
            for m, b, c in zip(messages, budgets, centres)]
