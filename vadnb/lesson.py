"""Small helpers that make a notebook read as a lesson (every notebook uses them).

- :data:`REFERENCES` and :func:`references`: the papers and their official code, in one place;
  each notebook renders the ones it teaches, the README lists them all.
- :func:`banner`: the tiny-profile warning, once, at the top of a notebook's results.
- :func:`say`: a sentence about *this run* (a number, an outcome), rendered as Markdown and
  marked so a test can find it in the executed notebook. Static prose explains ideas; every
  statement about a result is produced by code through ``say``.
- :func:`show_source`: the source of a vadnb function, highlighted, right after the cell
  that called it: the algorithm lives once in ``vadnb/`` and is still read in the lesson.
- :func:`save_metrics`: a run's numbers to ``metrics.json`` in one call (notebooks 50-80),
  so no lesson carries JSON plumbing.
- :func:`clip_for_display` and :func:`brief`: scores drawn on one [0, 1] axis (with a count of
  what was clipped) and tiny models' words cut short, so a figure or a table stays readable.
- :func:`perfect_perception`: one method on clips of a benchmark with its oracle models
  (notebook 80's upper-bound rows; each method's notebook builds its oracle step by step).

Outside Jupyter (a script, a test) each helper prints plain text instead.
"""

from __future__ import annotations

import html
import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import registry

__all__ = ["Reference", "REFERENCES", "NOTEBOOK_METHODS", "references", "references_markdown",
           "banner", "banner_html", "say", "show_source", "source_html", "COMPUTED_KEY",
           "TINY_TAG", "save_metrics", "plain", "perfect_perception", "PERFECT_PERCEPTION",
           "clip_for_display", "brief"]

#: display-metadata key that marks outputs made by these helpers (tests look for it)
COMPUTED_KEY = "vadnb"

#: the short tag figures carry when their numbers come from the tiny profile
TINY_TAG = "tiny models: scores mean nothing"


@dataclass(frozen=True)
class Reference:
    """One paper and its official code."""

    key: str
    title: str
    authors: str
    venue: str
    arxiv: str
    code: str

    @property
    def arxiv_url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}"

    def markdown(self) -> str:
        return (f"{self.authors}. **{self.title}.** {self.venue}. "
                f"[arXiv:{self.arxiv}]({self.arxiv_url}) · official code: [{self.code}]"
                f"(https://{self.code})")

    def html(self) -> str:
        e = html.escape
        return (f"{e(self.authors)}. <b>{e(self.title)}.</b> {e(self.venue)}. "
                f"<a href='{e(self.arxiv_url)}'>arXiv:{e(self.arxiv)}</a> · official code: "
                f"<a href='https://{e(self.code)}'>{e(self.code)}</a>")


# Titles, authors and venues as the official READMEs give them (their BibTeX entries); each
# method declares its paper (vadnb.registry) and this reads them.
REFERENCES: Mapping[str, Reference] = registry.view(lambda m: m.reference)

#: which papers each notebook teaches (by its two-digit number)
NOTEBOOK_METHODS: dict[str, tuple[str, ...]] = {
    "00": ("lavad", "anomalyclip", "anyanomaly", "vera"),
    "10": ("lavad", "anyanomaly"),
    "20": ("lavad",), "30": ("lavad",), "40": ("lavad",),
    "50": ("anomalyclip",), "60": ("anyanomaly",), "70": ("vera",), "75": ("flashback",),
    "80": ("lavad", "anomalyclip", "anyanomaly", "vera"),
    "85": ("lavad", "anomalyclip", "anyanomaly", "vera"),
    "90": ("lavad", "anomalyclip", "anyanomaly", "vera"),
}


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def _show(markdown: str | None, html_text: str | None, plain: str, kind: str) -> None:
    """Display one output with Markdown/HTML and a plain-text fallback, marked ``kind``."""
    if not _in_ipython():
        print(plain)
        return
    from IPython.display import display

    bundle = {"text/plain": plain}
    if markdown is not None:
        bundle["text/markdown"] = markdown
    if html_text is not None:
        bundle["text/html"] = html_text
    display(bundle, raw=True, metadata={COMPUTED_KEY: {"kind": kind}})


