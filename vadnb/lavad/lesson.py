"""Teaching helpers for notebooks 20-40: stage tables, oracle backends, figures, statements."""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics
from ..lesson import frame_truth, pixel_key
from ..models.scripted import ScriptedCaptioner, ScriptedEmbedder, ScriptedLLM
from ..result import Detection
from ..video import read_frames
from .budget import Messages
from .core import refine_scores
from .runner import frame_scores_of, rescore
from .video_clip import spatial_crops


def stage_tables(detection: Detection) -> dict[str, pd.DataFrame]:
    """Each stage's output of a LAVAD run as a table (captions to refinement), to read."""
    seg, ex = detection.segments, detection.extras
    if "window_frames" not in ex:
        raise ValueError("this detection has no intermediate results (a Detection.load()ed "
                         "one keeps only the tables); re-run lavad.run: the cache makes it free")
    counts = seg["captions"].value_counts()
    cleaning = [{"centre_frame": int(c), "window_frame": int(f), "caption": cap}
                for c, frames, desc in zip(seg["centre_frame"], ex["window_frames"],
                                           seg["temporal_description"])
                for f, cap in zip(frames, desc.split("\n"))]
    refinement = [{"centre_frame": int(c), "rank": r, "summary": ex["summary_index"][j],
                   "weight": float(w), "summary_score": float(ex["summary_scores"][j])}
                  for c, idx, ws in zip(seg["centre_frame"], ex["neighbours"], ex["weights"])
                  for r, (j, w) in enumerate(zip(idx, ws))]
    return {
        "captions": seg[["centre_frame", "time_s", "captions"]].rename(
            columns={"captions": "caption"}),
        "caption_index": pd.DataFrame({"caption": ex["caption_index"],
                                       "centre_frames": [int(counts.get(c, 0))
                                                         for c in ex["caption_index"]]}),
        "cleaning": pd.DataFrame(cleaning),
        "llm": seg[["centre_frame", "summary", "score_reply", "parsed", "raw_score"]].copy(),
        "refinement": pd.DataFrame(refinement),
    }


def oracle_backends(benchmark: Any) -> dict[str, Any]:
    """Captioner, embedder and LLM that *read the ground truth* of ``benchmark``'s frames:
    LAVAD with perfect perception (notebook 40). The LLM's score is the share of unusual
    moments, so what is left of the truth is what LAVAD's own steps keep."""
    truth = frame_truth(benchmark, views=spatial_crops)

    def what(image: np.ndarray) -> str:
        key = pixel_key(image)
        if key not in truth:
            raise ValueError("the oracle only knows the frames of the benchmark it was built "
                             "from; run it on those videos")
        return truth[key][0]

    def caption(image: np.ndarray) -> str:
        label = what(image)
        return "people walk along a path" if label == "Normal" else f"something unusual: {label}"

    def image_vector(image: np.ndarray) -> np.ndarray:
        return np.array([0.0, 1.0]) if what(image) == "Normal" else np.array([1.0, 0.0])

    def text_vector(text: str) -> np.ndarray:
        m = re.search(r"In (\d+) of (\d+) moments", text)
        if m:
            k, n = int(m.group(1)), int(m.group(2))
            return np.array([k, n - k], dtype=float)
        return np.array([1.0, 0.0]) if "unusual" in text else np.array([0.0, 1.0])

    def reply(messages: Messages) -> str:
        content = messages[-1]["content"]
        m = re.search(r"In (\d+) of (\d+) moments", content)
        if m:  # a score prompt: the share of unusual moments
            return f"[{round(int(m.group(1)) / int(m.group(2)), 1)}]"
        if "unusual" not in content and "people walk" not in content:
            return "[0]"  # a score prompt for a summary without anything unusual
        lines = [ln for ln in content.split("\n\n", 1)[-1].split("\n") if ln.strip()]
        k = sum("unusual" in ln for ln in lines)
        kinds = sorted({ln.split(": ", 1)[1] for ln in lines if "unusual" in ln})
        return (f"Here is a summary:\nIn {k} of {len(lines)} moments something unusual "
                f"happens{': ' + ', '.join(kinds) if kinds else ''}.")

    return {"captioner": ScriptedCaptioner(caption, name="oracle-captioner"),
            "embedder": ScriptedEmbedder(image_vector, text_vector, name="oracle-embedder"),
            "llm": ScriptedLLM(reply, name="oracle-llm")}


