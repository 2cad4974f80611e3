"""The explorer (notebooks 40, 80): a plotly timeline of the scores (truth shaded, threshold,
cursor), the frame on show, what the method said about it, the intervals a threshold flags,
and a red banner for random-init ``tiny`` models. Plain functions do the work, so tests need
no browser; displaying it also shows a PNG of its state (:meth:`Explorer.static_figure`)
for HTML exports and viewers that run no widgets.
"""

from __future__ import annotations

import hashlib
import html
import io
import os
import sys
import textwrap
import warnings
from collections.abc import Mapping
from contextlib import nullcontext, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .data.benchmarks import VIDEO_EXTENSIONS
from .plots import GT_COLOR, frame_caption, intervals, plot_scores, tag_figure
from .result import TINY_WARNING, Detection
from .video import VideoError

__all__ = ["flagged_intervals", "flagged_table_html", "segment_at", "frame_jpeg",
           "timeline_figure", "explanation_html", "Explorer", "explorer", "compare_explorer",
           "save_upload", "upload_form", "VIDEO_SUFFIXES"]

# columns every Detection.segments has; any other column is shown as "name: value"
STANDARD_COLUMNS = ("start_frame", "end_frame", "centre_frame", "time_s", "score", "explanation")
FLAGGED_COLUMNS = ["start_frame", "end_frame", "start_s", "end_s", "peak"]


def flagged_intervals(frame_scores: Any, threshold: float, fps: float | None,
                      min_frames: int = 1) -> pd.DataFrame:
    """The alarms at ``threshold``: runs of frames scoring at least it (NaN never does), of
    at least ``min_frames``. Columns :data:`FLAGGED_COLUMNS`: inclusive frames, ``start_s``
    and ``end_s`` (the end of the last frame; NaN without fps) and the run's ``peak``."""
    scores = np.asarray(frame_scores, dtype=np.float64).ravel()
    if min_frames < 1:
        raise ValueError(f"min_frames must be at least 1, got {min_frames}")
    runs = np.array([(s, e) for s, e in intervals((scores >= threshold).astype(np.uint8))
                     if e - s + 1 >= min_frames], dtype=np.int64).reshape(-1, 2)
    start, end = runs[:, 0], runs[:, 1]
    rate = fps or np.nan  # no fps: no seconds
    return pd.DataFrame({"start_frame": start, "end_frame": end, "start_s": start / rate,
                         "end_s": (end + 1) / rate,
                         "peak": np.array([np.nanmax(scores[s:e + 1]) for s, e in runs], float)},
                        columns=FLAGGED_COLUMNS)


def flagged_table_html(table: pd.DataFrame, num_frames: int | None = None,
                       fps: float | None = None, max_rows: int = 20,
                       method_column: str | None = None) -> str:
    """An HTML table of :func:`flagged_intervals` rows, with a one-line summary above it."""
    if table.empty:
        return "<p><b>no interval reaches the threshold</b></p>"
    frames = int((table["end_frame"] - table["start_frame"] + 1).sum())
    summary = f"<b>{len(table)} flagged interval{'s' * (len(table) != 1)}</b>"
    if method_column is None:
        summary += (f", {frames} frame{'s' * (frames != 1)}"
                    + (f" ({frames / fps:.1f} s)" if fps else "")
                    + (f", {100 * frames / num_frames:.0f}% of the video" if num_frames else ""))
    rows = table.head(max_rows)
    shown = pd.DataFrame({
        "#": range(1, len(rows) + 1),
        "frames": [f"{s} – {e}" for s, e in zip(rows["start_frame"], rows["end_frame"])],
        "seconds": ["" if np.isnan(s) else f"{s:.2f} – {e:.2f}"
                    for s, e in zip(rows["start_s"], rows["end_s"])],
        "peak": [f"{p:.3f}" for p in rows["peak"]]})
    if method_column:
        shown.insert(0, method_column, rows[method_column].astype(str).to_numpy())
    more = f"<p>... and {len(table) - max_rows} more</p>" if len(table) > max_rows else ""
    return f"<p>{summary}</p>{shown.to_html(index=False, border=0)}{more}"


def segment_at(segments: pd.DataFrame | None, frame: int) -> pd.Series | None:
    """The segment row holding ``frame`` (``start_frame <= frame < end_frame``; of several,
    the nearest centre), else the nearest ``centre_frame``; ties go to the earlier row.
    ``None`` when there are no segments."""
    if segments is None or len(segments) == 0:
        return None
    distance = np.abs(_centres(segments) - frame)
    if {"start_frame", "end_frame"} <= set(segments.columns):
        inside = (segments["start_frame"] <= frame) & (segments["end_frame"] > frame)
        if inside.any():
            distance = np.where(inside, distance, np.inf)
    return segments.iloc[int(np.argmin(distance))]


