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
    flat = sc[0] + sc[1]  # official: the abnormal videos' scores flattened, 0.9 -> 0.6 counts
    smooth = sum((flat[i + 1] - flat[i]) ** 2 for i in range(7))
    assert t["smoothness"].item() == pytest.approx(8e-4 * smooth, abs=1e-8)
    within = ac.anomalyclip_loss(logits, scores, labels, top, bottom, S, L, 8e-4, 8e-3,
                                 smooth_within_videos=True)["smoothness"].item()
    assert within == pytest.approx(8e-4 * (smooth - (0.6 - 0.9) ** 2), abs=1e-8)
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
    assert np.all(starts <= np.arange(32) * spacing + spacing - 15)  # official bound
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


FAST = dict(epochs=60, batch_size=4, lr=1e-2, warmup_epochs=1, emb_size=16, heads=2,
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
    assert len(curves) == 60 * 3  # 6 abnormal videos, 2 per step -> 3 steps per epoch
    assert curves["total"].tail(10).mean() < curves["total"].head(10).mean() - 0.5
    assert curves["lr"].max() == pytest.approx(1e-2)
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
    # the official scale: the visual encoder's raw output, pointing where CLIP's unit one does
    assert ac.feature_scale(feats["odd"]) == "raw"
    from vadnb.video import read_frames
    first = clip.encode_image(list(read_frames(odd, indices=[0]).images))[0]
    raw = feats["odd"][0]
    assert raw @ first / np.linalg.norm(raw) == pytest.approx(1.0, abs=1e-4)
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
    assert seg["explanation"].str.fullmatch(
        rf"({label}|Normal) \(p=\d\.\d\d\)(; the anomaly classes together p=\d\.\d\d, most of "
        rf"all {label} \(p=\d\.\d\d\))?").all()
    probs = det.extras["class_probs"]
    assert probs.shape == (n, 2) and det.extras["class_names"] == [label, "Normal"]
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)  # p(c) + p(normal) = 1
    np.testing.assert_allclose(probs[:, 1], 1 - det.frame_scores, rtol=1e-5)
    # every 4th frame was embedded: frames of one stride share a score
    np.testing.assert_array_equal(det.frame_scores[:4], np.full(4, det.frame_scores[0]))
    assert det.model_calls["calls"].sum() == 0  # features came from the cache

    # a warm re-run loads no model and decodes nothing (issue 17)
    from vadnb.video import decode_stats, reset_decode_stats
    models.reset_load_stats()
    reset_decode_stats()
    again = ac.run(odd, checkpoint=ckpt, profile="tiny", cache=fresh_cache)
    assert models.load_stats().empty
    assert decode_stats() == {"opens": 0, "frames_decoded": 0, "frames_returned": 0}
    np.testing.assert_array_equal(again.frame_scores, det.frame_scores)
    assert again.segments.equals(det.segments)


def test_differences_are_complete_and_their_flags_exist():
    from dataclasses import fields

    from vadnb.stages import differences_markdown

    names = {f.name for f in fields(ac.Config)}
    assert len(ac.DIFFERENCES) >= 8
    for d in ac.DIFFERENCES:
        assert d.what and d.why and d.effect
        if d.flag and not d.flag.startswith("Evaluation."):
            field = d.flag.split("=")[0]
            assert field in names, d.flag
            ac.Config(**{field: eval(d.flag.split("=", 1)[1])})  # a valid setting
    assert len(differences_markdown(ac.DIFFERENCES).splitlines()) == 2 + len(ac.DIFFERENCES)
    import re  # every named option ("Option `field=value`") is a valid Config setting
    options = [m for d in ac.DIFFERENCES for m in re.findall(r"Option `(\w+)=([^`]+)`", d.what)]
    assert {f for f, _ in options} >= {"drop_last", "lr_schedule", "smooth_within_videos"}
    for field, value in options:
        assert getattr(ac.Config(**{field: eval(value)}), field) != getattr(ac.Config(), field)


def test_defaults_and_every_recipe_train_as_the_official_code():
    official = {"lr_schedule": "per_epoch", "drop_last": True, "smooth_within_videos": False,
                "lambda_smooth": 8e-4, "lambda_sparse": 8e-3, "weight_decay": 0.2,
                "segment_dropout": 0.7, "top_k": 3, "bottom_k": 3, "n_ctx": 8,
                "num_segments": 32, "seg_length": 16, "batch_size": 64, "feature_stride": 1}
    for cfg in [ac.Config()] + [ac.recipe(k) for k in ac.RECIPES]:
        assert {k: getattr(cfg, k) for k in official} == official
    assert (ac.recipe("ucf_crime").lr, ac.recipe("xd_violence").lr,
            ac.recipe("shanghaitech").lr) == (1e-5, 5e-6, 5e-4)
    assert ac.recipe("xd_violence").emb_size == 128
    sht = ac.recipe("shanghaitech")
    assert (sht.depth, sht.warmup_epochs, sht.epochs, sht.concat_features) == (2, 10, 100, True)


# =========================================================================== parity with the
# official code: small transcriptions of lucazanella/AnomalyCLIP (read from src/models/
# components/{selector_model,loss,temporal_model}.py and the axial_attention package it uses),
# written in the official layout (abnormal videos first, class ids with Normal inside).


def _official_select(logits, labels, mask, normal_id, S, L, k_top, k_bot):
    """SelectorModel.select_topk_idx / select_bottomk_idx."""
    B, _, C = logits.shape
    seg = logits.view(B, S, L, C).sum(2)
    m = mask[:, :, None].expand(-1, -1, C)
    top_drop = torch.where(m == 0, torch.full_like(seg, -1e6), seg)
    bot_drop = torch.where(m == 0, torch.full_like(seg, 1e6), seg)
    half = B // 2
    al = torch.where(labels[:half] > normal_id, labels[:half] - 1, labels[:half])
    top_abn = torch.stack([torch.topk(top_drop[i][:, al[i]], k_top, dim=0).indices
                           for i in range(half)])
    top_nor = torch.topk(top_drop[half:].sum(2), k_top, dim=1).indices
    bot_abn = torch.stack([torch.topk(bot_drop[i][:, al[i]], k_bot, dim=0, largest=False).indices
                           for i in range(half)])
    return top_abn, top_nor, bot_abn


