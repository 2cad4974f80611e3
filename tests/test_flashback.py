"""Flashback: each scoring step and the whole pipeline against a transcription of the research
code's scoring (FLASHBACK.md §1b), a planted anomaly, recall's validation and its file."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import vadnb
from vadnb import flashback, metrics, registry
from vadnb.data import load_campus
from vadnb.flashback import core, memory
from vadnb.models import load_stats, reset_load_stats
from vadnb.models.base import FailedReply
from vadnb.models.scripted import ScriptedEmbedder, ScriptedLLM
from vadnb.runtime import Roles, Runtime
from vadnb.video import decode_stats, read_frame_code, reset_decode_stats, write_test_video

DIM = 12


# ---------------------------------------------------------------------------------------------
# a transcription of the research code's scoring (src/helper.py, src/pseudo_caption_infer.py),
# written from FLASHBACK.md §1b: 30 fps hard-coded there, here `fps`; `>=` instead of its `>`
# ---------------------------------------------------------------------------------------------

def reference_segments(num_frames: int, fps: int = 30):
    seg_len = int(1.0 * fps)
    hop = seg_len - int(0.5 * fps)
    n_seg = (num_frames - seg_len) // hop + 1
    starts = [i * hop for i in range(n_seg)]
    sampled = [np.linspace(s, s + seg_len, 18, dtype=int)[1:-1] for s in starts]
    return starts, seg_len, sampled


def reference_clips(sampled: np.ndarray) -> list[tuple[int, int]]:
    """'b c (t s) h w -> b s c t h w' with t = 2: clip s holds frames s and s + 8."""
    grid = np.asarray(sampled).reshape(2, 8)  # (t, s)
    return [(int(grid[0, s]), int(grid[1, s])) for s in range(8)]


def reference_score(seg: np.ndarray, zn: np.ndarray, za: np.ndarray, alpha: float, k: int,
                    tau: float, strict: bool = False) -> float:
    z = np.concatenate([zn, za * alpha], axis=0)
    d = seg @ z.T
    top = np.argsort(-d, kind="stable")[:k]
    y = (top > len(zn)) if strict else (top >= len(zn))
    e = np.exp(tau * d[top] - np.max(tau * d[top]))
    w = e / e.sum()
    return float(np.clip(np.sum(w * y), 0, 1))


def reference_frames(num_frames: int, starts, seg_len: int, scores) -> np.ndarray:
    p = np.zeros(num_frames)
    c = np.zeros(num_frames)
    for s, v in zip(starts, scores):
        p[s:s + seg_len] += v
        c[s:s + seg_len] += 1
    p[c > 0] /= c[c > 0]
    return np.convolve(p, [.1, .2, .4, .2, .1], "same")


# ---------------------------------------------------------------------------------------------
# scripted backends
# ---------------------------------------------------------------------------------------------

def _vector(*parts) -> np.ndarray:
    seed = int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)
    v = np.random.default_rng(seed).normal(size=DIM)
    return v / np.linalg.norm(v)


def pair_vector(a: int, b: int) -> np.ndarray:
    """A clip's vector depends on which two frames it pairs, and in which order."""
    return _vector("clip", a, b)


class RecordingEmbedder(ScriptedEmbedder):
    """Text: a fixed random vector per text. Video: the mean of its consecutive pairs'
    vectors (as the real backend pairs neighbours), recording the frame codes it was sent."""

    def __init__(self, text_fn=None, pair_fn=pair_vector):
        super().__init__(image_fn=lambda im: _vector("image", read_frame_code(im)),
                         text_fn=text_fn or (lambda t: _vector("text", t)), name="recording")
        self.sent: list[list[int]] = []
        self.pair_fn = pair_fn

    def encode_video(self, clips):
        out = []
        for clip in clips:
            codes = [read_frame_code(f) for f in clip]
            self.sent.append(codes)
            v = np.mean([self.pair_fn(codes[i], codes[i + 1])
                         for i in range(0, len(codes), 2)], axis=0)
            out.append(v / np.linalg.norm(v))
        with self._count(len(clips)):
            return np.stack(out).astype(np.float32)


def pairs_reply(pairs) -> str:
    return json.dumps({"descriptions": [
        {"normal": {"category": "Normal", "description": n},
         "anomalous": {"category": c, "description": a}} for n, a, c in pairs]})


@pytest.fixture
def video30(tmp_path):
    return write_test_video(tmp_path / "v30.avi", num_frames=100, fps=30, size=(64, 48))


