"""The classical baseline: facts per frame, robust scoring, a planted anomaly recovered."""

import av
import numpy as np
import pandas as pd
import pytest

import vadnb
from vadnb import baseline, metrics

FPS = 10
N = 150
ANOMALY = (80, 115)  # a car crosses in these frames (inclusive)


def _scene(path):
    """A textured fixed-camera scene, three slow walkers; a big fast 'car' in ANOMALY."""
    rng = np.random.default_rng(0)
    background = (rng.integers(90, 140, (240, 320, 3))).astype(np.uint8)
    background = np.repeat(np.repeat(background[::8, ::8], 8, 0), 8, 1)[:240, :320]
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
    stream.options = {"crf": "18"}
    for t in range(N):
        img = background.copy()
        for k, (x0, y) in enumerate([(20, 60), (150, 120), (260, 180)]):
            x = int(x0 + (t * (1 + k % 2)) % 40)  # walkers, 1-2 px per frame
            img[y : y + 28, x : x + 10] = (40 + 60 * k, 30, 160)
        if ANOMALY[0] <= t <= ANOMALY[1]:
            x = (t - ANOMALY[0]) * 9  # the car, 9 px per frame, 70x36 px
            img[150:186, x : x + 70] = (220, 220, 40)
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    labels = np.zeros(N, dtype=np.uint8)
    labels[ANOMALY[0] : ANOMALY[1] + 1] = 1
    return labels


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("classical") / "scene.mp4"
    return path, _scene(path)


def test_facts_see_the_car(scene):
    path, labels = scene
    facts = baseline.frame_facts(path)
    assert list(facts["frame"]) == list(range(N))
    inside = facts[labels == 1]
    outside = facts[(labels == 0) & (facts["frame"] > 30)]
    assert inside["blob_area"].median() > 3 * outside["blob_area"].median()
    assert inside["speed"].median() > 2 * outside["speed"].median()


def test_planted_car_is_recovered_and_explained(scene, fresh_cache):
    path, labels = scene
    det = vadnb.detect(path, method="classical", cache=fresh_cache)
    assert det.method == "classical" and not det.meaningless
    assert len(det.frame_scores) == N
    assert metrics.frame_auc(labels, det.frame_scores) > 0.95
    peak = int(np.argmax(det.frame_scores))
    assert ANOMALY[0] <= peak <= ANOMALY[1] + 5
    text = det.explanation_at(peak)
    assert "large moving object" in text or "faster" in text, text
    assert det.explanation_at(40) == "nothing stands out from normal footage"
    # the second run reads the facts from the cache
    before = fresh_cache.hits
    again = vadnb.detect(path, method="classical", cache=fresh_cache)
    assert fresh_cache.hits == before + 1
    np.testing.assert_array_equal(again.frame_scores, det.frame_scores)


def test_reference_statistics_by_hand():
    facts = pd.DataFrame({f: [1.0, 2.0, 3.0, 4.0, 100.0] for f in baseline.FACTS})
    ref = baseline.fit_reference(facts)
    assert ref.loc["speed", "median"] == 3.0
    # MAD of [2, 1, 0, 1, 97] is 1; times 1.4826
    assert ref.loc["speed", "spread"] == pytest.approx(1.4826)
    flat = pd.DataFrame({f: [0.0] * 5 for f in baseline.FACTS})
    assert (baseline.fit_reference(flat)["spread"] > 0).all()  # never divide by zero


def test_missing_video_is_a_clear_error(tmp_path):
    with pytest.raises(vadnb.VideoError, match="not found"):
        vadnb.detect(tmp_path / "nope.mp4", method="classical")


def test_a_foreign_facts_entry_is_named_and_recomputed(scene, fresh_cache):
    """A whole cache file with the wrong columns (issue 21): named, removed, recomputed,
    not a pandas KeyError that names no entry."""
    from dataclasses import asdict

    import cv2

    from vadnb.cache import CacheWarning, file_digest, make_key

    path, _ = scene
    parts = {"video": file_digest(path), "config": asdict(baseline.Config()),
             "opencv": cv2.__version__}
    fresh_cache.put("classical.facts", parts, {"x": np.arange(4.0)})
    entry = fresh_cache.path("classical.facts", make_key(parts))
    with pytest.warns(CacheWarning, match=f"{entry.name}.*does not hold what stage "
                                          "'classical.facts' stores"):
        det = baseline.run(path, cache=fresh_cache)
    assert det.num_frames == N and fresh_cache.damaged == [entry]


def test_frame_views_are_what_the_facts_measure(scene):
    """The teaching views (notebook 80) show exactly the pixels each fact is computed from."""
    path, _ = scene
    facts = baseline.frame_facts(path).set_index("frame")
    asked = [0, 95, 40]
    views = baseline.frame_views(path, asked)
    assert sorted(views) == sorted(asked)
    car = views[95]
    assert car["frame"].shape == (240, 320, 3)  # the working width (320) keeps 320x240
    assert car["moving"].mean() == pytest.approx(facts.loc[95, "fg_area"])
    assert car["still_change"].mean() == pytest.approx(facts.loc[95, "static_area"])
    moving_speeds = car["speed"][car["speed"] > 0]
    assert np.percentile(moving_speeds, 95) == pytest.approx(facts.loc[95, "speed"], rel=0.05)
    assert not views[0]["speed"].any()  # no previous frame: no flow
    with pytest.raises(ValueError, match=r"frames \[999\] are not in .*scene.mp4"):
        baseline.frame_views(path, [999])


def test_fact_zscores_by_hand():
    facts = pd.DataFrame({f: [3.0, 3.0 + 2 * 1.4826, 0.0, 3.0 + 1.4826] for f in baseline.FACTS})
    ref = pd.DataFrame({"median": 3.0, "spread": 1.4826}, index=list(baseline.FACTS))
    z = baseline.fact_zscores(facts, ref)
    np.testing.assert_allclose(z[:, 0], [0.0, 2.0, 0.0, 1.0])  # below normal clips to 0
    faded = baseline.fact_zscores(facts, ref, warmup_frames=3)
    np.testing.assert_allclose(faded[:, 0], [0.0, 1.0, 0.0, 1.0])  # ramp 0, 0.5, 1 then full


def test_score_steps_end_in_the_detections_scores(scene, fresh_cache):
    path, _ = scene
    steps = baseline.score_steps(path, cache=fresh_cache)
    det = vadnb.detect(path, method="classical", cache=fresh_cache)
    np.testing.assert_allclose(steps["score"], det.frame_scores, atol=1e-6)
    z = steps[[f"z {f}" for f in baseline.FACTS]].to_numpy()
    np.testing.assert_array_equal(steps["max z"], z.max(axis=1))
    np.testing.assert_allclose(steps["raw"], 1 - np.exp(-steps["max z"] / baseline.Config().z_scale))
