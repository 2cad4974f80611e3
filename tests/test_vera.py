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

    result, _ = _learn(train, val, truth, Cache(tmp_path), vlm=CountingVLM(fn), steps=1,
                       label_reading="tolerant")
    # val: the two normals are unreadable (wrong), the anomaly is right
    np.testing.assert_allclose(result.history["val_acc"], [1 / 3, 1 / 3])
    assert result.learner_parse.failed == 4  # 2 unreadable replies x 2 validations
    assert result.history["source"].iloc[1] == "kept (optimizer reply unreadable)"


def test_official_training_reads_unreadable_as_anomaly_and_0_after_the_last_output(
        split_videos, tmp_path):
    train, val, truth = split_videos

    def fn(images, prompt):
        if _is_optimizer(prompt):
            return "no idea"
        # normal videos: no '0' anywhere -> 1 (wrong); anomalies: a '0' before the last
        # 'Output' only -> 1 (right)
        return "I cannot tell." if truth[_video_id(images)] == 0 else "Output: 0\nOutput: 1"

    result, _ = _learn(train, val, truth, Cache(tmp_path), vlm=CountingVLM(fn), steps=1)
    np.testing.assert_allclose(result.history["val_acc"], [1 / 3, 1 / 3])
    assert result.learner_parse.failed == 0


@pytest.mark.parametrize("reply, inference, learning, tolerant", [
    ("Answers: nobody runs.\nOutput:\n0", 0, 0, 0),
    ("Answers: a fight.\nOutput: 1", 1, 1, 1),
    ("Answers: a fight.\nOutput: 1.", 0, 1, 1),       # the example
    ("Output: 1  \n", 1, 1, 1),                         # trailing space stripped
    ("Output: 0 ... Output: 1", 1, 1, 1),              # the last 'Output' counts
    ("Output: 1 ... Output: 0", 0, 0, 0),
    ("Output: [1]", 0, 1, 1),
    ("I cannot tell.", 0, 1, None),                   # unreadable: 0 / 1 / None
    ("Frame 10 shows nothing.", 0, 0, None),          # no 'Output': any '0' reads 0
    ("", 0, 1, None),
    ("output: 1", 1, 1, 1),                           # 'Output' is case-sensitive there
])
def test_label_readings_follow_the_official_rules(reply, inference, learning, tolerant):
    # Inference/generate_intial_score.py: 1 if response[-1] == '1' else 0
    assert vera.read_label(reply, "official", "inference") == inference
    # training.py: 0 if '0' in response.split('Output')[-1] else 1
    assert vera.read_label(reply, "official", "learning") == learning
    assert vera.read_label(reply, "tolerant", "inference") == tolerant
    with pytest.raises(ValueError, match="label reading"):
        vera.read_label(reply, "strict")


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
    out = vera.smooth_segments(impulse, taps=15, sigma=10.0, variant="centred")
    x = np.arange(-7, 8)
    g = np.exp(-0.5 * (x / 10.0) ** 2)
    np.testing.assert_allclose(out[8:23], g / g.sum())
    assert np.all(out[:8] == 0) and np.all(out[23:] == 0)
    np.testing.assert_allclose(vera.smooth_segments(np.full(9, 0.4), variant="centred"), 0.4)


def test_step3_defaults_are_the_official_kernel_and_rounding():
    cfg = vera.Config()
    assert (cfg.smoothing, cfg.round_decimals, cfg.smooth_taps, cfg.smooth_sigma,
            cfg.position_prior) == ("paper", 1, 15, 10.0, False)
    impulse = np.zeros(31)
    impulse[15] = 1.0
    # the default kernel, taps at linspace(-8, 7, 15): the impulse lands off-centre
    g = np.exp(-np.linspace(-8, 7, 15) ** 2 / 200.0)
    np.testing.assert_allclose(vera.smooth_segments(impulse)[8:23], g / g.sum())
    # zero padding: a constant video is pulled toward 0 at both ends
    flat = vera.smooth_segments(np.ones(30))
    assert flat[0] < 0.6 and flat[-1] < 0.6 and flat[15] == pytest.approx(1.0)


def test_rounding_is_numpys_as_in_the_official_round_of_a_float64():
    values = np.array([0.35, 0.45, 0.25, 0.849, 0.05])
    official = [round(np.float64(v), 1) for v in values]  # compute_auc.py: round(smoothed[i], 1)
    np.testing.assert_array_equal(vera.round_scores(values, 1), official)
    assert vera.round_scores(values, 1)[0] == 0.4  # Python's round(0.35, 1) is 0.3
    np.testing.assert_array_equal(vera.round_scores(values, None), values)


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


