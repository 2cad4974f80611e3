"""Helpers that make a notebook read as a lesson: papers (:func:`references`), the one
tiny-profile :func:`banner`, sentences about *this run* built by code (:func:`say`: static
prose never states a result), a vadnb function's source (:func:`show_source`),
``metrics.json`` (:func:`save_metrics`), readable figures (:func:`clip_for_display`,
:func:`brief`) and oracle runs (:func:`perfect_perception`). Outside Jupyter they print.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import inspect
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import registry
from .models.profiles import MEANINGLESS_PROFILES

__all__ = ["Reference", "REFERENCES", "NOTEBOOK_METHODS", "references", "references_markdown",
           "banner", "say", "show_source", "source_html", "COMPUTED_KEY", "TINY_TAG",
           "save_metrics", "plain", "perfect_perception", "PERFECT_PERCEPTION",
           "clip_for_display", "brief", "pixel_key", "frame_truth"]

COMPUTED_KEY = "vadnb"  # display-metadata key that marks these helpers' outputs (for tests)
TINY_TAG = "tiny models: scores mean nothing"  # the tag on figures of tiny-profile numbers


@dataclasses.dataclass(frozen=True)
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


# each method declares its paper as its official README's BibTeX gives it (vadnb.registry)
REFERENCES: Mapping[str, Reference] = registry.view(lambda m: m.reference)

_ALL = ("lavad", "anomalyclip", "anyanomaly", "vera")
#: which papers each notebook teaches (by its two-digit number)
NOTEBOOK_METHODS: dict[str, tuple[str, ...]] = {
    "00": _ALL, "10": ("lavad", "anyanomaly"), "20": ("lavad",), "30": ("lavad",),
    "40": ("lavad",), "50": ("anomalyclip",), "60": ("anyanomaly",), "70": ("vera",),
    "75": ("flashback",), "80": _ALL, "85": _ALL, "90": _ALL}


def _in_ipython() -> bool:
    ipython = sys.modules.get("IPython")  # not imported: not in IPython
    return ipython is not None and ipython.get_ipython() is not None


def _show(markdown: str | None, html_text: str | None, plain: str, kind: str) -> None:
    """Display Markdown and/or HTML with a plain-text fallback, marked ``kind``."""
    if not _in_ipython():
        print(plain)
        return
    from IPython.display import display
    bundle = {"text/plain": plain, "text/markdown": markdown, "text/html": html_text}
    display({k: v for k, v in bundle.items() if v is not None}, raw=True,
            metadata={COMPUTED_KEY: {"kind": kind}})


def references_markdown(*keys: str) -> str:
    """The references for ``keys`` (method names, or one notebook number) as Markdown."""
    if len(keys) == 1 and keys[0] in NOTEBOOK_METHODS:
        keys = NOTEBOOK_METHODS[keys[0]]
    unknown = [k for k in keys if k not in REFERENCES]
    if unknown:
        raise KeyError(f"no reference for {unknown}; known: {sorted(REFERENCES)} "
                       f"or a notebook number in {sorted(NOTEBOOK_METHODS)}")
    lines = "\n".join(f"- {REFERENCES[k].markdown()}" for k in keys)
    return f"{'**Paper.**' if len(keys) == 1 else '**Papers.**'}\n\n{lines}"


def references(*keys: str) -> None:
    """Render the papers a notebook teaches: ``references("lavad")`` or ``references("80")``."""
    md = references_markdown(*keys)
    _show(md, None, md, "references")


def banner(env_or_profile: Any, real: str = "") -> None:
    """The tiny-profile warning, once, atop a notebook's results (``env_or_profile``: what
    ``vadnb.setup()`` returned, or a profile name). ``real`` names what no random-init model
    touches (the classical baseline, oracle runs), lest the banner call it meaningless too."""
    profile = str(getattr(env_or_profile, "profile", env_or_profile))
    if profile not in MEANINGLESS_PROFILES:
        text = f"Profile **{profile}**: real models, so the numbers below are results."
        _show(text, None, text.replace("**", ""), "banner")
        return
    what = ("Tiny profile: random-init models." if profile == "tiny" else
            f"{profile} profile: a real small LLM and text embedder, but random-init image "
            "models.")
    but = (f" Except {real}: no random-init model is involved, so their numbers mean what "
           "they say." if real else "")
    said = ("Every model's caption, reply, score and metric below means nothing about "
            "anomalies; figures carry the tag ")
    page = ("<div style='background:#fde8e8;color:#8b0000;border:1px solid #8b0000;"
            f"border-radius:4px;padding:8px 12px;margin:4px 0'><b>⚠ {html.escape(what)}</b> "
            f"{said}<i>{TINY_TAG}</i>.{html.escape(but)} For real numbers run the notebook "
            "with <code>PROFILE = \"colab\"</code> on a GPU (Colab: Runtime › Change runtime "
            "type › T4 GPU).</div>")
    _show(None, page, f"⚠ {what} {said}'{TINY_TAG}'.{but} Run with PROFILE='colab' on a GPU "
          "for real numbers.", "banner")



def say(text: str) -> None:
    """Render a statement about this run, built from its values, as Markdown (tests find it):
    ``say(f"{log.failed} of {log.total} replies could not be read")``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("say() needs a non-empty sentence built from this run's values")
    _show(text, None, text, "computed")


