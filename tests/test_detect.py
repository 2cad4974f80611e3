import numpy as np
import pandas as pd
import pytest

import vadnb
from vadnb.detect import TINY_WARNING, Detection


def _detection(profile="tiny"):
    segments = pd.DataFrame({"start_frame": [0, 16], "end_frame": [16, 20],
                             "centre_frame": [0, 16], "time_s": [0.0, 1.6],
                             "score": [0.1, 0.9], "explanation": ["calm", "a van on the lawn"]})
    return Detection(video="clip.mp4", method="lavad", profile=profile,
                     frame_scores=np.r_[np.full(16, 0.1), np.full(4, 0.9)], fps=10.0,
                     segments=segments, extras={"parse_failures": 2, "arr": np.zeros(2)})


def test_tiny_detections_say_they_are_meaningless():
    d = _detection()
    assert d.meaningless and d.warning == TINY_WARNING and TINY_WARNING in repr(d)
    assert not _detection("colab").meaningless


def test_explanation_at_uses_containing_segment():
    d = _detection()
    assert d.explanation_at(3) == "calm"
    assert d.explanation_at(17) == "a van on the lawn"
    assert d.explanation_at(500) == "a van on the lawn"  # nearest centre past the end


def test_save_and_load_round_trip(tmp_path):
    d = _detection()
    d.save(tmp_path / "det")
    back = Detection.load(tmp_path / "det")
    np.testing.assert_allclose(back.frame_scores, d.frame_scores, rtol=1e-6)
    assert back.segments["explanation"].tolist() == ["calm", "a van on the lawn"]
    assert back.extras["parse_failures"] == 2
    np.testing.assert_array_equal(back.extras["arr"], np.zeros(2))  # arrays via extras.npz
    assert back.meaningless


def test_detect_rejects_unknown_method_and_missing_video(tmp_path):
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        vadnb.detect(tmp_path / "x.mp4", method="nope")
    with pytest.raises(vadnb.VideoError, match="video not found"):
        vadnb.detect(tmp_path / "missing.mp4", method="lavad")