def _centres(segments: pd.DataFrame) -> np.ndarray:
    """Each segment's ``centre_frame``, else the middle of its frames."""
    if "centre_frame" in segments:
        return segments["centre_frame"].to_numpy(dtype=np.float64)
    if {"start_frame", "end_frame"} <= set(segments.columns):
        return (segments["start_frame"].to_numpy(np.float64)
                + segments["end_frame"].to_numpy(np.float64) - 1) / 2
    raise ValueError("segments need a centre_frame column (or start_frame and end_frame); "
                     f"got columns {list(segments.columns)}")


@lru_cache(maxsize=48)
def _jpeg_cached(key: tuple[str, int, int], frame: int, max_width: int, quality: int) -> bytes:
    from .video import read_frames  # looked up on each call: tests count the reads
    return _encode_jpeg(read_frames(key[0], indices=[frame]).images[0], max_width, quality)


def _encode_jpeg(image: np.ndarray, max_width: int, quality: int) -> bytes:
    image = np.asarray(image)
    h, w = image.shape[:2]
    if w > max_width:
        image = cv2.resize(image, (max_width, max(1, round(h * max_width / w))),
                           interpolation=cv2.INTER_AREA)
    bgr = np.ascontiguousarray(image[..., ::-1] if image.ndim == 3 else image)  # grey as is
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def frame_jpeg(video: Any, frame: int, max_width: int = 480, quality: int = 85) -> bytes:
    """Frame ``frame`` of a video file (recent ones cached by path, size and mtime) or of a
    ``vadnb.video.Frames`` (its nearest frame) as JPEG, at most ``max_width`` pixels wide."""
    if hasattr(video, "images") and hasattr(video, "indices"):
        if len(video.indices) == 0:
            raise ValueError("the Frames object holds no images")
        k = int(np.argmin(np.abs(np.asarray(video.indices) - frame)))
        return _encode_jpeg(video.images[k], max_width, quality)
    try:
        st = Path(video).stat()
    except FileNotFoundError:
        raise VideoError(f"video not found: {video}") from None
    key = (str(Path(video).resolve()), st.st_mtime_ns, st.st_size)
    return _jpeg_cached(key, int(frame), int(max_width), int(quality))


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{value:.3g}"
    return str(value)


def explanation_html(detection: Detection, frame: int) -> str:
    """What the method said about ``frame``, as HTML: the frame's score, then the segment
    holding it (or the nearest): frames, time, score, extra columns and the explanation."""
    out = ""
    if 0 <= frame < detection.num_frames:
        when = f" · {frame / detection.fps:.2f} s" if detection.fps else ""
        out = (f"<div>frame {frame}{when} · frame score "
               f"<b>{_fmt(float(detection.frame_scores[frame]))}</b></div>")
    row = segment_at(detection.segments, frame)
    if row is None:
        return out + "<div><i>this detection has no segments, so no explanation to show</i></div>"
    start, end = row.get("start_frame"), row.get("end_frame")
    bounded = start is not None and end is not None
    where = [f"frames {int(start)} – {int(end) - 1}"] if bounded else []
    if pd.notna(row.get("time_s")):
        where.append(f"centre at {float(row['time_s']):.2f} s")
    if "score" in row:
        where.append(f"score <b>{_fmt(row['score'])}</b>")
    inside = bounded and start <= frame < end
    head = "segment" if inside else "nearest segment (the frame lies in none)"
    out += f"<div>{head} {html.escape(str(row.name))}: {' · '.join(where)}</div>"
    extras = [f"{html.escape(str(k))}: <b>{html.escape(_fmt(v))}</b>"
              for k, v in row.items() if k not in STANDARD_COLUMNS]
    out += f"<div>{' · '.join(extras)}</div>" if extras else ""
    text = row.get("explanation")
    text = "<br>".join(map(html.escape, str(text).splitlines())) if pd.notna(text) else ""
    return out + ("<div style='margin-top:4px;padding:4px 8px;border-left:3px solid #888;"
                  f"white-space:normal'>{text or '<i>(no explanation)</i>'}</div>")


