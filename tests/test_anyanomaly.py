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


@pytest.mark.parametrize("reply, expected", [
    ("Score: 0.8 because a person lies on the floor.", 0.8),
    ("In frame 2 the score is 0.3.", 2.0),      # the first number anywhere
    ("I think 80%", 80.0),                      # not clipped
    ("**Output**: 1.0 - clearly visible", 1.0),
    ("-0.5", 0.5),                              # unsigned, as the official pattern
    ("score .7", 7.0),                          # no leading digit: the official reads "7"
    ("none", None), ("", None),
])
def test_official_score_is_the_official_extract_score(reply, expected):
    import re

    def extract_score(text):  # utils.py, extract_score: first number, 0 if none
        match = re.search(r'(\d+(\.\d+)?)', text)
        return float(match.group(0)) if match else 0.0

    assert aa.official_score(reply) == expected
    assert (aa.official_score(reply) or 0.0) == extract_score(reply)


def test_official_parser_reads_a_missing_score_as_zero_and_vadnb_interpolates():
    from vadnb.anyanomaly.fusion import parse_scores

    replies = np.array([["0.8", "no idea", "0.4", "70%"]], dtype=object)[..., None]  # [1, 4, 1]
    raw, filled, log = parse_scores(replies)
    assert filled.ravel().tolist() == [0.8, 0.0, 0.4, 70.0] and log.failed == 1
    assert np.isnan(raw.ravel()[1])
    _, filled, _ = parse_scores(replies, "vadnb")
    assert filled.ravel().tolist() == pytest.approx([0.8, 0.6, 0.4, 0.7])
    with pytest.raises(ValueError, match="parser"):
        parse_scores(replies, "last")


def test_parse_reason():
    assert aa.parse_reason("Score: 0.8. Reason:  a van   on grass.") == "a van on grass."
    assert aa.parse_reason("0.2, nothing there") == "0.2, nothing there"


# The official instruction (functions/qwen_vllm_func.py, make_instruction), word for word.
OFFICIAL_KEY = """\
- **Task**: Evaluate whether the given image includes **a fall** on a scale from 0 to 1. 
A score of 1 means **a fall** is clearly present in the image, while a score of 0 means **a fall** is not present at all. 
For intermediate cases, assign a value between 0 and 1 based on the degree to which **a fall** is visible.
- **Consideration**: The key is whether **a fall** is present in the image, not its focus. Thus, if **a fall** is present, even if it is not the main focus, assign a higher score like 1.0.
- **Output**: Provide the score as a float, rounded to one decimal place, including a brief reason for the score in **one short sentence**.   
"""
OFFICIAL_CONTEXT = ("- **Context**: The given image represents a sequence (row 1 column 1 \u2192 "
                    "row 1 column 2 \u2192 row 2 column 1 -> row 2 column 2) illustrating "
                    "temporal progression.\n")


def official_grid_prompt(key_prompt: str) -> str:
    """The official grid instruction: the Context line inserted before Consideration."""
    i = key_prompt.index("- **Consideration**")
    return key_prompt[:i] + OFFICIAL_CONTEXT + key_prompt[i:]


def test_prompts_are_the_official_wording_by_default():
    key, pos, grid = (aa.build_prompt("a fall", v) for v in ("key", "position", "temporal"))
    assert key == OFFICIAL_KEY and pos == key
    assert grid == official_grid_prompt(OFFICIAL_KEY)
    assert aa.build_prompt("a fall", "key", output_word="Response") == OFFICIAL_KEY.replace(
        "**Output**", "**Response**")
    assert aa.Config.for_dataset("shanghaitech").output_word == "Response"
    assert aa.Config.for_dataset("avenue").output_word == "Output"
    assert aa.OFFICIAL_SYSTEM == "You are a vision anomaly detector."
    with pytest.raises(ValueError, match="unknown view"):
        aa.build_prompt("a fall", "audio")
    with pytest.raises(ValueError, match="prompt_style"):
        aa.build_prompt("a fall", "key", style="terse")


def test_vadnb_prompts_say_what_each_view_is():
    # the same question about the key frame and the masked frame; the grid's question adds
    # exactly one sentence on how the grid reads in time
    key, pos, grid = (aa.build_prompt("a fall", v, "vadnb") for v in VIEWS3)
    assert "a fall" in key and pos == key
    assert "left to right, top to bottom" in grid
    extra = grid.replace(aa._TASK.format(d="a fall"), "").replace(aa._FORMAT, "")
    assert extra.strip().count(". ") == 0 and extra.strip().endswith(").")


