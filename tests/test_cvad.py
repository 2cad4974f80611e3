"""C-ShT / C-Ave label sets (vadnb.data.load_cvad) on small fixtures written in exactly the
layout of AnyAnomaly's ground_truth/ folder: one 1-D dataset per video at the root of each
.h5 file (int8 in the single-type files, uint8 in the multi-type ones, as the real files),
the JSON lists beside them; evaluated with the C-VAD protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from vadnb.data import AnnotationError, cvad_multi_type_videos, cvad_types, load_cvad  # noqa: E402

LENGTHS = {"01_0014": 30, "01_0015": 26, "01_0053": 40, "03_0032": 35, "05_0023": 28,
           "06_0145": 33}
MULTI = {"jumping-falling-pickup": ["05_0023"], "car-bicycle": ["06_0145"]}


def _write_h5(path, arrays, dtype):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, a in arrays.items():
            f.create_dataset(name, data=np.asarray(a, dtype=dtype))


def _labels(spans):
    out = {}
    for name, n in LENGTHS.items():
        y = np.zeros(n, np.int8)
        for a, b in spans.get(name, []):
            y[a:b] = 1
        out[name] = y
    return out


@pytest.fixture()
def ground_truth(tmp_path):
    gt = tmp_path / "ground_truth"
    d = gt / "c-shtech_labels"
    single = {k: v for k, v in LENGTHS.items() if k not in ("05_0023", "06_0145")}
    car = _labels({"01_0053": [(5, 25)]})
    falling = _labels({"03_0032": [(10, 30)]})
    _write_h5(d / "shtech_car_label.h5", {k: car[k] for k in single}, np.int8)
    _write_h5(d / "shtech_falling_label.h5", {k: falling[k] for k in single}, np.int8)
    multi = np.zeros(LENGTHS["05_0023"], np.uint8)
    multi[3:20] = 1
    _write_h5(d / "m_shtech_jumping-falling-pickup_label.h5", {"05_0023": multi}, np.uint8)
    _write_h5(d / "m_shtech_car-bicycle_label.h5",
              {"06_0145": np.ones(LENGTHS["06_0145"], np.uint8)}, np.uint8)
    (gt / "c-shtech.json").write_text(json.dumps({"car": ["01_0053"], "falling": ["03_0032"]}))
    (gt / "c-shtech-multiple.json").write_text(json.dumps(MULTI))
    return gt


def test_single_type_set_has_every_test_video_but_the_multi_type_ones(ground_truth):
    car = load_cvad(ground_truth, "shanghaitech", "car")
    names = car.videos["name"].tolist()
    assert names == ["01_0014", "01_0015", "01_0053", "03_0032"]
    assert car.videos["num_frames"].tolist() == [LENGTHS[n] for n in names]
    assert car.frame_labels("01_0053")[5:25].all() and car.frame_labels("01_0053").sum() == 20
    # the falling video is a negative for "car"
    assert car.frame_labels("03_0032").sum() == 0
    assert car.videos.set_index("name").loc["03_0032", "label"] == "Normal"
    assert car.videos.set_index("name").loc["01_0053", "label"] == "car"
    assert car.classes == ["car"] and set(car.videos["split"]) == {"test"}
    assert (car.videos["fps"] == 24.0).all()
    assert cvad_types(ground_truth, "shanghaitech") == {
        "single": ["car", "falling"], "multiple": ["car-bicycle", "jumping-falling-pickup"]}
    assert cvad_multi_type_videos(ground_truth, "shanghaitech") == ["05_0023", "06_0145"]


def test_multi_type_set_has_its_own_videos_and_keywords(ground_truth):
    m = load_cvad(ground_truth / "c-shtech_labels", "shtech", "jumping-falling-pickup")
    assert m.videos["name"].tolist() == ["05_0023"]
    assert m.classes == ["jumping", "falling", "pickup"]
    assert m.frame_labels("05_0023").sum() == 17 and m.frame_labels("05_0023").dtype == np.uint8


def test_a_single_type_file_listing_a_multi_type_video_drops_it(ground_truth):
    d = ground_truth / "c-shtech_labels"
    _write_h5(d / "shtech_running_label.h5",
              {k: np.zeros(n, np.int8) for k, n in LENGTHS.items()}, np.int8)
    running = load_cvad(ground_truth, "shanghaitech", "running")
    assert "05_0023" not in running.videos["name"].tolist()


def test_videos_root_frame_folders_are_matched_and_counted(ground_truth, tmp_path):
    import cv2

    frames = tmp_path / "shanghaitech" / "testing" / "frames"
    for name in ("01_0014", "01_0015", "01_0053", "03_0032"):
        (frames / name).mkdir(parents=True)
        img = np.zeros((4, 4, 3), np.uint8)
        for i in range(LENGTHS[name]):
            cv2.imwrite(str(frames / name / f"{i:03d}.jpg"), img)
    car = load_cvad(ground_truth, "shanghaitech", "car", videos_root=tmp_path / "shanghaitech")
    assert car.path("01_0053") == frames / "01_0053"
    # one image too many (the next number: a numbered folder's frames are its numbering's
    # span): the labels no longer fit the video
    extra = f"{LENGTHS['01_0015']:03d}.jpg"
    cv2.imwrite(str(frames / "01_0015" / extra), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(AnnotationError, match="01_0015.*26 frame labels.*27 frames"):
        load_cvad(ground_truth, "shanghaitech", "car", videos_root=tmp_path / "shanghaitech")
    (frames / "01_0014").rename(frames / "gone")
    with pytest.raises(FileNotFoundError, match="01_0014"):
        load_cvad(ground_truth, "shanghaitech", "car", videos_root=tmp_path / "shanghaitech")


def test_bad_input_gets_clear_errors(ground_truth):
    with pytest.raises(FileNotFoundError, match="single types: \\['car', 'falling'\\]"):
        load_cvad(ground_truth, "shanghaitech", "dragon")
    with pytest.raises(ValueError, match="unknown C-VAD dataset"):
        load_cvad(ground_truth, "ucf", "car")
    with pytest.raises(FileNotFoundError, match="c-avenue_labels"):
        load_cvad(ground_truth, "avenue", "running")
    d = ground_truth / "c-shtech_labels"
    _write_h5(d / "shtech_bad_label.h5", {"01_0014": np.full(5, 2, np.int8)}, np.int8)
    with pytest.raises(AnnotationError, match="shtech_bad_label.h5.*01_0014.*0/1"):
        load_cvad(ground_truth, "shanghaitech", "bad")
    _write_h5(d / "shtech_flat_label.h5", {"01_0014": np.zeros((3, 2), np.int8)}, np.int8)
    with pytest.raises(AnnotationError, match="1-D"):
        load_cvad(ground_truth, "shanghaitech", "flat")
    (d / "shtech_junk_label.h5").write_bytes(b"not hdf5")
    with pytest.raises(AnnotationError, match="not a readable HDF5"):
        load_cvad(ground_truth, "shanghaitech", "junk")


def test_avenue_layout_and_the_c_vad_protocol(tmp_path):
    from sklearn import metrics as skm

    from vadnb.metrics import cvad_table

    gt = tmp_path / "gt"
    d = gt / "c-avenue_labels"
    lengths = {"01": 50, "02": 40, "05": 45, "06": 30}
    running = {k: np.zeros(n, np.int8) for k, n in lengths.items() if k != "06"}
    running["02"][10:30] = 1
    throwing = {k: np.zeros(n, np.int8) for k, n in lengths.items() if k != "06"}
    throwing["05"][5:15] = 1
    _write_h5(d / "avenue_running_label.h5", running, np.int8)
    _write_h5(d / "avenue_throwing_label.h5", throwing, np.int8)
    _write_h5(d / "m_avenue_throwing-too_close_label.h5", {"06": np.ones(30, np.uint8)},
              np.uint8)
    # the official JSON spells this set "throwing_too-close": the .h5 files decide
    (gt / "c-avenue-multiple.json").write_text(json.dumps({"throwing_too-close": ["06"]}))
    sets = {t: load_cvad(gt, "avenue", t) for t in ("running", "throwing")}
    assert sets["running"].videos["name"].tolist() == ["01", "02", "05"]
    assert (sets["running"].videos["fps"] == 25.0).all()
    rng = np.random.default_rng(0)
    labels = {t: b.all_frame_labels() for t, b in sets.items()}
    scores = {t: {n: rng.random(len(y)) + 0.5 * y for n, y in labels[t].items()}
              for t in labels}
    table = cvad_table(labels, scores).set_index("type")
    for t in labels:
        names = sorted(labels[t])
        y = np.concatenate([labels[t][n] for n in names])
        s = np.concatenate([scores[t][n] for n in names])
        fpr, tpr, _ = skm.roc_curve(y, s, pos_label=1)
        assert table.loc[t, "auc"] == pytest.approx(skm.auc(fpr, tpr), abs=1e-9)
        assert table.loc[t, "videos"] == 3
    m = load_cvad(gt, "avenue", "throwing-too_close")
    assert m.classes == ["throwing", "too_close"] and len(m) == 1