def references_markdown(*keys: str) -> str:
    """The references for ``keys`` (method names, or one notebook number) as Markdown."""
    if len(keys) == 1 and keys[0] in NOTEBOOK_METHODS:
        keys = NOTEBOOK_METHODS[keys[0]]
    unknown = [k for k in keys if k not in REFERENCES]
    if unknown:
        raise KeyError(f"no reference for {unknown}; known: {sorted(REFERENCES)} "
                       f"or a notebook number in {sorted(NOTEBOOK_METHODS)}")
    lines = [f"- {REFERENCES[k].markdown()}" for k in keys]
    title = "**Paper.**" if len(keys) == 1 else "**Papers.**"
    return f"{title}\n\n" + "\n".join(lines)


def references(*keys: str) -> None:
    """Render the papers a notebook teaches: ``references("lavad")`` or ``references("80")``."""
    md = references_markdown(*keys)
    _show(md, None, md, "references")


def _profile_of(env_or_profile: Any) -> str:
    return str(getattr(env_or_profile, "profile", env_or_profile))


def _except(real: str) -> str:
    """The banner's exception for outputs that use no random-init model (may be empty)."""
    if not real:
        return ""
    return f" Except {real}: no random-init model is involved, so their numbers mean what they say."


def banner_html(env_or_profile: Any, real: str = "") -> str:
    """The banner's HTML (empty for a profile with real models)."""
    from .models.profiles import MEANINGLESS_PROFILES

    profile = _profile_of(env_or_profile)
    if profile not in MEANINGLESS_PROFILES:
        return ""
    what = ("Tiny profile: random-init models." if profile == "tiny" else
            f"{html.escape(profile)} profile: a real small LLM and text embedder, but "
            "random-init image models.")
    return ("<div style='background:#fde8e8;color:#8b0000;border:1px solid #8b0000;"
            "border-radius:4px;padding:8px 12px;margin:4px 0'>"
            f"<b>⚠ {what}</b> Every model's caption, reply, score and metric "
            "below exercises the pipeline on a CPU and means nothing about anomalies; figures "
            f"carry the tag <i>{html.escape(TINY_TAG)}</i>.{html.escape(_except(real))} For "
            "real numbers run the notebook "
            "with <code>PROFILE = \"colab\"</code> on a GPU (Colab: Runtime › Change runtime "
            "type › T4 GPU).</div>")


def banner(env_or_profile: Any, real: str = "") -> None:
    """The tiny-profile warning, once, at the top of a notebook's results.

    ``env_or_profile``: what ``vadnb.setup()`` returned, or a profile name. For a real
    profile it prints one line naming the profile instead. ``real`` names what the notebook
    shows that no random-init model touches (the classical baseline, perfect-perception
    runs): without it, the banner would call those real numbers meaningless too.
    """
    profile = _profile_of(env_or_profile)
    body = banner_html(profile, real)
    if body:
        what = ("Tiny profile: random-init models." if profile == "tiny" else
                f"{profile} profile: a real small LLM, random-init image models.")
        plain = (f"⚠ {what} Every model's caption, reply, score and metric "
                 "below means nothing about anomalies; figures carry the tag "
                 f"'{TINY_TAG}'.{_except(real)} Run with PROFILE='colab' on a GPU for real "
                 "numbers.")
        _show(None, body, plain, "banner")
    else:
        text = f"Profile **{profile}**: real models, so the numbers below are results."
        _show(text, None, text.replace("**", ""), "banner")