def test_an_interrupted_run_asks_only_the_unfinished_vlm_batches(planted, tmp_path):
    # 75 segments in VLM calls of vlm_batch_size=8: 10 calls; the 4th call crashes
    path, _ = planted
    crashing = _seeing_vlm()
    crashing.crash_at = 3
    with pytest.raises(RuntimeError, match="simulated crash"):
        vera.run(path, backends={"vlm": crashing, "embedder": _embedder()},
                 cache=Cache(tmp_path), image_size=32)
    assert crashing.batches == 3
    again = _seeing_vlm()
    resumed = vera.run(path, backends={"vlm": again, "embedder": _embedder()},
                       cache=Cache(tmp_path), image_size=32)
    assert again.batches == math.ceil(75 / 8) - 3  # the 3 answered calls were kept
    whole = vera.run(path, backends={"vlm": _seeing_vlm(), "embedder": _embedder()},
                     cache=Cache(tmp_path / "fresh"), image_size=32)
    np.testing.assert_array_equal(resumed.frame_scores, whole.frame_scores)


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
                   cache=Cache(tmp_path), image_size=32, label_reading="tolerant")
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


def test_window_frames_are_the_frames_read_at_image_size(tmp_path):
    """The runtime's resized frames are exactly what read_frames(size=...) returns."""
    from vadnb.runtime import Roles, Runtime
    from vadnb.video import read_frames

    rng = np.random.default_rng(0)
    path = _write(tmp_path / "noise.avi", [rng.integers(0, 255, (40, 56, 3), np.uint8)
                                           for _ in range(90)])
    rt = Runtime(Roles("tiny"), Cache(tmp_path / "c"))
    v = rt.video(path)
    cfg = vera.Config(image_size=32)
    window = vera.core.window(v, 45, cfg)
    expected = read_frames(path, indices=np.unique(vadnb.stages.window_frames_closed(
        45, 90, v.fps, cfg.window_s, cfg.window_frames)), size=(32, 32)).images
    np.testing.assert_array_equal(np.stack(rt.pixels(window)), expected)


def test_each_epoch_sees_every_training_video_once():
    batches = vera._batches(5, vera.Config(batch_size=2, seed=3), steps=6)
    assert [len(b) for b in batches] == [2, 2, 1, 2, 2, 1]
    assert sorted(np.concatenate(batches[:3])) == [0, 1, 2, 3, 4]
    assert sorted(np.concatenate(batches[3:])) == [0, 1, 2, 3, 4]
    assert vera._batches(5, vera.Config(batch_size=2, seed=3), steps=6)[0].tolist() == \
        batches[0].tolist()  # the seed makes the order reproducible (and resumable)


# ---------------------------------------------------------------------------------------
# prompts and parsing (issue 12)
# ---------------------------------------------------------------------------------------


def test_optimizer_prompt_has_the_official_structure():
    p = vera.optimizer_prompt(["Is anyone running?"], [0, None], [1, 0],
                              replies=None, frames_per_video=8, max_questions=5)
    order = ["optimizer", "** Inputs", "video 1: images 1-8", "video 2: images 9-16",
             "** Model description", "** Current Prompt Questions", "1. Is anyone running?",
             "** The model's predictions", "[0, ?]", "** The targets", "[1, 0]",
             "keep the current prompt questions", "Think step by step", "Reasoning:",
             "features you see in the videos", "New Prompt Questions:",
             "based on features seen in the input videos"]
    at = [p.find(piece) for piece in order]
    assert -1 not in at and at == sorted(at), dict(zip(order, at))
    assert "not about these videos" not in p and "Its reply" not in p
    shown = vera.optimizer_prompt(["Is anyone running?"], [0], [1], replies=["He walks. Output: 0"])
    assert "He walks." in shown
    learner = vera.learner_prompt(["Is anyone running?"], 8)
    assert "1. Is anyone running?" in learner and learner.rstrip().endswith("Write nothing else.")
    assert learner.index("Is anyone running?") < learner.index("Is there any anomaly")
    assert "New Prompt Questions" not in learner


@pytest.mark.parametrize("reply", [
    "New Prompt Questions:\n1. Is anyone running fast?\n2. Is a car on the path?",
    "New Prompt Questions:\n- Is anyone running fast?\n* Is a car on the path?",
    "New Prompt Questions:\n• Is anyone running fast?\n• Is a car on the path?",
    "New Prompt Questions:\nQ1: Is anyone running fast?\nQ2: Is a car on the path?",
    "New Prompt Questions:\n**Question 1:** Is anyone running fast?\n"
    "**Question 2:** Is a car on the path?",
    "New Prompt Questions: 1. Is anyone running fast? 2. Is a car on the path?",
    "New Prompt Questions: Is anyone running fast? Is a car on the path?",
    "Reasoning:\n1. The model missed the runner.\n```\nNew Prompt Questions:\n"
    "(1) Is anyone running fast?\n(2) Is a car on the path?\n```",
    "I would ask:\nIs anyone running fast?\nIs a car on the path?",  # no heading: '?' lines
])
def test_parse_questions_layouts(reply):
    assert vera.parse_questions(reply) == ["Is anyone running fast?", "Is a car on the path?"]