#: vadnb's named options beside the official defaults (notebooks 30 and 40,
#: benchmarks/lavad_options.py); each is also listed in ``lavad.DIFFERENCES``.
OPTIONS: dict[str, dict[str, Any]] = {
    "official defaults": {},
    "summary_max_new_tokens=160": {"summary_max_new_tokens": 160},
    "video_clip='pairs'": {"video_clip": "pairs"},
    "llm_decoding='paper'": {"llm_decoding": "paper"},
    "caption_max_new_tokens=30": {"caption_max_new_tokens": 30},
}


def options_table(benchmark: Any, options: dict[str, dict[str, Any]] | None = None,
                  cache: Any = None, backends: dict[str, Any] | None = None,
                  names: Sequence[str] | None = None) -> pd.DataFrame:
    """Frame AUC / AP of LAVAD with the defaults and each named option (``OPTIONS``), on the
    perfect-perception backends unless ``backends`` are given."""
    from . import evaluate, run_many

    backends = backends or oracle_backends(benchmark)
    videos = benchmark.videos
    if names is not None:
        videos = videos[videos.name.isin(list(names))]
    names = list(videos.name)
    labels = {n: benchmark.frame_labels(n) for n in names}
    rows = []
    for setting, overrides in (options or OPTIONS).items():
        dets = run_many(list(videos.path), backends=backends, cache=cache, **overrides)
        res = evaluate(dict(zip(names, dets)), labels)
        rows.append({"setting": setting, **{k: res[k] for k in (
            "auc_raw", "auc_refined", "ap_refined", "ap_refined_trapezoid")}})
    return pd.DataFrame(rows)


def options_statement(table: pd.DataFrame) -> str:
    """Each option's refined AUC / AP beside the official defaults' (the first row)."""
    base = table.iloc[0]
    lines = [f"{base.setting}: refined AUC {base.auc_refined:.3f}, AP {base.ap_refined:.3f}"]
    for _, row in table.iloc[1:].iterrows():
        d_auc, d_ap = row.auc_refined - base.auc_refined, row.ap_refined - base.ap_refined
        same = abs(d_auc) < 5e-4 and abs(d_ap) < 5e-4
        lines.append(f"{row.setting}: " + ("the same as the defaults" if same else
                     f"refined AUC {row.auc_refined:.3f} ({d_auc:+.3f}), "
                     f"AP {row.ap_refined:.3f} ({d_ap:+.3f})"))
    return "\n".join(lines)


def drawable(text: str, font: str | None = None) -> str:
    """``text`` with each run of characters the font cannot draw as one "?" (no glyph boxes)."""
    from matplotlib import font_manager

    path = font_manager.findfont(font_manager.FontProperties(family=font or "DejaVu Sans"))
    charmap = _charmap(path)
    return re.sub("\ufffd+", "?", "".join(c if ord(c) in charmap or c in "\n " else "\ufffd"
                                          for c in str(text)))


@functools.cache
def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(path).get_charmap())


def glimpse(text: Any, width: int = 80) -> str:
    """``text`` on one line (newlines as " | "), cut to ``width`` characters with "…" and its
    full length (random-weight models write long noise); whole when the cut saves nothing."""
    from ..plots import clean_text

    flat = clean_text(str(text).replace("\n", " | "))
    tail = f"… ({len(flat)} chars)"
    return flat if len(flat) <= width + len(tail) else flat[:width] + tail