def _official_loss(sim, scores, labels, top_abn, top_nor, bot_abn, normal_id, S, L, k,
                   l_smooth=8e-4, l_sparse=8e-3):
    """ComputeLoss.__call__ with all lambda_* of the official configs (1, and 8e-4 / 8e-3)."""
    B = labels.shape[0]
    half = B // 2
    C = sim.shape[1]
    alabels, nlabels = labels[:half], labels[half:]
    a_topk = alabels.repeat_interleave(k * L).clone()
    n_topk = nlabels.repeat_interleave(k * L)
    grid = sim.view(B, S, L, C)
    sim_topk = torch.cat([grid[i][top_abn[i]] for i in range(half)]).reshape(-1, C)
    a_topk[a_topk > normal_id] -= 1
    picked = [sim_topk[(a_topk == c).nonzero(as_tuple=True)[0], c] for c in range(C)]
    ldir_abn = -torch.cat([p for p in picked if p.numel()]).mean()
    ldir_nor = sim[sim.shape[0] // 2:].max(dim=1)[0].mean()
    probs = torch.softmax(sim, dim=1) * scores[:, None]
    probs = torch.cat([probs[:, :normal_id], (1 - scores)[:, None], probs[:, normal_id:]], dim=1)
    probs = probs.view(B, S, L, C + 1)
    a_probs, n_probs = probs[:half], probs[half:]
    gather = lambda p, idx: torch.gather(  # noqa: E731
        p, 1, idx[:, :, None, None].expand(-1, -1, L, C + 1)).reshape(-1, C + 1)
    nll = torch.nn.NLLLoss()
    a_topk[a_topk >= normal_id] += 1
    ltopk_abn = nll(torch.log(gather(a_probs, top_abn)), a_topk)
    bottom = torch.log(gather(a_probs, bot_abn))
    lbottomk_abn = nll(bottom, torch.full((bottom.shape[0],), normal_id, dtype=torch.long))
    ltopk_nor = nll(torch.log(gather(n_probs, top_nor)), n_topk)
    abn = scores[: scores.shape[0] // 2]
    shifted = torch.cat([abn[1:], abn[-1:]])
    lsmooth = l_smooth * ((shifted - abn) ** 2).sum()
    lsparse = l_sparse * abn.mean()
    return {"projection_topk": ldir_abn, "projection_normal": ldir_nor,
            "nll_topk_abnormal": ltopk_abn, "nll_bottomk_abnormal": lbottomk_abn,
            "nll_topk_normal": ltopk_nor, "smoothness": lsmooth, "sparsity": lsparse}


def _random_batch(seed, B=4, S=6, L=4, C=3, normal_id=1):
    """Random logits/scores, official labels (abnormal first) and a dropout mask."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, S * L, C, generator=g)
    scores = torch.rand(B, S * L, generator=g) * 0.9 + 0.05
    abnormal_ids = [i for i in range(C + 1) if i != normal_id]
    labels = torch.tensor([abnormal_ids[0], abnormal_ids[-1]] + [normal_id] * (B // 2))
    mask = (torch.rand(B, S, generator=g) > 0.4).float()
    mask[:, :3] = 1.0  # enough segments survive for k = 3
    ours = torch.where(labels == normal_id, torch.tensor(-1),
                       labels - (labels > normal_id).long())
    return logits, scores, labels, ours, mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_matches_official(seed):
    S, L = 6, 4
    logits, _, labels, ours, mask = _random_batch(seed, S=S, L=L)
    top_abn, top_nor, bot_abn = _official_select(logits, labels, mask, 1, S, L, 3, 2)
    top, bottom = ac.select_segments(logits, ours, S, L, 3, 2, keep=mask.bool())
    assert torch.equal(top[:2], top_abn) and torch.equal(top[2:], top_nor)
    assert torch.equal(bottom[:2], bot_abn)


@pytest.mark.parametrize("seed", [0, 1])
def test_each_loss_term_matches_official(seed):
    S, L, k = 6, 4, 3
    logits, scores, labels, ours, mask = _random_batch(seed, S=S, L=L)
    top_abn, top_nor, bot_abn = _official_select(logits, labels, mask, 1, S, L, k, k)
    want = _official_loss(logits.reshape(-1, 3), scores.reshape(-1), labels, top_abn, top_nor,
                          bot_abn, 1, S, L, k)
    cfg = ac.Config()  # the paper's weights come from Config
    got = ac.anomalyclip_loss(logits, scores, ours, torch.cat([top_abn, top_nor]),
                              torch.cat([bot_abn, bot_abn]), S, L, cfg.lambda_smooth,
                              cfg.lambda_sparse, smooth_within_videos=False)
    for term, value in want.items():
        assert got[term].item() == pytest.approx(value.item(), abs=1e-5), term
    # the default is the official flattened smoothness; the option drops the jump
    default = ac.anomalyclip_loss(logits, scores, ours, torch.cat([top_abn, top_nor]),
                                  torch.cat([bot_abn, bot_abn]), S, L)
    assert default["smoothness"].item() == pytest.approx(want["smoothness"].item(), abs=1e-8)
    inside = ac.anomalyclip_loss(logits, scores, ours, torch.cat([top_abn, top_nor]),
                                 torch.cat([bot_abn, bot_abn]), S, L, smooth_within_videos=True)
    jump = (scores[1, 0] - scores[0, -1]) ** 2
    assert inside["smoothness"].item() == pytest.approx(
        want["smoothness"].item() - 8e-4 * jump.item(), abs=1e-7)


def _official_temporal_state(D, E, S, L, depth, seed=0):
    """Random weights under the official module names (net.temporal_model.*)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.3  # noqa: E731
    p = "net.temporal_model."
    sd = {p + "projection.weight": r(E, D), p + "projection.bias": r(E),
          p + "axial_attn.pos_emb.param_0": r(1, E, S, 1),
          p + "axial_attn.pos_emb.param_1": r(1, E, 1, L),
          p + "classifier.layer_norm.weight": 1 + r(E), p + "classifier.layer_norm.bias": r(E),
          p + "classifier.linear.weight": r(1, E), p + "classifier.linear.bias": r(1)}
    for i in range(depth):
        for side in "fg":
            a = f"{p}axial_attn.layers.blocks.{2 * i}.{side}.net.fn."
            sd.update({a + "norm.weight": 1 + r(E), a + "norm.bias": r(E),
                       a + "fn.to_q.weight": r(E, E), a + "fn.to_kv.weight": r(2 * E, E),
                       a + "fn.to_out.weight": r(E, E), a + "fn.to_out.bias": r(E)})
            c = f"{p}axial_attn.layers.blocks.{2 * i + 1}.{side}.net."
            sd.update({c + "0.g": 1 + r(1, E, 1, 1), c + "0.b": r(1, E, 1, 1),
                       c + "1.weight": r(4 * E, E, 3, 3), c + "1.bias": r(4 * E),
                       c + "3.weight": r(E, 4 * E, 3, 3), c + "3.bias": r(E)})
    return sd


def _official_temporal(sd, feats, S, L, heads):
    """TemporalModel.forward (training layout) with AxialImageTransformer(reversible=True)."""
    import torch.nn.functional as F

    p = "net.temporal_model."
    E = sd[p + "projection.weight"].shape[0]
    x = F.linear(feats, sd[p + "projection.weight"], sd[p + "projection.bias"])
    x = x.reshape(-1, S, L, E).permute(0, 3, 1, 2)  # b d n l
    x = x + sd[p + "axial_attn.pos_emb.param_0"] + sd[p + "axial_attn.pos_emb.param_1"]

    def attention(z, pre, perm, inv):
        a = z.permute(*perm).contiguous()
        shape = a.shape
        a = a.reshape(-1, shape[-2], shape[-1])
        a = F.layer_norm(a, (E,), sd[pre + "norm.weight"], sd[pre + "norm.bias"])
        q = a @ sd[pre + "fn.to_q.weight"].T
        k, v = (a @ sd[pre + "fn.to_kv.weight"].T).chunk(2, dim=-1)
        b, t, _ = q.shape
        e = E // heads
        merge = lambda y: y.reshape(b, -1, heads, e).transpose(1, 2).reshape(b * heads, -1, e)  # noqa: E731
        q, k, v = map(merge, (q, k, v))
        w = (torch.einsum("bie,bje->bij", q, k) * e ** -0.5).softmax(dim=-1)
        o = torch.einsum("bij,bje->bie", w, v).reshape(b, heads, -1, e).transpose(1, 2).reshape(b, -1, E)
        o = F.linear(o, sd[pre + "fn.to_out.weight"], sd[pre + "fn.to_out.bias"])
        return o.reshape(*shape).permute(*inv).contiguous()

    def feed_forward(z, pre):
        std = torch.var(z, dim=1, unbiased=False, keepdim=True).sqrt()
        z = (z - z.mean(dim=1, keepdim=True)) / (std + 1e-5) * sd[pre + "0.g"] + sd[pre + "0.b"]
        z = F.leaky_relu(F.conv2d(z, sd[pre + "1.weight"], sd[pre + "1.bias"], padding=1))
        return F.conv2d(z, sd[pre + "3.weight"], sd[pre + "3.bias"], padding=1)

    x1, x2 = x, x  # ReversibleSequence: cat((x, x)) then chunk
    blocks = 1 + max(int(k.split("blocks.")[1].split(".")[0]) for k in sd if "blocks." in k)
    for n in range(blocks):
        pre = f"{p}axial_attn.layers.blocks.{n}."
        if n % 2 == 0:  # permutations of calculate_permutations(2, 1): along n, then along l
            f = lambda z: attention(z, pre + "f.net.fn.", (0, 3, 2, 1), (0, 3, 2, 1))  # noqa: E731
            g = lambda z: attention(z, pre + "g.net.fn.", (0, 2, 3, 1), (0, 3, 1, 2))  # noqa: E731
        else:
            f = lambda z: feed_forward(z, pre + "f.net.")  # noqa: E731
            g = lambda z: feed_forward(z, pre + "g.net.")  # noqa: E731
        x1 = x1 + f(x2)
        x2 = x2 + g(x1)
    x = torch.stack([x1, x2]).mean(dim=0).permute(0, 2, 3, 1).reshape(-1, E)
    x = F.layer_norm(x, (E,), sd[p + "classifier.layer_norm.weight"],
                     sd[p + "classifier.layer_norm.bias"])
    return torch.sigmoid(F.linear(x, sd[p + "classifier.linear.weight"],
                                  sd[p + "classifier.linear.bias"]))


@pytest.mark.parametrize("depth", [1, 2])
def test_temporal_model_matches_official(depth):
    D, E, S, L, heads = 6, 8, 4, 3, 2  # S != L: swapped attention axes cannot pass
    sd = _official_temporal_state(D, E, S, L, depth, seed=depth)
    mapped = {k.removeprefix("temporal."): v for k, v in ac.map_release_state(sd, 0).items()}
    model = ac.AxialTemporalModel(D, E, depth, heads, S, L)
    model.load_state_dict(mapped, strict=True)
    feats = torch.randn(2 * S * L, D, generator=torch.Generator().manual_seed(5))
    want = _official_temporal(sd, feats, S, L, heads).reshape(2, S, L)
    with torch.no_grad():
        got = model(feats.reshape(2, S, L, D))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def _official_logits(image, text, centroid, normal_id):
    """SelectorModel.forward up to the BatchNorm (training mode, affine=False)."""
    import torch.nn.functional as F

    t = torch.cat([text[:normal_id], text[normal_id + 1:]]) - centroid
    t = t / t.norm(dim=-1, keepdim=True)
    return F.batch_norm((image - centroid) @ t.T, None, None, training=True)


def test_class_directions_and_likelihoods_match_official(text_clip):
    g = torch.Generator().manual_seed(3)
    text = torch.randn(4, 32, generator=g)  # 3 classes + Normal at id 2
    centroid = torch.randn(32, generator=g) * 2
    image = torch.randn(40, 32, generator=g) + centroid
    model = ac.AnomalyCLIP(text_clip.model, text_clip.tokenizer, ["a", "b", "d"],
                           centroid.numpy(), ac.Config(emb_size=16, heads=2)).train()
    mine = ac.class_directions(torch.cat([text[:2], text[3:]]), centroid)
    got = model.likelihoods(image - model.centroid, mine)
    torch.testing.assert_close(got, _official_logits(image, text, centroid, 2), atol=1e-5, rtol=0)
    with torch.no_grad():  # the model's own directions: its prompts' text features, re-centred
        text_features = model.prompts()
        want = text_features - centroid
        torch.testing.assert_close(model.directions(), want / want.norm(dim=-1, keepdim=True),
                                   atol=1e-6, rtol=0)


def test_training_offsets_span_the_official_range():
    n, S, L = 3000, 32, 16
    spacing = (n - L + 1) // S
    rng = np.random.default_rng(0)
    offsets = np.concatenate([
        ac.sample_training_indices(n, S, L, rng).reshape(S, L)[:, 0] - np.arange(S) * spacing
        for _ in range(300)])
    # official: np.random.randint((spacing + 1) - L + 1) -> 0 .. spacing - L + 1, uniform
    assert offsets.min() == 0 and offsets.max() == spacing - L + 1
    assert len(np.unique(offsets)) == spacing - L + 2


def _official_lr(epoch, lr, warmup, total):
    """WarmupCosineAnnealingLR.get_lr at ``last_epoch = epoch`` (warmup_lrs 0, final 0)."""
    if epoch < warmup:
        return lr * epoch / warmup
    progress = min((epoch - warmup) / (total - warmup), 1.0)
    return lr * (math.cos(math.pi * progress) + 1) / 2


def test_per_epoch_schedule_matches_official():
    factor = ac._warmup_cosine_per_epoch(5, 50, 3)
    for step in range(150):
        assert 1e-5 * factor(step) == pytest.approx(_official_lr(step // 3, 1e-5, 5, 50), abs=1e-12)


# =========================================================================== what training does


def test_centroid_is_the_mean_of_the_normal_training_frames(trained):
    model, _, feats, labels, _ = trained
    normal = np.concatenate([feats[v] for v in feats if labels[v] == "Normal"])
    np.testing.assert_allclose(model.centroid.numpy(), normal.mean(0), atol=1e-5)
    everything = np.concatenate(list(feats.values())).mean(0)
    assert not np.allclose(model.centroid.numpy(), everything, atol=1e-3)


def test_learning_rate_warms_up_then_decays(trained):
    _, curves, *_ = trained
    lr = curves["lr"].to_numpy()  # FAST: 3 steps per epoch, 1 warm-up epoch, per epoch
    assert lr[:3].tolist() == [0.0] * 3 and lr[3:6].tolist() == pytest.approx([1e-2] * 3)
    assert np.all(np.diff(lr[3:]) <= 1e-12)
    want = [1e-2 * 0.5 * (1 + math.cos(math.pi * (e - 1) / 59)) for e in range(1, 60)]
    assert lr[3::3] == pytest.approx(want)


def test_text_projection_is_fine_tuned(trained, text_clip):
    model = trained[0]
    proj = model.prompts.text_projection
    assert proj.requires_grad
    assert not torch.allclose(proj.detach(), text_clip.model.text_projection.detach().float())


def test_each_loss_weight_reaches_its_own_term(text_clip):
    feats, labels, _ = _planted(2)
    quick = {**FAST, "epochs": 1}
    _, no_smooth = ac.fit(feats, labels, text_clip, progress=False, **{**quick, "lambda_smooth": 0.0})
    _, no_sparse = ac.fit(feats, labels, text_clip, progress=False, **{**quick, "lambda_sparse": 0.0})
    assert (no_smooth["smoothness"] == 0).all() and (no_smooth["sparsity"] > 0).all()
    assert (no_sparse["sparsity"] == 0).all() and (no_sparse["smoothness"] > 0).all()


def test_official_per_epoch_schedule_runs_its_first_epoch_at_zero(text_clip):
    feats, labels, _ = _planted(2)
    _, curves = ac.fit(feats, labels, text_clip, progress=False,
                       **{**FAST, "epochs": 3, "warmup_epochs": 2, "lr_schedule": "per_epoch"})
    assert curves.groupby("epoch")["lr"].first().tolist() == pytest.approx([0.0, 5e-3, 1e-2])


def test_concat_features_feeds_likelihoods_to_the_temporal_model(text_clip):
    cfg = ac.recipe("shanghaitech", emb_size=16, heads=2, num_segments=4, seg_length=2)
    assert cfg.depth == 2 and cfg.concat_features and cfg.lr == 5e-4
    model = ac.AnomalyCLIP(text_clip.model, text_clip.tokenizer, ["Fire", "Theft"],
                           np.zeros(32, np.float32), cfg).eval()
    assert model.temporal.projection.in_features == 32 + 2
    model.temporal = _FirstFeature()
    feats = np.random.default_rng(0).normal(size=(8, 32)).astype(np.float32)
    ac.predict(model, feats)
    grid = model.temporal.seen[0]
    assert grid.shape[-1] == 34
    with torch.no_grad():
        lik = model.likelihoods(torch.from_numpy(feats) - model.centroid)
    torch.testing.assert_close(grid.reshape(-1, 34)[:, :2].reshape(4, 2, 2)[:, 0],
                               lik.reshape(4, 2, 2)[:, 0])


# =========================================================================== feature scale


def test_feature_scale_tells_raw_from_normalised():
    raw = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32) * 3
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert ac.feature_scale(raw) == "raw" and ac.feature_scale(unit) == "unit"
    with pytest.raises(ValueError, match="clip.npy.*L2-normalised"):
        ac.check_feature_scale(unit, "raw", "clip.npy")


def test_a_raw_feature_model_refuses_normalised_features(trained):
    model, _, feats, _, _ = trained
    assert model.feature_scale == "raw"
    x = feats["Fire0"] / np.linalg.norm(feats["Fire0"], axis=1, keepdims=True)
    with pytest.raises(ValueError, match="Fire0.npy"):
        ac.predict(model, x, source="Fire0.npy")


def test_load_features_warns_on_normalised_files(tmp_path):
    root = tmp_path / "features" / "Abuse"
    root.mkdir(parents=True)
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.save(root / "raw.npy", x * 5)
    np.save(root / "unit.npy", x / np.linalg.norm(x, axis=1, keepdims=True))
    with pytest.warns(UserWarning, match="unit.npy"):
        got = ac.load_features(tmp_path / "features")
    assert sorted(got) == ["raw", "unit"]


# =========================================================================== released files


class _Boom:
    """Stands for a pickled hyper-parameter object: if its code ran, the flag would flip."""

    ran = False

    def __setstate__(self, state):
        type(self).ran = True


def _release_files(tmp_path, text_clip, depth=1):
    """A synthetic Lightning checkpoint with the official key layout (XD-Violence: 7 classes,
    Normal at id 4), its centroid file, plus the official weights for comparisons."""
    import functools

    C, n_ctx, width = 7, 8, text_clip.model.ln_final.weight.shape[0]
    D = text_clip.model.text_projection.shape[1]
    g = torch.Generator().manual_seed(11)
    sd = _official_temporal_state(D, 16, 32, 16, depth, seed=4)
    sd.update({
        "net.prompt_learner.ctx": torch.randn(C, n_ctx, width, generator=g) * 0.02,
        "net.prompt_learner.token_prefix": torch.zeros(C, 1, width),
        "net.text_encoder.text_projection": torch.randn(width, D, generator=g) * 0.1,
        "net.text_encoder.transformer.resblocks.0.attn.in_proj_weight": torch.zeros(3, 3),
        "net.image_encoder.conv1.weight": torch.zeros(2, 3, 1, 1),
        "net.selector_model.bn_layer.running_mean": torch.randn(C - 1, generator=g),
        "net.selector_model.bn_layer.running_var": torch.rand(C - 1, generator=g) + 0.5,
        "net.selector_model.bn_layer.num_batches_tracked": torch.tensor(7),
    })
    ckpt = tmp_path / "xd.ckpt"
    torch.save({"state_dict": sd, "epoch": 49, "hyper_parameters": {
        "optimizer": functools.partial(torch.optim.AdamW, weight_decay=0.2), "boom": _Boom()}},
        ckpt)
    centroid = torch.randn(D, generator=g)
    torch.save(centroid, tmp_path / "ncentroid.pt")
    return ckpt, tmp_path / "ncentroid.pt", sd, centroid


def test_released_checkpoint_converts_and_scores_as_the_official_code(tmp_path, text_clip):
    ckpt, centroid_file, sd, centroid = _release_files(tmp_path, text_clip)
    _Boom.ran = False
    weights = ac.convert_release(ckpt, centroid_file, tmp_path / "xd_vadnb", "xd_violence",
                                 clip_model="test-clip", profile="scripted")
    assert not _Boom.ran  # torch.load(weights_only=True): no pickled object was rebuilt
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["class_names"] == ["Abuse", "Car_accident", "Explosion", "Fighting", "Riot",
                                   "Shooting"]
    assert meta["config"]["emb_size"] == 16 and meta["config"]["lr"] == 5e-6
    assert meta["feature_scale"] == "raw"
    model = ac.load_checkpoint(weights, clip=text_clip, device="cpu")
    ctx = sd["net.prompt_learner.ctx"]
    torch.testing.assert_close(model.prompts.ctx.detach(), torch.cat([ctx[:4], ctx[5:]]))
    torch.testing.assert_close(model.centroid, centroid)
    torch.testing.assert_close(model.norm.running_var, sd["net.selector_model.bn_layer.running_var"])
    x = torch.randn(512, centroid.shape[0], generator=torch.Generator().manual_seed(2)) * 3
    with torch.no_grad():
        got = model.temporal((x - centroid).reshape(1, 32, 16, -1)).reshape(-1, 1)
    torch.testing.assert_close(got, _official_temporal(sd, x - centroid, 32, 16, 8), atol=1e-5, rtol=0)


def test_release_converter_says_what_is_wrong(tmp_path, text_clip):
    ckpt, centroid_file, *_ = _release_files(tmp_path, text_clip)
    with pytest.raises(ValueError, match="7 prompt contexts but ucf_crime has 14"):
        ac.convert_release(ckpt, centroid_file, tmp_path / "x", "ucf_crime")
    with pytest.raises(FileNotFoundError, match="ncentroid"):
        ac.convert_release(ckpt, tmp_path / "missing.pt", tmp_path / "x", "xd_violence")
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"foo": torch.zeros(1)}}, bad)
    with pytest.raises(ValueError, match="bad.ckpt: no AnomalyCLIP weights"):
        ac.convert_release(bad, centroid_file, tmp_path / "x", "xd_violence")