def test_parse_questions_rejects_what_is_not_questions():
    assert vera.parse_questions("Reasoning:\n1. The model did well here today.") is None
    assert vera.parse_questions("New Prompt Questions:\n1. ##@@\n2. a") is None
    assert vera.parse_questions("") is None


@pytest.mark.parametrize("reply, expected", [
    ("Answers to Prompt Questions: nobody runs.\nOutput:\n0", 0),
    ("Answers to Prompt Questions: a fight.\nOutput: [1]", 1),
    ("Output: 1 (definitely not 0)", 1),
    # cut at the budget before 'Output': list numbering is not a label
    ("Answers to Prompt Questions:\n1. Nobody is fighting.\n2. Nobody runs.", None),
    ("1) Is anyone there? Yes.\n2) Frame1 shows a path.", None),
    ("1. People walk calmly. No, there is no anomaly.", 0),
    ("Yes, there is an anomaly: a car on the lawn.", 1),
    ("The answer is 1.", 1),
])
def test_parse_label(reply, expected):
    assert vera.parse_label(reply) == expected


def test_reply_budget_is_the_official_1024_and_truncation_is_counted_and_cached(
        split_videos, tmp_path):
    from vadnb.models.base import Reply

    train, val, truth = split_videos
    seen = []

    class CutVLM(CountingVLM):
        def batch(self, requests, **generate):
            seen.append(generate.get("max_new_tokens"))
            out = super().batch(requests, **generate)
            # normal videos' replies are cut before their 'Output' line
            return [Reply("Answers to Prompt Questions:\n1. Nothing odd.", truncated=True)
                    if not _is_optimizer(p) and truth[_video_id(ims)] == 0
                    else Reply(r, truncated=_is_optimizer(p))  # the optimizer's reply is cut too
                    for r, (ims, p) in zip(out, requests)]

    assert vera.Config().max_new_tokens == 1024
    result, _ = _learn(train, val, truth, Cache(tmp_path), vlm=CutVLM(_story_fn(truth)),
                       steps=1, label_reading="tolerant")
    assert set(seen) == {1024}
    # 2 validations x 2 normal validation videos cut, none of the training videos
    log = result.learner_parse
    assert (log.truncated, log.truncated_failed, log.failed) == (4, 4, 4)
    assert (result.optimizer_parse.truncated, result.optimizer_parse.failed) == (1, 0)
    again, vlm = _learn(train, val, truth, Cache(tmp_path), steps=1,  # all cached
                        label_reading="tolerant")
    assert vlm.batches == 0 and again.learner_parse.truncated == 4
    assert again.optimizer_parse.truncated == 1


# ---------------------------------------------------------------------------------------
# parity with the official computation (compute_auc.py), transcribed here from reading it
# ---------------------------------------------------------------------------------------


def _official_ensemble(features, scores):
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    sim = f @ f.T
    top = int(0.15 * len(sim))
    order = np.argsort(sim, axis=1)[:, -top:]
    out = []
    for i in range(len(sim)):
        w = np.exp(sim[i, order[i]] * 10 - np.max(sim[i, order[i]] * 10))
        out.append(np.dot(w / w.sum(), np.asarray(scores)[order[i]]))
    return np.array(out)