def random_roles(detection: Detection) -> frozenset[str]:
    """The roles whose model had random weights in this run (the ``cpu`` profile mixes)."""
    calls = detection.model_calls
    return frozenset() if calls.empty else frozenset(calls.loc[calls["profile"] == "tiny", "role"])


def glimpse_table(table: pd.DataFrame, meaningless: bool, rows: int = 3,
                  width: int = 30) -> pd.DataFrame:
    """The first ``rows`` rows; ``meaningless`` text cells (and index) as :func:`glimpse`s."""
    head = table.head(rows)
    if not meaningless:
        return head
    cut = head.apply(lambda col: col.map(lambda v: glimpse(v, width) if isinstance(v, str) else v))
    if any(isinstance(v, str) for v in head.index):
        cut.index = pd.Index([glimpse(v, width) if isinstance(v, str) else v
                              for v in head.index], name=head.index.name)
    return cut


def print_messages(messages: Messages, meaningless: bool, lines: int = 4) -> None:
    """Print a chat role by role; ``meaningless`` text is cut to ``lines`` glimpsed lines."""
    for message in messages:
        print(f"--- {message['role']} ---")
        content = message["content"].split("\n")
        shown = content if not meaningless else [glimpse(line) for line in content[:lines]]
        print("\n".join(shown))
        if len(content) > len(shown):
            print(f"… ({len(content) - lines} more lines)")


