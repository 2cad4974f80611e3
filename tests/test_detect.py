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
    # the cpu profile has a real LLM but random image models: its scores mean nothing too
    assert _detection("cpu").meaningless


def test_every_profile_with_a_tiny_image_model_is_flagged():
    from vadnb.models import model_spec
    from vadnb.models.profiles import MEANINGLESS_PROFILES, PROFILES

    for profile in PROFILES:
        if profile == "auto":
            continue
        tiny_roles = [r for r in ("captioner", "vlm", "clip", "embedder")
                      if model_spec(r, profile).model.startswith("tiny:")]
        assert bool(tiny_roles) == (profile in MEANINGLESS_PROFILES), (profile, tiny_roles)


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


# --- inputs are checked before any model loads; secrets are never saved (issue 15) ----------

from pathlib import Path  # noqa: E402

from vadnb import models  # noqa: E402

CAMPUS_VIDEO = sorted((Path(__file__).resolve().parents[1] / "data" / "campus" / "videos")
                      .glob("*.mp4"))[0]


@pytest.fixture
def no_loads():
    models.reset_load_stats()
    yield
    assert models.load_stats().empty, "a model was loaded before the input was checked"


@pytest.mark.parametrize("video, error, message", [
    (None, TypeError, "needs a video.*got None"),
    (123, TypeError, "needs a video path.*got int 123"),
    ("https://me:pw@example.com/clip.mp4", vadnb.VideoError, "is a URL; vadnb reads local files"),
])
def test_detect_refuses_what_is_not_a_video_path(video, error, message, no_loads):
    with pytest.raises(error, match=message) as err:
        vadnb.detect(video, method="vera")
    assert ":pw@" not in str(err.value)


def test_detect_refuses_folders_and_files_that_are_not_videos(tmp_path, no_loads):
    folder = tmp_path / "not_frames"
    folder.mkdir()
    (folder / "notes.txt").write_text("no frames here")
    with pytest.raises(vadnb.VideoError, match="not_frames"):
        vadnb.detect(folder, method="vera")
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is text, not a video")
    with pytest.raises(vadnb.VideoError, match="fake.mp4"):
        vadnb.detect(fake, method="lavad")
    with pytest.raises(vadnb.VideoError, match="video not found"):
        vadnb.detect(tmp_path / "missing.mp4", method="anyanomaly", prompts=["a fall"])


def test_detect_refuses_absurd_settings_before_any_model_loads(no_loads):
    with pytest.raises(TypeError, match=r"unknown vera setting\(s\) \['size'\]"):
        vadnb.detect(CAMPUS_VIDEO, method="vera", size=(100_000, 100_000))
    with pytest.raises(ValueError, match=r"Config.image_size must be in \[16, 4096\], got 100000"):
        vadnb.detect(CAMPUS_VIDEO, method="vera", image_size=100_000)
    with pytest.raises(ValueError, match="timeout_s apply to served models only"):
        vadnb.detect(CAMPUS_VIDEO, method="lavad", timeout_s=5)


def test_detect_passes_served_options_to_the_served_models(monkeypatch):
    from vadnb import lavad

    seen = {}

    def fake_run(video, *, profile=None, backends=None, **overrides):
        seen.update(backends=backends, overrides=overrides)
        return "ran"

    monkeypatch.setattr(lavad, "run", fake_run)
    spec = "openai:Qwen/Qwen2.5-3B-Instruct@http://me:pw@127.0.0.1:9/v1"
    assert vadnb.detect(CAMPUS_VIDEO, method="lavad", llm_model=spec, timeout_s=7,
                        max_retries=1, api_key="k") == "ran"
    llm = seen["backends"]["llm"]
    assert (llm.timeout_s, llm.max_retries, llm._headers["Authorization"]) == (7.0, 1, "Bearer k")
    assert seen["overrides"]["llm_model"] == spec and llm.released