def _official_smooth(data, size=15, sigma=10):
    kernel = np.exp(-np.linspace(-size // 2, size // 2, size) ** 2 / (2 * sigma ** 2))
    return np.convolve(np.asarray(data), kernel / kernel.sum(), mode="same")


def _official_prior(frames):
    n = len(frames)
    sigma, mu = int(n / 2), int(n / 2)
    return np.exp(-0.5 * ((np.arange(n) - mu) / sigma) ** 2) * frames


def _official_video(scores_json, features):
    """compute_auc.py's per-video loop: ensemble, smoothing, rounding, expansion, prior."""
    starts = list(scores_json.keys())
    all_score = [scores_json[s]["score"] for s in starts]
    smoothed = _official_smooth(_official_ensemble(features, all_score), 15, 10)
    pred = []
    for i, s in enumerate(starts):
        value = round(smoothed[i], 1)
        n = 16 if i != len(starts) - 1 else int(scores_json[s]["end"] - int(s))
        pred += [value] * n
    return _official_prior(np.array(pred))


@pytest.mark.parametrize("n", [33, 60])
def test_retrieval_ensemble_matches_the_official(n):
    rng = np.random.default_rng(n)
    feats = rng.normal(size=(n, 6))
    scores = rng.integers(0, 2, n).astype(float)
    refined, k = vera.retrieval_ensemble(feats, scores)
    assert k == int(0.15 * n)
    np.testing.assert_allclose(refined, _official_ensemble(feats, scores), atol=1e-5)


@pytest.mark.parametrize("n", [40, 9])
def test_paper_smoothing_matches_the_official(n):
    x = np.random.default_rng(n).random(n)
    out = vera.smooth_segments(x, 15, 10.0, variant="paper")
    np.testing.assert_allclose(out, _official_smooth(x)[:n], atol=1e-5)
    assert len(out) == n


def test_centred_smoothing_matches_a_symmetric_reflect_transcription():
    x = np.random.default_rng(1).random(40)
    g = np.exp(-0.5 * (np.arange(-7, 8) / 10.0) ** 2)
    padded = np.pad(x, 7, mode="symmetric")
    expected = np.convolve(padded, g / g.sum(), mode="valid")
    np.testing.assert_allclose(vera.smooth_segments(x, 15, 10.0, variant="centred"), expected,
                               atol=1e-5)
    # the variants differ where zero padding and the off-centre kernel bite: the ends
    paper = vera.smooth_segments(x, 15, 10.0, variant="paper")
    assert abs(paper[0] - expected[0]) > 0.1


@pytest.mark.parametrize("n", [10, 37, 161])
def test_position_prior_matches_the_official(n):
    frames = np.random.default_rng(n).random(n)
    np.testing.assert_allclose(frames * vera.position_prior(n), _official_prior(frames),
                               atol=1e-5)


def _released(tmp_path, n_frames=555, seed=0):
    """A step-1 file in generate_initial_score.py's layout, with features of that video."""
    rng = np.random.default_rng(seed)
    entries = {}
    for ind in range(0, n_frames, 16):
        start, end = max(ind - 1 / 2 * 30 * 10, 0), min(ind + 1 / 2 * 30 * 10, n_frames)
        entries[ind] = {"start": start, "end": end, "score": int(rng.integers(0, 2))}
    path = tmp_path / "Abuse028_x264.json"
    path.write_text(json.dumps(entries))
    feats = rng.normal(size=(len(entries), 8)).astype(np.float32)
    np.save(tmp_path / "Abuse028_x264.npy", feats)
    return path, tmp_path / "Abuse028_x264.npy"


def test_released_initial_scores_run_steps_2_3_as_the_paper(tmp_path):
    scores_path, feats_path = _released(tmp_path)
    table = vera.load_initial_scores(scores_path)
    assert table["centre_frame"].tolist()[:3] == [0, 16, 32] and len(table) == 35
    det = vera.from_initial_scores(scores_path, feats_path, **vera.PAPER_STEP3)
    assert det.num_frames == 555 and det.profile == "paper" and det.method == "vera"
    official = _official_video(json.loads(scores_path.read_text()), np.load(feats_path))
    np.testing.assert_allclose(det.frame_scores, official, atol=1e-5)
    # the default (corrected) step 3 is a different computation
    plain = vera.from_initial_scores(scores_path, feats_path)
    assert np.abs(plain.frame_scores - official).max() > 1e-3


def test_released_initial_scores_bad_files_name_the_problem(tmp_path):
    scores_path, feats_path = _released(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"0": {"start": 0, "end": 150}}))
    with pytest.raises(ValueError, match="bad.json.*'0'.*'score'"):
        vera.load_initial_scores(bad)
    bad.write_text(json.dumps({"zero": {"start": 0, "end": 150, "score": 1}}))
    with pytest.raises(ValueError, match="bad.json.*'zero'"):
        vera.load_initial_scores(bad)
    with pytest.raises(ValueError, match="features for 35 segments"):
        vera.from_initial_scores(scores_path, np.zeros((3, 8)))
    with pytest.raises(ValueError, match="stride"):
        vera.from_initial_scores(scores_path, feats_path, stride=8)


def test_differences_are_complete_and_flags_are_config_settings():
    from vadnb.stages import Difference, differences_markdown

    assert len(vera.DIFFERENCES) >= 10
    assert all(isinstance(d, Difference) and d.what and d.why and d.effect
               for d in vera.DIFFERENCES)
    flags = [d.flag for d in vera.DIFFERENCES if d.flag]
    settings = {}
    for flag in flags:  # each flag is Config settings that, set, turn the difference on
        these = eval(f"dict({flag})")
        cfg = vera.Config(**these)
        assert all(getattr(cfg, k) != getattr(vera.Config(), k) for k in these), flag
        settings.update(these)
    assert set(settings) >= set(vera.PAPER_STEP3) | set(vera.VADNB_STEP3)
    assert vera.VADNB_STEP3.items() <= settings.items()
    table = differences_markdown(vera.DIFFERENCES)
    assert table.count("\n") == len(vera.DIFFERENCES) + 1


