import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from vadnb import metrics


def _videos(seed=0):
    rng = np.random.default_rng(seed)
    labels = {"a": np.r_[np.zeros(30), np.ones(10), np.zeros(5)].astype(int),
              "b": np.zeros(20, dtype=int),
              "c": np.r_[np.ones(7), np.zeros(13)].astype(int)}
    scores = {k: rng.random(len(v)) + 0.5 * v for k, v in labels.items()}
    return labels, scores


def test_micro_auc_ap_match_sklearn_on_concatenation():
    labels, scores = _videos()
    y = np.concatenate(list(labels.values()))
    s = np.concatenate(list(scores.values()))
    assert metrics.frame_auc(labels, scores) == pytest.approx(roc_auc_score(y, s))
    assert metrics.frame_ap(labels, scores) == pytest.approx(average_precision_score(y, s))
    # list input and single-array input give the same numbers
    assert metrics.frame_auc(list(labels.values()), list(scores.values())) == pytest.approx(
        roc_auc_score(y, s))
    assert metrics.frame_ap(y, s) == pytest.approx(average_precision_score(y, s))


def test_micro_differs_from_mean_of_per_video():
    """The protocol is micro: a per-video average would give a different number."""
    labels, scores = _videos(3)
    table = metrics.per_video(labels, scores)
    assert np.isnan(table.set_index("video").loc["b", "auc"])  # one class only
    assert table["frames"].tolist() == [45, 20, 20]
    assert metrics.frame_auc(labels, scores) != pytest.approx(table["auc"].mean())


def test_length_mismatch_names_the_video():
    labels, scores = _videos()
    scores["c"] = scores["c"][:-1]
    with pytest.raises(ValueError, match="c: 20 frame labels but 19 frame scores"):
        metrics.frame_auc(labels, scores)


def test_single_class_is_a_clear_error():
    with pytest.raises(ValueError, match="all 5 labels are normal"):
        metrics.frame_auc(np.zeros(5), np.arange(5.0))
    with pytest.raises(ValueError, match="NaN"):
        metrics.frame_ap(np.array([0, 1]), np.array([0.1, np.nan]))


def test_per_class_uses_each_class_plus_all_normals():
    labels = {"n1": np.zeros(10, int), "v1": np.r_[np.zeros(5), np.ones(5)].astype(int),
              "r1": np.r_[np.ones(4), np.zeros(6)].astype(int)}
    scores = {"n1": np.full(10, 0.2), "v1": np.r_[np.full(5, 0.1), np.full(5, 0.9)],
              "r1": np.r_[np.full(4, 0.1), np.full(6, 0.5)]}
    classes = {"n1": "Normal", "v1": "Vehicle", "r1": "Running"}
    table = metrics.per_class(labels, scores, classes).set_index("class")
    y = np.r_[labels["v1"], labels["n1"]]
    s = np.r_[scores["v1"], scores["n1"]]
    assert table.loc["Vehicle", "auc"] == pytest.approx(roc_auc_score(y, s)) == 1.0
    y = np.r_[labels["r1"], labels["n1"]]
    s = np.r_[scores["r1"], scores["n1"]]
    assert table.loc["Running", "auc"] == pytest.approx(roc_auc_score(y, s))
    assert table.loc["Running", "auc"] < 0.5


def test_segments_to_frames_fixed_length_cut_and_pad():
    out = metrics.segments_to_frames([0.1, 0.5, 0.9], num_frames=40, segment_length=16)
    assert len(out) == 40
    assert (out[:16] == 0.1).all() and (out[16:32] == 0.5).all() and (out[32:] == 0.9).all()
    # 3 segments of 16 = 48 frames > 40: cut; 3 segments for 50 frames: pad with the last
    padded = metrics.segments_to_frames([0.1, 0.5, 0.9], num_frames=50, segment_length=16)
    assert (padded[48:] == 0.9).all() and len(padded) == 50


def test_segments_to_frames_with_starts():
    out = metrics.segments_to_frames([1, 2, 3], num_frames=10, starts=[2, 5, 6])
    assert out.tolist() == [1, 1, 1, 1, 1, 2, 3, 3, 3, 3]
    with pytest.raises(ValueError, match="increasing"):
        metrics.segments_to_frames([1, 2], num_frames=10, starts=[5, 5])
    with pytest.raises(ValueError, match="exactly one"):
        metrics.segments_to_frames([1], num_frames=10)