def test_saved_detections_never_hold_a_url_password(tmp_path):
    d = _detection()
    d.extras["config"] = {"llm_model": "openai:m@http://me:s3cret@gpu-box:8000/v1", "stride": 16}
    d.save(tmp_path / "det")
    text = (tmp_path / "det" / "detection.json").read_text()
    assert "s3cret" not in text and "me:***@gpu-box" in text


# --- issue 21: a saved detection is exactly itself, its text exact, its secrets absent -------

import json  # noqa: E402

from vadnb.models.base import Reply  # noqa: E402


def test_saving_into_a_used_folder_leaves_exactly_this_detection(tmp_path):
    folder = tmp_path / "det"
    clip = _detection()
    clip.method = "anomalyclip"
    clip.extras["class_probs"] = np.full((20, 3), 0.5, np.float32)
    clip.save(folder)
    (folder / "my_notes.txt").write_text("keep me")  # not a Detection's file
    classical = Detection(video="clip.mp4", method="classical", profile="tiny",
                          frame_scores=np.zeros(20), fps=10.0, segments=_detection().segments,
                          extras={"reference": "self"})
    classical.save(folder)
    back = Detection.load(folder)
    assert back.method == "classical" and set(back.extras) == {"reference"}
    assert sorted(p.name for p in folder.iterdir()) == [
        "detection.json", "frame_scores.npy", "model_calls.csv", "my_notes.txt", "segments.csv"]
    assert (folder / "my_notes.txt").read_text() == "keep me"


def test_text_comes_back_exactly_and_missing_stays_missing(tmp_path):
    words = ["None", "N/A", "NaN", "null", "NA", "0.5", "007", " padded ", "a, \"quoted\"\nline"]
    d = _detection()
    d.segments = pd.DataFrame({"start_frame": range(11), "end_frame": range(1, 12),
                               "centre_frame": range(11), "score": np.linspace(0, 1, 11),
                               "explanation": words + ["", None]})
    d.save(tmp_path / "det")
    back = Detection.load(tmp_path / "det").segments
    assert back["explanation"].tolist()[:9] == words
    assert back["explanation"].iloc[9:].isna().all()  # empty and missing: missing
    np.testing.assert_allclose(back["score"], np.linspace(0, 1, 11))
    assert back["start_frame"].dtype.kind == "i"


def test_a_reply_cut_inside_an_emoji_is_repaired_where_it_enters(tmp_path):
    cut = Reply("a fight \ud83d", truncated=True)  # half a surrogate pair
    assert cut == "a fight \ufffd" and cut.truncated
    assert Reply("ok \ud83d\ude00") == "ok \U0001F600"  # a whole pair is joined, not replaced
    d = _detection()
    d.segments["explanation"] = [cut, "calm"]  # with the surrogate, pandas' string column fails
    d.save(tmp_path / "det")
    assert Detection.load(tmp_path / "det").segments["explanation"].tolist() == [
        "a fight \ufffd", "calm"]


SECRETS = ["p@ss/w:rd", "ss/w:rd", "k3y-s3cret"]


def test_a_url_password_is_in_no_saved_file_and_not_in_the_extras(tmp_path):
    spec = "openai:m@http://me:p@ss/w:rd@gpu-box:8000/v1?api_key=k3y-s3cret"
    d = _detection()
    d = Detection(video=d.video, method="lavad", profile="tiny", frame_scores=d.frame_scores,
                  fps=10.0, segments=d.segments,
                  extras={"config": {"llm_model": spec, "stride": 16}})
    shown = repr(d.extras)  # what notebook 40 prints
    assert "gpu-box:8000" in shown and not any(s in shown for s in SECRETS)
    d.extras["examples"] = [f"asked {spec}"]  # set after construction: save masks it too
    d.save(tmp_path / "det")
    for path in (tmp_path / "det").iterdir():
        data = path.read_bytes()
        assert not any(s.encode() in data for s in SECRETS), path.name
    meta = json.loads((tmp_path / "det" / "detection.json").read_text())
    assert meta["extras"]["config"]["llm_model"] == \
        "openai:m@http://me:***@gpu-box:8000/v1?api_key=***"