# ---------------------------------------------------------------------------------------
# models: one at a time, none on a warm run (issues 13, 17)
# ---------------------------------------------------------------------------------------


def _tracked_load(monkeypatch, events):
    from vadnb import models

    real = models.load

    def load(role, **kw):
        backend = real(role, **kw)
        live = [e for e in events if e[0] == "live"]
        events.append(("load", role, [r for _, r, b in live if not b.released]))
        events.append(("live", role, backend))
        return backend

    monkeypatch.setattr(models, "load", load)


def test_one_model_at_a_time_and_a_warm_rerun_loads_and_decodes_nothing(
        split_videos, planted, monkeypatch, tmp_path):
    from vadnb import models, video

    events = []
    _tracked_load(monkeypatch, events)
    train, val, _ = split_videos
    path, _ = planted
    kw = dict(profile="tiny", cache=Cache(tmp_path), image_size=32, max_new_tokens=4)
    cold = vera.run(path, stride=400, **kw)
    loads = [(role, held) for kind, role, held in events if kind == "load"]
    assert loads == [("vlm", []), ("embedder", [])]  # nothing else on the device
    learned = vera.learn_questions(train.iloc[:2], val.iloc[:1], steps=1, **kw)
    assert all(b.released for kind, _, b in events if kind == "live")
    assert cold.profile == "tiny" and len(cold.segments) == 3
    models.reset_load_stats()
    video.reset_decode_stats()
    warm = vera.run(path, stride=400, **kw)
    again = vera.learn_questions(train.iloc[:2], val.iloc[:1], steps=1, **kw)
    assert models.load_stats().empty
    assert video.decode_stats() == {"opens": 0, "frames_decoded": 0, "frames_returned": 0}
    np.testing.assert_array_equal(warm.frame_scores, cold.frame_scores)
    pd.testing.assert_frame_equal(again.history, learned.history)
    assert warm.profile == "tiny" and again.profile == "tiny"


def test_run_many_equals_single_runs(planted, split_videos, tmp_path):
    path, _ = planted
    other = split_videos[0]["path"].iloc[0]
    kw = dict(backends={"vlm": _seeing_vlm(), "embedder": _embedder()}, image_size=32)
    both = vera.run_many([path, other], cache=Cache(tmp_path / "a"), **kw)
    alone = [vera.run(p, cache=Cache(tmp_path / "b"), **kw) for p in (path, other)]
    for a, b in zip(both, alone):
        np.testing.assert_array_equal(a.frame_scores, b.frame_scores)
        assert a.extras["neighbours"] == b.extras["neighbours"]
    assert both[0].model_calls["items"].sum() == alone[0].model_calls["items"].sum()


# ---------------------------------------------------------------------------------------
# perfect perception (issue 16)
# ---------------------------------------------------------------------------------------


def test_oracle_learns_the_missing_questions_and_scores_the_campus(tmp_path):
    from vadnb.data import load_campus

    bench = load_campus()
    oracle = vera.oracle_backends(bench, image_size=32)
    result = vera.learn_questions(bench.subset("train"), bench.subset("val"), backends=oracle,
                                  cache=Cache(tmp_path), questions=["Is there fire or smoke?"],
                                  steps=4, image_size=32)
    assert result.history["val_acc"].iloc[0] < result.best_val_acc == 1.0
    test = bench.subset("test").videos
    dets = vera.run_many(list(test["path"]), backends=oracle, cache=Cache(tmp_path),
                         questions=result, image_size=32)
    labels = {n: bench.frame_labels(n) for n in test["name"]}
    scores = {n: d.frame_scores for n, d in zip(test["name"], dets)}
    assert vadnb.metrics.frame_auc(labels, scores) > 0.7  # measured 0.78: 10 s windows blur
    assert all(d.extras["unparseable"] == 0 for d in dets)


def test_outcome_sentences_come_from_the_run(split_videos, planted, tmp_path):
    train, val, truth = split_videos

    def mute(images, prompt):
        return "..."  # no label, no questions

    result, _ = _learn(train, val, truth, Cache(tmp_path), vlm=CountingVLM(mute), steps=2)
    text = vera.learning_summary(result)
    assert "2 of 2 step(s) kept the previous questions" in text and "nothing was learned" in text
    story, _ = _learn(train, val, truth, Cache(tmp_path))
    assert "nothing was learned" not in vera.learning_summary(story)
    path, _ = planted
    det = vera.run(path, backends={"vlm": CountingVLM(mute), "embedder": _embedder()},
                   cache=Cache(tmp_path), image_size=32, stride=400, label_reading="tolerant")
    assert "every answer was unreadable" in vera.inference_summary([det])
    assert "0.5 by construction" in vera.auc_note([det], 0.5)
    good = vera.run(path, backends={"vlm": _seeing_vlm(), "embedder": _embedder()},
                    cache=Cache(tmp_path), image_size=32)
    assert "answers: 0 unreadable" in vera.inference_summary([good])
    assert "distinct frame-score values" in vera.auc_note([good], 0.9)