def say(text: str) -> None:
    """Render a computed statement about this run as Markdown (found later by the tests).

    Build ``text`` from the run's values, e.g.
    ``say(f"{log.failed} of {log.total} replies could not be read")``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("say() needs a non-empty sentence built from this run's values")
    _show(text, None, text, "computed")


def _qualified_name(func: Callable) -> str:
    module = getattr(func, "__module__", None) or ""
    return f"{module}.{getattr(func, '__qualname__', getattr(func, '__name__', '?'))}"


def source_html(func: Callable, max_lines: int = 80) -> tuple[str, str]:
    """(HTML, plain text) of ``func``'s source, highlighted with pygments (inline styles,
    so the HTML export and GitHub's viewer keep the colours)."""
    func = inspect.unwrap(func)
    try:
        lines, first = inspect.getsourcelines(func)
    except (OSError, TypeError) as err:
        raise TypeError(f"show_source needs a Python function or class defined in a file, "
                        f"got {func!r}: {err}") from err
    code = "".join(lines)
    shown = lines[:max_lines]
    more = len(lines) - len(shown)
    try:
        path = Path(inspect.getsourcefile(func) or "?")
        where = "/".join(path.parts[-2:])
    except TypeError:
        where = "?"
    header = f"{_qualified_name(func)} · {where}, lines {first}-{first + len(lines) - 1}"
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        body = highlight("".join(shown), PythonLexer(),
                         HtmlFormatter(noclasses=True, style="default", nobackground=True))
    except ImportError:  # pragma: no cover - pygments ships with Jupyter
        body = f"<pre>{html.escape(''.join(shown))}</pre>"
    tail = f"<div style='color:#666'>… {more} more lines in {html.escape(where)}</div>" if more else ""
    page = (f"<details open><summary><b>source</b> <code>{html.escape(header)}</code></summary>"
            f"<div style='font-family:monospace;font-size:85%;max-height:32em;overflow:auto;"
            f"border-left:3px solid "
            f"#ccc;padding-left:8px'>{body}{tail}</div></details>")
    return page, f"# {header}\n{code}"


def show_source(func: Callable, max_lines: int = 80) -> None:
    """Display the source of ``func`` (e.g. ``vadnb.lavad.refine_scores``), highlighted."""
    page, plain = source_html(func, max_lines=max_lines)
    _show(None, page, plain, "source")


def plain(value: Any) -> Any:
    """``value`` as plain JSON data: numpy numbers and arrays become Python ones, NaN and
    infinities become None (JSON has no NaN), DataFrames become lists of records, Series
    and mappings dicts with string keys, paths and anything else their ``str``."""
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return plain(value.to_dict(orient="records"))
    if isinstance(value, (pd.Series, Mapping)):
        return {str(k): plain(v) for k, v in dict(value).items()}
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)) or value is None or isinstance(value, str):
        return bool(value) if isinstance(value, np.bool_) else value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return str(value)


def save_metrics(path: str | Path, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Write a run's numbers as ``metrics.json`` (valid JSON: :func:`plain`), and return what
    was written. The folder is created; the main job's index page reads these files."""
    data = plain(summary)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, allow_nan=False))
    return data


def clip_for_display(detections: Mapping[str, Any], low: float = 0.0, high: float = 1.0
                     ) -> tuple[dict[str, Any], Any]:
    """Copies of ``detections`` with their frame scores clipped to [``low``, ``high``], and
    one row per method whose scores left that range (frames above, below, of how many, the
    extremes). Stacked panels are compared by eye: one method whose scores reach 5.7 (the
    official AnyAnomaly parser reads the first number of a reply, unclipped) would get an
    axis of its own. Only for figures: metrics must read the raw scores (clipping ties them).
    """
    import dataclasses

    import numpy as np
    import pandas as pd

    if not low < high:
        raise ValueError(f"clip_for_display needs low < high, got low={low}, high={high}")
    shown, rows = {}, []
    for name, det in detections.items():
        scores = np.asarray(det.frame_scores, dtype=float)
        above, below = int((scores > high).sum()), int((scores < low).sum())
        if above or below:
            rows.append({"method": name, "above": above, "below": below, "frames": scores.size,
                         "max": float(np.nanmax(scores)), "min": float(np.nanmin(scores))})
        shown[name] = dataclasses.replace(det, frame_scores=np.clip(scores, low, high))
    columns = ["method", "above", "below", "frames", "max", "min"]
    return shown, pd.DataFrame(rows, columns=columns)


