"""AnyAnomaly's Config field checks, kept out of :mod:`.core` so its Config reads as the paper's."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints


def prompt_list(value: Any) -> Any:
    """One description given as a string is a list of one; a tuple is a list."""
    return [value] if isinstance(value, str) else list(value) if isinstance(value, tuple) \
        else value


def distinct(prompts: list[str]) -> list[str]:
    if len(set(prompts)) != len(prompts):
        raise ValueError("must not repeat a description")
    return prompts


def one_slot(template: str) -> str:
    try:
        ok = template.count("{}") == 1 and template.format("x") != template
    except (IndexError, KeyError, ValueError):
        ok = False
    if not ok:
        raise ValueError("must hold exactly one {} (where the class name goes) and no other braces")
    return template


def some_weight(weights: tuple[float, float, float]) -> tuple[float, float, float]:
    if not any(weights):
        raise ValueError("must not all be 0 (the fused score would be 0 everywhere)")
    return weights


def windows_fit(cfg: Any) -> Any:
    """A Config's key and context frames are read large enough to cut its windows."""
    if cfg.view_max_side < cfg.position_size // 4:
        raise ValueError(f"Config.view_max_side={cfg.view_max_side} is too small to cut windows "
                         f"(at least Config.position_size // 4 = {cfg.position_size // 4})")
    return cfg


def grid_of_four(frames: int) -> int:
    if frames != 4:
        raise ValueError("must be 4 (the temporal context is a 2x2 grid)")
    return frames


# A phrase is capped (CLIP reads 77 tokens): 200,000 pasted characters make its tokenizer
# allocate gigabytes.
_TEXT = Field(min_length=1, max_length=1000)
Prompt = Annotated[str, StringConstraints(strip_whitespace=True), _TEXT]
ClassName = Annotated[str, _TEXT]
Template = Annotated[str, _TEXT, AfterValidator(one_slot)]
Weight = Annotated[float, Field(ge=0)]