# ---------------------------------------------------------------------------------------
# issue 22: the cache key is what is sent; core.py reads as the paper's numbered steps
# ---------------------------------------------------------------------------------------


def _prompt_reading_vlm():
    """Answers 1 exactly when the prompt's model description mentions a 'guard dog'."""
    return CountingVLM(lambda images, prompt:
                       f"Seen by the {'dog' if 'guard dog' in prompt else 'model'}. "
                       f"Output: {int('guard dog' in prompt)}")


def test_editing_prompt_code_asks_the_model_again(planted, split_videos, monkeypatch,
                                                  tmp_path):
    path, _ = planted
    kw = dict(cache=Cache(tmp_path), image_size=32, stride=400)
    before = vera.run(path, backends={"vlm": _prompt_reading_vlm(), "embedder": _embedder()},
                      **kw)
    assert set(before.segments["answer"].str[:17]) == {"Seen by the model"}
    # edit the text the learner prompt is built from, where it is defined
    monkeypatch.setattr(vera.prompts, "_MODEL_DESCRIPTION",
                        vera.prompts._MODEL_DESCRIPTION + " You are a guard dog.")
    vlm = _prompt_reading_vlm()
    after = vera.run(path, backends={"vlm": vlm, "embedder": _embedder()}, **kw)
    assert vlm.batches == 1 and after.model_calls.set_index("role").loc["vlm", "calls"] == 1
    assert set(after.segments["answer"].str[:15]) == {"Seen by the dog"}
    assert after.segments["raw_score"].tolist() == [1.0, 1.0, 1.0]
    # edit the prompt function itself: learning sees new replies too
    train, val, _ = split_videos
    learn = dict(steps=1, questions=Q0, **kw)
    first = vera.learn_questions(train.iloc[:2], val.iloc[:1],
                                 backends={"vlm": _prompt_reading_vlm()}, **learn)
    assert first.history["val_acc"].tolist() == [0.0, 0.0]  # the dog says 1 to a normal video
    monkeypatch.setattr(vera.prompts, "learner_prompt",
                        lambda qs, n=8: f"A cat looks at {n} frames. Output: 0 or 1?")
    vlm = _prompt_reading_vlm()
    again = vera.learn_questions(train.iloc[:2], val.iloc[:1], backends={"vlm": vlm}, **learn)
    # validation, learner and optimizer (shown the new predictions) asked anew; the final
    # validation asks the same as the first (the optimizer kept Q0), so it is not asked twice
    assert vlm.batches == 3
    assert again.history["val_acc"].tolist() == [1.0, 1.0]  # the cat says 0: right


def test_core_is_short_and_its_pipeline_reads_as_numbered_steps():
    import inspect

    source = inspect.getsource(vera.core)
    assert len(source.splitlines()) <= 250  # issue 22: at most about 250
    steps = re.findall(r"^\s+# (\d+)\. ", inspect.getsource(vera.core.pipeline), re.M)
    assert steps == ["1", "2", "3"]
    for plumbing in ("make_key", "get_cache", "Roles(", "configure(", "PROMPT_VERSION"):
        assert plumbing not in source


# ---------------------------------------------------------------------------------------
# VERA's XD-Violence AP script (compute_AP_XD_Violence.py), transcribed
# ---------------------------------------------------------------------------------------


def _official_xd_video(result, v_array):
    """compute_AP_XD_Violence.py's per-video loop: top-n (all when n <= 4), softmax(10 cos),
    smoothing (15, 10) unrounded, expansion, sigmoid, round(., 1), trimming."""
    normalized_v = v_array / np.linalg.norm(v_array, axis=1, keepdims=True)
    v_array = normalized_v @ normalized_v.T
    num_segment = len(result)
    top_n = int(0.15 * num_segment) if num_segment > 4 else num_segment
    v_indices = np.argsort(v_array, axis=1)[:, -top_n:]
    v_top = np.take_along_axis(v_array, v_indices, axis=1)
    starts = list(result.keys())
    all_score = [result[s]["score"] for s in starts]
    score_all = []
    for i in range(len(starts)):
        e = np.exp(v_top[i] * 10 - np.max(v_top[i] * 10))
        score_all.append(np.dot(e / e.sum(), np.array([all_score[j] for j in v_indices[i]])))
    smoothed = _official_smooth(np.array(score_all), 15, 10)
    pred = []
    for i, s in enumerate(starts):
        n = 16 if i != len(starts) - 1 else int(result[s]["end"] - int(s))
        pred += [smoothed[i]] * n
    pred = [round(x, 1) for x in 1 / (1 + np.exp(-np.array(pred)))]
    mod = (len(pred) - 1) % 16
    pred = pred[:-1]
    return pred[:-mod] if mod else pred


