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
