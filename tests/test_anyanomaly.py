"""AnyAnomaly (vadnb.anyanomaly): windows, heat maps, key frames, parsing, fusion, tuning,
and a planted anomaly recovered end to end with test doubles that know the truth."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from vadnb import anyanomaly as aa
from vadnb.models.scripted import ScriptedClip, ScriptedVLM

RED = (220, 20, 20)
GREY = (110, 110, 110)


# --------------------------------------------------------------------------- doubles


def red_fraction(img: np.ndarray) -> float:
    """Share of clearly red pixels in an RGB image."""
    a = np.asarray(img).astype(int)
    red = (a[..., 0] > 150) & (a[..., 1] < 90) & (a[..., 2] < 90)
    return float(red.mean())


def red_clip() -> ScriptedClip:
    """A CLIP double: image vectors point towards "red square" in proportion to the red in
    the image, texts about a red square point there, a normal scene points elsewhere."""

    def image_fn(img):
        r = red_fraction(img)
        return np.array([r, 1.0 - r, 0.05])

    def text_fn(text):
        if "red square" in text:
            return np.array([1.0, 0.0, 0.0])
        if "normal" in text:
            return np.array([0.0, 1.0, 0.0])
        return np.array([0.0, 0.0, 1.0])

    return ScriptedClip(image_fn, text_fn, name="red-clip")


def red_vlm(fail_every: int = 0) -> ScriptedVLM:
    """A VLM double that answers by content: a high score when it sees red."""
    count = {"n": 0}

    def fn(images, prompt):
        count["n"] += 1
        if fail_every and count["n"] % fail_every == 0:
            return "I cannot tell."
        if "red square" not in prompt:
            return "Score: 0.0. Reason: not what was asked."
        r = max(red_fraction(im) for im in images)
        if r > 0.01:
            return "Score: 0.9. Reason: a red square is visible."
        return "Score: 0.1. Reason: only grey background."

    return ScriptedVLM(fn, name="red-vlm")


def write_planted_video(path, num_frames=240, fps=24, size=(96, 96), red_frames=range(120, 168),
                        box=(60, 12, 84, 36)):
    """A grey video with a red square (x0, y0, x1, y1) in ``red_frames``."""
    import av

    w, h = size
    x0, y0, x1, y1 = box
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = {"qscale": "2"}
        for i in range(num_frames):
            img = np.full((h, w, 3), GREY, np.uint8)
            img[:, : (i % w)] += 10  # a little change over time
            if i in red_frames:
                img[y0:y1, x0:x1] = RED
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    path = tmp_path_factory.mktemp("aa") / "planted.avi"
    write_planted_video(path)
    labels = np.zeros(240, np.uint8)
    labels[120:168] = 1
    return path, labels


# --------------------------------------------------------------------------- windows, heat maps


def test_window_tiling_positions_and_counts():
    boxes = aa.window_boxes(240, (48, 80, 240))
    assert boxes.groupby("scale").size().tolist() == [25, 9, 1]
    s0 = boxes[boxes.scale == 0]
    assert sorted(s0.x0.unique()) == [0, 48, 96, 144, 192]
    assert (s0.x1 - s0.x0 == 48).all() and (s0.y1 - s0.y0 == 48).all()
    assert sorted(boxes[boxes.scale == 1].y0.unique()) == [0, 80, 160]
    big = boxes[boxes.scale == 2].iloc[0]
    assert (big.x0, big.y0, big.x1, big.y1) == (0, 0, 240, 240)
    # row-major: the 7th 48-px tile is row 1, col 1
    assert tuple(s0.iloc[6][["row", "col", "x0", "y0"]]) == (1, 1, 48, 48)
    # overlapping windows: 80 px every 40 px -> 0, 40, ..., 160 = 5 x 5
    assert len(aa.window_boxes(240, (80,), stride=40)) == 25
    with pytest.raises(ValueError, match="window size"):
        aa.window_boxes(240, (300,))


def test_heat_map_matches_hand_computed_bilinear_average():
    boxes = aa.window_boxes(240, (48, 80, 240))
    scores = np.zeros(35)
    scores[0] = 1.0      # 5x5 scale, top-left tile
    scores[25] = 0.5     # 3x3 scale, top-left tile
    scores[34] = 0.2     # the whole frame
    heat = aa.heat_map(scores, boxes, 240, 240)
    # Pixel centres within half a tile of the border are clamped to the edge tile's value,
    # so at (0, 0) the raw mean is (1 + 0.5 + 0.2) / 3 (the maximum), at (239, 239) 0.2 / 3.
    hi, lo = (1 + 0.5 + 0.2) / 3, 0.2 / 3
    assert heat[0, 0] == pytest.approx(1.0) and heat[239, 239] == pytest.approx(0.0)
    # At row 0, column 60: source x = (60 + 0.5) * cells / 240 - 0.5 in each grid.
    f5 = 60.5 * 5 / 240 - 0.5          # between 5x5 cells 0 and 1
    f3 = 60.5 * 3 / 240 - 0.5          # between 3x3 cells 0 and 1
    raw = ((1 - f5) * 1.0 + (1 - f3) * 0.5 + 0.2) / 3
    assert heat[0, 60] == pytest.approx((raw - lo) / (hi - lo), abs=1e-3)
    # a non-square frame: same map stretched, corners unchanged
    wide = aa.heat_map(scores, boxes, 120, 320)
    assert wide.shape == (120, 320) and wide[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="35 windows"):
        aa.heat_map(np.zeros(10), boxes, 10, 10)


def test_masked_frame_and_grid_layout():
    frame = np.full((4, 4, 3), 200, np.uint8)
    heat = np.array([[1.0, 0.5, 0, 0]] * 4)
    m = aa.masked_frame(frame, heat)
    assert m[0, 0, 0] == 200 and m[0, 1, 0] == 100 and m[0, 3, 0] == 0
    # four frames of one colour each -> cells in time order: TL, TR, BL, BR
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (10, 20, 30, 40)]
    box = aa.window_boxes(240, (120,)).iloc[3]  # bottom-right quarter
    g = aa.grid_image(frames, box, 240, cell=8)
    assert g.shape == (16, 16, 3)
    assert [g[0, 0, 0], g[0, 15, 0], g[15, 0, 0], g[15, 15, 0]] == [10, 20, 30, 40]


def test_context_frames_follow_the_key_frames_phase():
    assert aa.context_frames(10, 0, 24).tolist() == [4, 10, 16, 22]
    assert aa.context_frames(24, 24, 48).tolist() == [24, 30, 36, 42]
    assert aa.context_frames(245, 240, 250).tolist() == [245, 249, 249, 249]
    with pytest.raises(ValueError, match="outside"):
        aa.context_frames(30, 0, 24)
    assert aa.segment_bounds(50, 24).tolist() == [[0, 24], [24, 48], [48, 50]]


# --------------------------------------------------------------------------- CLIP double


def _frame(with_red_at=None, size=96):
    img = np.full((size, size, 3), GREY, np.uint8)
    if with_red_at is not None:
        x0, y0 = with_red_at
        img[y0:y0 + 24, x0:x0 + 24] = RED
    return img


def test_key_frame_finds_the_object_and_heat_map_peaks_over_it():
    clip = red_clip()
    frames = [_frame() for _ in range(24)] + [_frame() for _ in range(24)]
    frames[17] = _frame(with_red_at=(60, 12))
    frames[30] = _frame(with_red_at=(8, 64))
    emb = clip.encode_image(frames)
    classes = aa.text_embeddings(clip, ["a red square", "a normal scene"], aa.TEMPLATES)
    keys = aa.select_key_frames(emb, classes[:1], aa.segment_bounds(48, 24))
    assert keys.tolist() == [[17, 30]]

    boxes = aa.window_boxes(240, (48, 80, 240))
    for frame, (x0, y0) in ((frames[17], (60, 12)), (frames[30], (8, 64))):
        win = clip.encode_image(aa.cut_windows(frame, boxes, 240))
        probs = aa.window_probabilities(win, classes, 100.0)[:, 0]
        heat = aa.heat_map(probs, boxes, 96, 96)
        y, x = np.unravel_index(np.argmax(heat), heat.shape)
        assert x0 <= x < x0 + 24 and y0 <= y < y0 + 24
        # far from the object the frame is dimmed
        assert heat[95 - y0 // 2, 95 - x0 // 2] < 0.3


# --------------------------------------------------------------------------- replies, fusion


@pytest.mark.parametrize("reply, expected", [
    ("Score: 0.8 because a person lies on the floor.", 0.8),
    ("8/10", 0.8),
    ("I think 80%", 0.8),
    ("In frame 2 the score is 0.3. Reason: a car.", 0.3),
    ("Score: 1.0. Reason: clearly visible.", 1.0),
    ("none", None),
    ("", None),
])
def test_parse_score_on_odd_replies(reply, expected):
    got = aa.parse_score(reply)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_parse_reason():
    assert aa.parse_reason("Score: 0.8. Reason:  a van   on grass.") == "a van on grass."
    assert aa.parse_reason("0.2, nothing there") == "0.2, nothing there"


def test_prompts_say_what_each_view_is():
    # the paper's design: the same question about the key frame and the masked frame; the
    # grid's question adds exactly one sentence on how the grid reads in time
    key, pos, grid = (aa.build_prompt("a fall", v) for v in ("key", "position", "temporal"))
    assert "a fall" in key and pos == key
    assert "left to right, top to bottom" in grid
    extra = grid.replace(aa._TASK.format(d="a fall"), "").replace(aa._FORMAT, "")
    assert extra.strip().count(". ") == 0 and extra.strip().endswith(").")
    with pytest.raises(ValueError, match="unknown view"):
        aa.build_prompt("a fall", "audio")


def test_fusion_and_smoothing_math():
    assert aa.fuse([1, 0], [0, 1], [0.5, 0.5]).tolist() == pytest.approx([0.65, 0.35])
    assert aa.fuse([1], [1], [1], (0.2, 0.3, 0.5)).tolist() == pytest.approx([1.0])
    # no smoothing: repeat (and, only when asked, normalise this video)
    f = aa.fused_frame_scores([0.2, 0.8], 5, segment_length=3, sigma=0)
    assert f.tolist() == pytest.approx([0.2, 0.2, 0.2, 0.8, 0.8])
    f = aa.fused_frame_scores([0.2, 0.8], 5, segment_length=3, sigma=0, normalise=True)
    assert f.tolist() == pytest.approx([0, 0, 0, 1, 1])
    # a symmetric step smoothed with reflect padding stays antisymmetric: s[i] + s[-1-i] = 1
    s = aa.fused_frame_scores([0.2, 0.8], 60, segment_length=30, sigma=5, normalise=True)
    assert s[0] == pytest.approx(0) and s[-1] == pytest.approx(1)
    assert (s + s[::-1]).tolist() == pytest.approx([1.0] * 60)
    assert 0.3 < s[29] < 0.5 and 0.5 < s[30] < 0.7  # smoothed across the boundary
    # without normalisation the smoothed values keep their scale
    raw = aa.fused_frame_scores([0.2, 0.8], 60, segment_length=30, sigma=5, normalise=False)
    assert raw[0] == pytest.approx(0.2) and raw[-1] == pytest.approx(0.8)
    # constant scores normalised: nothing stands out -> zeros, not NaN
    assert aa.fused_frame_scores([0.4, 0.4], 10, 5, sigma=2, normalise=True).tolist() == [0.0] * 10


# --------------------------------------------------------------------------- the pipeline


def test_planted_anomaly_is_recovered(planted, fresh_cache):
    from vadnb.metrics import frame_auc

    path, labels = planted
    clip, vlm = red_clip(), red_vlm()
    det = aa.run(path, backends={"clip": clip, "vlm": vlm}, cache=fresh_cache,
                 prompts=["a red square", "a blue circle"])
    assert det.method == "anyanomaly" and det.profile == "scripted"
    assert det.num_frames == 240 and det.frame_scores.min() >= 0 and det.frame_scores.max() <= 1
    assert frame_auc(labels, det.frame_scores) >= 0.9
    seg = det.segments
    assert len(seg) == 10 * 2
    red = seg[seg.prompt == "a red square"].set_index("start_frame")
    # segments 120-143 and 144-167 hold the square: all three views see it there
    assert red.loc[[120, 144], ["score_key", "score_position", "score_temporal"]].min().min() == 0.9
    assert red.loc[[0, 216], "score"].tolist() == pytest.approx([0.1, 0.1])
    assert red.loc[120, "key_frame"] >= 120 and red.loc[120, "centre_frame"] == red.loc[120, "key_frame"]
    assert "red square is visible" in red.loc[144, "reason_temporal"]
    # the best description comes first, so explanation_at names it
    assert det.explanation_at(130).startswith("a red square")
    assert seg.time_s.iloc[0] == pytest.approx(seg.key_frame.iloc[0] / 24)
    assert det.extras["parse_failures"] == 0 and det.extras["parse_total"] == 60
    # three calls per segment per description, batched
    calls = det.model_calls.set_index("role")
    assert calls.loc["vlm", "items"] == 60
    assert calls.loc["vlm", "calls"] == -(-60 // aa.Config().vlm_batch_size)
    assert set(det.extras["prompt_frame_scores"]) == {"a red square", "a blue circle"}

    # views rebuilt for display: the heat map lights up the square
    views = aa.segment_views(path, det, seg[(seg.prompt == "a red square")
                                           & (seg.start_frame == 144)].iloc[0])
    y, x = np.unravel_index(np.argmax(views["heat"]), views["heat"].shape)
    assert 60 <= x < 84 and 12 <= y < 36
    assert views["grid"].shape == (448, 448, 3) and red_fraction(views["grid"]) > 0.05

    # a re-run with the same inputs is served by the cache: no model calls at all
    again = aa.run(path, backends={"clip": clip, "vlm": vlm}, cache=fresh_cache,
                   prompts=["a red square", "a blue circle"])
    assert again.model_calls.empty
    np.testing.assert_allclose(again.frame_scores, det.frame_scores)


def test_unparseable_replies_are_counted_and_interpolated(planted, fresh_cache):
    path, labels = planted
    det = aa.run(path, backends={"clip": red_clip(), "vlm": red_vlm(fail_every=7)},
                 cache=fresh_cache, prompts=["a red square"])
    assert det.extras["parse_total"] == 30 and det.extras["parse_failures"] == 4
    seg = det.segments
    bad = ~seg[["parsed_key", "parsed_position", "parsed_temporal"]].to_numpy()
    assert bad.sum() == 4
    assert np.isfinite(seg[["score_key", "score_position", "score_temporal"]].to_numpy()).all()
    from vadnb.metrics import frame_auc

    assert frame_auc(labels, det.frame_scores) >= 0.9


def test_run_rejects_bad_input(planted, fresh_cache):
    path, _ = planted
    b = {"clip": red_clip(), "vlm": red_vlm()}
    with pytest.raises(ValueError, match="descriptions"):
        aa.run(path, backends=b, cache=fresh_cache)
    with pytest.raises(TypeError, match="unknown AnyAnomaly setting"):
        aa.run(path, backends=b, cache=fresh_cache, prompts=["x"], sigmaa=3)


def test_detect_dispatches_to_anyanomaly(planted, fresh_cache):
    import vadnb

    path, labels = planted
    det = vadnb.detect(path, method="anyanomaly", prompts=["a red square"],
                       backends={"clip": red_clip(), "vlm": red_vlm()}, cache=fresh_cache,
                       sigma=5)
    assert det.extras["config"]["sigma"] == 5
    assert det.frame_scores[130] > 0.85 and det.frame_scores[20] < 0.15


# --------------------------------------------------------------------------- tuning


def _fake_detection(key, position, temporal, num_frames, length=10):
    from vadnb.detect import Detection

    s = len(key)
    seg = pd.DataFrame({"start_frame": np.arange(s) * length, "prompt": "x",
                        "score_key": key, "score_position": position,
                        "score_temporal": temporal})
    return Detection(video=f"v{num_frames}.mp4", method="anyanomaly", profile="scripted",
                     frame_scores=np.zeros(num_frames), fps=10.0, segments=seg,
                     extras={"config": {"segment_length": length, "normalise": True}})


def test_tune_fusion_on_validation_finds_the_informative_view():
    rng = np.random.default_rng(0)
    dets, labels = [], []
    for v in range(3):
        truth = np.zeros(12)
        truth[4 + v: 7 + v] = 1
        dets.append(_fake_detection(rng.random(12), truth * 0.8 + 0.1, rng.random(12), 120))
        labels.append(np.repeat(truth, 10).astype(np.uint8))
    res = aa.tune_fusion(dets, labels, split="validation", sigmas=(1, 15))
    assert len(res.table) == 66 * 2 and res.table.auc.iloc[0] == res.auc
    # only the position view carries the truth: the winner leans on it, ignoring it fails
    assert res.weights[1] >= 0.6 and res.auc == pytest.approx(1.0)
    assert res.table[res.table.b == 0].auc.max() < 0.7
    default = res.table[(res.table.a == 0.6) & (res.table.b == 0.3) & (res.table.sigma == 15)]
    assert float(default.auc.iloc[0]) < res.auc


def test_tune_fusion_refuses_test_data():
    det = _fake_detection(np.zeros(3), np.zeros(3), np.zeros(3), 30)
    y = [np.r_[np.zeros(15), np.ones(15)].astype(np.uint8)]
    with pytest.raises(ValueError, match="refusing to tune"):
        aa.tune_fusion([det], y, split="test")
    det.extras["split"] = "test"
    with pytest.raises(ValueError, match="refusing to tune"):
        aa.tune_fusion([det], y, split="validation")
    del det.extras["split"]

    class Bench:
        videos = pd.DataFrame({"name": ["v30"], "path": ["/data/v30.mp4"], "split": ["test"]})

    with pytest.raises(ValueError, match="test"):
        aa.tune_fusion({"v30": det}, {"v30": y[0]}, split="val", benchmark=Bench())


# --------------------------------------------------------------------------- tiny models


def test_tiny_profile_end_to_end(tmp_path, fresh_cache):
    from vadnb import models

    if not hasattr(models, "load"):
        pytest.skip("vadnb.models.load has not landed yet")
    path = write_planted_video(tmp_path / "short.avi", num_frames=48, size=(64, 48),
                               red_frames=range(24, 36), box=(8, 8, 24, 24))
    det = aa.run(path, profile="tiny", cache=fresh_cache, prompts=["a person falling"],
                 grid_cell=56, max_new_tokens=8)
    assert det.profile == "tiny" and det.meaningless
    assert det.num_frames == 48 and np.isfinite(det.frame_scores).all()
    assert len(det.segments) == 2 and det.extras["parse_total"] == 6
    calls = det.model_calls.set_index("role")
    assert calls.loc["vlm", "items"] == 6 and calls.loc["clip", "items"] >= 48


def test_prompt_scores_single_out_one_description(planted, fresh_cache):
    path, _ = planted
    det = aa.run(path, backends={"clip": red_clip(), "vlm": red_vlm()}, cache=fresh_cache,
                 prompts=["a red square", "a blue circle"], sigma=0)
    red = aa.prompt_scores(det, "a red square")
    blue = aa.prompt_scores(det, "a blue circle")
    # the VLM double gives 0.0 to anything but the red square; no per-video rescaling
    assert blue.tolist() == [0.0] * 240
    assert red[120:168].min() == pytest.approx(0.9) and red[:120].max() == pytest.approx(0.1)
    np.testing.assert_allclose(det.frame_scores, red)
    with pytest.raises(KeyError, match="not among"):
        aa.prompt_scores(det, "a green triangle")