def test_released_features_and_lists_feed_train_and_evaluate(tmp_path, text_clip):
    root = tmp_path / "Image-Features"
    feats, labels, truth = _planted(3)
    rows = {"train": [], "test": []}
    ids = {"Fire": 0, "Theft": 1, "Vehicle": 5}  # label ids of the list files (XD order)
    names = {"Fire": "Abuse", "Theft": "Car_accident", "Vehicle": "Riot"}
    annotation = []
    for i, (v, x) in enumerate(feats.items()):
        folder = "Normal" if labels[v] == "Normal" else names[labels[v]]
        (root / folder).mkdir(parents=True, exist_ok=True)
        np.save(root / folder / f"{v}.npy", x)
        split = "test" if v.endswith("1") or v == "normal3" else "train"
        label_id = 4 if labels[v] == "Normal" else ids[labels[v]]
        rows[split].append(f"{folder}/{v} 0 {len(x) - 1} {label_id}")
        if split == "test" and labels[v] != "Normal":
            on = np.flatnonzero(truth[v])
            annotation.append(f"{v}.mp4 {names[labels[v]]} {on[0]} {on[-1]} -1 -1")
    for split, lines in rows.items():
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "temporal.txt").write_text("\n".join(annotation) + "\n")
    bench, features = ac.release_benchmark(root, {"train": tmp_path / "train.txt",
                                                  "test": tmp_path / "test.txt"},
                                           "xd_violence", tmp_path / "temporal.txt")
    table = bench.videos.set_index("name")
    assert table.loc["Fire0", "label"] == "Abuse" and table.loc["normal0", "label"] == "Normal"
    np.testing.assert_array_equal(bench.frame_labels("Theft1"), truth["Theft1"])
    model, _ = ac.train(bench, "train", backends={"clip": text_clip}, features=features,
                        progress=False, **{**FAST, "epochs": 2})
    assert model.class_names == [c for c in ac.RELEASE_CLASSES["xd_violence"] if c != "Normal"]
    result = ac.evaluate(model, bench, "test", features=features)
    assert set(result.frame_scores) == set(bench.subset("test").videos["name"])
    assert 0 <= result.auc <= 1