# ---------------------------------------------------------------------------------------------
# the steps, one by one, on the same random inputs as the transcription
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_frames", [30, 44, 45, 100, 467])
def test_segments_and_sampled_frames_match_the_code(num_frames):
    starts, length = core.segment_starts(num_frames, 30.0)
    ref_starts, ref_len, ref_sampled = reference_segments(num_frames)
    assert length == ref_len and starts.tolist() == ref_starts
    for s, ref in zip(starts, ref_sampled):
        assert core.sample_frames(s, length).tolist() == ref.tolist()


def test_real_frame_rate_and_short_videos():
    starts, length = core.segment_starts(100, 24.0)  # XD-Violence: 24 frames, hop 12
    assert length == 24 and starts.tolist() == list(range(0, 77, 12))
    starts, length = core.segment_starts(7, 30.0)  # shorter than a segment: one of 7 frames
    assert starts.tolist() == [0] and length == 7
    with pytest.raises(ValueError, match="0 frames"):
        core.segment_starts(0, 30.0)


def test_clip_order_makes_consecutive_pairs_the_codes_interleaved_clips():
    sampled = np.arange(100, 116)
    ordered = sampled[core.clip_order(16)]
    pairs = [(int(ordered[i]), int(ordered[i + 1])) for i in range(0, 16, 2)]
    assert pairs == reference_clips(sampled)
    assert core.clip_order(16, "consecutive").tolist() == list(range(16))


def test_retrieval_and_scores_match_the_code_on_random_inputs():
    rng = np.random.default_rng(0)
    zn, za = rng.normal(size=(40, DIM)), rng.normal(size=(30, DIM))
    segs = rng.normal(size=(25, DIM))
    for alpha, k, tau in [(1.0, 10, 1.0), (0.7, 10, 100.0), (0.8, 3, 5.0), (1.3, 70, 2.0)]:
        z, flags = core.memory_matrix(zn, za, alpha)
        idx, sims = core.retrieve(segs, z, k)
        got = core.segment_scores(sims, flags[idx], tau)
        want = [reference_score(s, zn, za, alpha, k, tau) for s in segs]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_first_anomalous_caption_counts_as_anomalous():
    """The code's `>` counts memory row len(normal) as normal; `>=` (vadnb) does not."""
    zn = np.array([[1.0, 0.0], [0.0, 1.0]])
    za = np.array([[0.6, 0.8], [-1.0, 0.0]])  # row 2, the first anomalous caption
    seg = np.array([[0.6, 0.8]])
    z, flags = core.memory_matrix(zn, za)
    idx, sims = core.retrieve(seg, z, 1)
    assert idx.tolist() == [[2]]
    assert core.segment_scores(sims, flags[idx], 1.0).tolist() == [1.0]
    assert reference_score(seg[0], zn, za, 1.0, 1, 1.0, strict=True) == 0.0


def test_segments_to_frames_and_smoothing_match_the_code():
    rng = np.random.default_rng(1)
    for n in (30, 100, 467):
        starts, length = core.segment_starts(n, 30.0)
        scores = rng.uniform(size=len(starts))
        raw = core.segments_to_frames(starts, length, scores, n, tail="zero")
        want = reference_frames(n, starts, length, scores)
        np.testing.assert_allclose(core.smooth(raw), want, atol=1e-12)
        # vadnb's tail: uncovered frames take the last segment's score
        tail = core.segments_to_frames(starts, length, scores, n, tail="last")
        uncovered = np.arange(n) >= starts[-1] + length
        assert np.all(tail[uncovered] == scores[-1])
        assert np.array_equal(tail[~uncovered], raw[~uncovered])


