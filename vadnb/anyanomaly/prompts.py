"""The words AnyAnomaly sends its VLM: the official prompts (the method's specification,
quoted from ``functions/qwen_vllm_func.py`` of SkiddieAhn/Paper-AnyAnomaly, trailing spaces
included) and vadnb's shorter wording, a named option (``Config(prompt_style="vadnb")``)."""

from __future__ import annotations

from typing import Any

from ..runtime import Ask

#: The official chat's system line (``qwen_make_messages``).
OFFICIAL_SYSTEM = "You are a vision anomaly detector."

# The official instruction, line by line; {k} is the keyword, {out} the dataset's word for the
# answer line ("Output" on Avenue, "Response" on ShanghaiTech, as the official config sets it).
_OFFICIAL_TASK = (
    "- **Task**: Evaluate whether the given image includes **{k}** on a scale from 0 to 1. \n"
    "A score of 1 means **{k}** is clearly present in the image, while a score of 0 means "
    "**{k}** is not present at all. \n"
    "For intermediate cases, assign a value between 0 and 1 based on the degree to which "
    "**{k}** is visible.\n")
_OFFICIAL_CONTEXT = (
    "- **Context**: The given image represents a sequence (row 1 column 1 \u2192 row 1 column 2 "
    "\u2192 row 2 column 1 -> row 2 column 2) illustrating temporal progression.\n")
_OFFICIAL_REST = (
    "- **Consideration**: The key is whether **{k}** is present in the image, not its focus. "
    "Thus, if **{k}** is present, even if it is not the main focus, assign a higher score "
    "like 1.0.\n"
    "- **{out}**: Provide the score as a float, rounded to one decimal place, including a "
    "brief reason for the score in **one short sentence**.   \n")

# vadnb's wording: one question, the grid's reading order, a fixed "Score: ... Reason: ..." form.
_TASK = (
    "Does this image show {d}? Rate it on a scale from 0 to 1: 1 means {d} is clearly "
    "present, 0 means it is not present at all, values in between mean it is partly "
    "visible or uncertain. If it is present anywhere, even small or off-centre, rate it high."
)
_TEMPORAL = (" The image is a 2x2 grid of four moments of the same place in time order: "
             "read it left to right, top to bottom (top-left first, bottom-right last).")
_FORMAT = " Answer exactly as: Score: <a number between 0 and 1>. Reason: <one short sentence>."

PROMPT_STYLES = ("official", "vadnb")


def build_prompt(description: str, view: str, style: str = "official",
                 output_word: str = "Output") -> str:
    """The VLM prompt for one ``view`` ("key", "position", "temporal"; only the grid's says
    how it reads in time): ``style="official"`` word for word, or vadnb's shorter one."""
    if view not in ("key", "position", "temporal"):
        raise ValueError(f"unknown view {view!r}; use 'key', 'position' or 'temporal'")
    temporal = view == "temporal"
    if style == "official":
        return (_OFFICIAL_TASK + (_OFFICIAL_CONTEXT if temporal else "")
                + _OFFICIAL_REST).format(k=description, out=output_word)
    if style == "vadnb":
        return _TASK.format(d=description) + (_TEMPORAL if temporal else "") + _FORMAT
    raise ValueError(f"unknown prompt_style {style!r}; use one of {PROMPT_STYLES}")


def question(image: Any, description: str, view: str, cfg: Any) -> Ask:
    """One VLM question about one view's image, with the Config's wording and decoding."""
    return Ask((image,), build_prompt(description, view, cfg.prompt_style, cfg.output_word),
               cfg.max_new_tokens, cfg.temperature, top_p=cfg.top_p, system=cfg.system_prompt,
               repetition_penalty=cfg.repetition_penalty)