VIEWS3 = ("key", "position", "temporal")


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

    # a re-run with the same inputs is served by the cache: no model calls, no decoding
    from vadnb.video import decode_stats, reset_decode_stats

    reset_decode_stats()
    again = aa.run(path, backends={"clip": clip, "vlm": vlm}, cache=fresh_cache,
                   prompts=["a red square", "a blue circle"])
    warm = again.model_calls.set_index("role")
    assert warm["calls"].sum() == 0 and warm["items"].sum() == 0
    assert warm.loc["vlm", "cached"] == 60  # every answer read back from the cache
    assert decode_stats() == {"opens": 0, "frames_decoded": 0, "frames_returned": 0}
    np.testing.assert_allclose(again.frame_scores, det.frame_scores)


@pytest.mark.parametrize("parser", ["official", "vadnb"])
def test_unparseable_replies_are_counted_then_zero_or_interpolated(planted, fresh_cache, parser):
    path, labels = planted
    det = aa.run(path, backends={"clip": red_clip(), "vlm": red_vlm(fail_every=7)},
                 cache=fresh_cache, prompts=["a red square"], parser=parser)
    assert det.extras["parse_total"] == 30 and det.extras["parse_failures"] == 4
    seg = det.segments.set_index("start_frame")
    cols = ["score_key", "score_position", "score_temporal"]
    bad = ~seg[["parsed_key", "parsed_position", "parsed_temporal"]].to_numpy()
    assert bad.sum() == 4
    got = seg[cols].to_numpy()[bad]
    if parser == "official":  # a reply without a number reads 0, as the official code
        assert got.tolist() == [0.0] * 4
    else:  # the mean of the neighbouring segments' scores of the same view (0.1/0.9 here)
        assert set(np.round(got, 6)) <= {0.1, 0.5, 0.9} and np.isfinite(got).all()
        assert (got > 0).all()
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
    from vadnb.video import decode_stats, reset_decode_stats

    models.reset_load_stats()
    det = aa.run(path, profile="tiny", cache=fresh_cache, prompts=["a person falling"],
                 grid_cell=56, max_new_tokens=8)
    assert det.profile == "tiny" and det.meaningless
    assert det.num_frames == 48 and np.isfinite(det.frame_scores).all()
    assert len(det.segments) == 2 and det.extras["parse_total"] == 6
    calls = det.model_calls.set_index("role")
    assert calls.loc["vlm", "items"] == 6 and calls.loc["clip", "items"] >= 48
    loads = models.load_stats()
    assert sorted(loads["role"]) == ["clip", "vlm"]
    # the names the cache keys used before loading are the loaded models' own names
    assert set(loads["model"]) == set(det.model_calls["model"])

    # a fully cached re-run loads no model and decodes nothing (issue 17)
    models.reset_load_stats()
    reset_decode_stats()
    again = aa.run(path, profile="tiny", cache=fresh_cache, prompts=["a person falling"],
                   grid_cell=56, max_new_tokens=8)
    assert models.load_stats().empty
    assert decode_stats() == {"opens": 0, "frames_decoded": 0, "frames_returned": 0}
    warm = again.model_calls.set_index("role")
    assert warm["calls"].sum() == 0 and warm["items"].sum() == 0 and again.profile == "tiny"
    assert warm.loc["vlm", "cached"] == 6
    np.testing.assert_allclose(again.frame_scores, det.frame_scores)


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


# --------------------------------------------------------------------------- parity with the
# official code (SkiddieAhn/Paper-AnyAnomaly). Each ``official_*`` helper below is our own
# small transcription of what the official scripts compute, written from reading them; vadnb's
# functions must agree with it to 1e-5 on the same random inputs.


def official_eval_scores(per_video_views, clip_length, alpha, beta, gamma, sigma):
    """vad_proposed_*.py + functions/eval_func.py (no grid search): each segment's three
    scores appended clip_length times, all videos concatenated, fused, gaussian_filter1d
    over the concatenation, min-max with 1e-8 added to the range."""
    from scipy.ndimage import gaussian_filter1d

    predicted, predicted_wa, predicted_tc = [], [], []
    for views in per_video_views:
        for key, wa, tc in views:
            for _ in range(clip_length):
                predicted.append(key)
                predicted_wa.append(wa)
                predicted_tc.append(tc)
    agg = (alpha * np.array(predicted) + beta * np.array(predicted_wa)
           + gamma * np.array(predicted_tc))
    g = gaussian_filter1d(agg, sigma=sigma)
    return (g - np.min(g)) / (np.max(g) - np.min(g) + 1e-8)


def official_segment_max(replies_per_keyword):
    """The official per-segment loop over keywords: each view's score is the running max
    (from 0) over the keywords; a reply without a number reads as 0."""
    best = [0.0, 0.0, 0.0]
    for scores in replies_per_keyword:
        best = [max(b, 0.0 if s is None else s) for b, s in zip(best, scores)]
    return best


def official_cvad_auc(gt_arr, video_scores):
    """The official AUC: labels cut to each video's score length, all concatenated, ROC
    curve and trapezoid area (sklearn.metrics.roc_curve + auc)."""
    from sklearn import metrics as skm

    labels = np.concatenate([gt[:len(s)] for gt, s in zip(gt_arr, video_scores)])
    fpr, tpr, _ = skm.roc_curve(labels, np.concatenate(video_scores), pos_label=1)
    return skm.auc(fpr, tpr)


