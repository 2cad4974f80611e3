"""vadnb.widgets: the explorer's logic as plain functions, and the widget driven from code."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.callbacks import InputDeviceState, Points

from vadnb import widgets
from vadnb.detect import TINY_WARNING, Detection
from vadnb.video import Frames, VideoError

FPS = 10.0
N = 30


def _write_video(path, n: int) -> str:
    """n frames of 64x48 at 10 fps; frame i is uniformly grey with brightness 8 * i."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 48))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(n):
        writer.write(np.full((48, 64, 3), 8 * i, np.uint8))
    writer.release()
    return str(path)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return _write_video(tmp_path_factory.mktemp("vid") / "ramp.mp4", N)


def _segments() -> pd.DataFrame:
    return pd.DataFrame({
        "start_frame": [0, 10, 20], "end_frame": [10, 20, 30], "centre_frame": [5, 15, 25],
        "time_s": [0.5, 1.5, 2.5], "score": [0.1, 0.9, 0.2],
        "explanation": ["people walk by", "two men <fight> & shout", "the street is calm"],
        "predicted_class": ["Normal", "Fighting", "Normal"]})


def _detection(video: str = "/nowhere/clip.mp4", profile: str = "tiny",
               segments: pd.DataFrame | None = None, n: int = N) -> Detection:
    scores = np.repeat([0.1, 0.9, 0.2], 10)[:n] if n == N else np.full(n, 0.3)
    return Detection(video=str(video), method="lavad", profile=profile, frame_scores=scores,
                     fps=FPS, segments=_segments() if segments is None else segments)


LABELS = np.zeros(N, np.uint8)
LABELS[12:18] = 1  # ground truth: frames 12..17, i.e. 1.2 s to 1.8 s


def _decoded_mean(jpeg: bytes) -> float:
    assert jpeg[:2] == b"\xff\xd8", "not a JPEG"
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return float(image.mean())


# --------------------------------------------------------------------- flagged intervals


def test_flagged_intervals_hand_computed():
    scores = [0.1, 0.5, 0.7, 0.49, 0.5, 0.5, np.nan, 0.9]
    table = widgets.flagged_intervals(scores, threshold=0.5, fps=2.0)
    assert list(table.columns) == ["start_frame", "end_frame", "start_s", "end_s", "peak"]
    # a score equal to the threshold is flagged; 0.49 and NaN are not
    assert table[["start_frame", "end_frame"]].values.tolist() == [[1, 2], [4, 5], [7, 7]]
    np.testing.assert_allclose(table["start_s"], [0.5, 2.0, 3.5])
    np.testing.assert_allclose(table["end_s"], [1.5, 3.0, 4.0])  # end of the last frame
    np.testing.assert_allclose(table["peak"], [0.7, 0.5, 0.9])


def test_flagged_intervals_min_frames_threshold_above_all_and_no_fps():
    scores = [0.1, 0.5, 0.7, 0.49, 0.5, 0.5, np.nan, 0.9]
    kept = widgets.flagged_intervals(scores, 0.5, 2.0, min_frames=2)
    assert kept[["start_frame", "end_frame"]].values.tolist() == [[1, 2], [4, 5]]
    assert widgets.flagged_intervals(scores, 0.5, 2.0, min_frames=3).empty
    none = widgets.flagged_intervals(scores, 0.95, 2.0)
    assert none.empty and list(none.columns) == widgets.FLAGGED_COLUMNS
    all_frames = widgets.flagged_intervals([0.2, 0.3], 0.0, None)
    assert all_frames[["start_frame", "end_frame"]].values.tolist() == [[0, 1]]
    assert all_frames["start_s"].isna().all()
    with pytest.raises(ValueError, match="min_frames"):
        widgets.flagged_intervals(scores, 0.5, 2.0, min_frames=0)


