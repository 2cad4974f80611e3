"""VERA: verbalized learning picks questions on validation only; inference steps by hand."""

from __future__ import annotations

import json
import math
import re

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import vadnb
from vadnb import vera
from vadnb.cache import Cache
from vadnb.models.scripted import ScriptedEmbedder, ScriptedVLM

# ---------------------------------------------------------------------------------------
# generated videos: a grey level names the video; a red square marks the anomaly
# ---------------------------------------------------------------------------------------


def _write(path, frames, fps=10.0):
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert out.isOpened()
    for rgb in frames:
        out.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out.release()
    return str(path)


def _grey_video(path, vid, n=12):
    """Video number ``vid`` has grey level 20 + 25 * vid in every frame."""
    return _write(path, [np.full((32, 32, 3), 20 + 25 * vid, np.uint8)] * n)


def _video_id(images):
    return int(round((np.mean(images[0]) - 20) / 25))


def _is_optimizer(prompt):
    return "New Prompt Questions" in prompt


class CountingVLM(ScriptedVLM):
    """A scripted VLM that counts batched calls and can crash at a given call."""

    def __init__(self, fn, crash_at=None):
        super().__init__(fn, name="double-vlm")
        self.batches = 0
        self.optimizer_calls = 0
        self.crash_at = crash_at

    def batch(self, requests, **generate):
        if self.crash_at is not None and self.batches == self.crash_at:
            raise RuntimeError("simulated crash (GPU lost)")
        out = super().batch(requests, **generate)
        self.batches += 1
        self.optimizer_calls += sum(_is_optimizer(p) for _, p in requests)
        return out


# The story of the optimizer double: Q0 -> P1 -> MAGIC -> WORSE -> gibberish (WORSE is kept).
Q0 = ["Is anything odd?"]
P1 = ["Is someone walking?"]
MAGIC = ["Is there a magic sign of trouble?", "Is the scene calm?"]
WORSE = ["Is there anything at all in view?"]
NEXT = {tuple(Q0): P1, tuple(P1): MAGIC, tuple(MAGIC): WORSE}


def _asked(prompt):
    """The questions listed in a learner or optimizer prompt."""
    return [m.group(1) for m in re.finditer(r"^\d+\. (.+)$", prompt, re.M)]


def _story_fn(truth):
    """Learner: right only with MAGIC, says 1 for everything with WORSE, else 0."""

    def fn(images, prompt):
        questions = _asked(prompt)
        if _is_optimizer(prompt):
            nxt = NEXT.get(tuple(questions))
            if nxt is None:
                return "New Prompt Questions: \n1. ##@@ \n2. a"  # gibberish: unreadable
            return "Here you go.\nNew Prompt Questions:\n" + "\n".join(
                f"{i}. {q}" for i, q in enumerate(nxt, 1))
        vid = _video_id(images)
        if questions == MAGIC:
            return f"Reasoning... Output: {truth[vid]}"
        if questions == WORSE:
            return "Everything looks suspicious. Output: 1"
        return "Looks calm. Output: 0"

    return fn


@pytest.fixture(scope="module")
def split_videos(tmp_path_factory):
    """4 training videos (all anomalous) and 3 validation videos (2 normal, 1 anomalous)."""
    d = tmp_path_factory.mktemp("vera-videos")
    truth = {0: 1, 1: 1, 2: 1, 3: 1, 4: 0, 5: 0, 6: 1}
    paths = {v: _grey_video(d / f"v{v}.avi", v) for v in truth}
    train = pd.DataFrame({"path": [paths[v] for v in range(4)], "split": "train",
                          "is_anomalous": [bool(truth[v]) for v in range(4)]})
    val = pd.DataFrame({"path": [paths[v] for v in (4, 5, 6)], "split": "val",
                        "label": ["Normal", "Normal", "Fighting"]})
    return train, val, truth


def _learn(train, val, truth, cache, vlm=None, **kw):
    vlm = vlm or CountingVLM(_story_fn(truth))
    kw = {"steps": 4, "image_size": 32, "questions": Q0, **kw}
    return vera.learn_questions(train, val, backends={"vlm": vlm}, cache=cache, **kw), vlm


# ---------------------------------------------------------------------------------------
# verbalized learning
# ---------------------------------------------------------------------------------------


