"""AnomalyCLIP: loss terms by hand, MIL selection, sampling and padding, the temporal
model's shapes, learning a planted anomaly, checkpoints, and a tiny end-to-end run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vadnb import anomalyclip as ac
from vadnb.metrics import frame_auc


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: one thread is faster than two fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def text_clip():
    """A real open_clip CLIP with tiny widths (32-d features), built in-process: the text
    tower the prompt learner needs, without touching the model cache."""
    import open_clip
    from types import SimpleNamespace

    torch.manual_seed(0)
    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "head_width": 32,
                          "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                        "layers": 2}}
    model = open_clip.CLIP(**cfg).eval()
    return SimpleNamespace(model=model, tokenizer=open_clip.get_tokenizer("ViT-B-16"),
                           name="test-clip", profile="scripted")


# --------------------------------------------------------------------------- loss


def test_each_loss_term_matches_hand_computation():
    S, L = 2, 2  # 2 segments of 2 frames, 2 classes
    logits = torch.tensor([
        [[0.5, 1.0], [0.0, -1.0], [2.0, 0.5], [1.0, 3.0]],    # abnormal, class 1
        [[1.5, 0.0], [0.2, 0.1], [-1.0, 0.4], [0.3, 0.9]],    # abnormal, class 0
        [[0.1, -0.2], [0.7, 0.2], [-0.5, -0.4], [0.0, 1.2]],  # normal
    ])
    scores = torch.tensor([[0.2, 0.4, 0.7, 0.9], [0.6, 0.5, 0.1, 0.3], [0.1, 0.2, 0.3, 0.25]])
    labels = torch.tensor([1, 0, -1])
    top = torch.tensor([[1], [0], [1]])
    bottom = torch.tensor([[0], [1], [0]])
    t = ac.anomalyclip_loss(logits, scores, labels, top, bottom, S, L, 8e-4, 8e-3)

    lg, sc = logits.tolist(), scores.tolist()

    def log_softmax(row, c):
        return row[c] - math.log(sum(math.exp(v) for v in row))

    top_frames = {0: [2, 3], 1: [0, 1]}      # frames of the top segment per abnormal video
    bottom_frames = {0: [0, 1], 1: [2, 3]}
    cls = {0: 1, 1: 0}
    proj = [lg[v][f][cls[v]] for v in (0, 1) for f in top_frames[v]]
    assert t["projection_topk"].item() == pytest.approx(-sum(proj) / 4, abs=1e-6)
    assert t["projection_normal"].item() == pytest.approx(
        sum(max(row) for row in lg[2]) / 4, abs=1e-6)
    nll_top = [-(log_softmax(lg[v][f], cls[v]) + math.log(sc[v][f]))
               for v in (0, 1) for f in top_frames[v]]
    assert t["nll_topk_abnormal"].item() == pytest.approx(sum(nll_top) / 4, abs=1e-5)
    nll_bottom = [-math.log(1 - sc[v][f]) for v in (0, 1) for f in bottom_frames[v]]
    assert t["nll_bottomk_abnormal"].item() == pytest.approx(sum(nll_bottom) / 4, abs=1e-5)
    nll_normal = [-math.log(1 - sc[2][f]) for f in (2, 3)]
    assert t["nll_topk_normal"].item() == pytest.approx(sum(nll_normal) / 2, abs=1e-5)
    smooth = sum((sc[v][i + 1] - sc[v][i]) ** 2 for v in (0, 1) for i in range(3))
    assert t["smoothness"].item() == pytest.approx(8e-4 * smooth, abs=1e-8)
    assert t["sparsity"].item() == pytest.approx(8e-3 * sum(sc[0] + sc[1]) / 8, abs=1e-8)
    parts = ("projection_topk", "projection_normal", "nll_topk_abnormal",
             "nll_bottomk_abnormal", "nll_topk_normal", "smoothness", "sparsity")
    assert t["total"].item() == pytest.approx(sum(t[k].item() for k in parts), abs=1e-5)


def test_loss_needs_both_kinds_of_video():
    logits, scores = torch.zeros(2, 4, 2), torch.full((2, 4), 0.5)
    idx = torch.zeros(2, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="abnormal and normal"):
        ac.anomalyclip_loss(logits, scores, torch.tensor([0, 1]), idx, idx, 2, 2)


# --------------------------------------------------------------------------- MIL selection


def _segment_logits(per_segment: np.ndarray, seg_length: int) -> torch.Tensor:
    """[B, S, C] segment values -> per-frame logits [B, S*L, C] whose segment sums are them."""
    return torch.tensor(np.repeat(per_segment / seg_length, seg_length, axis=1), dtype=torch.float32)


def test_selection_follows_true_class_for_abnormal_and_class_sum_for_normal():
    seg = np.zeros((2, 6, 2))
    seg[0, :, 1] = [0.0, 5.0, -2.0, 3.0, 1.0, -1.0]  # abnormal video of class 1
    seg[0, :, 0] = [9.0, -9.0, 9.0, -9.0, 9.0, -9.0]  # another class: must be ignored
    seg[1] = [[1, 1], [4, -3], [0, 0], [2, 2], [-1, -1], [3, 3]]  # normal: sums 2 1 0 4 -2 6
    top, bottom = ac.select_segments(_segment_logits(seg, 4), torch.tensor([1, -1]), 6, 4, 3, 2)
    assert top[0].tolist() == [1, 3, 4]
    assert sorted(bottom[0].tolist()) == [2, 5]
    assert top[1].tolist() == [5, 3, 0]


def test_dropped_segments_are_never_selected():
    seg = np.zeros((1, 6, 1))
    seg[0, :, 0] = [0.0, 5.0, -2.0, 3.0, 1.0, -1.0]
    keep = torch.tensor([[True, False, False, True, True, True]])  # drop the best and worst
    top, bottom = ac.select_segments(_segment_logits(seg, 2), torch.tensor([0]), 6, 2, 2, 2,
                                     keep=keep)
    assert top[0].tolist() == [3, 4]
    assert bottom[0].tolist() == [5, 0]


# --------------------------------------------------------------------------- sampling, padding


def test_training_sample_of_a_short_video_wraps_around():
    idx = ac.sample_training_indices(100, 32, 16, np.random.default_rng(0)).reshape(32, 16)
    # shorter than one grid: segments 15 frames apart, no random offset, indices mod 100
    expected = (np.arange(32)[:, None] * 15 + np.arange(16)[None, :]) % 100
    np.testing.assert_array_equal(idx, expected)


def test_training_sample_of_a_long_video_spreads_segments():
    idx = ac.sample_training_indices(2000, 32, 16, np.random.default_rng(1)).reshape(32, 16)
    spacing = (2000 - 15) // 32
    assert np.all(np.diff(idx, axis=1) == 1)  # 16 consecutive frames each
    starts = idx[:, 0]
    assert np.all(starts >= np.arange(32) * spacing)
    assert np.all(starts <= np.arange(32) * spacing + spacing - 16)
    assert idx.max() < 2000


def test_padding_wraps_to_the_video_start():
    idx = ac.pad_wraparound(700, 512)
    assert len(idx) == 1024
    np.testing.assert_array_equal(idx[:700], np.arange(700))
    np.testing.assert_array_equal(idx[700:], np.arange(324))
    np.testing.assert_array_equal(ac.pad_wraparound(512, 512), np.arange(512))


# --------------------------------------------------------------------------- temporal model


def test_temporal_model_maps_grids_to_scores_in_unit_interval():
    model = ac.AxialTemporalModel(input_dim=12, emb_size=16, depth=2, heads=4)
    out = model(torch.randn(3, 32, 16, 12))
    assert out.shape == (3, 32, 16)
    assert torch.all((out > 0) & (out < 1))
    with pytest.raises(ValueError, match="32, 16"):
        model(torch.randn(1, 16, 32, 12))


class _FirstFeature(torch.nn.Module):
    """A temporal-model double: records the grids it gets, scores = first feature value."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, grid):
        self.seen.append(grid.detach().clone())
        return grid[..., 0]


