"""vadnb.plots: interval runs, score timelines, stacked comparisons, contact sheets."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from vadnb import plots  # noqa: E402
from vadnb.detect import TINY_WARNING, Detection  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _detection(profile: str = "tiny", n: int = 50, fps: float = 10.0) -> Detection:
    scores = np.linspace(0, 1, n)
    segments = pd.DataFrame({"start_frame": [0, 25], "end_frame": [25, n], "centre_frame": [12, 37],
                             "time_s": [1.2, 3.7], "score": [0.2, 0.8],
                             "explanation": ["a street", "a fight"]})
    return Detection(video="/data/clip.mp4", method="lavad", profile=profile, frame_scores=scores,
                     fps=fps, segments=segments)


def _texts(ax) -> str:
    return " ".join(" ".join(t.get_text().split()) for t in ax.texts)


def _gt_bands(ax) -> list[tuple[float, float]]:
    """x-extent of every ground-truth band (axvspan draws a Rectangle in axes patches)."""
    bands = []
    for p in ax.patches:
        if p.get_facecolor()[:3] == matplotlib.colors.to_rgb(plots.GT_COLOR):
            x0 = p.get_x()
            bands.append((round(x0, 6), round(x0 + p.get_width(), 6)))
    return bands


@pytest.mark.parametrize("labels, expected", [
    ([], []),
    ([0, 0, 0], []),
    ([1, 1, 1], [(0, 2)]),
    ([0, 1, 1, 0, 0, 1], [(1, 2), (5, 5)]),
    ([1, 0, 1, 0, 1], [(0, 0), (2, 2), (4, 4)]),
    (np.array([False, True, True, True]), [(1, 3)]),
    (np.array([0, 0, 1, 1, 0], dtype=np.uint8), [(2, 3)]),
])
def test_intervals_inclusive_runs(labels, expected):
    assert plots.intervals(labels) == expected


def test_intervals_rejects_scores_and_2d():
    with pytest.raises(ValueError, match="only 0 and 1"):
        plots.intervals([0.0, 0.4, 1.0])
    with pytest.raises(ValueError, match="1-D"):
        plots.intervals(np.zeros((2, 3)))


def test_frame_caption():
    assert plots.frame_caption(120, 10.0) == "frame 120 · 12.0 s"
    assert plots.frame_caption(7) == "frame 7"


def test_plot_scores_seconds_axis_truth_threshold_and_warning():
    scores = np.r_[np.zeros(20), np.ones(10), np.zeros(10)]
    labels = np.r_[np.zeros(20), np.ones(10), np.zeros(10)].astype(np.uint8)
    fig = plots.plot_scores(scores, fps=10.0, labels=labels, threshold=0.5,
                            warning=TINY_WARNING, title="t")
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes
    score_line = ax.lines[0]
    np.testing.assert_allclose(score_line.get_xdata(), np.arange(40) / 10.0)
    np.testing.assert_allclose(score_line.get_ydata(), scores)
    # threshold: one horizontal line at 0.5
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.5, 0.5])
    # frames 20..29 are anomalous: the band covers [2.0 s, 3.0 s)
    assert _gt_bands(ax) == [(2.0, 3.0)]
    assert plots.TINY_TAG in _texts(ax) and TINY_WARNING not in _texts(ax)  # the short tag
    assert ax.get_xlabel() == "time (s)"
    fig.savefig(__import__("io").BytesIO(), format="png")  # renders under Agg


def test_plot_scores_frames_axis_without_fps_and_no_warning():
    fig = plots.plot_scores([0.1, 0.9, 0.3], labels=[0, 1, 0])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "frame"
    assert _gt_bands(ax) == [(1.0, 2.0)]
    assert _texts(ax) == ""
    assert len(ax.lines) == 1


def test_plot_scores_errors_and_label_length_warning():
    with pytest.raises(ValueError, match="empty"):
        plots.plot_scores([])
    with pytest.warns(UserWarning, match="4 frame labels but 3 frame scores"):
        plots.plot_scores([0.1, 0.2, 0.3], labels=[0, 1, 1, 0])


def test_plot_scores_draws_into_given_axes():
    fig, (a, b) = plt.subplots(1, 2)
    out = plots.plot_scores([0.2, 0.4], ax=b)
    assert out is fig and len(b.lines) == 1 and len(a.lines) == 0


def test_plot_detection_passes_warning_only_for_tiny():
    tiny = plots.plot_detection(_detection("tiny"), labels=np.r_[np.zeros(40), np.ones(10)])
    assert plots.TINY_TAG in _texts(tiny.axes[0])
    assert "lavad" in tiny.axes[0].get_title() and "clip.mp4" in tiny.axes[0].get_title()
    assert _gt_bands(tiny.axes[0]) == [(4.0, 5.0)]
    real = plots.plot_detection(_detection("colab"))
    assert plots.TINY_TAG not in _texts(real.axes[0])


def test_plot_detection_title_says_scripted_models_not_profile_scripted():
    """Oracle runs carry profile "scripted": the title names the models, not a fake profile."""
    oracle = plots.plot_detection(_detection("scripted")).axes[0].get_title()
    assert oracle == "lavad · clip.mp4 · scripted (oracle) models"
    assert plots.plot_detection(_detection("colab")).axes[0].get_title().endswith("profile colab")

def test_plot_many_stacks_panels_sharing_x():
    dets = {"lavad": _detection("tiny"), "baseline": np.linspace(1, 0, 50),
            "vera": _detection("colab")}
    fig = plots.plot_many(dets, labels=np.r_[np.zeros(45), np.ones(5)], fps=10.0, threshold=0.5)
    assert len(fig.axes) == 3
    # a mix of profiles: the tiny panel is named so, and the figure carries one tag
    assert [ax.get_ylabel() for ax in fig.axes] == ["lavad\n(tiny)", "baseline", "vera"]
    assert sum(plots.TINY_TAG in t.get_text() for t in fig.texts) == 1
    # shared x: the plain array got the same seconds axis as the detections
    np.testing.assert_allclose(fig.axes[1].lines[0].get_xdata(), np.arange(50) / 10.0)
    assert fig.axes[0].get_shared_x_axes().joined(fig.axes[0], fig.axes[2])
    assert all(_gt_bands(ax) == [(4.5, 5.0)] for ax in fig.axes)
    assert all(len(ax.lines) == 2 for ax in fig.axes)  # score + threshold
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_many({})


def test_plot_many_prints_a_given_warning_on_array_panels():
    fig = plots.plot_many({"raw": np.zeros(5), "refined": np.ones(5)}, fps=5.0,
                          warning=TINY_WARNING)
    assert [t.get_text() for t in fig.texts].count(f"⚠ {plots.TINY_TAG}") == 1
    assert [ax.get_ylabel() for ax in fig.axes] == ["raw", "refined"]  # all tiny: no per-panel note
    real = plots.plot_many({"raw": np.zeros(5)}, fps=5.0, profile="colab")
    assert not any(plots.TINY_TAG in t.get_text() for t in real.texts)
    assert real.axes[0].get_xlabel() == "time (s)"


def test_contact_sheet_grid_and_captions():
    images = np.zeros((10, 12, 16, 3), dtype=np.uint8)
    images[3, :, :, 0] = 255
    captions = [plots.frame_caption(i * 10, 10.0) for i in range(10)]
    fig = plots.contact_sheet(images, labels=captions, cols=4, title="ten frames")
    assert len(fig.axes) == 12  # 3 rows x 4 columns, two cells left empty
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 10
    assert [ax.get_title() for ax in shown] == captions
    np.testing.assert_array_equal(shown[3].images[0].get_array()[..., 0], 255)
    assert fig._suptitle.get_text() == "ten frames"


def test_contact_sheet_from_frames_object_and_errors():
    from vadnb.video import Frames

    frames = Frames(np.zeros((3, 8, 8, 3), np.uint8), np.array([0, 5, 10]), np.array([0, .5, 1.]))
    fig = plots.contact_sheet(frames, cols=8)
    assert len(fig.axes) == 3  # cols shrink to the number of images
    assert [ax.get_title() for ax in fig.axes] == ["frame 0 · 0.0 s", "frame 5 · 0.5 s",
                                                   "frame 10 · 1.0 s"]
    with pytest.raises(ValueError, match="no images"):
        plots.contact_sheet([])
    with pytest.raises(ValueError, match="2 captions for 3 images"):
        plots.contact_sheet(frames.images, labels=["a", "b"])


def test_contact_sheet_tag_and_readable_captions():
    images = np.zeros((4, 12, 16, 3), dtype=np.uint8)
    fig = plots.contact_sheet(images, labels=list("abcd"), cols=4, profile="tiny")
    assert any(plots.TINY_TAG in t.get_text() for t in fig.texts)
    assert min(ax.title.get_fontsize() for ax in fig.axes) >= 9
    assert not plots.contact_sheet(images, profile="colab").texts
    # tag_figure accepts a Detection or an Environment-like object, and tags once
    fig2 = plt.figure()
    plots.tag_figure(fig2, _detection("tiny"))
    plots.tag_figure(fig2, "tiny")
    assert len(fig2.texts) == 1
    assert not plots.tag_figure(plt.figure(), _detection("colab")).texts


@pytest.mark.parametrize("method", sorted(plots.PIPELINES))
def test_pipeline_draws_every_stage_with_its_output(method):
    fig = plots.pipeline(method)
    text = _texts(fig.axes[0])
    stages = plots.PIPELINES[method]["stages"]
    for name, who, output, _ in stages:
        assert name in text and " ".join(output.split()) in text
    assert fig.axes[0].get_title()
    assert stages[-1][2] == "frame scores" or "frame scores" in stages[-1][2]
    fig.savefig(__import__("io").BytesIO(), format="png")


def test_pipeline_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        plots.pipeline("nope")


def test_clean_text_drops_control_characters_no_font_can_draw():
    assert plots.clean_text("a\x03 man\n\twalks") == "a man walks"
    assert plots.clean_text("abcdef", 4) == "abc…"
    assert plots.clean_text(None) == ""


def test_similarity_matrix_marks_each_rows_nearest_and_draws_without_warnings():
    import warnings

    sim = np.array([[0.1, 0.9, 0.2], [0.8, 0.1, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no missing glyph, no tight_layout complaint
        fig = plots.similarity_matrix(sim, ["a\x03b", "c", "d"], profile="tiny")
        fig.savefig(__import__("io").BytesIO(), format="png")
    ax = fig.axes[0]
    dots = ax.lines[0]
    np.testing.assert_array_equal(dots.get_xdata(), [1, 0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a b", "c", "d"]
    assert any(plots.TINY_TAG in t.get_text() for t in fig.texts)
    with pytest.raises(ValueError, match="3 columns"):
        plots.similarity_matrix(sim[:, :2], ["a", "b", "c"])


def test_fastest_mover_boxes_marks_the_fast_blob_not_the_slow_one():
    n, h, w = 30, 80, 200
    clip = np.full((n, h, w, 3), 120, np.uint8)
    for t in range(n):
        clip[t, 10:30, 20 + t: 32 + t] = 0          # slow: 1 px per frame
        clip[t, 50:70, 5 + 6 * t: 17 + 6 * t] = 255  # fast: 6 px per frame
    boxes = plots.fastest_mover_boxes(clip, [3, 10, 20])
    for t, box in zip([3, 10, 20], boxes):
        assert box is not None
        x, y, bw, bh = box
        assert 45 <= y <= 52 and abs(x - (5 + 6 * t)) <= 3, (t, box)
    still = np.full((10, h, w, 3), 120, np.uint8)
    assert plots.fastest_mover_boxes(still, [0, 5]) == [None, None]
    fig = plots.contact_sheet(clip[[3, 10]], boxes=boxes[:2], box_label="runner")
    assert [t.get_text() for t in fig.axes[0].texts] == ["runner"]


def test_sampling_figure_timeline_truth_and_thumbnails():
    from vadnb.video import Frames

    images = np.zeros((5, 8, 8, 3), np.uint8)
    sampled = Frames(images, np.array([0, 10, 20, 30, 40]), np.array([0.0, 1, 2, 3, 4]))
    labels = np.zeros(50, np.uint8)
    labels[20:30] = 1
    fig = plots.sampling_figure(50, 10.0, sampled, labels=labels, thumbs=3)
    timeline, *thumbs = fig.axes
    assert len(thumbs) == 3 and all(a.images for a in thumbs)
    assert [a.get_title() for a in thumbs] == ["frame 0 · 0.0 s", "frame 20 · 2.0 s",
                                               "frame 40 · 4.0 s"]
    assert _gt_bands(timeline) == [(2.0, 3.0)]
    assert timeline.get_xlabel() == "time (s)" and timeline.get_legend() is not None
    with pytest.raises(ValueError, match="no frames"):
        plots.sampling_figure(50, 10.0, Frames(images[:0], np.array([], int), np.array([])))