def test_loop_finds_and_keeps_the_magic_questions(split_videos, tmp_path):
    train, val, truth = split_videos
    result, vlm = _learn(train, val, truth, Cache(tmp_path))
    h = result.history
    assert list(h["step"]) == [0, 1, 2, 3, 4]
    assert list(map(list, h["questions"])) == [Q0, P1, MAGIC, WORSE, WORSE]
    assert list(h["source"]) == ["initial", "optimizer", "optimizer", "optimizer",
                                 "kept (optimizer reply unreadable)"]
    # training videos are all anomalous: "always 0" is 0 % right, MAGIC and "always 1" 100 %
    np.testing.assert_allclose(h["train_acc"][:4], [0, 0, 1, 1])
    assert math.isnan(h["train_acc"][4])
    # validation: 2 normal + 1 anomalous
    np.testing.assert_allclose(h["val_acc"], [2 / 3, 2 / 3, 1, 1 / 3, 1 / 3])
    assert list(h["chosen"]) == [False, False, True, False, False]
    assert result.questions == MAGIC and result.best_step == 2 and result.best_val_acc == 1
    assert result.optimizer_parse.failed == 1 and result.optimizer_parse.total == 4
    # 4 steps: one learner batch + one optimizer call each, plus 5 validations
    # (WORSE is validated twice but asked once: the second time is a cache hit)
    assert vlm.optimizer_calls == 4 and vlm.batches == 4 + 4 + 4


