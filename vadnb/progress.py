"""Progress bars that keep a notebook clean: one per long stage, none for quick steps.

``bar(...)`` is ``tqdm.auto.tqdm`` with three defaults: it appears only after a second
(``delay``), it disappears when done (``leave=False``), and it stays hidden while another
bar is running, so a stage that shows its own bar (a run over many videos, a runtime map)
is not buried under the bars of the steps inside it.

In a notebook, a saved (executed) copy keeps each bar's text as it was when the bar first
appeared ("0%", "1/4"), because a widget's plain-text form is frozen when it is displayed.
So a notebook bar here is displayed with a display id and re-displayed once when it closes:
the saved text then reads the finished state ("100%", "4/4").
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["bar", "bar_running"]


def bar_running() -> bool:
    """Whether a visible (or about to be visible) tqdm bar is active right now."""
    from tqdm.auto import tqdm

    return any(not getattr(b, "disable", True) for b in list(getattr(tqdm, "_instances", ())))


@functools.lru_cache(maxsize=1)
def _notebook_bar_class() -> type | None:
    """A ``tqdm.notebook`` bar whose saved text ends at its final state (None outside Jupyter)."""
    from tqdm.auto import tqdm

    try:
        from tqdm.notebook import tqdm_notebook
    except ImportError:  # no ipywidgets: tqdm.auto is the text bar
        return None
    if not issubclass(tqdm, tqdm_notebook):
        return None

    class NotebookBar(tqdm_notebook):
        """Displayed with a display id, so ``close`` can rewrite its saved text."""

        _handle = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            show_now = kwargs.pop("display", True) and kwargs.get("delay", 0) <= 0
            super().__init__(*args, display=False, **kwargs)
            if show_now and not self.disable:
                self._show()

        def _show(self) -> None:
            from IPython.display import display

            self._handle = display(self.container, display_id=True)
            self.displayed = True

        def display(self, *args: Any, check_delay: bool = True, **kwargs: Any) -> Any:
            if check_delay and self.delay > 0 and not self.displayed:
                self._show()
            return super().display(*args, check_delay=check_delay, **kwargs)

        def close(self) -> None:
            if not self.disable and self._handle is not None and not getattr(self, "_closed", False):
                self._closed = True
                self.refresh()                      # the widget's final numbers ...
                self._handle.update(self.container)  # ... and its saved plain text
            super().close()

    return NotebookBar


def bar(iterable: Any = None, *, total: int | None = None, desc: str = "",
        disable: bool = False, **kwargs: Any):
    """A tqdm bar for a long stage (see the module docstring); ``disable`` hides it too."""
    from tqdm.auto import tqdm

    kwargs.setdefault("delay", 1.0)
    kwargs.setdefault("leave", False)
    cls = _notebook_bar_class() or tqdm
    return cls(iterable, total=total, desc=desc, disable=disable or bar_running(), **kwargs)