# =========================================================================== recognition metrics


def test_recognition_metrics_by_hand():
    from vadnb import metrics

    classes = ["A", "B"]
    frame_classes = {"v1": np.array([-1, 0, 0, -1]), "v2": np.array([-1, 1, 1, -1])}
    probs = {"v1": np.array([[.1, .2, .7], [.6, .1, .3], [.2, .5, .3], [.1, .1, .8]]),
             "v2": np.array([[.3, .1, .6], [.1, .7, .2], [.4, .3, .3], [.2, .2, .6]])}
    table = metrics.class_frame_metrics(frame_classes, probs, classes).set_index("class")
    # A: positives (.6, .2) vs negatives (.1, .1, .3, .1, .4, .2): pairs won 6 + 3.5 of 12
    assert table.loc["A", "auc"] == pytest.approx(9.5 / 12)
    # B: positives (.7, .3) vs negatives (.2, .1, .5, .1, .1, .2): 6 + 5 of 12
    assert table.loc["B", "auc"] == pytest.approx(11 / 12)
    summed = {"v1": np.array([1.0, 0.9]), "v2": np.array([0.8, 1.3])}
    truth = {"v1": "A", "v2": "A", "n": "Normal"}
    assert metrics.topk_video_accuracy(truth, summed, classes, 1) == 0.5
    assert metrics.topk_video_accuracy(truth, summed, classes, 2) == 1.0