def test_flagged_table_html_lists_frames_seconds_and_truncates():
    table = widgets.flagged_intervals([0.1, 0.5, 0.7, 0.49, 0.5, 0.5, 0.0, 0.9], 0.5, 2.0)
    out = widgets.flagged_table_html(table, num_frames=8, fps=2.0)
    assert "3 flagged intervals" in out and "5 frames (2.5 s)" in out and "62% of the video" in out
    assert "1 – 2" in out and "0.50 – 1.50" in out and "3.50 – 4.00" in out
    short = widgets.flagged_table_html(table, max_rows=2)
    assert "3.50 – 4.00" not in short and "and 1 more" in short
    assert "no interval" in widgets.flagged_table_html(table.iloc[:0])


# ------------------------------------------------------------------------- segments


def test_segment_at_inside_boundaries_gaps_and_ties():
    seg = _segments()
    assert widgets.segment_at(seg, 0).name == 0
    assert widgets.segment_at(seg, 9).name == 0
    assert widgets.segment_at(seg, 10).name == 1  # end_frame is exclusive
    assert widgets.segment_at(seg, 29).name == 2
    assert widgets.segment_at(seg, 500).name == 2  # beyond the end: nearest centre
    gappy = pd.DataFrame({"start_frame": [0, 20], "end_frame": [4, 24], "centre_frame": [2, 22],
                          "explanation": ["a", "b"]})
    assert widgets.segment_at(gappy, 10).name == 0  # |10-2| = 8 < |10-22| = 12
    assert widgets.segment_at(gappy, 13).name == 1  # 11 > 9
    assert widgets.segment_at(gappy, 12).name == 0  # tie (10 vs 10): the earlier row


def test_segment_at_overlapping_windows_and_degenerate_inputs():
    windows = pd.DataFrame({"start_frame": [0, 8], "end_frame": [16, 24],
                            "centre_frame": [8, 16]})
    assert widgets.segment_at(windows, 10).name == 0  # inside both, centre 8 is nearer
    assert widgets.segment_at(windows, 13).name == 1  # inside both, centre 16 is nearer
    assert widgets.segment_at(None, 3) is None
    assert widgets.segment_at(_segments().iloc[:0], 3) is None
    only_centres = pd.DataFrame({"centre_frame": [0, 16, 32]})
    assert widgets.segment_at(only_centres, 25).name == 2
    with pytest.raises(ValueError, match="centre_frame"):
        widgets.segment_at(pd.DataFrame({"score": [0.1]}), 0)


def test_explanation_html_escapes_and_shows_extras():
    det = _detection()
    out = widgets.explanation_html(det, 15)
    assert "two men &lt;fight&gt; &amp; shout" in out  # model text never becomes markup
    assert "frames 10 – 19" in out and "1.50 s" in out and "score <b>0.9</b>" in out
    assert "predicted_class: <b>Fighting</b>" in out
    assert "frame score <b>0.9</b>" in out
    gappy = _detection(segments=_segments().iloc[[0, 2]].reset_index(drop=True))
    assert "nearest segment" in widgets.explanation_html(gappy, 12)
    empty = _detection(segments=_segments().iloc[:0])
    assert "no segments" in widgets.explanation_html(empty, 12)


# ------------------------------------------------------------------------ frames


def test_frame_jpeg_reads_the_right_frame_resizes_and_caches(video, monkeypatch):
    import vadnb.video

    widgets._jpeg_cached.cache_clear()
    calls = []
    real = vadnb.video.read_frames
    monkeypatch.setattr(vadnb.video, "read_frames",
                        lambda *a, **k: calls.append(k.get("indices")) or real(*a, **k))
    jpeg = widgets.frame_jpeg(video, 20)
    assert abs(_decoded_mean(jpeg) - 160) < 10  # frame 20 has brightness 8 * 20
    assert abs(_decoded_mean(widgets.frame_jpeg(video, 5)) - 40) < 10
    assert widgets.frame_jpeg(video, 20) == jpeg
    assert calls == [[20], [5]]  # the repeat came from the cache
    small = cv2.imdecode(np.frombuffer(widgets.frame_jpeg(video, 3, max_width=32), np.uint8), 1)
    assert small.shape == (24, 32, 3)
    with pytest.raises(VideoError, match="not found"):
        widgets.frame_jpeg("/nowhere/missing.mp4", 0)