def source_html(func: Callable, max_lines: int = 80) -> tuple[str, str]:
    """(HTML, plain text) of ``func``'s source, highlighted with pygments (inline styles
    survive the HTML export and GitHub's viewer)."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    func = inspect.unwrap(func)
    try:
        lines, first = inspect.getsourcelines(func)
        path = Path(inspect.getsourcefile(func) or "?")
    except (OSError, TypeError) as err:
        raise TypeError(f"show_source needs a Python function or class defined in a file, "
                        f"got {func!r}: {err}") from err
    where, last = "/".join(path.parts[-2:]), first + len(lines) - 1
    header = f"{func.__module__}.{func.__qualname__} · {where}, lines {first}-{last}"
    body = highlight("".join(lines[:max_lines]), PythonLexer(),
                     HtmlFormatter(noclasses=True, style="default", nobackground=True))
    more = len(lines) - max_lines
    tail = (f"<div style='color:#666'>… {more} more lines in {html.escape(where)}</div>"
            if more > 0 else "")
    page = (f"<details open><summary><b>source</b> <code>{html.escape(header)}</code></summary>"
            "<div style='font-family:monospace;font-size:85%;max-height:32em;overflow:auto;"
            f"border-left:3px solid #ccc;padding-left:8px'>{body}{tail}</div></details>")
    return page, f"# {header}\n{''.join(lines)}"


def show_source(func: Callable, max_lines: int = 80) -> None:
    """Display the source of ``func`` (e.g. ``vadnb.lavad.refine_scores``), highlighted."""
    page, plain = source_html(func, max_lines=max_lines)
    _show(None, page, plain, "source")


def plain(value: Any) -> Any:
    """``value`` as plain JSON data: numpy values become Python ones, NaN and infinities
    None (JSON has no NaN), DataFrames lists of records, Series and mappings dicts with
    string keys, anything else its ``str``."""
    if isinstance(value, pd.DataFrame):
        return plain(value.to_dict(orient="records"))
    if isinstance(value, (pd.Series, Mapping)):
        return {str(k): plain(v) for k, v in dict(value).items()}
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()  # a numpy scalar as its Python value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def save_metrics(path: str | Path, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Write a run's numbers to ``path`` as valid JSON (:func:`plain`) and return them; the
    main job's index page reads these files."""
    data = plain(summary)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, allow_nan=False))
    return data


def clip_for_display(detections: Mapping[str, Any], low: float = 0.0, high: float = 1.0
                     ) -> tuple[dict[str, Any], Any]:
    """Copies of ``detections`` with frame scores clipped to [``low``, ``high``], and one row
    per method whose scores left that range, so stacked panels share an axis (AnyAnomaly's
    official parser can reach 5.7). Only for figures: metrics must read the raw scores."""
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
    return shown, pd.DataFrame(rows, columns=["method", "above", "below", "frames", "max", "min"])