def test_thresholded_rule_matches_official():
    from vadnb import metrics

    rng = np.random.default_rng(0)
    n, C = 60, 4
    y = rng.integers(-1, C, size=n)
    s = rng.random(n)
    p = rng.random((n, C))
    thr = 0.4
    table = metrics.thresholded_frame_topk({"v": y}, {"v": s}, {"v": p}, list("abcd"), thr, 1)
    # official: below the threshold -> normal, else argmax class; accuracy per true class
    pred = np.where(s < thr, C, p.argmax(1))
    yy = np.where(y < 0, C, y)
    for i, c in enumerate([*"abcd", "Normal"]):
        assert table.set_index("class").loc[c, "top1"] == pytest.approx((pred[yy == i] == i).mean())


# --------------------------------------------------------------------------- the runtime (issue 22)


def _dim(images):
    """A derived image: the frame at half brightness."""
    return images[0] // 2


class _PixelClip:
    """A clip double for whole runs: ``text_clip``'s text tower (it trained the model) and
    raw 32-d features made from each frame's mean pixel; records every image it is sent."""

    profile = "scripted"

    def __init__(self, text_clip):
        self.name, self.model, self.tokenizer = "test-clip", text_clip.model, text_clip.tokenizer
        rng = np.random.default_rng(0)
        self.base, self.dir = 3 * rng.normal(size=32), rng.normal(size=32)
        self.sent = []

    def encode_image_raw(self, images):
        self.sent += [np.asarray(im).copy() for im in images]
        return np.stack([self.base + np.asarray(im, np.float32).mean() / 64 * self.dir
                         for im in images]).astype(np.float32)