def official_heat(grids, size=224):
    """functions/attn_func.py winclip_attention: each scale's (rows, cols) window scores
    upsampled bilinearly (align_corners=False) to 224x224, averaged, min-max normalised."""
    import torch
    import torch.nn.functional as F

    ups = [F.interpolate(torch.tensor(g, dtype=torch.float32).view(1, 1, *g.shape),
                         size=(size, size), mode="bilinear").squeeze(0) for g in grids]
    avg = (sum(ups) / len(ups)).squeeze(0).numpy()
    return (avg - avg.min()) / (avg.max() - avg.min())


def official_patches(image240, kernel):
    """split_one_image_with_unfold without the resizes: F.unfold with stride = kernel."""
    import torch
    import torch.nn.functional as F

    t = torch.tensor(image240, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)
    p = F.unfold(t, kernel_size=(kernel, kernel), stride=(kernel, kernel))
    return p.permute(0, 2, 1).reshape(-1, 3, kernel, kernel).permute(0, 2, 3, 1).numpy()


def official_class_softmax(window_emb, text_emb, type_id):
    """patch_similarity with class_adaption: cosine (classes x windows), softmax over the
    classes (dim 0, no logit scale), the row of the asked type."""
    img = window_emb / np.linalg.norm(window_emb, axis=1, keepdims=True)
    txt = text_emb / np.linalg.norm(text_emb, axis=1, keepdims=True)
    sim = txt @ img.T
    e = np.exp(sim - sim.max(axis=0, keepdims=True))
    return (e / e.sum(axis=0, keepdims=True))[type_id]


def official_grid_window(frame_sims):
    """grid_func.patch_selection: per window (scales small, mid, large in order) the max
    similarity over the 4 frames, then argmax over windows."""
    max_arr = [np.max(frame_sims[:, w]) for w in range(frame_sims.shape[1])]
    return int(np.argmax(np.array(max_arr)))


def official_key_and_context(similarity, clip_length):
    """key_func.KFS.key_frame_selection_clip_grouping on one segment's similarities."""
    max_idx = int(np.argmax(similarity))
    group_len = clip_length // 4
    d = max_idx % group_len
    return max_idx, [d, group_len + d, group_len * 2 + d, group_len * 3 + d]


@pytest.mark.parametrize("sigma", [15, 2.3, 0.7])
def test_official_fusion_matches_the_official_evaluation(sigma):
    rng = np.random.default_rng(1)
    views = [rng.random((s, 3)) for s in (5, 9, 3)]
    weights = (0.5, 0.35, 0.15)  # asymmetric: swapped weights would show
    ours = np.concatenate(aa.official_fusion(views, 24, weights, sigma))
    np.testing.assert_allclose(ours, official_eval_scores(views, 24, *weights, sigma), atol=1e-5)
    # vadnb's own per-video scores: on one video of whole segments the very same shape
    # (min-max is the only difference, and it is an affine map: same AUC)
    one = aa.fused_frame_scores(aa.fuse(*views[1].T, weights), 9 * 24, 24, sigma)
    np.testing.assert_allclose(aa.minmax(one), official_eval_scores([views[1]], 24, *weights,
                                                                    sigma), atol=1e-5)


def _detection_from_views(name, views, num_frames, length=24, prompts=("x",), parsed=None):
    from vadnb.detect import Detection

    rows = []
    for p, prompt in enumerate(prompts):
        for s, (k, w, t) in enumerate(views[p]):
            ok = parsed[p][s] if parsed is not None else (True, True, True)
            rows.append({"start_frame": s * length, "prompt": prompt, "score_key": k,
                         "score_position": w, "score_temporal": t, "parsed_key": ok[0],
                         "parsed_position": ok[1], "parsed_temporal": ok[2]})
    return Detection(video=f"{name}.mp4", method="anyanomaly", profile="scripted",
                     frame_scores=np.zeros(num_frames), fps=24.0, segments=pd.DataFrame(rows),
                     extras={"config": {"segment_length": length, "weights": (0.6, 0.3, 0.1),
                                        "sigma": 15.0}})