def brief(text: Any, width: int = 40) -> str:
    """``text`` on one line, at most ``width`` characters (an ellipsis marks a cut), each
    unprintable character (tiny models write control codes) shown as "?"."""
    if width < 2:
        raise ValueError(f"brief needs width >= 2, got {width}")
    line = " ".join("".join(c if c.isprintable() or c.isspace() else "?"
                            for c in str(text)).split())
    return line if len(line) <= width else line[:width - 1] + "…"


def pixel_key(image: np.ndarray) -> str:
    """How an oracle recognises a frame: the SHA-1 of its pixels."""
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


Size = int | tuple[int, int] | Callable[[int, int], tuple[int, int]] | None


def frame_truth(benchmark: Any, size: Size = None, *,
                views: Callable[[np.ndarray], Iterable[np.ndarray]] | None = None,
                stride: int = 1) -> dict[str, tuple[str, str]]:
    """:func:`pixel_key` -> (class shown or "Normal", its video's class) of every ``stride``-th
    labelled frame of ``benchmark`` and of each image ``views(frame)`` returns: what every
    oracle reads. ``size``: (width, height), an int for a square, or a function of the
    video's (width, height); None reads native frames. Identical pixels: an anomaly wins."""
    from .video import iter_frames, probe

    truth: dict[str, tuple[str, str]] = {}
    for name, path, label in zip(benchmark.videos.name, benchmark.videos.path,
                                 benchmark.videos.label):
        y, label = benchmark.frame_labels(name), str(label)
        if callable(size):
            info = probe(path)
            wh = size(info.width, info.height)
        else:
            wh = (size, size) if isinstance(size, int) else size
        for frames in iter_frames(path, size=wh):
            for i, image in zip(frames.indices.tolist(), frames.images):
                if i >= len(y) or i % stride:
                    continue
                for view in [image, *(views(image) if views else ())]:
                    key = pixel_key(view)
                    shown, video = truth.get(key, (None, None))
                    truth[key] = (label if y[i] else shown or "Normal",
                                  label if label != "Normal" or video is None else video)
    return truth


#: how each perfect-perception run is labelled: it bounds the method's own steps, no model
PERFECT_PERCEPTION = "upper bound of the method's steps (perfect perception), not of any model"


def perfect_perception(method: str, benchmark: Any, paths: list[str], *, cache: Any = None,
                       knobs: Mapping[str, Any] | None = None, clip: Any = None,
                       train_config: Any = None, split: str = "test") -> list[Any] | None:
    """``method`` on ``paths`` (clips of ``benchmark``) with its notebook's oracle models,
    which read the ground truth: a Detection per path, or None without an oracle (the
    classical baseline). knobs: Config fields. AnomalyCLIP first trains a head on the
    oracle's train split (``train_config``; ``clip`` lends the text tower)."""
    knobs = dict(knobs or {})
    paths = [str(p) for p in paths]
    clips = benchmark.subset(split)  # the oracles hash every frame of these clips once
    if method == "lavad":
        from . import lavad
        return lavad.run_many(paths, backends=lavad.oracle_backends(clips), cache=cache, **knobs)
    if method == "anomalyclip":
        from . import anomalyclip
        config = train_config or anomalyclip.Config(**knobs)
        oracle = {"clip": anomalyclip.oracle_clip(benchmark, text_clip=clip,
                                                  stride=config.feature_stride)}
        model, _ = anomalyclip.train(benchmark, "train", config, backends=oracle, cache=cache,
                                     progress=False)
        return [anomalyclip.run(p, backends=oracle, checkpoint=model, cache=cache)
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
        return [flashback.run(p, backends=oracle_backends(clips), cache=cache,
                              memory="handwritten", **knobs) for p in paths]
    return None