@pytest.mark.parametrize("n_frames", [18, 40, 49, 75, 97, 400, 561])  # 2, 3, 4, 5, ... segments
def test_xd_violence_ap_matches_the_official_script(n_frames):
    from sklearn.metrics import auc, precision_recall_curve

    rng = np.random.default_rng(n_frames)
    starts = range(0, n_frames, 16)
    result = {s: {"start": max(s - 120, 0), "end": min(s + 120, n_frames),
                  "score": int(rng.integers(0, 2))} for s in starts}
    feats = rng.normal(size=(len(result), 5))
    expected = _official_xd_video(result, feats)
    ours = vera.xd_violence_frame_scores([r["score"] for r in result.values()], feats, n_frames)
    np.testing.assert_allclose(ours, expected, atol=1e-9)
    gt = (np.arange(len(expected)) % 10 < 4).astype(float)
    precision, recall, _ = precision_recall_curve(gt, expected)
    assert vera.xd_violence_ap({"v": gt}, {"v": ours}) == pytest.approx(auc(recall, precision))


# ---------------------------------------------------------------------------------------
# run() as a whole against a transcription of the official inference pipeline
# (Inference/generate_intial_score.py for step 1, LAVAD's ImageBind clip features for the
# embeddings as the README says, compute_auc.py for steps 2-3). Scripted backends record
# what each model was sent; frames are known by their bar code (write_test_video).
# ---------------------------------------------------------------------------------------

from vadnb.lavad import spatial_crops  # noqa: E402  (ImageBind's 3 crops, as LAVAD reads)

#: The learner prompt vadnb sends, word for word: its own wording in the structure of
#: VERA_learner_instruct.txt (role, description, questions, input, strict format;
#: differences.py, "Prompts"), the questions numbered "1. ..." as new_qs lists them.
_LEARNER_PROMPT = (
    "You are the model.\n"
    "** Model description **\n"
    "You classify videos into two classes. The input is a sequence of frames of one video, "
    "in time order, and you decide whether the video contains an anomaly. Your output is an "
    "integer class label from the set {0, 1}: 0 stands for a normal video and 1 for an "
    "abnormal video. Answer the prompt questions first.\n"
    "** Prompt questions **\n"
    "Looking at the video frames, answer each of these questions and give a one-sentence "
    "explanation:\n{questions}\n"
    "From these answers, settle the question 'Is there any anomaly in the video?' with "
    "either 'Yes, there is an anomaly' or 'No, there is no anomaly'.\n"
    "** Input **\n"
    "The 8 attached images are the frames of the video, in time order.\n"
    "Reply strictly in this format:\n"
    "Answers to Prompt Questions: [your answer to each prompt question]\n"
    "Output:\n"
    "[only the integer class label, 0 or 1; make any assumption you need]\n"
    "Write nothing else.")


def _code_vec(seed: str, dim: int = 6) -> np.ndarray:
    import hashlib

    return np.random.default_rng(int(hashlib.sha1(seed.encode()).hexdigest()[:8], 16)
                                 ).normal(size=dim)