def test_online_scorer_gives_the_batch_scores_frame_by_frame():
    rng = np.random.default_rng(2)
    for n, tail in [(100, "last"), (467, "zero"), (45, "last")]:
        starts, length = core.segment_starts(n, 30.0)
        scores = rng.uniform(size=len(starts))
        batch = core.smooth(core.segments_to_frames(starts, length, scores, n, tail))
        online = core.OnlineScorer(length, 15, tail)
        parts = []
        for i, s in enumerate(scores):
            first, frames = online.feed(s)
            assert first == sum(len(p) for p in parts)
            # nothing is emitted before the segment that completes it has arrived
            assert first + len(frames) <= starts[i] + length
            parts.append(frames)
        parts.append(online.finish(n)[1])
        np.testing.assert_allclose(np.concatenate(parts), batch, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# the pipeline as a whole, with scripted backends that record what they were sent
# ---------------------------------------------------------------------------------------------

def _memory(n_normal=20, n_anomalous=15) -> memory.CaptionMemory:
    normal = [f"normal scene {i}" for i in range(n_normal)]
    anomalous = [f"anomalous scene {i}" for i in range(n_anomalous)]
    return memory.CaptionMemory(
        normal, anomalous, ["Normal"] * n_normal, ["X"] * n_anomalous,
        np.stack([_vector("text", t) for t in normal]).astype(np.float32),
        np.stack([_vector("text", t) for t in anomalous]).astype(np.float32), {})


def test_pipeline_matches_the_transcription(video30, fresh_cache):
    emb = RecordingEmbedder()
    rt = Runtime(Roles(backends={"embedder": emb}), fresh_cache)
    v = rt.video(video30)
    mem = _memory()
    cfg = flashback.Config(tail="zero", anomalous_scale=0.8, logit_scale=7.0)
    out = core.pipeline(rt, v, mem, cfg)
    starts, seg_len, sampled = reference_segments(100)
    # the embedder was sent each segment's 16 frames, paired as the code pairs them
    assert len(emb.sent) == len(starts)
    for codes, s in zip(emb.sent, sampled):
        assert [(codes[i], codes[i + 1]) for i in range(0, 16, 2)] == reference_clips(s)
    segs = [np.mean([pair_vector(a, b) for a, b in reference_clips(s)], axis=0) for s in sampled]
    segs = [x / np.linalg.norm(x) for x in segs]
    want = [reference_score(x, mem.normal_embeddings, mem.anomalous_embeddings, 0.8, 10, 7.0)
            for x in segs]
    np.testing.assert_allclose(out["segment_scores"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["frame_scores"],
                               reference_frames(100, starts, seg_len, want), atol=1e-5)


ANOMALY = (40, 70)


def _planted(tmp_path):
    path = write_test_video(tmp_path / "planted.avi", num_frames=120, fps=10, size=(64, 48))
    truth = np.zeros(120, bool)
    truth[ANOMALY[0]:ANOMALY[1]] = True
    axis_n, axis_a = np.eye(DIM)[0], np.eye(DIM)[1]

    def text(t: str) -> np.ndarray:  # anomalous captions near one axis, normal near another
        return (axis_a if "[A]" in t else axis_n) + 0.3 * _vector("text", t)

    def pair(a: int, b: int) -> np.ndarray:  # a clip points where its frames' truth points
        return sum(axis_a if truth[f] else axis_n for f in (a, b)) + 0.1 * _vector("c", a, b)

    return path, truth, RecordingEmbedder(text_fn=text, pair_fn=pair)


def _scripted_llm(log: list, bad_first: int = 0):
    """Replies malformed to the first ``bad_first`` conversations, then valid JSON."""
    def answer(messages):
        log.append(messages)
        seed = messages[1]["content"].split("Seed: ")[1].rstrip(".")
        if len(messages) == 2 and int(seed) < bad_first:
            return "Sure! Here are some scenes: a man walks, a car burns."
        return pairs_reply([(f"people walk, seed {seed}", f"[A] a fight, seed {seed}", "Fight"),
                            ("an empty street", "[A] a car burns", "Arson")])
    return ScriptedLLM(answer, name="scripted-recall-llm")


def test_planted_anomaly_scores_higher_auc_one(tmp_path, fresh_cache):
    path, truth, emb = _planted(tmp_path)
    log: list = []
    det = vadnb.detect(path, method="flashback", cache=fresh_cache, memory="llm", calls=3,
                       backends={"embedder": emb, "llm": _scripted_llm(log)}, top_k=3)
    assert det.method == "flashback" and det.num_frames == 120
    assert metrics.frame_auc({"v": truth}, {"v": det.frame_scores}) == 1.0
    inside = det.segments[(det.segments.start_frame >= 40) & (det.segments.end_frame <= 70)]
    assert inside["explanation"].str.startswith("anomalous").all()
    assert det.extras["memory_counts"]["anomalous_duplicates"] == 2  # "a car burns" x3


def test_a_warm_rerun_loads_no_model_and_decodes_nothing(video30, fresh_cache):
    kwargs = dict(method="flashback", profile="tiny", cache=fresh_cache, memory="handwritten")
    first = vadnb.detect(video30, **kwargs)
    reset_load_stats()
    reset_decode_stats()
    again = vadnb.detect(video30, **kwargs)
    assert load_stats().empty
    assert decode_stats()["frames_decoded"] == 0 and decode_stats()["opens"] == 0
    np.testing.assert_array_equal(first.frame_scores, again.frame_scores)
    assert again.model_calls.set_index("role").loc["embedder", "calls"] == 0
    assert again.meaningless and again.extras["memory_recipe"]["source"].startswith("handwritten")


# ---------------------------------------------------------------------------------------------
# recall: validation, retries, de-duplication, the saved file
# ---------------------------------------------------------------------------------------------

def test_malformed_replies_are_counted_and_retried(fresh_cache):
    log: list = []
    rt = Runtime(Roles(backends={"llm": _scripted_llm(log, bad_first=2),
                                 "embedder": RecordingEmbedder()}), fresh_cache)
    cfg = flashback.Config(calls=4, memory="llm")
    pairs, counts = memory.recall(rt, cfg)
    assert counts == {"calls": 4, "replies": 6, "malformed_replies": 2, "bad_items": 0,
                      "failed_calls": 0}
    retries = [m for m in log if len(m) == 4]
    assert len(retries) == 2 and all("not usable: no JSON object" in m[3]["content"]
                                     for m in retries)
    assert len(pairs) == 8  # 2 pairs from each of the 4 calls, none dropped


def test_every_reply_failing_stops_with_the_count(fresh_cache):
    llm = ScriptedLLM(lambda m: "lorem ipsum", name="babbler")
    rt = Runtime(Roles(backends={"llm": llm, "embedder": RecordingEmbedder()}), fresh_cache)
    with pytest.raises(memory.RecallError, match=r"all 3 call\(s\) stayed malformed after 2 "
                                                 r"retries \(9 replies.*memory='handwritten'"):
        memory.recall(rt, flashback.Config(calls=3))


def test_parse_reply_names_what_is_wrong():
    ok = pairs_reply([("a", "b", "X")])
    assert memory.parse_reply(f"```json\n{ok}\n```") == ([(("a", "Normal"), ("b", "X"))], 0, None)
    assert memory.parse_reply('{"descriptions": [1, {"normal": {}}]}')[2] == \
        "no item has a normal and an anomalous description"
    half = json.loads(pairs_reply([("a", "b", "X")]))
    half["descriptions"].append({"normal": {"category": "Normal", "description": "c"}})
    assert memory.parse_reply(json.dumps(half))[1] == 1  # incomplete item counted
    assert memory.parse_reply('{"descriptions": [')[2].startswith("invalid JSON")
    assert memory.parse_reply(FailedReply("timeout"))[2] == "no reply (timeout)"


def test_deduplicate_counts_per_class():
    pairs = [(("n1", "Normal"), ("a1", "X")), (("n1", "Normal"), ("a2", "Y")),
             (("n2", "Normal"), ("a1", "Z"))]
    kept, counts = memory.deduplicate(pairs)
    assert kept == {"normal": [("n1", "Normal"), ("n2", "Normal")],
                    "anomalous": [("a1", "X"), ("a2", "Y")]}
    assert counts == {"normal_written": 3, "normal_duplicates": 1, "anomalous_written": 3,
                      "anomalous_duplicates": 1}


def test_saved_memory_round_trips_and_refuses_another_recipe(tmp_path):
    mem = _memory(3, 2)
    mem.recipe = {"source": "llm", "llm": "m", "embedder": "e1", "text_prefix": False}
    mem.counts = {"calls": 1}
    path = mem.save(tmp_path / "mem")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mem.json", "mem.safetensors"]
    back = memory.CaptionMemory.load(path, expect={"embedder": "e1"})
    assert back.captions == mem.captions and back.recipe == mem.recipe
    np.testing.assert_array_equal(back.anomalous_embeddings, mem.anomalous_embeddings)
    with pytest.raises(ValueError, match="another recipe.*embedder: file 'e1', wanted 'e2'"):
        memory.CaptionMemory.load(path, expect={"embedder": "e2"})
    (tmp_path / "mem.safetensors").write_bytes(b"damaged")
    with pytest.raises(ValueError, match="does not match the captions"):
        memory.CaptionMemory.load(path)


def test_handwritten_memory_is_labelled_and_parses():
    text = memory.HANDWRITTEN_PATH.read_text()
    assert "WRITTEN BY A PERSON" in json.loads(text)["_about"]
    pairs, bad, error = memory.parse_reply(text)
    assert error is None and bad == 0 and len(pairs) >= 20


def test_registered_everywhere():
    m = registry.get("flashback")
    assert m.roles == {"llm": "llm", "embedder": "embedder"} and m.latency_s == 1.0
    assert [(r[0], r[2]) for r in m.cost(30.0)] == [("embedder", 120.0)]
    assert {p["reported"] for p in m.protocols} == {87.3, 75.1}
    with pytest.raises(ValueError, match=r"flashback: Config.top_k must be in \[1, 10000\], got 0"):
        vadnb.detect(load_campus().table["path"].iloc[0], method="flashback",
                     top_k=0)