def test_frame_jpeg_from_frames_in_memory_picks_nearest():
    frames = Frames(np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 200)]),
                    np.array([0, 16]), np.array([0.0, 1.6]))
    assert _decoded_mean(widgets.frame_jpeg(frames, 12)) > 190
    assert _decoded_mean(widgets.frame_jpeg(frames, 7)) < 10


# ---------------------------------------------------------------------- timeline


def _shapes(fig, name):
    return [s for s in fig.layout.shapes if s.name == name]


def test_timeline_figure_traces_shapes_and_warning():
    fig = widgets.timeline_figure(_detection(), LABELS, threshold=0.6, frame=7)
    assert isinstance(fig, go.Figure)
    line, markers = fig.data
    np.testing.assert_allclose(line.x, np.arange(N) / FPS)
    np.testing.assert_allclose(line.y, np.repeat([0.1, 0.9, 0.2], 10))
    np.testing.assert_allclose(markers.x, [0.5, 1.5, 2.5])
    assert "two men <fight> & shout" in markers.hovertext[1]
    (gt,) = _shapes(fig, "ground truth")
    assert (gt.x0, gt.x1) == pytest.approx((1.2, 1.8))
    (thr,) = _shapes(fig, "threshold")
    assert thr.y0 == thr.y1 == 0.6
    (cursor,) = _shapes(fig, "cursor")
    assert cursor.x0 == cursor.x1 == pytest.approx(0.7)
    warnings_ = [a for a in fig.layout.annotations if a.name == "warning"]
    assert len(warnings_) == 1 and TINY_WARNING in warnings_[0].text


def test_timeline_figure_without_labels_segments_or_warning():
    fig = widgets.timeline_figure(_detection(profile="colab", segments=_segments().iloc[:0]))
    assert len(fig.data) == 1  # no segment markers
    assert _shapes(fig, "ground truth") == []
    assert not [a for a in fig.layout.annotations if a.name == "warning"]


def test_timeline_figure_stacks_several_detections():
    dets = {"lavad": _detection(), "vera": _detection(profile="colab")}
    fig = widgets.timeline_figure(dets, LABELS)
    assert [t.name for t in fig.data if t.mode == "lines"] == ["lavad", "vera"]
    assert len(_shapes(fig, "ground truth")) == 2  # one band in each panel
    assert {s.xref for s in _shapes(fig, "ground truth")} == {"x", "x2"}
    assert len(_shapes(fig, "threshold")) == 2 and len(_shapes(fig, "cursor")) == 1
    assert len([a for a in fig.layout.annotations if a.name == "warning"]) == 1


# ------------------------------------------------------------------------ widget


def test_explorer_follows_frame_slider_click_and_threshold(video):
    ex = widgets.explorer(_detection(video), labels=LABELS, threshold=0.5)
    assert ex.banner.layout.display != "none" and TINY_WARNING in ex.banner.value
    assert "10 – 19" in ex.flagged.value and "1.00 – 2.00" in ex.flagged.value
    first = ex.image.value
    assert abs(_decoded_mean(first) - 0) < 10 and "people walk by" in ex.explanation.value

    ex.set_frame(22)
    assert ex.frame_slider.value == 22 and ex.frame == 22
    assert _shapes(ex.timeline, "cursor")[0].x0 == pytest.approx(2.2)
    assert abs(_decoded_mean(ex.image.value) - 176) < 10
    assert "the street is calm" in ex.explanation.value
    assert "ground truth: normal" in ex.caption.value

    ex.frame_slider.value = 14  # what dragging the slider does
    assert "fight" in ex.explanation.value and "anomalous" in ex.caption.value

    # a click on the score line at 0.3 s, delivered the way plotly delivers it
    points = Points(point_inds=[3], xs=[0.3], ys=[0.1], trace_name="lavad", trace_index=0)
    ex.timeline.data[0]._dispatch_on_click(points, InputDeviceState())
    assert ex.frame == 3 and "people walk by" in ex.explanation.value

    ex.set_frame(10_000)  # clipped to the last frame
    assert ex.frame == N - 1

    ex.set_threshold(0.15)
    assert ex.threshold == pytest.approx(0.15)
    assert _shapes(ex.timeline, "threshold")[0].y0 == pytest.approx(0.15)
    assert "10 – 29" in ex.flagged.value and "67% of the video" in ex.flagged.value
    assert ex.flagged_table()[["start_frame", "end_frame"]].values.tolist() == [[10, 29]]
    ex.set_threshold(0.95)
    assert "no interval" in ex.flagged.value
    assert "Explorer" in repr(ex)  # Jupyter's text repr walks the widget's traits