def _as_dict(detections: Detection | Mapping[str, Detection]) -> dict[str, Detection]:
    out = (dict(detections) if isinstance(detections, Mapping)
           else {getattr(detections, "method", "detection"): detections})
    if not out:
        raise ValueError("need at least one Detection (got an empty dict)")
    for name, det in out.items():
        if not hasattr(det, "frame_scores") or not hasattr(det, "segments"):
            raise TypeError(f"{name}: expected a vadnb.Detection, got {type(det).__name__}")
        if len(det.frame_scores) == 0:
            raise ValueError(f"{name}: the detection has no frame scores ({det!r})")
    return out


def _segment_markers(name: str, seg: pd.DataFrame, fps: float) -> go.Scatter:
    """One marker per segment at its score; hovering shows its wrapped explanation."""
    texts = ["<br>".join(textwrap.wrap(str(t), 60)[:6]) if pd.notna(t) else ""
             for t in seg.get("explanation", [""] * len(seg))]
    return go.Scatter(
        x=seg["time_s"] if "time_s" in seg else _centres(seg) / fps, y=seg["score"],
        mode="markers", name=f"{name} segments", hovertext=texts, showlegend=False,
        marker={"size": 6, "symbol": "circle-open"},
        hovertemplate="%{x:.2f} s · segment score %{y:.3f}<br>%{hovertext}<extra></extra>")