@pytest.mark.parametrize("num_frames", [100, 700])
def test_prediction_pads_by_wraparound_and_restores_frame_order(text_clip, num_frames):
    cfg = ac.Config(emb_size=16, heads=2, device="cpu")
    model = ac.AnomalyCLIP(text_clip.model, text_clip.tokenizer, ["Fire", "Theft"],
                           np.zeros(32, np.float32), cfg).eval()
    model.temporal = _FirstFeature()
    feats = np.zeros((num_frames, 32), np.float32)
    feats[:, 0] = np.arange(num_frames)  # each frame carries its own index
    scores, probs = ac.predict(model, feats)
    np.testing.assert_allclose(scores, np.arange(num_frames))  # frame order restored
    assert probs.shape == (num_frames, 3)
    grid = model.temporal.seen[0][..., 0].numpy()  # [grids, 32, 16] of frame indices
    grids = -(-num_frames // 512)
    assert grid.shape == (grids, 32, 16)
    padded = np.arange(grids * 512) % num_frames  # the wrap-around padding
    for j in range(grids):  # grid j: the j-th 16 frames of each of the 32 blocks
        expected = padded.reshape(32, grids, 16)[:, j]
        np.testing.assert_array_equal(grid[j], expected)


def test_strided_scores_are_repeated_to_every_frame(text_clip):
    cfg = ac.Config(emb_size=16, heads=2, device="cpu")
    model = ac.AnomalyCLIP(text_clip.model, text_clip.tokenizer, ["Fire"],
                           np.zeros(32, np.float32), cfg).eval()
    model.temporal = _FirstFeature()
    feats = np.zeros((5, 32), np.float32)
    feats[:, 0] = [0.1, 0.2, 0.3, 0.4, 0.5]
    scores, _ = ac.predict(model, feats, stride=4, num_frames=19)
    np.testing.assert_allclose(scores, np.repeat([0.1, 0.2, 0.3, 0.4, 0.5], 4)[:19], rtol=1e-6)


# --------------------------------------------------------------------------- learning


CLASSES = ["Fire", "Theft", "Vehicle"]


def _planted(seed: int = 0):
    """Per-video 32-d features: normal frames scatter around a base point; each anomaly
    class adds a large step along its own direction during one interval."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=32)
    dirs = np.linalg.qr(rng.normal(size=(32, 3)))[0].T
    feats, labels, truth = {}, {}, {}

    def video(name, label, n):
        x = base + 0.3 * rng.normal(size=(n, 32))
        y = np.zeros(n, np.uint8)
        if label != "Normal":
            s = int(rng.integers(0, n // 2))
            x[s:s + n // 4] += 2.0 * dirs[CLASSES.index(label)]
            y[s:s + n // 4] = 1
        feats[name], labels[name], truth[name] = x.astype(np.float32), label, y

    for i in range(4):
        video(f"normal{i}", "Normal", int(rng.integers(100, 300)))
    for c in CLASSES:
        for i in range(2):
            video(f"{c}{i}", c, int(rng.integers(100, 300)))
    return feats, labels, truth


FAST = dict(epochs=60, batch_size=8, lr=3e-3, warmup_epochs=1, emb_size=16, heads=2,
            num_segments=16, seg_length=8, device="cpu", seed=0)


@pytest.fixture(scope="module")
def trained(text_clip):
    feats, labels, truth = _planted()
    model, curves = ac.fit(feats, labels, text_clip, progress=False, **FAST)
    return model, curves, feats, labels, truth


def test_training_finds_the_planted_anomalies_and_their_class(trained):
    model, curves, feats, labels, truth = trained
    scores, predicted = {}, {}
    for v in feats:
        scores[v], probs = ac.predict(model, feats[v])
        predicted[v] = ac.video_class(probs, model.class_names)
    assert frame_auc(truth, scores) >= 0.9
    assert all(predicted[v] == labels[v] for v in feats if labels[v] != "Normal")
    assert model.class_names == CLASSES


def test_loss_curves_have_every_term_and_go_down(trained):
    _, curves, *_ = trained
    for col in ("epoch", "step", "projection_topk", "projection_normal", "nll", "smoothness",
                "sparsity", "total", "lr"):
        assert col in curves
    assert len(curves) == 60 * 2  # 6 abnormal videos, 4 per step -> 2 steps per epoch
    assert curves["total"].tail(10).mean() < curves["total"].head(10).mean() - 0.5
    assert curves["lr"].max() == pytest.approx(3e-3)
    assert curves["lr"].iloc[-1] < 1e-4  # cosine decay to 0


def test_training_is_seedable(text_clip):
    feats, labels, _ = _planted(1)
    quick = {**FAST, "epochs": 2}
    _, a = ac.fit(feats, labels, text_clip, progress=False, **quick)
    _, b = ac.fit(feats, labels, text_clip, progress=False, **quick)
    np.testing.assert_allclose(a["total"], b["total"], rtol=1e-5)


def test_checkpoint_round_trip_gives_identical_outputs(trained, text_clip, tmp_path):
    model, _, feats, _, _ = trained
    path = ac.save_checkpoint(model, tmp_path / "aclip")
    assert path.suffix == ".safetensors" and path.exists()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["class_names"] == CLASSES and meta["config"]["num_segments"] == 16
    with open(path, "rb") as f:  # safetensors: an 8-byte header length then JSON, no pickle
        header_len = int.from_bytes(f.read(8), "little")
        assert json.loads(f.read(header_len))  # parses as JSON
    loaded = ac.load_checkpoint(path, clip=text_clip, device="cpu")
    for v in ("Fire0", "normal0"):
        s1, p1 = ac.predict(model, feats[v])
        s2, p2 = ac.predict(loaded, feats[v])
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(p1, p2)


def test_checkpoint_refuses_another_clip(trained, text_clip, tmp_path):
    from types import SimpleNamespace

    model = trained[0]
    path = ac.save_checkpoint(model, tmp_path / "aclip.safetensors")
    other = SimpleNamespace(model=text_clip.model, tokenizer=text_clip.tokenizer, name="other")
    with pytest.raises(ValueError, match="test-clip"):
        ac.load_checkpoint(path, clip=other)
    with pytest.raises(FileNotFoundError, match="save_checkpoint"):
        ac.load_checkpoint(tmp_path / "missing.safetensors", clip=text_clip)


def test_run_without_checkpoint_says_to_train_first(tmp_path):
    with pytest.raises(ValueError, match="train it first"):
        ac.run(tmp_path / "video.mp4")


def test_clip_without_text_tower_is_refused():
    from vadnb.models.scripted import ScriptedClip

    feats = {"a": np.ones((20, 4), np.float32), "n": np.zeros((20, 4), np.float32)}
    with pytest.raises(TypeError, match="text encoder"):
        ac.fit(feats, {"a": "Fire", "n": "Normal"}, ScriptedClip(lambda im: np.ones(4)))


# --------------------------------------------------------------------------- features


def test_load_features_reads_the_release_layout(tmp_path):
    root = tmp_path / "features"
    (root / "Abuse").mkdir(parents=True)
    (root / "Normal_Videos").mkdir()
    a = np.arange(6 * 2 * 4, dtype=np.float32).reshape(12, 4)  # 6 frames x 2 crops
    np.save(root / "Abuse" / "Abuse001_x264.npy", a)
    np.save(root / "Normal_Videos" / "Normal_001_x264.npy", np.zeros((8, 4), np.float32))
    listing = tmp_path / "train.txt"
    listing.write_text("Abuse/Abuse001_x264 0 5 0\n")
    got = ac.load_features(root, listing, ncrops=2, crop=1)
    assert list(got) == ["Abuse001_x264"]
    np.testing.assert_array_equal(got["Abuse001_x264"], a[1::2])
    assert sorted(ac.load_features(root, ncrops=2)) == ["Abuse001_x264", "Normal_001_x264"]
    listing.write_text("Abuse/Abuse404_x264 0 5 0\n")
    with pytest.raises(FileNotFoundError, match="Abuse404"):
        ac.load_features(root, listing)


def test_features_are_cached_by_content_and_stride(tmp_path, fresh_cache):
    from vadnb.models.scripted import ScriptedClip
    from vadnb.video import write_test_video

    video = write_test_video(tmp_path / "v.mp4", num_frames=40, fps=10)
    clip = ScriptedClip(lambda im: np.r_[im.mean(), 1.0, 0.0])
    f1 = ac.extract_features(video, clip, stride=3, cache=fresh_cache)
    assert f1.shape == (14, 3)  # frames 0, 3, ..., 39
    calls = clip.stat.items
    f2 = ac.extract_features(video, clip, stride=3, cache=fresh_cache)
    assert clip.stat.items == calls  # second call: from the cache
    np.testing.assert_array_equal(f1, f2)
    ac.extract_features(video, clip, stride=2, cache=fresh_cache)
    assert clip.stat.items == calls + 20  # another stride is another entry


# --------------------------------------------------------------------------- end to end


def _two_clips(tmp_path):
    """(normal clip, anomalous clip, anomalous clip's class): two campus training clips, or
    two generated clips when the campus data is not built."""
    from vadnb.video import write_test_video

    try:
        from vadnb.data import load_campus

        videos = load_campus().subset("train").videos
        normal = videos[~videos["is_anomalous"]].iloc[0]
        odd = videos[videos["is_anomalous"]].iloc[0]
        return normal["path"], odd["path"], odd["label"]
    except (ImportError, FileNotFoundError):
        return (write_test_video(tmp_path / "normal.mp4", num_frames=48, fps=12),
                write_test_video(tmp_path / "odd.mp4", num_frames=40, fps=12, start_code=900),
                "Vehicle")


def test_tiny_profile_end_to_end(tmp_path, fresh_cache):
    from vadnb import models
    from vadnb.video import probe

    clip = models.load("clip", profile="tiny")
    normal, odd, label = _two_clips(tmp_path)
    feats = {k: ac.extract_features(v, clip, stride=4, cache=fresh_cache)
             for k, v in {"normal": normal, "odd": odd}.items()}
    model, curves = ac.fit(feats, {"normal": "Normal", "odd": label}, clip, progress=False,
                           epochs=1, batch_size=2, emb_size=16, heads=2, feature_stride=4,
                           device="cpu")
    assert len(curves) == 1 and np.isfinite(curves["total"]).all()
    ckpt = ac.save_checkpoint(model, tmp_path / "tiny_aclip.safetensors")
    det = ac.run(odd, checkpoint=ckpt, profile="tiny", cache=fresh_cache)
    n = probe(odd).num_frames
    assert det.method == "anomalyclip" and det.profile == "tiny" and det.meaningless
    assert det.frame_scores.shape == (n,)
    seg = det.segments
    assert seg["start_frame"].tolist() == list(range(0, n, 16))
    assert seg["end_frame"].tolist() == [min(s + 16, n) for s in range(0, n, 16)]
    for col in ("centre_frame", "time_s", "score", "predicted_class", f"p_{label}", "p_Normal"):
        assert col in seg
    assert seg["explanation"].str.fullmatch(rf"({label}|Normal) \(p=\d\.\d\d\)").all()
    probs = det.extras["class_probs"]
    assert probs.shape == (n, 2) and det.extras["class_names"] == [label, "Normal"]
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)  # p(c) + p(normal) = 1
    np.testing.assert_allclose(probs[:, 1], 1 - det.frame_scores, rtol=1e-5)
    # every 4th frame was embedded: frames of one stride share a score
    np.testing.assert_array_equal(det.frame_scores[:4], np.full(4, det.frame_scores[0]))
    assert det.model_calls["calls"].sum() == 0  # features came from the cache