def test_explorer_without_labels_video_or_segments():
    det = _detection("/nowhere/clip.mp4", profile="colab", segments=_segments().iloc[:0])
    ex = widgets.explorer(det)
    assert ex.banner.layout.display == "none"
    assert ex.image.layout.display == "none" and "video not found" in ex.frame_note.value
    assert "no segments" in ex.explanation.value
    assert "ground truth" not in ex.caption.value
    assert _shapes(ex.timeline, "ground truth") == []
    ex.set_frame(5)
    assert ex.frame == 5 and "frame 5" in ex.explanation.value


def test_explorer_on_a_one_frame_video(tmp_path):
    path = _write_video(tmp_path / "one.mp4", 1)
    det = _detection(path, n=1, segments=pd.DataFrame({
        "start_frame": [0], "end_frame": [1], "centre_frame": [0], "time_s": [0.0],
        "score": [0.3], "explanation": ["a single frame"]}))
    ex = widgets.explorer(det, labels=np.array([1], np.uint8))
    assert ex.frame_slider.max == 0
    ex.set_frame(5)
    assert ex.frame == 0 and len(ex.image.value) > 0 and ex.frame_note.value == ""
    assert "a single frame" in ex.explanation.value and "anomalous" in ex.caption.value


def test_explorer_warns_on_label_length_mismatch():
    with pytest.warns(UserWarning, match="20 frame labels but 30 frame scores"):
        widgets.explorer(_detection(), labels=np.zeros(20, np.uint8))


def test_compare_explorer_syncs_every_method(video):
    other = Detection(video=video, method="vera", profile="colab",
                      frame_scores=np.linspace(0, 1, N), fps=FPS,
                      segments=pd.DataFrame({"start_frame": [0], "end_frame": [N],
                                             "centre_frame": [15], "time_s": [1.5],
                                             "score": [0.5], "explanation": ["one answer"]}))
    ex = widgets.compare_explorer({"lavad": _detection(video), "vera": other}, labels=LABELS,
                                  video=video)
    assert "lavad" in ex.banner.value and TINY_WARNING in ex.banner.value
    ex.set_frame(25)
    assert "the street is calm" in ex.explanation.value and "one answer" in ex.explanation.value
    assert abs(_decoded_mean(ex.image.value) - 200) < 10
    table = ex.flagged_table()
    assert table["method"].tolist() == ["lavad", "vera"]
    assert table[["start_frame", "end_frame"]].values.tolist() == [[10, 19], [15, 29]]
    assert ">vera<" in ex.flagged.value


def test_explorer_without_anywidget_falls_back_to_a_static_figure(monkeypatch):
    def no_anywidget(*args, **kwargs):
        raise ImportError("Please install anywidget to use the FigureWidget class")

    monkeypatch.setattr(go, "FigureWidget", no_anywidget)
    ex = widgets.explorer(_detection(), labels=LABELS)
    assert isinstance(ex.timeline, go.Figure)
    ex.set_frame(12)
    assert _shapes(ex.timeline, "cursor")[0].x0 == pytest.approx(1.2)
    assert "fight" in ex.explanation.value