def timeline_figure(detection: Detection | Mapping[str, Detection],
                    labels: Any = None, threshold: float | None = 0.5,
                    frame: int = 0) -> go.Figure:
    """The explorer's plotly timeline, a panel per detection: score lines, segment markers
    (hover: explanation), shapes named ``"ground truth"``, ``"threshold"`` and ``"cursor"``
    (one, at ``frame``), and a ``"warning"`` annotation on tiny-profile panels."""
    dets = _as_dict(detection)
    n = len(dets)
    # each panel's y axis carries its name: subplot titles would collide with the legend
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.05 if n > 1 else 0)
    runs = intervals(np.asarray(labels)) if labels is not None else []
    for r, (name, det) in enumerate(dets.items(), start=1):
        fps = det.fps or 1.0
        scores = np.asarray(det.frame_scores, dtype=np.float64)
        frames = np.arange(len(scores))
        fig.add_trace(go.Scatter(
            x=frames / fps, y=scores, mode="lines", name=name, customdata=frames,
            line={"width": 1.5},
            hovertemplate="%{x:.2f} s · frame %{customdata}<br>score %{y:.3f}<extra></extra>"),
            row=r, col=1)
        seg = det.segments
        if seg is not None and len(seg) and "score" in seg:
            fig.add_trace(_segment_markers(name, seg, fps), row=r, col=1)
        for k, (start, end) in enumerate(runs):  # (v/h shapes skip a panel without traces)
            fig.add_vrect(x0=start / fps, x1=(end + 1) / fps, row=r, col=1, name="ground truth",
                          fillcolor=GT_COLOR, opacity=0.18, line_width=0, layer="below",
                          showlegend=(r == 1 and k == 0), legendgroup="gt")
        if threshold is not None:
            fig.add_hline(threshold, row=r, col=1, name="threshold",
                          line={"dash": "dash", "width": 1, "color": "#555"})
        finite = scores[np.isfinite(scores)]
        if finite.size and finite.min() >= 0 and finite.max() <= 1:
            fig.update_yaxes(range=[-0.03, 1.3 if det.meaningless else 1.05], row=r, col=1)
        if det.meaningless:
            fig.add_annotation(name="warning", text=f"⚠ {TINY_WARNING}", row=r, col=1,
                               xref="x domain", yref="y domain", x=0.5, y=0.99, yanchor="top",
                               showarrow=False, font={"color": "darkred", "size": 11},
                               bgcolor="rgba(255,255,255,0.85)", bordercolor="darkred")
        fig.update_yaxes(title_text="score" if n == 1 else name, row=r, col=1)
    cursor = frame / (next(iter(dets.values())).fps or 1.0)
    fig.add_shape(type="line", name="cursor", xref="x", yref="paper", x0=cursor, x1=cursor,
                  y0=0, y1=1, line={"color": "black", "width": 1.5})
    fig.update_xaxes(range=[0, max(len(d.frame_scores) / (d.fps or 1.0) for d in dets.values())])
    fig.update_xaxes(title_text="time (s)", row=n, col=1)
    fig.update_layout(height=230 * n + 80, margin={"l": 60, "r": 20, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
                      hovermode="closest", clickmode="event", template="plotly_white")
    return fig


def _timeline_widget(fig: go.Figure) -> tuple[Any, W.Widget]:
    """``(timeline, view)``: a FigureWidget, or without anywidget the figure and an Output."""
    if "google.colab" in sys.modules:  # Colab shows plotly's FigureWidget only after this
        with suppress(Exception):  # best effort, the widget still builds
            from google.colab import output  # type: ignore[import-not-found]
            output.enable_custom_widget_manager()
    try:
        widget = go.FigureWidget(fig)
    except ImportError:
        return fig, W.Output()
    return widget, widget


def _tiny_banner(detections: dict[str, Detection]) -> W.HTML:
    """A red warning naming the tiny-profile detections; hidden when there is none."""
    meaningless = [name for name, d in detections.items() if d.meaningless]
    who = f" ({', '.join(meaningless)})" if len(detections) > 1 else ""
    return W.HTML(
        f"<div style='background:#fde8e8;color:darkred;padding:6px 10px;"
        f"border:1px solid darkred;border-radius:4px'><b>⚠ {html.escape(TINY_WARNING)}"
        f"</b>{html.escape(who)}</div>" if meaningless else "",
        layout=W.Layout(display=None if meaningless else "none"))


class Explorer(W.VBox):
    """Explore a Detection (or a dict of several): timeline, frame, explanation, alarms.

    labels: the video's 0/1 ground truth per frame. video: a path or a ``vadnb.video.Frames``
    (default: the detection's). min_frames: ignore shorter alarms. Children: ``timeline``,
    ``frame_slider``, ``threshold_slider``, ``image`` (JPEG), ``frame_note`` (why no frame
    shows), ``caption``, ``explanation``, ``flagged`` (HTML table), ``banner``.
    """

    def __init__(self, detections: Detection | Mapping[str, Detection], labels: Any = None,
                 video: Any = None, threshold: float = 0.5, max_width: int = 480,
                 min_frames: int = 1) -> None:
        self.detections = _as_dict(detections)
        first = next(iter(self.detections.values()))
        self.fps = float(first.fps or 1.0)
        self.num_frames = max(d.num_frames for d in self.detections.values())
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and len(self.labels) != self.num_frames:
            warnings.warn(f"{len(self.labels)} frame labels but {self.num_frames} frame scores: "
                          "check that the labels belong to this video", stacklevel=3)
        self.video = video if video is not None else (first.video or None)
        self.max_width, self.min_frames = max_width, min_frames
        self._many = len(self.detections) > 1
        fig = timeline_figure(self.detections, self.labels, threshold=threshold, frame=0)
        self.timeline, self._timeline_view = _timeline_widget(fig)
        finite = np.concatenate([d.frame_scores for d in self.detections.values()]).astype(float)
        finite = finite[np.isfinite(finite)]
        lo, hi = float(finite.min(initial=0.0)), float(finite.max(initial=1.0))
        self.frame_slider = W.IntSlider(value=0, min=0, max=max(self.num_frames - 1, 0), step=1,
                                        description="frame", continuous_update=False,
                                        layout=W.Layout(width="100%"))
        self.threshold_slider = W.FloatSlider(value=float(np.clip(threshold, lo, hi)), min=lo,
                                              max=hi, step=0.01, description="threshold",
                                              continuous_update=False, readout_format=".2f",
                                              layout=W.Layout(width="60%"))
        self.image = W.Image(format="jpeg", layout=W.Layout(max_width=f"{max_width}px"))
        self.frame_note, self.caption, self.flagged = W.HTML(), W.HTML(), W.HTML()
        self.explanation = W.HTML(layout=W.Layout(width="100%"))
        self.banner = _tiny_banner(self.detections)
        self.frame_slider.observe(lambda c: self._update_frame(int(c["new"])), names="value")
        self.threshold_slider.observe(lambda c: self._update_threshold(float(c["new"])),
                                      names="value")
        if isinstance(self.timeline, W.Widget):
            for trace in self.timeline.data:
                trace.on_click(self._on_click)
        frame_box = W.VBox([self.image, self.frame_note, self.caption],
                           layout=W.Layout(width=f"{max_width + 10}px", flex="0 0 auto"))
        text_box = W.VBox([self.explanation], layout=W.Layout(flex="1 1 auto",
                                                              padding="0 0 0 12px"))
        super().__init__([self.banner, self._timeline_view, self.frame_slider,
                          W.HBox([frame_box, text_box]), self.threshold_slider, self.flagged])
        self._update_frame(0)
        self._update_threshold(self.threshold_slider.value)

    def static_figure(self) -> Any:
        """The current state in matplotlib (the PNG beside the widget): every timeline with
        the threshold and cursor, and the frame on show."""
        try:
            jpeg = frame_jpeg(self.video, self.frame, max_width=self.max_width)
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        except Exception:  # noqa: BLE001 - no frame to show: the timelines still say something
            image = None
        n, seconds = len(self.detections), self.frame / self.fps
        fig = plt.figure(figsize=(11, 1.7 * n + 1.2), layout="constrained")
        grid = fig.add_gridspec(n, 1 if image is None else 2,
                                width_ratios=None if image is None else [2.4, 1])
        axes = [fig.add_subplot(grid[i, 0]) for i in range(n)]
        for ax, (name, det) in zip(axes, self.detections.items()):
            plot_scores(det.frame_scores, fps=det.fps or self.fps, labels=self.labels, ax=ax,
                        threshold=self.threshold, label=name)
            ax.axvline(seconds, color="black", lw=1, label="cursor")
            ax.set_ylabel(name if n > 1 else "anomaly score", fontsize=9)
            ax.set_xlabel("time (s)" if ax is axes[-1] else "")
        if image is not None:
            ax = fig.add_subplot(grid[:, 1])
            ax.imshow(image)
            ax.set_title(frame_caption(self.frame, self.fps), fontsize=9)
            ax.axis("off")
        fig.suptitle(f"explorer, static view: threshold {self.threshold:.2f}, cursor at "
                     f"{seconds:.1f} s, {len(self.flagged_table())} flagged interval(s)",
                     fontsize=10)
        tiny = any(d.meaningless for d in self.detections.values())
        return tag_figure(fig, "tiny" if tiny else None)

    def _ipython_display_(self) -> None:
        """The widget, then a PNG of its state for viewers without widgets."""
        from IPython.display import Image, display
        if callable(self._repr_mimebundle_):  # None once the widget is closed
            display(self._repr_mimebundle_(), raw=True)
        fig = self.static_figure()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        display(Image(buf.getvalue()), metadata={"vadnb": {"kind": "static-fallback"}})

    @property
    def frame(self) -> int:
        return int(self.frame_slider.value)

    @property
    def threshold(self) -> float:
        return float(self.threshold_slider.value)

    def set_frame(self, frame: int) -> None:
        """Show ``frame`` (clipped to the video): cursor, frame view and explanation follow."""
        self._set(self.frame_slider, int(frame), self._update_frame)

    def set_threshold(self, threshold: float) -> None:
        """Move the threshold: its line on the timeline and the flagged-interval table follow."""
        self._set(self.threshold_slider, float(threshold), self._update_threshold)

    @staticmethod
    def _set(slider: W.Widget, value: Any, update: Any) -> None:
        """Move ``slider`` (clipped); an unchanged value gets its redraw from ``update``."""
        value = type(value)(np.clip(value, slider.min, slider.max))
        if value != slider.value:
            slider.value = value
        else:
            update(value)

    def flagged_table(self) -> pd.DataFrame:
        """The intervals flagged at the current threshold (a ``method`` column when comparing)."""
        tables = [flagged_intervals(det.frame_scores, self.threshold, det.fps,
                                    min_frames=self.min_frames).assign(method=name)
                  for name, det in self.detections.items()]
        table = pd.concat(tables, ignore_index=True)
        return table[["method", *FLAGGED_COLUMNS]] if self._many else table[FLAGGED_COLUMNS]

    def _on_click(self, _trace: Any, points: Any, _state: Any) -> None:
        if points is not None and getattr(points, "xs", None):
            self.set_frame(round(float(points.xs[0]) * self.fps))  # a click: its time

    def _move_shapes(self, name: str, **coords: float) -> None:
        widget = isinstance(self.timeline, W.Widget)
        with self.timeline.batch_update() if widget else nullcontext():
            self.timeline.update_shapes(coords, selector={"name": name})
        if not widget:  # the static figure is shown again
            from IPython.display import HTML, display
            self._timeline_view.clear_output(wait=True)
            with self._timeline_view:
                display(self.timeline)
                display(HTML("<small>timeline clicks need the anywidget package "
                             "(pip install anywidget); use the slider meanwhile</small>"))

    def _update_frame(self, frame: int) -> None:
        seconds = frame / self.fps
        self._move_shapes("cursor", x0=seconds, x1=seconds)
        self._show_image(frame)
        truth = ""
        if self.labels is not None and frame < len(self.labels):
            truth = (" · ground truth: <b style='color:darkred'>anomalous</b>"
                     if self.labels[frame] else " · ground truth: normal")
        self.caption.value = (f"<small>frame {frame} / {self.num_frames - 1} · "
                              f"{seconds:.2f} s{truth}</small>")
        blocks = []
        for name, det in self.detections.items():  # comparing: each under its name
            f = min(int(round(seconds * (det.fps or self.fps))), det.num_frames - 1)
            warn = "<span style='color:darkred'> (tiny: meaningless)</span>" * det.meaningless
            head = f"<b>{html.escape(name)}</b>{warn}" if self._many else ""
            blocks.append(f"<div style='margin-bottom:8px'>{head}{explanation_html(det, f)}</div>")
        self.explanation.value = "".join(blocks)

    def _show_image(self, frame: int) -> None:
        jpeg, message = b"", "no video given: pass video=... to see the frames"
        if self.video is not None:
            try:
                jpeg, message = frame_jpeg(self.video, frame, max_width=self.max_width), ""
            except Exception as err:  # noqa: BLE001 - shown to the user instead of a traceback
                message = f"cannot show frame {frame}: {err}"
        self.image.value, self.image.layout.display = jpeg, None if jpeg else "none"
        self.frame_note.value = message and (
            f"<div style='color:#666'><i>{html.escape(message)}</i></div>")

    def _update_threshold(self, threshold: float) -> None:
        self._move_shapes("threshold", y0=threshold, y1=threshold)
        one = not self._many
        self.flagged.value = flagged_table_html(
            self.flagged_table(), num_frames=self.num_frames if one else None,
            fps=self.fps if one else None, method_column=None if one else "method")


# explorer(detection, ...) explores one method's run; compare_explorer({name: detection})
# several on one video: stacked timelines, one frame view, every method's explanation
explorer = compare_explorer = Explorer


VIDEO_SUFFIXES = (*VIDEO_EXTENSIONS, ".ts", ".m4v")


def save_upload(value: Any, folder: str | os.PathLike) -> Path:
    """Write a ``FileUpload.value``'s video atomically to ``folder/<sha256[:12]>/<name>``, the
    name reduced to letters, digits, ``-`` and ``_`` (no folders, no HTML); the digest keeps
    names that reduce alike apart and reuses the file of the same content."""
    items = list(value.values()) if isinstance(value, dict) else list(value or ())
    if not items:
        raise ValueError("no file uploaded yet: click 'Upload' and choose a video first")
    name = items[0].get("name") or items[0].get("metadata", {}).get("name", "video")
    stem, suffix = os.path.splitext(Path(str(name).replace("\\", "/")).name)  # no folders
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem).strip("_")
    safe = f"{stem[:80] or 'video'}{suffix.lower()}"
    if Path(safe).suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"{name!r} does not look like a video (expected one of "
                         f"{', '.join(VIDEO_SUFFIXES)})")
    content = bytes(items[0]["content"])
    if not content:
        raise ValueError(f"{name!r} is empty: upload it again")
    target = Path(folder) / hashlib.sha256(content).hexdigest()[:12] / safe
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and target.stat().st_size == len(content):
        return target  # this very content was uploaded before
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(content)
    os.replace(partial, target)
    return target