def brief(text: Any, width: int = 40) -> str:
    """``text`` on one line, at most ``width`` characters (an ellipsis marks a cut), with every
    unprintable character (tiny models write control codes) shown as "?"."""
    if width < 2:
        raise ValueError(f"brief needs width >= 2, got {width}")
    line = " ".join("".join(c if c.isprintable() or c.isspace() else "?"
                        for c in str(text)).split())
    return line if len(line) <= width else line[:width - 1] + "…"


#: how each method's perfect-perception run is labelled: its upper bound is of the method's
#: own steps (windows, selection, fusion, smoothing) on these clips, never of any model
PERFECT_PERCEPTION = "upper bound of the method's steps (perfect perception), not of any model"


def perfect_perception(method: str, benchmark: Any, paths: list[str], *, cache: Any = None,
                       knobs: Mapping[str, Any] | None = None, clip: Any = None,
                       train_config: Any = None, split: str = "test") -> list[Any] | None:
    """``method`` on ``paths`` (clips of ``benchmark``) with the oracle models of its own
    notebook, which read the ground truth: one Detection per path, or None for a method
    that has no oracle (the classical baseline uses no learned model: its row is real).

    ``knobs``: the method's Config fields, as in the model run. AnomalyCLIP trains a head on
    the oracle's features of the train split first (``train_config``; ``clip`` lends the
    text tower). VERA asks one question per campus class (``vera.lesson.CAMPUS_QUESTIONS``,
    what its oracle optimizer learns in notebook 70); AnyAnomaly looks for one description
    per class (``compare.CAMPUS_DESCRIPTIONS``); Flashback reads the hand-written memory.
    """
    knobs = dict(knobs or {})
    paths = [str(p) for p in paths]
    clips = benchmark.subset(split)  # the oracles hash every frame of these clips once
    if method == "lavad":
        from . import lavad

        return lavad.run_many(paths, backends=lavad.oracle_backends(clips), cache=cache,
                              **knobs)
    if method == "anomalyclip":
        from . import anomalyclip

        config = train_config or anomalyclip.Config(**knobs)
        oracle = anomalyclip.oracle_clip(benchmark, text_clip=clip, stride=config.feature_stride)
        model, _ = anomalyclip.train(benchmark, "train", config, backends={"clip": oracle},
                                     cache=cache, progress=False)
        return [anomalyclip.run(p, backends={"clip": oracle}, checkpoint=model, cache=cache)
                for p in paths]
    if method == "vera":
        from . import vera
        from .vera.lesson import CAMPUS_QUESTIONS

        oracle = vera.oracle_backends(clips, image_size=knobs.get("image_size", 448))
        return vera.run_many(paths, backends=oracle, cache=cache,
                             questions=list(CAMPUS_QUESTIONS.values()), **knobs)
    if method == "anyanomaly":
        from . import anyanomaly
        from .compare import CAMPUS_DESCRIPTIONS

        config = anyanomaly.Config(**knobs)
        classes = sorted({str(c) for c in benchmark.videos["label"]} - {"Normal"})
        described = {c: CAMPUS_DESCRIPTIONS.get(c, c.lower()) for c in classes}
        oracle = anyanomaly.oracle_backends(clips, described, config)
        return [anyanomaly.run(p, config=config, backends=oracle, cache=cache, progress=False,
                               prompts=list(described.values())) for p in paths]
    if method == "flashback":
        from . import flashback
        from .flashback.lesson import oracle_backends

        oracle = oracle_backends(clips)
        return [flashback.run(p, backends=oracle, cache=cache, memory="handwritten", **knobs)
                for p in paths]
    return None