def test_plot_history_draws_validated_steps_and_the_chosen_star(split_videos, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    train, val, truth = split_videos
    result, _ = _learn(train, val, truth, Cache(tmp_path), validate_every=2)
    fig = vera.plot_history(result.history, warning="tiny: meaningless")
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    # validated at steps 0, 2 and the final step 4; MAGIC (step 2) is the star
    assert list(lines["validation accuracy"].get_xdata()) == [0, 2, 4]
    np.testing.assert_allclose(lines["validation accuracy"].get_ydata(), [2 / 3, 1, 1 / 3])
    assert list(lines["chosen"].get_xdata()) == [2]
    assert any("meaningless" in t.get_text() for t in fig.axes[0].texts)


def test_validation_not_training_accuracy_drives_the_choice(split_videos, tmp_path):
    train, val, truth = split_videos
    fits_train = ["Does it look like the training videos?"]
    fits_val = ["Does it look like the validation videos?"]
    nxt = {tuple(Q0): fits_val, tuple(fits_val): fits_train, tuple(fits_train): fits_train}

    def fn(images, prompt):
        qs = _asked(prompt)
        if _is_optimizer(prompt):
            return "New Prompt Questions:\n" + "\n".join(
                f"{i}. {q}" for i, q in enumerate(nxt[tuple(qs)], 1))
        vid = _video_id(images)
        in_train = vid < 4
        right = (qs == fits_train) == in_train if qs != Q0 else False
        label = truth[vid] if right else 1 - truth[vid]
        return f"Output: {label}"

    result, _ = _learn(train, val, truth, Cache(tmp_path), vlm=CountingVLM(fn), steps=2)
    h = result.history
    assert list(map(list, h["questions"])) == [Q0, fits_val, fits_train]
    np.testing.assert_allclose(h["train_acc"][:2], [0, 0])
    np.testing.assert_allclose(h["val_acc"], [0, 1, 0])
    assert result.questions == fits_val  # a train-driven choice would have kept fits_train


def test_validate_every_skips_steps_but_always_scores_the_last(split_videos, tmp_path):
    train, val, truth = split_videos
    result, _ = _learn(train, val, truth, Cache(tmp_path), validate_every=3)
    h = result.history
    assert [not math.isnan(v) for v in h["val_acc"]] == [True, False, False, True, True]
    # MAGIC (step 2) was never validated, so it cannot be chosen
    assert result.best_step == 0 and result.questions == Q0


def test_test_videos_are_refused(split_videos, tmp_path):
    train, val, truth = split_videos
    leaked = val.assign(split="test")
    with pytest.raises(ValueError, match="test split"):
        _learn(train, leaked, truth, Cache(tmp_path))
    with pytest.raises(ValueError, match="test split"):
        _learn(train.assign(split="test"), val, truth, Cache(tmp_path))

    class Bench:  # anything with a .videos table, like vadnb.data.Benchmark
        videos = leaked

    with pytest.raises(ValueError, match="test split"):
        _learn(train, Bench(), truth, Cache(tmp_path))
    with pytest.raises(ValueError, match="both the training and the validation"):
        _learn(train, train.iloc[:1], truth, Cache(tmp_path))


def test_unreadable_learner_reply_counts_as_wrong(split_videos, tmp_path):
    train, val, truth = split_videos

    def fn(images, prompt):
        if _is_optimizer(prompt):
            return "no idea"
        vid = _video_id(images)
        return "I cannot tell." if truth[vid] == 0 else "Output: 1"

    result, _ = _learn(train, val, truth, Cache(tmp_path), vlm=CountingVLM(fn), steps=1)
    # val: the two normals are unreadable (wrong), the anomaly is right
    np.testing.assert_allclose(result.history["val_acc"], [1 / 3, 1 / 3])
    assert result.learner_parse.failed == 4  # 2 unreadable replies x 2 validations
    assert result.history["source"].iloc[1] == "kept (optimizer reply unreadable)"


def test_resume_after_interruption(split_videos, tmp_path):
    train, val, truth = split_videos
    whole, full = _learn(train, val, truth, Cache(tmp_path / "a"))
    crashing = CountingVLM(_story_fn(truth), crash_at=8)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _learn(train, val, truth, Cache(tmp_path / "b"), vlm=crashing)
    assert 0 < crashing.optimizer_calls < 4
    resumed, again = _learn(train, val, truth, Cache(tmp_path / "b"))
    # no finished step or validation is asked again
    assert again.batches + crashing.batches == full.batches
    assert again.optimizer_calls == 4 - crashing.optimizer_calls
    pd.testing.assert_frame_equal(resumed.history, whole.history)
    assert resumed.questions == MAGIC


def test_parse_questions():
    reply = ("Sure.\nNew Prompt Questions:\n1. Is anyone fighting here?\n2) **Is there fire "
             "or smoke?**\n3. Is anyone fighting here?\n4. ok\n5. Is a car on the pavement?\n"
             "6. Is someone lying on the ground?\n7. Is a bag left alone?\n8. Is a door forced?")
    assert vera.parse_questions(reply, max_questions=5) == [
        "Is anyone fighting here?", "Is there fire or smoke?", "Is a car on the pavement?",
        "Is someone lying on the ground?", "Is a bag left alone?"]
    assert vera.parse_questions("1. Is someone running fast?") == ["Is someone running fast?"]
    assert vera.parse_questions("New Prompt Questions: 1 2 3 zx") is None
    assert vera.parse_questions("") is None


def test_questions_json_round_trip_and_shipped_set(tmp_path):
    shipped = vera.default_questions()
    assert 3 <= len(shipped) <= 5 and all(q.endswith("?") for q in shipped)
    path = vera.save_questions(MAGIC, tmp_path / "q.json", val_acc=1.0, step=2)
    assert vera.load_questions(path) == MAGIC
    assert json.loads(path.read_text())["meta"] == {"val_acc": 1.0, "step": 2}
    (tmp_path / "list.json").write_text(json.dumps(P1))
    assert vera.load_questions(tmp_path / "list.json") == P1
    (tmp_path / "bad.json").write_text('{"qs": []}')
    with pytest.raises(ValueError, match="bad.json"):
        vera.load_questions(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="save_questions"):
        vera.load_questions(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------
# inference steps against hand computation
# ---------------------------------------------------------------------------------------


def test_retrieval_ensemble_by_hand():
    angles = np.array([0.0, 0.1, 0.5, 1.0, 1.2, 2.0, 3.0])
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 3.0  # not normalised on input
    scores = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    refined, n = vera.retrieval_ensemble(emb, scores, fraction=0.3, temperature=0.1)
    assert n == 2  # floor(0.3 * 7)
    # segment 0: itself (cos 0 = 1, score 1) and segment 1 (cos 0.1, score 0)
    w_self, w_other = math.exp(1 / 0.1), math.exp(math.cos(0.1) / 0.1)
    assert refined[0] == pytest.approx(w_self / (w_self + w_other))
    # segment 3: itself (score 0) and segment 4 (cos 0.2, score 0) -> 0
    assert refined[3] == pytest.approx(0.0)
    # segment 2: itself (score 1) and segment 1 (cos 0.4 beats segment 3's cos 0.5)
    w_self, w_other = math.exp(10), math.exp(10 * math.cos(0.4))
    assert refined[2] == pytest.approx(w_self / (w_self + w_other))
    assert vera.retrieval_ensemble(np.eye(6), np.ones(6))[1] == 1  # floor(0.9) -> at least 1
    assert vera.retrieval_ensemble(np.eye(20), np.ones(20))[1] == 3


def test_smoothing_by_hand():
    impulse = np.zeros(31)
    impulse[15] = 1.0
    out = vera.smooth_segments(impulse, taps=15, sigma=10.0)
    x = np.arange(-7, 8)
    g = np.exp(-0.5 * (x / 10.0) ** 2)
    np.testing.assert_allclose(out[8:23], g / g.sum())
    assert np.all(out[:8] == 0) and np.all(out[23:] == 0)
    np.testing.assert_allclose(vera.smooth_segments(np.full(9, 0.4)), 0.4)


def test_position_prior_formula():
    p = vera.position_prior(10)
    assert p[5] == pytest.approx(1.0)
    assert p[0] == pytest.approx(math.exp(-0.5))
    assert p[9] == pytest.approx(math.exp(-0.5 * (4 / 5) ** 2))
    assert vera.even_frame_indices(80, 8).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]


# ---------------------------------------------------------------------------------------
# inference on a planted anomaly
# ---------------------------------------------------------------------------------------

ANOMALY = (500, 700)  # frames [500, 700) of 1200 at 10 fps carry a red square


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = []
    for i in range(1200):
        f = np.full((32, 32, 3), 110, np.uint8) + rng.integers(0, 20, (32, 32, 3), dtype=np.uint8)
        if ANOMALY[0] <= i < ANOMALY[1]:
            f[4:28, 4:28] = (230, 20, 20)
        frames.append(f)
    labels = np.zeros(1200, np.uint8)
    labels[ANOMALY[0]:ANOMALY[1]] = 1
    return _write(tmp_path_factory.mktemp("vera-planted") / "planted.avi", frames), labels


def _red(image):
    return float(np.mean(image[..., 0].astype(int) - image[..., 1].astype(int) > 80))


def _seeing_vlm():
    """Says 1 when most of the window's frames show the red square."""
    def fn(images, prompt):
        assert "Output:" in prompt and "Is anyone hitting" in prompt
        share = np.mean([_red(im) > 0.3 for im in images])
        return f"Red fraction {share:.2f}. Output: {int(share >= 0.5)}"

    return CountingVLM(fn)


def _embedder():
    return ScriptedEmbedder(image_fn=lambda im: np.array([_red(im), 1 - _red(im), 0.1]),
                            name="double-embedder")


def test_planted_anomaly_is_recovered(planted, tmp_path):
    path, labels = planted
    vlm = _seeing_vlm()
    det = vadnb.detect(path, method="vera", backends={"vlm": vlm, "embedder": _embedder()},
                       cache=Cache(tmp_path), image_size=32)
    assert det.method == "vera" and det.profile == "scripted" and det.num_frames == 1200
    assert roc_auc_score(labels, det.frame_scores) >= 0.9
    seg = det.segments
    assert len(seg) == 75 and seg["start_frame"].tolist()[:3] == [0, 16, 32]
    assert seg["end_frame"].iloc[-1] == 1200
    np.testing.assert_allclose(seg["time_s"], seg["centre_frame"] / 10.0)
    # raw 0/1 answers: the segment centred at 600 says 1, the one at 96 says 0
    assert seg.loc[seg.centre_frame == 608, "raw_score"].item() == 1
    assert seg.loc[seg.centre_frame == 96, "raw_score"].item() == 0
    assert seg["explanation"].iloc[0].startswith("Red fraction")
    assert det.extras["neighbours"] == 11 and det.extras["unparseable"] == 0
    assert vlm.batches == math.ceil(75 / 8)
    # a re-run is served from the cache: no VLM call at all
    again = _seeing_vlm()
    det2 = vera.run(path, backends={"vlm": again, "embedder": _embedder()},
                    cache=Cache(tmp_path), image_size=32)
    assert again.batches == 0
    np.testing.assert_array_equal(det2.frame_scores, det.frame_scores)
    # other questions are other answers: asked again
    vera.run(path, backends={"vlm": vlm, "embedder": _embedder()}, cache=Cache(tmp_path),
             image_size=32, questions=["Is anyone hitting someone?"])
    assert vlm.batches == 2 * math.ceil(75 / 8)


def test_position_prior_is_optional_and_multiplies(planted, tmp_path):
    path, _ = planted
    kw = dict(backends={"vlm": _seeing_vlm(), "embedder": _embedder()},
              cache=Cache(tmp_path), image_size=32)
    plain = vera.run(path, **kw)
    prior = vera.run(path, position_prior=True, **kw)
    np.testing.assert_allclose(prior.frame_scores, plain.frame_scores * vera.position_prior(1200))
    assert plain.extras["position_prior"] is False


def test_unreadable_answers_are_filled_and_counted(planted, tmp_path):
    path, labels = planted

    def fn(images, prompt):
        share = np.mean([_red(im) > 0.3 for im in images])
        return "hmm" if share == 0.25 else f"Output: {int(share >= 0.5)}"

    det = vera.run(path, backends={"vlm": CountingVLM(fn), "embedder": _embedder()},
                   cache=Cache(tmp_path), image_size=32)
    n_bad = det.segments["raw_score"].isna().sum()
    assert n_bad > 0 and det.extras["unparseable"] == n_bad
    assert np.all(np.isfinite(det.frame_scores))
    with pytest.raises(TypeError, match="unknown VERA setting"):
        vera.run(path, backends={"vlm": CountingVLM(fn), "embedder": _embedder()}, stride_s=3)


# ---------------------------------------------------------------------------------------
# the tiny profile, end to end
# ---------------------------------------------------------------------------------------


def test_tiny_models_end_to_end(split_videos, planted, tmp_path):
    models = pytest.importorskip("vadnb.models")
    try:
        vlm = models.load("vlm", profile="tiny")
        embedder = models.load("embedder", profile="tiny")
    except (NotImplementedError, KeyError, ValueError) as err:  # pragma: no cover
        pytest.skip(f"tiny vlm/embedder not available yet: {err}")
    train, val, _ = split_videos
    result = vera.learn_questions(train.iloc[:2], val.iloc[:1], backends={"vlm": vlm},
                                  cache=Cache(tmp_path), steps=1, image_size=32,
                                  max_new_tokens=8)
    assert result.meaningless and len(result.history) == 2
    assert 1 <= len(result.questions) <= 5  # gibberish from a random model falls back
    path, _ = planted
    det = vera.run(path, backends={"vlm": vlm, "embedder": embedder}, cache=Cache(tmp_path),
                   image_size=32, stride=400, max_new_tokens=8, questions=result.questions)
    assert det.profile == "tiny" and det.meaningless and len(det.segments) == 3
    assert det.frame_scores.shape == (1200,) and np.all(np.isfinite(det.frame_scores))


def test_frame_stream_matches_read_frames_even_when_going_back(tmp_path):
    from vadnb.video import read_frames, write_test_video

    path = str(write_test_video(tmp_path / "codes.avi", num_frames=90, fps=25))
    stream = vera._FrameStream(path, np.arange(0, 90, 3), size=32, chunk=8)
    requests = [[0, 3, 9], [9, 30, 60], [63, 87], [6, 12]]  # the last one goes back
    for want in requests:
        expected = read_frames(path, indices=want, size=(32, 32)).images
        np.testing.assert_array_equal(np.stack(stream.get(want)), expected)
    assert min(stream._buffer) >= 6  # frames behind the last request were dropped


def test_each_epoch_sees_every_training_video_once():
    batches = vera._batches(5, vera.Config(batch_size=2, seed=3), steps=6)
    assert [len(b) for b in batches] == [2, 2, 1, 2, 2, 1]
    assert sorted(np.concatenate(batches[:3])) == [0, 1, 2, 3, 4]
    assert sorted(np.concatenate(batches[3:])) == [0, 1, 2, 3, 4]
    assert vera._batches(5, vera.Config(batch_size=2, seed=3), steps=6)[0].tolist() == \
        batches[0].tolist()  # the seed makes the order reproducible (and resumable)