def upload_form(run: Any, methods: Any, method: str, prompt: str,
                folder: str | os.PathLike) -> W.VBox:
    """Upload a video, pick a method and prompt, press Detect: the explorer appears below.
    run: ``run(path, method, prompt) -> Detection``. Children: ``upload``, ``method``,
    ``prompt``, ``button``, ``output``; ``detect()`` presses the button."""
    upload = W.FileUpload(accept="video/*", multiple=False, description="Upload")
    choose = W.Dropdown(options=list(methods), value=method, description="method")
    text = W.Text(value=prompt, description="prompt", placeholder="what counts as anomalous",
                  layout=W.Layout(width="60%"))
    button = W.Button(description="Detect", button_style="primary")
    output = W.Output()

    def on_click(_: Any = None) -> None:
        from IPython.display import display
        output.clear_output()
        with output:
            try:
                path = save_upload(upload.value, folder)
            except ValueError as err:
                print(err)
                return
            print(f"running {choose.value} on {path.name} ...")
            display(explorer(run(path, choose.value, text.value), video=str(path)))

    button.on_click(on_click)
    form = W.VBox([W.HBox([upload, choose]), text, button, output])
    form.upload, form.method, form.prompt, form.button, form.output, form.detect = (
        upload, choose, text, button, output, on_click)
    return form