def test_official_frame_scores_take_the_max_per_view_over_keywords():
    rng = np.random.default_rng(2)
    dets, expected_views = {}, []
    for v, n in enumerate((100, 72)):  # 100 frames: 4 whole segments and a short fifth
        s = -(-n // 24)
        views = rng.random((2, s, 3))
        parsed = rng.random((2, s, 3)) > 0.2
        dets[f"v{v}"] = _detection_from_views(f"v{v}", views, n, prompts=("a", "b"),
                                              parsed=parsed.tolist())
        per_seg = [official_segment_max([[views[p, i, j] if parsed[p, i, j] else None
                                          for j in range(3)] for p in range(2)])
                   for i in range(n // 24)]
        expected_views.append(per_seg)
    got = aa.official_frame_scores(dets)
    assert [len(x) for x in got.values()] == [96, 72]  # whole segments only
    want = official_eval_scores(expected_views, 24, 0.6, 0.3, 0.1, 15)
    np.testing.assert_allclose(np.concatenate(list(got.values())), want, atol=1e-5)


def test_cvad_metric_matches_the_official_auc_and_counts_other_types_as_negatives():
    from vadnb.metrics import cvad_auc, per_class

    rng = np.random.default_rng(3)
    names = ["01_0014", "01_0015", "01_0016", "01_0025", "02_0128"]
    lengths = [120, 97, 150, 80, 110]
    car = {n: np.zeros(k, np.uint8) for n, k in zip(names, lengths)}
    car["01_0014"][30:70] = 1
    car["01_0016"][10:40] = 1
    # 01_0025 holds a bicycle: 0 in the car labels, but the detector fires on it a bit
    scores = {n: rng.random(k // 24 * 24) * 0.5 for n, k in zip(names, lengths)}
    for n in ("01_0014", "01_0016"):
        scores[n][np.flatnonzero(car[n][:len(scores[n])])] += 0.4
    scores["01_0025"][20:60] += 0.3
    ours = cvad_auc(car, scores, trim_labels=True)
    want = official_cvad_auc([car[n] for n in names], [scores[n] for n in names])
    assert ours == pytest.approx(want, abs=1e-5)
    # the multi-type videos are left out
    ours_wo = cvad_auc(car, scores, multi_type_videos=["02_0128"], trim_labels=True)
    keep = [n for n in names if n != "02_0128"]
    assert ours_wo == pytest.approx(official_cvad_auc([car[n] for n in keep],
                                                      [scores[n] for n in keep]), abs=1e-5)
    # the old per-class protocol (class videos + "normal" videos) drops the bicycle video
    # from the negatives' mix differently and gives another number
    classes = {"01_0014": "car", "01_0016": "car", "01_0015": "Normal", "02_0128": "Normal",
               "01_0025": "bicycle"}
    trimmed = {n: car[n][:len(scores[n])] for n in names}
    old = per_class(trimmed, scores, classes).set_index("class").loc["car", "auc"]
    assert abs(old - want) > 1e-3
    with pytest.raises(ValueError, match="every test video"):
        cvad_auc(car, {n: scores[n] for n in names[:3]}, trim_labels=True)


def test_cvad_table_averages_the_types():
    from vadnb.metrics import cvad_auc, cvad_table

    rng = np.random.default_rng(4)
    names = ["a", "b", "c"]
    labels = {t: {n: (rng.random(48) > 0.7).astype(np.uint8) for n in names}
              for t in ("car", "running")}
    scores = {t: {n: rng.random(48) for n in names} for t in labels}
    table = cvad_table(labels, scores)
    assert table["type"].tolist() == ["car", "running", "mean"]
    for t in ("car", "running"):
        assert table.set_index("type").loc[t, "auc"] == pytest.approx(
            cvad_auc(labels[t], scores[t]))
    assert table["auc"].iloc[-1] == pytest.approx(table["auc"].iloc[:2].mean())


@pytest.mark.parametrize("dataset", ["shanghaitech", "avenue"])
def test_heat_map_matches_the_official_aggregation(dataset):
    rng = np.random.default_rng(5)
    # config.py: lge/mid/sml sizes, shtech 120/80/48, avenue 240/80/48 (stride = size)
    sizes = {"shanghaitech": (48, 80, 120), "avenue": (48, 80, 240)}[dataset]
    assert aa.Config.for_dataset(dataset).window_sizes == sizes
    boxes = aa.window_boxes(240, sizes)
    grids = [(240 - w) // w + 1 for w in sizes]  # official calculate_patches
    assert [int((boxes.scale == i).sum()) for i in range(3)] == [g * g for g in grids]
    scores = rng.random(len(boxes))
    cut = np.cumsum([0] + [g * g for g in grids])
    official = official_heat([scores[cut[i]:cut[i + 1]].reshape(g, g)
                              for i, g in enumerate(grids)])
    np.testing.assert_allclose(aa.heat_map(scores, boxes, 224, 224), official, atol=1e-5)


def test_windows_are_cut_from_the_official_bilinear_resize():
    import cv2

    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (90, 160, 3)).astype(np.uint8)  # not 240 x 240
    boxes = aa.window_boxes(240, (48, 80, 240))
    official = cv2.resize(image, (240, 240))  # attn_func / grid_func: cv2's default, bilinear
    ours = aa.cut_windows(image, boxes, 240)
    for crop, b in zip(ours, boxes.itertuples()):
        np.testing.assert_array_equal(crop, official[b.y0:b.y1, b.x0:b.x1])
    from vadnb.anyanomaly.views import window
    np.testing.assert_array_equal(window([image], (48, 0, 96, 48), 240), official[0:48, 48:96])
    area = aa.cut_windows(image, boxes, 240, resize="area")
    assert not np.array_equal(area[0], ours[0])  # the option differs
    with pytest.raises(ValueError, match="window_resize"):
        aa.cut_windows(image, boxes, 240, resize="cubic")


def test_windows_and_position_softmax_match_the_official_patches():
    rng = np.random.default_rng(6)
    image = rng.integers(0, 255, (240, 240, 3)).astype(np.uint8)
    boxes = aa.window_boxes(240, (48, 80, 120))
    crops = aa.cut_windows(image, boxes, 240)
    start = 0
    for scale, k in enumerate((48, 80, 120)):
        patches = official_patches(image, k)
        ours = np.stack(crops[start:start + len(patches)])
        np.testing.assert_array_equal(ours, patches.astype(np.uint8))  # same windows, same order
        start += len(patches)
    win = rng.normal(size=(len(boxes), 16))
    text = rng.normal(size=(4, 16))
    text_n = text / np.linalg.norm(text, axis=1, keepdims=True)
    win_n = win / np.linalg.norm(win, axis=1, keepdims=True)
    for type_id in range(4):
        np.testing.assert_allclose(aa.window_probabilities(win_n, text_n, 1.0)[:, type_id],
                                   official_class_softmax(win, text, type_id), atol=1e-5)


def test_grid_window_and_key_frames_match_the_official_choice():
    rng = np.random.default_rng(7)
    for _ in range(20):
        sims = rng.normal(size=(4, 38))
        assert aa.best_window(sims) == official_grid_window(sims)
    for length in (24, 72):
        frame_emb = rng.normal(size=(length * 3, 8))
        frame_emb /= np.linalg.norm(frame_emb, axis=1, keepdims=True)
        text = rng.normal(size=(1, 8))
        text /= np.linalg.norm(text)
        bounds = aa.segment_bounds(len(frame_emb), length)
        keys = aa.select_key_frames(frame_emb, text, bounds)
        cfg = aa.Config(segment_length=length)
        for s, (a, b) in enumerate(bounds):
            key, ctx = official_key_and_context((text @ frame_emb[a:b].T)[0], length)
            assert keys[0, s] == a + key
            assert aa.context_frames(int(keys[0, s]), int(a), int(b), 4,
                                     cfg.spacing).tolist() == [a + c for c in ctx]


def test_no_per_video_normalisation_by_default():
    # a normal video whose scores wobble between 0.1 and 0.2 keeps them: per-video min-max
    # would stretch that wobble to [0, 1] and rank it above a real anomaly elsewhere
    assert aa.Config().normalise is False
    normal = aa.fused_frame_scores([0.1, 0.2, 0.1, 0.2], 96, 24, sigma=15)
    assert normal.max() <= 0.2 + 1e-12 and normal.min() >= 0.1 - 1e-12
    from vadnb.metrics import cvad_auc

    rng = np.random.default_rng(8)
    labels, scores = {}, {}
    for v in range(6):
        segs = 0.05 + 0.1 * rng.random(10)
        y = np.zeros(240, np.uint8)
        if v < 2:
            segs[4:6] = 0.9
            y[96:144] = 1
        labels[f"v{v}"], scores[f"v{v}"] = y, aa.fused_frame_scores(segs, 240, 24, 15)
    ours = cvad_auc(labels, scores)
    per_video = cvad_auc(labels, {k: aa.minmax(s) for k, s in scores.items()})
    assert ours > 0.97 and per_video < ours - 0.05


def test_memory_stays_flat_as_the_video_grows(tmp_path, fresh_cache, monkeypatch):
    """Key and context frames are streamed a few segments at a time (issue 15): the peak
    traced memory of a run on a 3x longer video stays close to the short one's. Measured with
    the runtime's frame store off (``FRAME_BUDGET = 0``, as a machine short of memory sets
    it): the frames it keeps for later stages (issue 22) grow with the video up to its byte
    budget (tests/test_runtime.py checks that bound)."""
    import tracemalloc

    import vadnb.metrics  # noqa: F401  (imported outside the traced runs)
    from vadnb import runtime
    from vadnb.video import probe

    monkeypatch.setattr(runtime, "FRAME_BUDGET", 0)

    peaks = []
    for n in (96, 288):
        # frames big enough that holding them would dwarf the runtime's per-request records
        path = write_planted_video(tmp_path / f"v{n}.avi", num_frames=n, size=(384, 288),
                                   red_frames=range(48, 60), box=(60, 12, 84, 36))
        probe(path, cache=fresh_cache)
        tracemalloc.start()
        aa.run(path, backends={"clip": red_clip(), "vlm": red_vlm()}, cache=fresh_cache,
               prompts=["a red square"], clip_batch_size=8, progress=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    frame = 384 * 288 * 3
    # holding every key/context frame at once would add 4 frames per segment for 8 more
    # segments (32 frames); streamed, the long run needs about what the short one does
    assert peaks[1] < peaks[0] + 8 * frame, [p / 1e6 for p in peaks]


def test_perfect_perception_runs_the_real_logic(planted, fresh_cache):
    from vadnb.data import Benchmark
    from vadnb.metrics import cvad_auc

    path, labels = planted
    table = pd.DataFrame([{"name": "planted", "path": str(path), "split": "test",
                           "label": "Red", "is_anomalous": True, "num_frames": 240,
                           "fps": 24.0}])
    bench = Benchmark("planted", path.parent, table, {"planted": labels}, ["Red"])
    cfg = aa.Config(sigma=0)
    oracle = aa.oracle_backends(bench, {"Red": "a red square"}, cfg)
    det = aa.run(path, config=cfg, backends=oracle, cache=fresh_cache,
                 prompts=["a red square", "a dog"], progress=False)
    seg = det.segments.set_index(["prompt", "start_frame"])
    # the oracle's answers follow the truth in every view, for the asked description only
    for view in ("score_key", "score_position", "score_temporal"):
        assert seg.loc[("a red square", 120), view] == 1.0
        assert seg.loc[("a red square", 48), view] == 0.0
        assert seg.loc[("a dog", 120), view] == 0.0
    assert det.extras["parse_failures"] == 0
    assert cvad_auc({"planted": labels}, {"planted": det.frame_scores}) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no description"):
        aa.oracle_backends(bench, {}, cfg)


# --------------------------------------------------------------------------- the core, the runtime


def echo_vlm() -> ScriptedVLM:
    """A VLM double whose reason says how long the prompt it was sent was."""
    return ScriptedVLM(lambda images, prompt: f"Score: 0.5. Reason: asked {len(prompt)} chars",
                       name="echo-vlm")


def test_editing_the_prompt_code_asks_the_vlm_again(planted, fresh_cache, monkeypatch):
    """Cache keys come from what is sent: a changed prompt function (where the pipeline
    is defined, ``anyanomaly.prompts.build_prompt``) re-asks and gets new replies; the
    unchanged CLIP requests are all read back."""
    from vadnb.anyanomaly import prompts

    path, _ = planted
    b = {"clip": red_clip(), "vlm": echo_vlm()}
    det = aa.run(path, backends=b, cache=fresh_cache, prompts=["a red square"])
    n = len(aa.build_prompt("a red square", "key"))
    assert set(det.segments.reason_key) == {f"asked {n} chars"}
    original = prompts.build_prompt
    monkeypatch.setattr(prompts, "build_prompt", lambda *a: original(*a) + " Be brief.")
    again = aa.run(path, backends=b, cache=fresh_cache, prompts=["a red square"])
    calls = again.model_calls.set_index("role")
    assert calls.loc["vlm", "items"] == 30 and calls.loc["vlm", "cached"] == 0
    assert calls.loc["clip", "items"] == 0
    assert set(again.segments.reason_key) == {f"asked {n + 10} chars"}


def test_editing_a_view_recipe_asks_the_vlm_again(planted, fresh_cache, monkeypatch):
    """The masked frame is keyed by its recipe, the operation's code included: a new
    operation re-asks the batches holding a masked frame, and nothing else is re-read."""
    from vadnb.anyanomaly import views

    path, _ = planted
    b = {"clip": red_clip(), "vlm": red_vlm()}
    aa.run(path, backends=b, cache=fresh_cache, prompts=["a red square"])
    original = views.masked

    def masked(images, scores, window_sizes, stride, size):  # a darker masked frame
        return original(images, scores, window_sizes, stride, size) // 2

    monkeypatch.setattr(views, "masked", masked)
    again = aa.run(path, backends=b, cache=fresh_cache, prompts=["a red square"])
    calls = again.model_calls.set_index("role")
    assert calls.loc["vlm", "items"] == 30 and calls.loc["clip", "items"] == 0


def test_core_reads_as_numbered_steps():
    """core.py is the paper's algorithm in about 250 lines; its pipeline's steps are
    numbered 1, 2, 3, ... in order, and it holds no cache keys or frame streams."""
    import inspect
    import re

    from vadnb.anyanomaly import core

    text = inspect.getsource(core)
    assert len(text.splitlines()) <= 250
    steps = [int(n) for n in re.findall(r"^    # (\d+)\. ", inspect.getsource(core.pipeline),
                                        flags=re.MULTILINE)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 8
    for plumbing in ("get_cache", "make_key", "iter_frames", "read_frames", "models.load(",
                     "_VERSION", "Roles("):
        assert plumbing not in text


# --------------------------------------------------------------------------- run() as a whole


class RecordingVLM(ScriptedVLM):
    """A VLM double that records every request: its images, prompt and generate settings."""

    def __init__(self, fn):
        super().__init__(fn, name="recording-vlm")
        self.sent: list[tuple[list[np.ndarray], str, dict]] = []

    def batch(self, requests, **generate):
        requests = list(requests)
        self.sent += [([np.asarray(i) for i in ims], p, dict(generate)) for ims, p in requests]
        return super().batch(requests, **generate)


def brightness_clip() -> ScriptedClip:
    """CLIP double: an image's similarity to the keyword grows with its brightness; the
    keyword, a competitor and anything else are three directions."""
    def image_fn(img):
        m = float(np.asarray(img, np.float64).mean()) / 255
        return np.array([m, 0.5, 1.0 - m])

    def text_fn(text):
        return np.eye(3)[0 if "a bright bar" in text else 1 if "a dog" in text else 2]

    return ScriptedClip(image_fn, text_fn, name="brightness-clip")


def vlm_reply(images, prompt):
    """Key frames answer their frame code's last digit; other views their mean brightness."""
    from vadnb.video import read_frame_code

    img = images[0]
    value = (read_frame_code(img) % 10) / 10 if img.shape[:2] == (64, 96) else img.mean() / 255
    return f"**Output**: {value:.3f}. The bar row 2 is lit."


def official_transcription(frames, cfg, sim, win_sim, heat_probs):
    """The official per-video computation (vad_proposed_Qwen_vllm.py, main + evaluate_auc) on
    decoded ``frames``: per 24-frame clip the key frame (key_func.KFS: CLIP argmax), the four
    context frames ``key % 6 + {0, 6, 12, 18}``, the best window over those four frames
    (grid_func.patch_selection: max over frames, argmax over windows); replies read by
    utils.extract_score; scores repeated over the clip, fused a*key + b*wa + g*tc,
    gaussian_filter1d, min-max (eval_func._calculate_auc)."""
    import re

    from scipy.ndimage import gaussian_filter1d

    def extract_score(text):  # utils.extract_score
        m = re.search(r'(\d+(\.\d+)?)', text)
        return float(m.group(0)) if m else 0.0

    out = []
    for s in range(len(frames) // 24):
        clip = range(24 * s, 24 * s + 24)
        key = clip[int(np.argmax([sim(frames[i]) for i in clip]))]
        ctx = [clip[(key - clip[0]) % 6 + 6 * k] for k in range(4)]
        best = int(np.argmax(np.max([win_sim(frames[i]) for i in ctx], axis=0)))
        out.append((key, ctx, best, heat_probs(frames[key])))
    return out, extract_score, gaussian_filter1d


def test_run_as_a_whole_matches_the_official_pipeline(tmp_path, fresh_cache):
    import cv2

    from vadnb.anyanomaly.views import masked
    from vadnb.video import read_frame_code, read_frames, write_test_video

    path = write_test_video(tmp_path / "bars.mp4", num_frames=96, fps=24, size=(96, 64))
    frames = read_frames(path).images
    cfg = aa.Config(prompts=["a bright bar"], templates=("{}",), normal_class=None,
                    other_classes=("a dog",), softmax_scale=1.0)  # the official text side
    clip, vlm = brightness_clip(), RecordingVLM(vlm_reply)
    det = aa.run(path, config=cfg, backends={"clip": clip, "vlm": vlm}, cache=fresh_cache)

    boxes = aa.window_boxes(240, cfg.window_sizes)
    text = clip.encode_text(["a bright bar", "a dog"])

    def windows(f):  # attn_func / grid_func: cv2.resize to 240 (bilinear), unfold
        sq = cv2.resize(f, (240, 240))
        return clip.encode_image([sq[b.y0:b.y1, b.x0:b.x1] for b in boxes.itertuples()])

    def heat_probs(f):  # attn_func: softmax over the types of the cosines at scale 1
        logits = windows(f) @ text.T
        return (np.exp(logits) / np.exp(logits).sum(1, keepdims=True))[:, 0]

    plan, extract_score, gaussian = official_transcription(
        frames, cfg, lambda f: clip.encode_image([f])[0] @ text[0],
        lambda f: windows(f) @ text[0], heat_probs)
    # the window was found in a context frame other than the key frame somewhere
    key_only = [int(np.argmax(windows(frames[k]) @ text[0])) for k, _, _, _ in plan]
    assert key_only != [best for _, _, best, _ in plan]

    # what the VLM was sent: three asks per clip, word for word, with the official decoding
    key_prompt = OFFICIAL_KEY.replace("a fall", "a bright bar")
    assert len(vlm.sent) == 12
    for s, (key, ctx, best, probs) in enumerate(plan):
        (k_img,), k_prompt, gen = vlm.sent[3 * s]
        (m_img,), m_prompt, _ = vlm.sent[3 * s + 1]
        (g_img,), g_prompt, _ = vlm.sent[3 * s + 2]
        assert (k_prompt, m_prompt, g_prompt) == (key_prompt, key_prompt,
                                                   official_grid_prompt(key_prompt))
        assert gen == {"max_new_tokens": 50, "temperature": 0.1, "top_p": 0.001,
                       "repetition_penalty": 1.05, "system": "You are a vision anomaly detector."}
        assert read_frame_code(k_img) == key
        np.testing.assert_allclose(det.extras["window_scores"]["a bright bar"][s], probs,
                                   atol=1e-5)
        np.testing.assert_array_equal(m_img, masked([frames[key]], tuple(probs),
                                                     cfg.window_sizes, None, 240))
        expected = aa.grid_image([frames[i] for i in ctx], boxes.iloc[best], 240, cfg.grid_cell)
        np.testing.assert_array_equal(g_img, expected)

    # the final frame scores: the official fusion of the parsed replies, up to min-max
    per_view = np.array([[extract_score(vlm_reply([img], "")) for (img,), _, _ in vlm.sent[i:i + 3]]
                         for i in range(0, 12, 3)])  # [clips, 3]
    assert per_view[:, 0].tolist() == [(k % 10) / 10 for k, *_ in plan]
    a, b, g = 0.6, 0.3, 0.1  # the official untuned defaults (--alpha --beta --gamma)
    fused = np.repeat(a * per_view[:, 0] + b * per_view[:, 1] + g * per_view[:, 2], 24)
    official = gaussian(fused, 15)  # --sigma 15
    mm = lambda x: (x - x.min()) / (x.max() - x.min())  # noqa: E731
    np.testing.assert_allclose(mm(det.frame_scores), mm(official), atol=1e-6)


def test_decoding_settings_are_keyed_and_reach_the_backends():
    from vadnb.models.hf import _generate_kwargs, vlm_messages
    from vadnb.models.served import ServedVLM
    from vadnb.runtime import Ask, _generate_kwargs as runtime_kwargs, request_key

    img = np.zeros((4, 4, 3), np.uint8)
    plain = Ask((img,), "q", 50, 0.1)
    # an Ask at the neutral settings keeps the key it had before they existed
    from vadnb.cache import make_key
    from vadnb.runtime import image_key
    old = make_key({"model": "m", "kind": "Ask", "images": [image_key(img)], "prompt": "q",
                    "max_new_tokens": 50, "temperature": 0.1, "max_pixels": None})
    assert request_key("m", plain) == old
    keys = {request_key("m", a) for a in (plain, Ask((img,), "q", 50, 0.1, top_p=0.001),
                                           Ask((img,), "q", 50, 0.1, repetition_penalty=1.05),
                                           Ask((img,), "q", 50, 0.1, system="S"))}
    assert len(keys) == 4
    full = Ask((img,), "q", 50, 0.1, top_p=0.001, repetition_penalty=1.05, system="S")
    assert runtime_kwargs(full) == {"max_new_tokens": 50, "temperature": 0.1, "top_p": 0.001,
                                    "repetition_penalty": 1.05, "system": "S"}
    assert runtime_kwargs(plain) == {"max_new_tokens": 50, "temperature": 0.1}
    gen = _generate_kwargs(50, 0.1, 0.001, None, 1.05)
    assert gen["repetition_penalty"] == 1.05 and gen["top_p"] == 0.001 and gen["do_sample"]
    assert vlm_messages([{"type": "image"}], "q", "S")[0] == {"role": "system", "content": "S"}
    served = ServedVLM.__new__(ServedVLM)
    served.max_pixels, served.image_format = 448 * 448, "jpeg"
    assert served.message([], "q", system="S")[0] == {"role": "system", "content": "S"}


def test_key_frame_ties_go_to_the_earliest_frame_as_the_official_argmax():
    # key_func.KFS: np.argmax over the clip's similarities, i.e. the first of equal maxima
    frame_emb = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0],
                          [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    keys = aa.select_key_frames(frame_emb, np.array([[1.0, 0.0]]), aa.segment_bounds(8, 4))
    assert keys.tolist() == [[1, 4]]


def test_each_description_gets_its_own_heat_map(tmp_path, fresh_cache):
    # attn_func: the heat map is the softmax column of the description asked about
    from vadnb.video import write_test_video

    path = write_test_video(tmp_path / "bars.mp4", num_frames=48, fps=24, size=(96, 64))
    cfg = aa.Config(prompts=["a bright bar", "a dog"], templates=("{}",), normal_class=None,
                    softmax_scale=1.0)
    det = aa.run(path, config=cfg, backends={"clip": brightness_clip(),
                                             "vlm": RecordingVLM(vlm_reply)}, cache=fresh_cache)
    ws = det.extras["window_scores"]
    np.testing.assert_allclose(ws["a dog"], 1 - ws["a bright bar"], atol=1e-6)
    assert not np.allclose(ws["a dog"], ws["a bright bar"])