# --- AP as the benchmarks report it, and inputs that must not be guessed (issues 12, 15) ---

def official_pr_auc(y, s):
    """A transcription of LAVAD's src/eval.py (and XD-Violence's evaluation): the PR curve
    at every distinct score, closed by the point (recall 0, precision 1), integrated with
    the trapezoid rule over recall. Written out by hand, without scikit-learn."""
    y = np.asarray(y, dtype=float)
    s = np.asarray(s, dtype=float)
    precision, recall = [1.0], [0.0]
    for t in np.unique(s)[::-1]:  # thresholds from high to low
        flagged = s >= t
        tp = float(y[flagged].sum())
        precision.append(tp / flagged.sum())
        recall.append(tp / y.sum())
    p, r = np.array(precision), np.array(recall)
    return float(np.sum((r[1:] - r[:-1]) * (p[1:] + p[:-1]) / 2))


def tied_scores(seed):
    """Labels and scores on LAVAD's 11-value grid, so many scores are tied."""
    rng = np.random.default_rng(seed)
    y = (rng.random(400) < 0.2).astype(int)
    s = np.clip(np.round(rng.normal(0.3 + 0.3 * y, 0.2), 1), 0, 1)
    return y, s


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trapezoid_ap_matches_the_official_evaluation(seed):
    y, s = tied_scores(seed)
    labels = {"a": y[:250], "b": y[250:]}
    scores = {"a": s[:250], "b": s[250:]}
    assert metrics.frame_ap(labels, scores, variant="trapezoid") == pytest.approx(
        official_pr_auc(y, s), abs=1e-5)
    assert metrics.frame_ap(labels, scores) == pytest.approx(average_precision_score(y, s))


def test_the_two_ap_variants_differ_on_tied_scores():
    """Why tables must say which AP they show: with 11 score values the two differ."""
    gaps = [metrics.frame_ap(*tied_scores(seed), variant="trapezoid")
            - metrics.frame_ap(*tied_scores(seed)) for seed in range(3)]
    assert min(gaps) > 0.01
    # without ties (continuous scores) they nearly agree
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.3).astype(int)
    s = rng.random(2000) + 0.4 * y
    assert abs(metrics.frame_ap(y, s, "trapezoid") - metrics.frame_ap(y, s)) < 0.01


def test_ap_variant_is_named_and_checked():
    assert metrics.REPORTED_AP["xd-violence"] == "trapezoid"
    assert "trapezoid" in metrics.ap_name("trapezoid") and "scikit" in metrics.ap_name()
    with pytest.raises(ValueError, match="trapezoid"):
        metrics.frame_ap(np.r_[0, 1], np.r_[0.1, 0.9], variant="11-point")
    labels, scores = _videos()
    table = metrics.per_video(labels, scores, variant="trapezoid")
    y, s = labels["a"], scores["a"]
    assert table.set_index("video").loc["a", "ap"] == pytest.approx(official_pr_auc(y, s))


def test_soft_labels_are_refused_not_cast():
    y = np.r_[0.0, 0.7, 1.0, 0.0]
    s = np.r_[0.1, 0.8, 0.9, 0.2]
    with pytest.raises(ValueError, match=r"0 \(normal\) or 1 \(anomalous\).*0.7"):
        metrics.frame_auc(y, s)
    with pytest.raises(ValueError, match="clip_b"):
        metrics.frame_ap({"clip_a": np.r_[0, 1], "clip_b": np.r_[2, 0]},
                         {"clip_a": np.r_[0.1, 0.9], "clip_b": np.r_[0.5, 0.5]})
    # float and bool labels that are 0/1 are fine
    assert metrics.frame_auc(np.r_[0.0, 1.0, 1.0, 0.0], s) == 1.0
    assert metrics.frame_auc(np.r_[False, True, True, False], s) == 1.0


def test_a_dict_of_labels_is_never_paired_by_position():
    labels = {"b": np.r_[1, 1, 0, 0], "a": np.r_[0, 0, 1, 1]}
    scores = [np.r_[0.0, 0.0, 0.9, 0.9], np.r_[0.9, 0.9, 0.0, 0.0]]  # for a, then b
    with pytest.raises(TypeError, match="paired by name"):
        metrics.frame_auc(labels, scores)
    with pytest.raises(TypeError, match="paired by name"):
        metrics.frame_ap(list(labels.values()), dict(zip("ab", scores)))
    # by name it is perfect
    assert metrics.frame_auc(labels, dict(zip("ab", scores))) == 1.0