def _coded_reply(codes):
    """The scripted learner: 1 when the window's middle frame lies in 150..259; a reply
    ending in '1.' (read 0 by the official last-character rule) when that frame is a
    multiple of 5."""
    mid = codes[len(codes) // 2]
    label = int(150 <= mid < 260)
    return f"Answers to Prompt Questions: I see frame {mid}.\nOutput:\n{label}" + (
        "." if mid % 5 == 0 else "")


def _clip_vec(crops):
    """A scripted clip embedding: a function of the clip's pixels."""
    import hashlib

    return _code_vec(hashlib.sha1(b"".join(np.ascontiguousarray(c).tobytes()
                                           for c in crops)).hexdigest())


class _RecordingVLM(ScriptedVLM):
    def __init__(self):
        from vadnb.video import read_frame_code

        super().__init__(lambda ims, p: _coded_reply([read_frame_code(i) for i in ims]))
        self.sent, self.code = [], read_frame_code

    def batch(self, requests, **generate):
        requests = list(requests)
        self.sent += [([self.code(i) for i in ims], [np.shape(i) for i in ims], p, generate)
                      for ims, p in requests]
        return super().batch(requests, **generate)


class _RecordingEmbedder(ScriptedEmbedder):
    """Knows each (frame, crop) by its pixels (the set of those with these pixels)."""

    def __init__(self, crop_ids):
        super().__init__(name="recording-embedder")
        self.crop_ids, self.clips = crop_ids, []

    def encode_video(self, clips):
        clips = [list(c) for c in clips]
        self.clips += [[self.crop_ids[np.ascontiguousarray(f).tobytes()] for f in c]
                       for c in clips]
        vecs = np.stack([_clip_vec(c) for c in clips])
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def official_vera(frames, fps, stride=16):
    """VERA's inference as the official scripts compute it, on the scripted models."""
    num_frames = len(frames)
    centres = list(range(0, num_frames, stride))  # generate_intial_score.py: range(0, n, 16)
    # the VLM's 8 frames: the official arange(start, end, (end - start) / 8) over +/-150
    # frames is differences.py's "Inference windows"; vadnb's closed window in seconds:
    half = int(round(10 * fps / 2))
    windows = [np.linspace(max(c - half, 0), min(c + half, num_frames - 1), 8).round()
               .astype(int).tolist() for c in centres]
    replies = [_coded_reply(w) for w in windows]  # model.batch_chat, the same questions
    labels = [1 if r[-1] == "1" else 0 for r in replies]  # generate_intial_score.py
    clips = []  # README: LAVAD's ImageBind clip features (sample_utils.py window, 10 frames)
    for c in centres:
        lo, hi = max(c - int(10 * fps) // 2, 0), min(c + int(10 * fps) // 2, num_frames)
        w = lo + np.linspace(0, hi - lo - 1, 10).astype(int)
        clips.append([[(int(w[0]), k), (int(w[-1]), k)] for k in range(3)])  # 2 frames, 3 crops
    feats = []
    for cl in clips:  # ImageBind averages its 3 crop embeddings (each normalised)
        v = np.stack([_clip_vec([spatial_crops(frames[a])[k], spatial_crops(frames[b])[k]])
                      for (a, k), (b, _) in cl])
        feats.append((v / np.linalg.norm(v, axis=1, keepdims=True)).mean(0))
    smoothed = _official_smooth(_official_ensemble(np.array(feats), labels), 15, 10)
    frames = []  # compute_auc.py: round(x, 1), each segment over its frames, the last cut
    for i, c in enumerate(centres):
        frames += [round(smoothed[i], 1)] * (stride if i < len(centres) - 1
                                              else num_frames - c)
    return dict(centres=centres, windows=windows, labels=labels, clips=clips,
                frames=np.array(frames))


@pytest.mark.parametrize("stride", [16, 12])
def test_run_matches_the_official_pipeline(stride, tmp_path):
    from vadnb.video import read_frames, write_test_video

    n, fps = 400, 10
    path = write_test_video(tmp_path / "coded.avi", num_frames=n, fps=fps)
    decoded = read_frames(path).images
    crop_ids: dict[bytes, set] = {}
    for f, im in enumerate(decoded):
        for k, c in enumerate(spatial_crops(im)):
            crop_ids.setdefault(c.tobytes(), set()).add((f, k))
    vlm, embedder = _RecordingVLM(), _RecordingEmbedder(crop_ids)
    det = vera.run(path, backends={"vlm": vlm, "embedder": embedder},
                   cache=Cache(tmp_path / "cache"), stride=stride)
    want = official_vera(decoded, fps, stride)
    questions = "\n".join(f"{i}. {q}" for i, q in enumerate(vera.default_questions(), 1))
    prompt = _LEARNER_PROMPT.replace("{questions}", questions)

    assert [codes for codes, *_ in vlm.sent] == want["windows"]  # one query per segment
    for _, shapes, sent_prompt, generate in vlm.sent:
        assert shapes == [(448, 448, 3)] * 8 and sent_prompt == prompt
        assert generate["max_new_tokens"] == 1024 and generate["temperature"] == 0.0
    wanted = [c for cl in want["clips"] for c in cl]  # first and last frame, crops 0, 1, 2
    assert len(embedder.clips) == len(wanted)
    assert all(a in got[0] and b in got[1] for got, (a, b) in zip(embedder.clips, wanted))
    assert det.segments["raw_score"].tolist() == want["labels"]
    assert 0 < sum(want["labels"]) < len(want["labels"])
    np.testing.assert_allclose(det.frame_scores, want["frames"], atol=1e-6)


def test_unreadable_answers_are_interpolated_between_their_neighbours():
    """An unreadable answer (tolerant reading) is filled linearly from the answers on both
    sides, the ends from the nearest one, and counted: never read as 0."""
    labels = [1, None, 0, None, None, 1, None]
    out = vera.core.refine_answers(labels, np.eye(7), 7 * 16, vera.Config())
    np.testing.assert_allclose(out["raw"], [1, 0.5, 0, 1 / 3, 2 / 3, 1, 1])
    assert out["unparseable"] == 4