def test_displaying_an_explorer_also_shows_a_static_picture_of_its_state(video, monkeypatch):
    """HTML exports and GitHub's viewer run no widget: a PNG of the same state comes along."""
    import matplotlib

    matplotlib.use("Agg")
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display",
                        lambda obj, **kw: shown.append((obj, kw.get("metadata"))))
    det = _detection(video)
    ex = widgets.explorer(det, labels=LABELS, video=video)
    ex.set_frame(25)
    ex.set_threshold(0.6)
    ex._ipython_display_()
    bundle, png = shown[0][0], shown[1]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert png[1] == {"vadnb": {"kind": "static-fallback"}}
    assert png[0].data[:8] == b"\x89PNG\r\n\x1a\n"

    fig = ex.static_figure()  # the same state: cursor at frame 25, threshold 0.6, the frame
    timeline = fig.axes[0]
    xs = [line.get_xdata()[0] for line in timeline.lines if line.get_label() == "cursor"]
    assert xs == [pytest.approx(25 / det.fps)]
    assert any(np.allclose(line.get_ydata(), 0.6) for line in timeline.lines
               if line.get_label().startswith("threshold"))
    assert len(fig.axes) == 2 and fig.axes[1].images  # the frame on show
    assert f"{len(ex.flagged_table())} flagged interval" in fig._suptitle.get_text()
    assert any("tiny models" in t.get_text() for t in fig.texts)


def test_save_upload_keeps_a_safe_name_and_refuses_non_videos(tmp_path):
    upload = ({"name": "../../<img src=x onerror=alert(1)>.MP4", "content": memoryview(b"abc")},)
    saved = widgets.save_upload(upload, tmp_path / "up")
    digest = hashlib.sha256(b"abc").hexdigest()[:12]  # keeps different videos apart
    assert saved.parent == tmp_path / "up" / digest and saved.read_bytes() == b"abc"
    assert saved.name == "img_src_x_onerror_alert_1.mp4"
    assert not list((tmp_path / "up").rglob("*.part"))
    with pytest.raises(ValueError, match="does not look like a video"):
        widgets.save_upload([{"name": "notes.txt", "content": b"x"}], tmp_path)
    with pytest.raises(ValueError, match="no file uploaded"):
        widgets.save_upload((), tmp_path)
    with pytest.raises(ValueError, match="empty"):
        widgets.save_upload([{"name": "a.mp4", "content": b""}], tmp_path)


def test_upload_form_runs_the_chosen_method_on_the_uploaded_video(video, tmp_path, monkeypatch):
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: None)
    calls = []

    def run(path, method, prompt):
        calls.append((path.name, method, prompt))
        return _detection(str(path))

    form = widgets.upload_form(run, ["classical", "anyanomaly"], "anyanomaly", "a person running",
                               tmp_path / "up")
    form.detect()  # nothing uploaded yet: a message, no run
    assert calls == []
    import datetime

    form.upload.value = ({"name": "ramp.mp4", "type": "video/mp4", "size": 1,
                          "last_modified": datetime.datetime.now(datetime.timezone.utc),
                          "content": memoryview(open(video, "rb").read())},)
    form.method.value = "classical"
    form.prompt.value = "a box left behind"
    form.detect()
    assert calls == [("ramp.mp4", "classical", "a box left behind")]


def test_uploads_whose_names_sanitise_alike_stay_distinct(tmp_path):
    first = widgets.save_upload([{"name": "fight 1.mp4", "content": b"first video"}], tmp_path)
    second = widgets.save_upload([{"name": "fight_1.mp4", "content": b"second video"}], tmp_path)
    assert first != second
    assert (first.read_bytes(), second.read_bytes()) == (b"first video", b"second video")
    again = widgets.save_upload([{"name": "fight 1.mp4", "content": b"first video"}], tmp_path)
    assert again == first and len(list(tmp_path.rglob("*.mp4"))) == 2  # same content, one file