@pytest.fixture
def pixel_run(trained, text_clip, tmp_path, fresh_cache):
    from vadnb.video import write_test_video

    video = write_test_video(tmp_path / "v.mp4", num_frames=40, fps=10)
    clip = _PixelClip(text_clip)
    return clip, lambda: ac.run(video, checkpoint=trained[0], backends={"clip": clip},
                                cache=fresh_cache)


def test_editing_the_frames_sent_asks_the_model_again(pixel_run, monkeypatch):
    from vadnb.anomalyclip import core
    from vadnb.runtime import Derived, EncodeImageRaw

    clip, run = pixel_run
    first = run()
    assert len(clip.sent) == 40 and first.model_calls["calls"].sum() > 0
    again = run()  # warm: nothing is sent
    assert len(clip.sent) == 40 and again.model_calls["calls"].sum() == 0
    np.testing.assert_array_equal(again.frame_scores, first.frame_scores)

    def embed_dimmed(rt, v, stride, batch_frames):  # an edit of what is sent to CLIP
        frames = [Derived.of(_dim, [f]) for f in v.frames(range(0, v.num_frames, stride))]
        return np.stack(rt.map("clip", [EncodeImageRaw(f) for f in frames],
                               batch_size=batch_frames))

    monkeypatch.setattr(core, "embed_frames", embed_dimmed)
    edited = run()
    assert len(clip.sent) == 80 and edited.model_calls["calls"].sum() > 0
    np.testing.assert_array_equal(clip.sent[40], clip.sent[0] // 2)  # the new request
    assert not np.array_equal(edited.frame_scores, first.frame_scores)  # and new replies


def test_editing_the_scoring_code_scores_again(pixel_run, monkeypatch):
    from vadnb.anomalyclip import core

    clip, run = pixel_run
    first = run()
    real = core.score_features

    def halved(model, features):
        scores, probs = real(model, features)
        return scores / 2, probs

    monkeypatch.setattr(core, "score_features", halved)
    edited = run()  # features from the cache, scores computed again by the edited code
    assert len(clip.sent) == 40 and edited.model_calls["calls"].sum() == 0
    np.testing.assert_allclose(edited.frame_scores, first.frame_scores / 2, rtol=1e-6)


def test_core_reads_as_numbered_steps():
    import inspect

    from vadnb.anomalyclip import core

    lines = inspect.getsource(core).splitlines()
    assert len(lines) <= 250, f"core.py has {len(lines)} lines; the budget is ~250"
    body = inspect.getsource(core.pipeline)
    steps = [int(m) for m in __import__("re").findall(r"# (\d+)\. ", body)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 3
    for plumbing in ("cache.", "memo(", "make_key", "Roles(", "configure("):
        assert plumbing not in inspect.getsource(core), plumbing


# =========================================================================== the whole pipeline
# fit() then run() against a transcription of the official computation (lucazanella/AnomalyCLIP)
# on the same inputs, with a scripted CLIP that records what it was sent. The draws (segment
# offsets, dropout masks, shuffles) are vadnb's own Generator (DIFFERENCES), replayed here;
# everything else follows the official files named in each comment.

PIPE = dict(num_segments=8, seg_length=4, emb_size=16, heads=2, epochs=7, batch_size=4,
            device="cpu")  # only sizes shrink: lr, schedule, weights, dropout stay defaults
PIPE_CLASSES = ["Car_accident", "Theft"]  # official label order: Car_accident, Normal, Theft


class _CodeClip:
    """Scripted CLIP: the raw feature of a frame is a fixed random row chosen by the code
    ``write_test_video`` drew on it; the text tower is ``text_clip``'s. Records the frame
    codes it was sent and every prompt given to its tokenizer, word for word."""

    profile = "scripted"

    def __init__(self, text_clip, dim=32, codes=4096):
        self.name, self.model = "code-clip", text_clip.model
        self.table = np.random.default_rng(7).normal(size=(codes, dim)).astype(np.float32)
        self.table[2000:] += 1.5  # codes >= 2000: "anomalous" footage
        self.codes, self.prompts = [], []

        def tokenizer(texts):
            self.prompts += list(texts)
            return text_clip.tokenizer(texts)

        self.tokenizer = tokenizer

    def encode_image_raw(self, images):
        from vadnb.video import read_frame_code

        codes = [read_frame_code(im) for im in images]
        self.codes += codes
        return self.table[codes] + 3.0


def _official_text(clip_model, tokenizer, ctx, proj, names):
    """coop.PromptLearner + text_encoder.TextEncoder: "X X X X X X X X <name>." with "_" as
    spaces, the 8 X embeddings replaced by the context, pooled at the end-of-text token."""
    prompts = [" ".join(["X"] * ctx.shape[1]) + " " + n.replace("_", " ") + "." for n in names]
    tokens = torch.as_tensor(tokenizer(prompts))
    emb = clip_model.token_embedding(tokens)
    x = torch.cat([emb[:, :1], ctx, emb[:, 1 + ctx.shape[1]:]], dim=1)
    x = clip_model.transformer(x + clip_model.positional_embedding, attn_mask=clip_model.attn_mask)
    x = clip_model.ln_final(x)
    return x[torch.arange(len(names)), tokens.argmax(dim=-1)] @ proj


def _official_fit(features, labels, clip_model, tokenizer, cfg):
    """anomaly_clip_module.AnomalyCLIPModule.training_step over anomaly_clip_datamodule's two
    loaders (half a batch each, shuffle, drop_last; Lightning cycles the shorter), AdamW
    wd 0.2 stepped per batch, WarmupCosineAnnealingLR stepped per epoch. Returns the loss
    terms and lr of every step, the trained pieces and the BatchNorm running statistics."""
    import torch.nn.functional as F

    names_all = sorted(PIPE_CLASSES + ["Normal"])  # data/*_labels.csv sorted, Normal inside
    normal_id = names_all.index("Normal")
    S, L, half = cfg.num_segments, cfg.seg_length, cfg.batch_size // 2
    torch.manual_seed(cfg.seed)  # vadnb's init and draws, replayed
    rng = np.random.default_rng(cfg.seed)
    abnormal = [v for v in features if labels[v] != "Normal"]
    normal = [v for v in features if labels[v] == "Normal"]
    centroid = torch.from_numpy(np.concatenate([features[v] for v in normal]).mean(0))
    init = ac.AnomalyCLIP(clip_model, tokenizer, PIPE_CLASSES, centroid.numpy(), cfg)
    ctx = torch.nn.Parameter(init.prompts.ctx.detach().clone())
    proj = torch.nn.Parameter(init.prompts.text_projection.detach().clone())
    temporal = init.temporal  # parity with the official axial transformer: tested above
    run_mean, run_var = torch.zeros(len(PIPE_CLASSES)), torch.ones(len(PIPE_CLASSES))
    opt = torch.optim.AdamW([{"params": temporal.parameters()}, {"params": [ctx]},
                             {"params": [proj]}], lr=1e-5, weight_decay=0.2)
    steps = max(len(abnormal), len(normal)) // half  # max_size_cycle of drop_last loaders

    def loader(group, n):  # DataLoader(shuffle=True, drop_last=True), restarted when empty
        order = []
        while len(order) < n:
            perm = [group[i] for i in rng.permutation(len(group))]
            order += perm[:len(perm) // half * half or len(perm)]
        return order[:n]

    rows = []
    for epoch in range(cfg.epochs):
        lr = _official_lr(epoch, 1e-5, 5, cfg.epochs)
        for group in opt.param_groups:
            group["lr"] = lr
        a_order, n_order = loader(abnormal, steps * half), loader(normal, steps * half)
        for s in range(steps):
            batch = a_order[s * half:(s + 1) * half] + n_order[s * half:(s + 1) * half]
            x = torch.from_numpy(np.stack([features[v][ac.sample_training_indices(
                len(features[v]), S, L, rng)] for v in batch])).reshape(-1, centroid.shape[0])
            mask = torch.from_numpy(rng.random((len(batch), S)) >= 0.7).float()
            y = torch.tensor([names_all.index(labels[v]) for v in batch])
            text = _official_text(clip_model, tokenizer, ctx, proj, PIPE_CLASSES)
            d = (text - centroid) / (text - centroid).norm(dim=-1, keepdim=True)
            sim = F.batch_norm((x - centroid) @ d.T, run_mean, run_var, training=True)
            top_abn, top_nor, bot_abn = _official_select(sim.view(len(batch), S * L, -1), y,
                                                         mask, normal_id, S, L, 3, 3)
            scores = temporal((x - centroid).reshape(len(batch), S, L, -1)).reshape(-1)
            terms = _official_loss(sim, scores, y, top_abn, top_nor, bot_abn, normal_id, S, L, 3)
            opt.zero_grad()
            sum(terms.values()).backward()
            opt.step()
            rows.append({**{k: float(v.detach()) for k, v in terms.items()}, "lr": lr})
    return rows, ctx, proj, temporal, run_mean, run_var, centroid


def _official_scores(features, ctx, proj, temporal, run_mean, run_var, centroid, clip_model,
                     tokenizer, S, L):
    """AnomalyCLIPModule.validation_step on one video: wrap-around to ceil(T / (S*L)) grids
    (feature_dataset.round_to_nearest), BatchNorm on running statistics (eval), grid j =
    the j-th L frames of each of the S blocks (temporal_model test_mode), p(c) =
    softmax(sim) * score, padding removed."""
    import torch.nn.functional as F

    t = len(features)
    g = math.ceil(t / (S * L))
    x = torch.from_numpy(features[np.arange(g * S * L) % t])
    with torch.no_grad():
        text = _official_text(clip_model, tokenizer, ctx, proj, PIPE_CLASSES)
        d = (text - centroid) / (text - centroid).norm(dim=-1, keepdim=True)
        sim = F.batch_norm((x - centroid) @ d.T, run_mean, run_var, training=False)
        grid = (x - centroid).reshape(S, g, L, -1).transpose(0, 1)  # "(n s l) -> (s) n l"
        scores = temporal(grid).transpose(0, 1).reshape(-1)
        probs = torch.softmax(sim, dim=1) * scores[:, None]
    return scores[:t].numpy(), probs[:t].numpy()


@pytest.fixture(scope="module")
def whole_run(text_clip, tmp_path_factory):
    from vadnb.video import write_test_video

    root = tmp_path_factory.mktemp("whole")
    clip = _CodeClip(text_clip)
    # 5 abnormal, 3 normal, half a batch = 2: floor(5/2) = 2 steps (ceil: 3); the normal
    # loader restarts mid-epoch and drops its odd video each pass
    videos = {"n0": (0, 70, "Normal"), "n1": (100, 50, "Normal"), "n2": (200, 40, "Normal"),
              "c0": (2000, 60, "Car_accident"), "c1": (2300, 36, "Car_accident"),
              "t0": (2100, 45, "Theft"), "t1": (2200, 80, "Theft"), "t2": (2400, 33, "Theft")}
    feats = {}
    for v, (start, n, _) in videos.items():
        path = write_test_video(root / f"{v}.mp4", num_frames=n, fps=10, start_code=start)
        feats[v] = ac.extract_features(path, clip, progress=False)
    sent_training = list(clip.codes)
    labels = {v: lab for v, (_, _, lab) in videos.items()}
    model, curves = ac.fit(feats, labels, clip, ac.Config(**PIPE), class_names=PIPE_CLASSES,
                           progress=False)
    test = write_test_video(root / "test.mp4", num_frames=40, fps=10, start_code=1990)
    clip.codes = []
    det = ac.run(test, checkpoint=model, backends={"clip": clip})
    return dict(clip=clip, feats=feats, labels=labels, model=model, curves=curves, det=det,
                sent_training=sent_training, videos=videos)


def test_whole_pipeline_sends_clip_every_frame_and_the_official_prompts(whole_run):
    clip, videos = whole_run["clip"], whole_run["videos"]
    assert whole_run["sent_training"] == [c for s, n, _ in videos.values()
                                          for c in range(s, s + n)]
    assert clip.codes == list(range(1990, 2030))  # every test frame once, in order
    assert clip.prompts == ["X X X X X X X X Car accident.", "X X X X X X X X Theft."]


def test_whole_pipeline_trains_as_the_official_step(whole_run, text_clip):
    w = whole_run
    rows, ctx, proj, temporal, run_mean, run_var, centroid = _official_fit(
        w["feats"], w["labels"], text_clip.model, text_clip.tokenizer, ac.Config(**PIPE))
    curves, model = w["curves"], w["model"]
    assert len(curves) == len(rows) == 7 * 2
    for term in ("projection_topk", "projection_normal", "nll_topk_abnormal",
                 "nll_bottomk_abnormal", "nll_topk_normal", "smoothness", "sparsity", "lr"):
        np.testing.assert_allclose(curves[term], [r[term] for r in rows], rtol=1e-5,
                                   atol=1e-9, err_msg=term)
    torch.testing.assert_close(model.centroid, centroid)
    torch.testing.assert_close(model.prompts.ctx.detach(), ctx.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model.prompts.text_projection.detach(), proj.detach(),
                               atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model.norm.running_mean, run_mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model.norm.running_var, run_var, atol=1e-6, rtol=1e-5)
    for (k, a), b in zip(model.temporal.state_dict().items(), temporal.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=k)


def test_whole_pipeline_scores_as_the_official_test_step(whole_run, text_clip):
    w = whole_run
    model, det, clip = w["model"], w["det"], w["clip"]
    feats = clip.table[np.arange(1990, 2030)] + 3.0
    scores, probs = _official_scores(feats, model.prompts.ctx.detach(),
                                     model.prompts.text_projection.detach(), model.temporal,
                                     model.norm.running_mean, model.norm.running_var,
                                     model.centroid, text_clip.model, text_clip.tokenizer, 8, 4)
    np.testing.assert_allclose(det.frame_scores, scores, atol=1e-5)
    np.testing.assert_allclose(det.extras["class_probs"][:, :2], probs, atol=1e-5)
    np.testing.assert_allclose(det.extras["class_probs"][:, 2], 1 - scores, atol=1e-5)
    assert det.extras["class_names"] == PIPE_CLASSES + ["Normal"]


def test_video_class_sums_probabilities_over_frames():
    # class a peaks on one frame, class b holds steadily: the sum names b, a max would name a
    probs = np.array([[0.9, 0.0, 0.1], [0.1, 0.45, 0.45], [0.1, 0.45, 0.45], [0.1, 0.45, 0.45]])
    assert ac.video_class(probs, ["a", "b"]) == "b"


def test_release_list_start_offsets_shift_the_temporal_annotation(tmp_path):
    root = tmp_path / "feats"
    (root / "Riot").mkdir(parents=True)
    np.save(root / "Riot" / "v.npy", np.ones((50, 4), np.float32))
    (tmp_path / "test.txt").write_text("Riot/v 100 149 5\n")
    (tmp_path / "temporal.txt").write_text("v.mp4 Riot 110 120 -1 -1\n")
    bench, _ = ac.release_benchmark(root, {"test": tmp_path / "test.txt"}, "xd_violence",
                                    tmp_path / "temporal.txt")
    want = np.zeros(50, np.uint8)
    want[10:21] = 1  # official: start <= i + <list start> <= end
    np.testing.assert_array_equal(bench.frame_labels("v"), want)


def test_explanation_says_when_the_anomaly_classes_outweigh_a_likeliest_normal():
    """Normal can be the likeliest single class while the anomaly classes together, the
    score, outweigh it: the explanation names both, so "Normal" never sits beside 0.61."""
    from vadnb.anomalyclip.run import segments_table

    names = ["Fighting", "Arson", "Theft"]
    probs = np.array([[0.22, 0.20, 0.19, 0.39]] * 16 + [[0.05, 0.05, 0.10, 0.80]] * 16)
    seg = segments_table(1 - probs[:, -1], probs, names, fps=8.0)
    assert seg["score"].tolist() == pytest.approx([0.61, 0.20])
    assert seg["explanation"].tolist() == [
        "Normal (p=0.39); the anomaly classes together p=0.61, most of all Fighting (p=0.22)",
        "Normal (p=0.80)"]
    assert seg["predicted_class"].tolist() == ["Normal", "Normal"]
