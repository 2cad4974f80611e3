"""Progress bars that keep a notebook clean: one per long stage, none for quick steps.

``bar(...)`` is ``tqdm.auto.tqdm`` with three defaults: it appears only after a second
(``delay``), it disappears when done (``leave=False``), and it stays hidden while another
bar is running, so a stage that shows its own bar (a run over many videos, a cache map)
is not buried under the bars of the steps inside it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["bar", "bar_running"]


def bar_running() -> bool:
    """Whether a visible (or about to be visible) tqdm bar is active right now."""
    from tqdm.auto import tqdm

    return any(not getattr(b, "disable", True) for b in list(getattr(tqdm, "_instances", ())))


def bar(iterable: Any = None, *, total: int | None = None, desc: str = "",
        disable: bool = False, **kwargs: Any):
    """A tqdm bar for a long stage (see the module docstring); ``disable`` hides it too."""
    from tqdm.auto import tqdm

    kwargs.setdefault("delay", 1.0)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, total=total, desc=desc, disable=disable or bar_running(), **kwargs)
