import math
import re

import numpy as np
import pytest

from vadnb import stages


def test_centre_frames_and_windows():
    assert stages.centre_frames(40, 16).tolist() == [0, 16, 32]
    with pytest.raises(ValueError, match="0 frames"):
        stages.centre_frames(0)
    # 10 s at 10 fps around frame 100 of 300: frames 50..150, 10 samples evenly
    w = stages.window_frames_closed(100, 300, fps=10, window_s=10, n=10)
    assert w[0] == 50 and w[-1] == 150 and len(w) == 10
    assert w.tolist() == np.linspace(50, 150, 10).round().astype(int).tolist()
    # clipped at the start, not shifted
    assert stages.window_frames_closed(0, 300, fps=30).tolist()[0] == 0
    assert stages.window_frames_closed(0, 300, fps=30).tolist()[-1] == 150
    assert stages.window_frames_closed(290, 300, fps=30)[-1] == 299


def test_knn_softmax_by_hand():
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    values = np.array([0.0, 1.0, 0.5])
    q = np.array([[1.0, 0.0]])
    refined, idx, w = stages.knn_softmax(q, keys, values, k=2, temperature=1.0)
    # nearest: key 0 (sim 1), then key 2 (sim 0.7071)
    assert idx.tolist() == [[0, 2]]
    e = np.exp([1.0, math.sqrt(0.5)])
    expect_w = e / e.sum()
    assert w[0] == pytest.approx(expect_w)
    assert refined[0] == pytest.approx(expect_w[0] * 0.0 + expect_w[1] * 0.5)
    # a low temperature approaches the nearest neighbour's value
    sharp, _, _ = stages.knn_softmax(q, keys, values, k=3, temperature=0.01)
    assert sharp[0] == pytest.approx(0.0, abs=1e-6)
    # k larger than the number of keys is clipped
    _, idx, _ = stages.knn_softmax(q, keys, values, k=10)
    assert idx.shape == (1, 3)


