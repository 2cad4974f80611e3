"""Progress bars that keep a notebook clean: one per long stage, none for quick steps.

``bar(...)`` is ``tqdm.auto.tqdm`` shown after a second, gone when done, and hidden while
another bar runs (a stage's own bar is not buried under its steps'). A saved notebook keeps
a widget's text as first displayed ("0%"), so a notebook bar is re-displayed once on close:
the saved text reads the finished state.
"""

from __future__ import annotations

import functools
from typing import Any

from tqdm.auto import tqdm

__all__ = ["bar"]


@functools.lru_cache(maxsize=1)
def _notebook_bar_class() -> type | None:
    """A notebook bar whose saved text ends at its final state (None outside Jupyter)."""
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
            self._show_now = kwargs.pop("display", True) and kwargs.get("delay", 0) <= 0
            super().__init__(*args, display=False, **kwargs)

        def display(self, *args: Any, check_delay: bool = True, **kwargs: Any) -> Any:
            if not self.displayed and (self._show_now or check_delay and self.delay > 0):
                from IPython.display import display

                self._handle = display(self.container, display_id=True)
                self.displayed = True
            return super().display(*args, check_delay=check_delay, **kwargs)

        def close(self) -> None:
            if not (self.disable or self._handle is None or getattr(self, "_closed", False)):
                self._closed = True
                self.refresh()                      # the widget's final numbers ...
                self._handle.update(self.container)  # ... and its saved plain text
            super().close()

    return NotebookBar


def bar(iterable: Any = None, *, total: int | None = None, desc: str = "",
        disable: bool = False, **kwargs: Any):
    """A tqdm bar for a long stage (see the module docstring); ``disable`` hides it too."""
    kwargs = {"delay": 1.0, "leave": False, **kwargs}
    running = any(not getattr(b, "disable", True) for b in list(getattr(tqdm, "_instances", ())))
    cls = _notebook_bar_class() or tqdm
    return cls(iterable, total=total, desc=desc, disable=disable or running, **kwargs)