def plot_contact_sheet(detection: Detection, rows: Sequence[int], cols: int = 5,
                       width_in: float = 12.0) -> Any:
    """Window frames of the positions ``rows`` with the caption each retrieved (notebook 20)."""
    import matplotlib.pyplot as plt

    seg, ex = detection.segments, detection.extras
    windows = ex["window_frames"]
    frames = read_frames(detection.video, indices=np.unique(windows[list(rows)]))
    image_of = dict(zip(frames.indices.tolist(), frames.images))
    n = windows.shape[1]
    lines = -(-n // cols)
    h, w = frames.images.shape[1:3]
    image_in = width_in / cols * h / w
    caption_in, header_in = 0.5, 0.35
    ratios = ([header_in] + [image_in + caption_in] * lines) * len(rows)
    fig = plt.figure(figsize=(width_in, sum(ratios) + 0.5))
    grid = fig.add_gridspec(len(ratios), cols, height_ratios=ratios, left=0.01, right=0.99,
                            bottom=0.01, top=1 - 0.5 / (sum(ratios) + 0.5), wspace=0.04,
                            hspace=0.0)
    for r, row in enumerate(rows):
        top = r * (lines + 1)
        head = fig.add_subplot(grid[top, :])
        head.axis("off")
        raw = textwrap.shorten(drawable(seg["captions"].iloc[row] or "(empty)"), 90,
                               placeholder="...")
        head.text(0, 0.5, f"position {row} · centre frame {seg['centre_frame'].iloc[row]} · "
                  f"raw caption: {raw}", fontsize=10, fontweight="bold", va="center")
        described = seg["temporal_description"].iloc[row].split("\n")
        for t in range(min(n, lines * cols)):
            cell = grid[top + 1 + t // cols, t % cols].subgridspec(
                2, 1, height_ratios=[caption_in, image_in], hspace=0.0)
            label = fig.add_subplot(cell[0])
            label.axis("off")
            text = textwrap.wrap(drawable(described[t] or "(empty)"), 26)[:2]
            label.text(0.5, 0.1, "\n".join(text), fontsize=9, ha="center", va="bottom")
            ax = fig.add_subplot(cell[1])
            ax.axis("off")
            f = int(windows[row][t])
            ax.imshow(image_of[f])
            ax.text(0.02, 0.04, f"frame {f}", transform=ax.transAxes, fontsize=8,
                    color="white", backgroundcolor=(0, 0, 0, 0.5))
    title = "window frames and the caption each retrieved"
    if detection.meaningless:
        title += "  [tiny models: meaningless]"
    fig.suptitle(title, fontsize=11)
    return fig


def similarity_statement(similarity: np.ndarray, captions: Sequence[str]) -> str:
    """What an image x caption similarity matrix shows, measured (notebook 20)."""
    sim = np.asarray(similarity, dtype=np.float64)
    chosen = len(np.unique(sim.argmax(axis=1)))
    ordered = np.sort(sim, axis=1)
    margin = float((ordered[:, -1] - ordered[:, -2]).mean()) if sim.shape[1] > 1 else float("nan")
    spread = sim.std(axis=0)
    flat = int((spread < 1e-3).sum())
    text = (f"{sim.shape[0]} window frames x {sim.shape[1]} captions: {chosen} caption(s) "
            f"are the nearest of some frame; the nearest caption leads the runner-up by "
            f"{margin:.3f} on average (cosine).")
    if flat:
        return text + (f" {flat} of {sim.shape[1]} columns barely change from frame to frame "
                       f"(std < 0.001): the image embeddings hardly differ between these "
                       f"frames, so the same captions win every row.")
    return text + (f" Column spread over the frames: {spread.min():.3f} to {spread.max():.3f} "
                   "(std of the cosine).")


def truth_statement(labels: np.ndarray | None, fps: float) -> str:
    """What the shaded ground-truth band of a score plot holds, measured (notebook 30)."""
    if labels is None:
        return "No ground truth is known for this video: nothing is shaded."
    y = np.asarray(labels).astype(bool)
    if not y.any():
        return "This clip has no anomalous frame: nothing is shaded."
    edges = np.flatnonzero(np.diff(np.r_[0, y.astype(int), 0]))
    spans = ", ".join(f"{a / fps:.1f}-{b / fps:.1f} s" for a, b in zip(edges[::2], edges[1::2]))
    return f"Shaded: the ground-truth anomalous frames ({int(y.sum())} frames: {spans})."


def real_llm_on_disk() -> bool:
    """Whether the ``cpu`` profile's real LLM is built here (no download needed to show it)."""
    from ..models.profiles import SMOLLM2
    from ..models.smollm import MARKER, pypi_model_dir

    return (pypi_model_dir(SMOLLM2.model.removeprefix("pypi:")) / MARKER).exists()


def oracle_statement(detection: Detection) -> str:
    """What one perfect-perception run wrote, counted (notebooks 20 and 30)."""
    seg = detection.segments
    unusual = seg["captions"].str.contains("unusual").sum()
    described = seg["temporal_description"].str.contains("unusual").sum()
    return (f"Perfect perception on {Path(detection.video).name}: {unusual} of {len(seg)} centre "
            f"frames are captioned as unusual; after cleaning, {described} of {len(seg)} "
            f"temporal descriptions mention something unusual; the LLM's scores run from "
            f"{seg['raw_score'].min():.1f} to {seg['raw_score'].max():.1f}.")


def refinement_statement(result: dict[str, Any], clips: str = "these clips",
                         detections: dict[str, Detection] | None = None) -> str:
    """Raw vs refined AUC and AP of ``lavad.evaluate``'s result, in words (notebook 40); with
    the ``detections``, says when refinement only moved rounding errors."""
    d_auc = result["auc_refined"] - result["auc_raw"]
    verb = "raises" if d_auc > 5e-4 else "lowers" if d_auc < -5e-4 else "leaves"
    text = (f"On {clips}, refinement {verb} the frame AUC from {result['auc_raw']:.3f} (raw "
            f"LLM scores) to {result['auc_refined']:.3f}, and the trapezoid AP from "
            f"{result['ap_raw_trapezoid']:.3f} to {result['ap_refined_trapezoid']:.3f}.")
    return text + (_rounding_note(detections) if detections else "")


def _rounding_note(detections: dict[str, Detection]) -> str:
    """Says so when each video's summaries share one score (refinement only moves rounding)."""
    if any(len(np.unique(np.round(d.extras["summary_scores"], 6))) > 1
           for d in detections.values()):
        return ""
    off = max(float(np.abs(d.segments["score"] - d.extras["summary_scores"][0]).max())
              for d in detections.values())
    parsed = sum(int(d.segments["parsed"].astype(bool).sum()) for d in detections.values())
    total = sum(len(d.segments) for d in detections.values())
    return (" But every video's summaries carry a single score (the LLM's score replies parsed "
            f"{parsed} of {total} times; unreadable ones are filled in), so every weighted mean "
            f"of them is that score: the refined scores differ from it by {off:.0e} at most, "
            "floating-point rounding, and the metrics' changes only rank those rounding errors.")


def neighbours_table(detection: Detection, position: int) -> pd.DataFrame:
    """The summaries that vote on one position's refined score, nearest first (notebook 40)."""
    ex = detection.extras
    ids = ex["neighbours"][position]
    return pd.DataFrame({
        "summary": [ex["summary_index"][j] for j in ids],
        "cosine": ex["video_embeddings"][position] @ ex["summary_embeddings"][ids].T,
        "weight": ex["weights"][position],
        "score": ex["summary_scores"][ids],
    })


def neighbours_statement(detection: Detection) -> str:
    """Why a position has the neighbours it has: K is capped at the summary index's size."""
    ex = detection.extras
    k = int(ex.get("config", {}).get("refine_k", 10))
    n = len(ex["summary_index"])
    scores = np.unique(np.round(ex["summary_scores"], 6))
    text = (f"{Path(detection.video).name}: the summary index holds {n} distinct summar"
            f"{'y' if n == 1 else 'ies'}, so each position has {min(k, n)} neighbour(s) "
            f"(K = {k}); their scores take {len(scores)} distinct value(s)")
    if len(scores) == 1:
        text += (f" ({scores[0]:g}): every weighted mean of them is {scores[0]:g}, whatever "
                 "the weights")
    return text + "."


def ablation_table(detections: dict[str, Detection], labels: dict[str, np.ndarray],
                   ks: Sequence[int], temperatures: Sequence[float]) -> pd.DataFrame:
    """Frame AUC and APs of the raw scores, then of every (K, temperature) of the refinement."""
    names = list(labels)
    runs = {"none (raw LLM scores)": {n: frame_scores_of(detections[n], "raw_score")
                                      for n in names}}
    for k in ks:
        for t in temperatures:
            runs[f"K={k}, temperature={t:g}"] = {n: rescore(detections[n], refine_k=k,
                                                            temperature=t) for n in names}
    return pd.DataFrame([{"refinement": what, "auc": metrics.frame_auc(labels, sc),
                          "ap (sklearn)": metrics.frame_ap(labels, sc),
                          "ap (trapezoid)": metrics.frame_ap(labels, sc, "trapezoid")}
                         for what, sc in runs.items()])


def ablation_statement(table: pd.DataFrame, detections: dict[str, Detection]) -> str:
    """What an :func:`ablation_table` shows, measured (notebook 40)."""
    refined = table["auc"].iloc[1:]
    text = (f"Refined AUC from {refined.min():.3f} to {refined.max():.3f} over {len(refined)} "
            f"settings (raw LLM scores: {table['auc'].iloc[0]:.3f}).")
    note = _rounding_note(detections)
    if note:
        return text + note
    distinct = [len(np.unique(np.round(d.extras["summary_scores"], 6)))
                for d in detections.values()]
    return text + (f" Each video's summaries carry {min(distinct)} to {max(distinct)} distinct "
                   "scores: K and the temperature decide which of them a position averages.")


def temperature_sweep(detections: dict[str, Detection], labels: dict[str, np.ndarray],
                      temperatures: Sequence[float], k: int | None = None) -> pd.DataFrame:
    """Frame AUC, trapezoid AP and the effective number of neighbours (1 / sum of squared
    weights, mean over positions) of the refinement at each temperature (notebook 40)."""
    rows = []
    for t in temperatures:
        scores = {n: rescore(detections[n], refine_k=k, temperature=t) for n in labels}
        eff = []
        for n in labels:
            ex = detections[n].extras
            kk = int(k or ex.get("config", {}).get("refine_k", 10))
            _, _, w = refine_scores(ex["video_embeddings"], ex["summary_embeddings"],
                                    ex["summary_scores"], kk, t)
            eff.extend(1.0 / (w ** 2).sum(axis=1))
        rows.append({"temperature": float(t), "auc": metrics.frame_auc(labels, scores),
                     "ap (trapezoid)": metrics.frame_ap(labels, scores, "trapezoid"),
                     "effective neighbours": float(np.mean(eff))})
    return pd.DataFrame(rows)


def plot_temperature_sweep(sweep: pd.DataFrame, detection: Detection,
                           labels: np.ndarray | None, shown: Sequence[float]) -> Any:
    """As d2l draws kernel widths: one video's scores at the temperatures ``shown``, and the
    sweep's metrics against the temperature."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6),
                                      gridspec_kw={"width_ratios": [3, 2]})
    t_s = np.arange(detection.num_frames) / detection.fps
    if labels is not None:
        y = np.asarray(labels, dtype=bool)
        left.fill_between(t_s[:len(y)], 0, 1, where=y[:len(t_s)], color="tab:red", alpha=0.15,
                          step="post", label="ground truth")
    left.plot(t_s, frame_scores_of(detection, "raw_score"), color="black", lw=2,
              label="raw (oracle LLM)" if detection.profile == "scripted" else "raw (LLM)",
              drawstyle="steps-post")
    for t, colour in zip(shown, plt.cm.viridis(np.linspace(0, 0.9, len(shown)))):
        left.plot(t_s, rescore(detection, temperature=t), color=colour,
                  label=f"refined, temperature {t:g}", drawstyle="steps-post")
    left.set(xlabel="time (s)", ylabel="score", ylim=(-0.02, 1.02),
             title=f"{Path(detection.video).name}: refined scores by temperature")
    left.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    right.semilogx(sweep["temperature"], sweep["auc"], "o-", label="frame AUC")
    right.semilogx(sweep["temperature"], sweep["ap (trapezoid)"], "s--", label="AP (trapezoid)")
    right.set(xlabel="temperature (log scale)", ylabel="metric", ylim=(0, 1.02),
              title="all clips")
    twin = right.twinx()
    twin.semilogx(sweep["temperature"], sweep["effective neighbours"], ":", color="grey",
                  label="effective neighbours")
    twin.set_ylabel("effective neighbours", color="grey")
    lines = right.get_lines() + twin.get_lines()
    right.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def real_llm_statement(llm_name: str, detections: dict[str, Detection],
                       oracle_scores: Sequence[float]) -> str:
    """What a real LLM made of true temporal descriptions per score decoding (``detections``:
    "free" / "choices" -> run), beside the oracle's scores (notebook 30)."""
    truth = pd.Series(np.asarray(oracle_scores, dtype=np.float64))
    parts = []
    for decoding, det in detections.items():
        seg = det.segments
        ok = seg["parsed"].astype(bool).to_numpy()
        said = f"`{decoding}`: {int(ok.sum())} of {len(seg)} replies readable"
        values = np.unique(seg["raw_score"].to_numpy()[ok])
        if len(values) == 1:
            said += f", every one {values[0]:g}: it does not tell the positions apart"
        elif len(values) > 1:
            corr = pd.Series(seg["raw_score"].to_numpy()).corr(truth)
            said += (f", scores {values.min():g} to {values.max():g}, correlation with the "
                     f"oracle's {corr:.2f}")
        parts.append(said)
    return (f"{llm_name} on true temporal descriptions (the oracle's scores run from "
            f"{truth.min():g} to {truth.max():g}): " + "; ".join(parts) + ".")