def reference_knn(q, keys, values, k, temperature):
    """The computation written the slow way: full float64 similarity matrix, stable sort."""
    sims = np.asarray(q, float) @ np.asarray(keys, float).T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(sims, idx, axis=1) / temperature
    w = np.exp(top - top.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    return (w * np.asarray(values)[idx]).sum(axis=1), idx, w


@pytest.mark.parametrize("k, block", [(1, 1 << 23), (3, 7), (10, 50), (40, 1 << 23)])
def test_knn_softmax_top_k_by_blocks_equals_a_full_sort(k, block):
    rng = np.random.default_rng(k)
    # small integers: every similarity is exact in float32, and many are tied, so the
    # tie order (lower index first) is checked too
    keys = rng.integers(-2, 3, size=(40, 6)).astype(float)
    keys[5] = keys[3]
    keys[17] = keys[3]
    q = np.vstack([rng.integers(-2, 3, size=(25, 6)), keys[3:4], keys[3:4]])
    values = rng.random(40)
    refined, idx, w = stages.knn_softmax(q, keys, values, k=k, temperature=3.0,
                                         block_elements=block)
    r_ref, i_ref, w_ref = reference_knn(q, keys, values, k, 3.0)
    np.testing.assert_array_equal(idx, i_ref)
    np.testing.assert_allclose(w, w_ref, atol=1e-5)
    np.testing.assert_allclose(refined, r_ref, atol=1e-5)


def test_knn_softmax_does_not_sort_whole_rows(monkeypatch):
    """Top-k is a selection: np.argsort over the full rows must not be called."""
    rng = np.random.default_rng(0)
    calls = []
    real = np.argsort
    monkeypatch.setattr(np, "argsort", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    stages.knn_softmax(rng.normal(size=(200, 4)), rng.normal(size=(300, 4)), rng.random(300),
                       k=10)
    assert calls == []


def test_gaussian_kernel_and_smoothing():
    g = stages.gaussian_kernel(15, 10)
    assert len(g) == 15 and g.sum() == pytest.approx(1.0) and g[7] == g.max()
    assert g[0] == pytest.approx(g[14])
    # a constant sequence stays constant (reflect padding, normalised kernel)
    assert np.allclose(stages.gaussian_smooth(np.full(7, 0.3), sigma=10, taps=15), 0.3)
    # an impulse in the middle spreads as the kernel itself
    x = np.zeros(31)
    x[15] = 1.0
    y = stages.gaussian_smooth(x, sigma=2, taps=7)
    assert y[12:19] == pytest.approx(stages.gaussian_kernel(7, 2))
    assert y.sum() == pytest.approx(1.0)


def test_interpolate_missing():
    filled, n = stages.interpolate_missing([None, 0.2, None, 0.6, float("nan")])
    assert n == 3
    assert filled.tolist() == pytest.approx([0.2, 0.2, 0.4, 0.6, 0.6])
    filled, n = stages.interpolate_missing([None, None])
    assert n == 2 and filled.tolist() == [0.5, 0.5]


@pytest.mark.parametrize("reply, expected", [
    ("[0.7]", 0.7),
    ("Answer: [ 0.3 ]", 0.3),
    ("I would say [0.8, 0.2]", None),  # a list of two is not an answer (official: -1)
    ("From [0, 0.1, 0.2, ..., 1.0] I pick [0.7]", 0.7),  # the echoed candidates are skipped
    ("Sure! Based on the description:\n\n[0.6]", 0.6),
    ("[.5]", 0.5),
    ("[1]", 1.0),
    ("Score is [7] out of 10 ... final [0.9]", 0.9),
    ("0.7", None),
    ("", None),
    ("[high]", None),
])
def test_parse_bracket_score(reply, expected):
    assert stages.parse_bracket_score(reply) == expected


@pytest.mark.parametrize("reply, expected", [
    ("Score: 0.8 because a van is on the grass", 0.8),
    ("8/10, a person is falling", 0.8),
    ("I think 80%", 0.8),
    ("Step 3: the score is 0.25", 0.25),
    ("none", None),
])
def test_parse_first_number(reply, expected):
    assert stages.parse_first_number(reply) == pytest.approx(expected) if expected else (
        stages.parse_first_number(reply) is None)


@pytest.mark.parametrize("reply, expected", [
    ("Reasoning... Output: 1", 1),
    ("Output:0", 0),
    ("The answer is 1.", 1),
    ("Yes, there is a fight", 1),
    ("no.", 0),
    ("Output: maybe", None),
    ("", None),
])
def test_parse_binary_label(reply, expected):
    assert stages.parse_binary_label(reply) == expected


def test_parse_log_counts_and_keeps_examples():
    log = stages.ParseLog()
    for reply in ["[0.1]", "nonsense", "[0.5]", "??"]:
        log.record(reply, stages.parse_bracket_score(reply))
    assert (log.total, log.failed) == (4, 2)
    assert log.examples == ["nonsense", "??"]
    assert log.summary() == "2 of 4 replies unparseable"


def test_parse_log_counts_truncated_replies_apart_from_unparseable_ones():
    from vadnb.models.base import Reply

    log = stages.ParseLog()
    log.record(Reply("[0.7]", truncated=False), 0.7)
    log.record(Reply("Let me think about the sce", truncated=True), None)   # cut, lost
    log.record(Reply("[0.2] because the people walk", truncated=True), 0.2)  # cut, still read
    log.record("no number at all", None)                                  # plain str: not cut
    log.record("cached text", 0.5, truncated=True)                        # flag kept by a cache
    assert (log.total, log.failed, log.truncated, log.truncated_failed) == (5, 2, 3, 1)
    assert log.summary() == ("2 of 5 replies unparseable; 3 cut at the token budget "
                             "(1 of them unparseable)")


def test_reply_is_a_str_that_keeps_its_flags():
    import pickle

    from vadnb.models.base import Reply, is_truncated

    r = Reply("[0.3]", truncated=True, num_tokens=12)
    assert r == "[0.3]" and isinstance(r, str) and is_truncated(r) and r.num_tokens == 12
    assert not is_truncated("[0.3]")
    back = pickle.loads(pickle.dumps(r))
    assert back.truncated and back.num_tokens == 12 and back == r


def test_differences_render_as_one_markdown_table_row_each():
    diffs = [stages.Difference("captions only at centre frames", "16x less work",
                               "none: identical output"),
             stages.Difference("greedy decoding | no sampling", "reproducible", "not measured",
                               flag="temperature=0.6")]
    text = stages.differences_markdown(diffs, title="LAVAD")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 3  # header + one row per difference
    assert "greedy decoding \\| no sampling" in text and "`temperature=0.6`" in text


def test_differences_table_keeps_four_columns_when_cells_hold_pipes_and_newlines():
    diffs = [stages.Difference("a | b", "line one\nline two", "x|y",
                               flag="video_clip='imagebind' | 'pairs'"),
             stages.Difference("plain", "why", "none")]
    text = stages.differences_markdown(diffs)
    lines = text.splitlines()
    assert len(lines) == 4  # header, rule, two rows: no cell's newline split a row
    for line in lines:
        # a column border is a pipe not preceded by a backslash; 4 columns -> 5 borders
        assert len(re.findall(r"(?<!\\)\|", line)) == 5, line
    assert "`video_clip='imagebind' \\| 'pairs'`" in lines[2]
