"""run_dataset: a whole benchmark split, locally and on a local Ray, resumable, evaluated."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from vadnb import scale
from vadnb.data import load_campus
from vadnb.detect import TINY_WARNING

CLIPS = ["test_normal_01", "test_vehicle_01", "test_running_01"]  # both classes: AUC defined
VERA_FAST = {"stride": 48, "max_new_tokens": 8}  # tiny VERA in a second per clip


@pytest.fixture(scope="module")
def campus_test():
    return load_campus().subset("test")


@pytest.fixture(scope="module")
def classical_run(campus_test, tmp_path_factory):
    """The classical method on three clips, local executor, fresh cache."""
    base = tmp_path_factory.mktemp("classical")
    run = scale.run_dataset(campus_test, "classical", out_dir=base / "run", videos=CLIPS,
                            cache=base / "cache", progress=False)
    return run, base


def test_local_run_writes_scores_segments_and_summary(classical_run, campus_test):
    run, base = classical_run
    out = base / "run"
    for name in CLIPS:
        table = pd.read_parquet(out / "frame_scores" / f"{name}.parquet")
        assert list(table.columns) == ["video", "frame", "score"]
        assert table["frame"].tolist() == list(range(campus_test.num_frames(name)))
        direct = scale.score_video(campus_test.path(name), "classical", cache=base / "cache")
        np.testing.assert_array_equal(table["score"].to_numpy(np.float32), direct.frame_scores)
        assert (out / "segments" / f"{name}.csv").exists()
    # micro metrics over the concatenated frames, as scikit-learn computes them
    y = np.concatenate([campus_test.frame_labels(n) for n in CLIPS])
    s = np.concatenate([run.frame_scores()[n] for n in CLIPS]).astype(np.float64)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert summary["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert (summary["videos"], summary["frames"], summary["method"]) == (3, len(y), "classical")
    assert summary["profile"] == "none" and summary["meaningless"] is False
    per_video = pd.read_csv(out / "per_video.csv")
    assert per_video["video"].tolist() == CLIPS
    assert per_video["label"].tolist() == ["Normal", "Vehicle", "Running"]
    assert per_video["model_calls"].tolist() == [0, 0, 0]
    assert np.isnan(per_video.loc[0, "auc"])  # a normal video alone has no AUC
    vehicle = campus_test.frame_labels("test_vehicle_01")
    assert per_video.loc[1, "auc"] == pytest.approx(
        roc_auc_score(vehicle, run.frame_scores()["test_vehicle_01"]))
    assert scale.load_run(out).summary == summary


def test_resume_scores_only_the_missing_videos(classical_run, campus_test, monkeypatch):
    run, base = classical_run
    out = base / "run"
    # a planted marker: a video whose file exists must be read back, not scored again
    kept = out / "frame_scores" / "test_vehicle_01.parquet"
    table = pd.read_parquet(kept)
    table["score"] = np.float32(0.25)
    table.to_parquet(kept, index=False)
    (out / "frame_scores" / "test_running_01.parquet").unlink()
    scored = []
    real = scale.score_video
    monkeypatch.setattr(scale, "score_video",
                        lambda video, *a, **k: scored.append(str(video)) or real(video, *a, **k))
    again = scale.run_dataset(campus_test, "classical", out_dir=out, videos=CLIPS,
                              cache=base / "cache", progress=False)
    assert [s.rsplit("/", 1)[-1] for s in scored] == ["test_running_01.mp4"]
    assert again.skipped == ["test_normal_01", "test_vehicle_01"]
    assert (again.summary["scored_now"], again.summary["resumed"]) == (1, 2)
    assert np.all(again.frame_scores()["test_vehicle_01"] == np.float32(0.25))
    np.testing.assert_array_equal(again.frame_scores()["test_running_01"],
                                  run.frame_scores()["test_running_01"])


def test_a_folder_of_another_run_is_refused_unless_overwrite(campus_test, tmp_path):
    out = tmp_path / "run"
    one = ["test_normal_01", "test_fallen_01"]
    scale.run_dataset(campus_test, "classical", out_dir=out, videos=one, cache=tmp_path / "c",
                      progress=False)
    with pytest.raises(ValueError, match=r"holds another run.*smooth_s.*overwrite=True"):
        scale.run_dataset(campus_test, "classical", out_dir=out, videos=one, smooth_s=3.0,
                          cache=tmp_path / "c", progress=False)
    fresh = scale.run_dataset(campus_test, "classical", out_dir=out, videos=one, smooth_s=3.0,
                              cache=tmp_path / "c", overwrite=True, progress=False)
    assert fresh.summary["scored_now"] == 2 and fresh.summary["overrides"] == {"smooth_s": 3.0}


def _with_copies(bench, names, folder, extra=()):
    """``bench`` restricted to ``names``, each video copied into ``folder`` (so a test may
    rewrite it), plus ``extra`` unlabelled "Normal" videos ``(name, path)`` of the test split."""
    import dataclasses
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    table = bench.table[bench.table["name"].isin(names)].copy()
    table["path"] = [str(shutil.copy(p, folder / f"{n}.mp4"))
                     for n, p in zip(table["name"], table["path"])]
    rows = [{"name": n, "path": str(p), "split": "test", "label": "Normal",
             "is_anomalous": False, "num_frames": np.nan, "fps": np.nan} for n, p in extra]
    if rows:
        table = pd.concat([pd.DataFrame(rows), table], ignore_index=True)
    truth = {n: v for n, v in bench.truth.items() if n in names}
    return dataclasses.replace(bench, table=table, truth=truth)


@pytest.fixture()
def with_a_corrupt_file(campus_test, tmp_path):
    """The three CLIPS plus "corrupt": garbage bytes named .mp4, listed first."""
    bad = tmp_path / "videos" / "corrupt.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return _with_copies(campus_test, CLIPS, tmp_path / "videos", [("corrupt", bad)])


def _check_partial_run(err, bench, out, good, bad):
    """The run raised RunFailed after scoring, saving and evaluating the good videos."""
    result = err.value.result
    assert sorted(p.stem for p in (out / "frame_scores").glob("*.parquet")) == sorted(good)
    summary = json.loads((out / "summary.json").read_text())
    assert summary == result.summary and result.failed == summary["failed"]
    assert {f["video"]: f["error_type"] for f in summary["failed"]} == bad
    assert all(f["error"] for f in summary["failed"])
    assert (summary["videos"], summary["videos_failed"]) == (len(good), len(bad))
    for name in bad:
        assert repr(name) in str(err.value)
    y = np.concatenate([bench.frame_labels(n) for n in good])
    s = np.concatenate([result.frame_scores()[n] for n in good]).astype(np.float64)
    assert summary["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert pd.read_csv(out / "per_video.csv")["video"].tolist() == good
    return summary


def test_bad_videos_are_named_and_the_others_scored_saved_and_evaluated(
        with_a_corrupt_file, tmp_path, monkeypatch):
    real = scale.score_video

    def broken(video, *args, **kwargs):  # fails in the middle of the run
        if "vehicle" in str(video):
            raise OSError("decoder gave up")
        return real(video, *args, **kwargs)

    monkeypatch.setattr(scale, "score_video", broken)
    out = tmp_path / "run"
    with pytest.raises(scale.RunFailed, match=r"2 video\(s\) failed") as err:
        scale.run_dataset(with_a_corrupt_file, "classical", out_dir=out, cache=tmp_path / "c",
                          progress=False)
    summary = _check_partial_run(err, with_a_corrupt_file, out,
                                 ["test_normal_01", "test_running_01"],
                                 {"corrupt": "VideoError", "test_vehicle_01": "OSError"})
    assert summary["failed"][1]["error"] == "decoder gave up"
    assert "'test_vehicle_01': OSError: decoder gave up" in str(err.value)
    # the failures are not done: a rerun scores them (and only them) again
    monkeypatch.setattr(scale, "score_video", real)
    with pytest.raises(scale.RunFailed, match="'corrupt'") as again:
        scale.run_dataset(with_a_corrupt_file, "classical", out_dir=out, cache=tmp_path / "c",
                          progress=False)
    assert again.value.result.summary["scored_now"] == 1
    assert again.value.result.summary["resumed"] == 2
    assert scale.load_run(out).failed == again.value.result.failed


def test_a_video_re_encoded_in_place_is_scored_again(campus_test, tmp_path, monkeypatch):
    from vadnb.video import write_test_video

    bench = _with_copies(campus_test, CLIPS, tmp_path / "videos")
    out = tmp_path / "run"
    old = scale.run_dataset(bench, "classical", out_dir=out, cache=tmp_path / "c",
                            progress=False).frame_scores()["test_vehicle_01"]
    target = bench.path("test_vehicle_01")
    write_test_video(target, num_frames=bench.num_frames("test_vehicle_01"), fps=10,
                     size=(64, 48))  # other frames, same length, same file
    scored = []
    real = scale.score_video
    monkeypatch.setattr(scale, "score_video",
                        lambda video, *a, **k: scored.append(str(video)) or real(video, *a, **k))
    again = scale.run_dataset(bench, "classical", out_dir=out, cache=tmp_path / "c",
                              progress=False)
    assert scored == [str(target)]
    assert (again.summary["scored_now"], again.summary["resumed"]) == (1, 2)
    new = again.frame_scores()["test_vehicle_01"]
    assert len(new) == len(old) and not np.array_equal(new, old)
    np.testing.assert_array_equal(
        new, real(target, "classical", cache=tmp_path / "direct").frame_scores)
    # a file only touched (same bytes, new time) is hashed, found unchanged, not scored
    import os

    os.utime(bench.path("test_normal_01"))
    scored.clear()
    scale.run_dataset(bench, "classical", out_dir=out, cache=tmp_path / "c", progress=False)
    assert scored == []


def test_bad_requests_say_what_to_do(campus_test, tmp_path):
    with pytest.raises(ValueError, match="unknown method 'lavadd'"):
        scale.run_dataset(campus_test, "lavadd", out_dir=tmp_path)
    with pytest.raises(ValueError, match="executor must be 'local' or 'ray'"):
        scale.run_dataset(campus_test, executor="dask", out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"'ucf_crime' needs root="):
        scale.run_dataset("ucf_crime", out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'ucsd'"):
        scale.run_dataset("ucsd", out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"\['test_nope'\] are not in"):
        scale.run_dataset("campus", videos=["test_nope"], out_dir=tmp_path)
    with pytest.raises(ValueError, match="cannot be shipped to Ray"):
        scale.run_dataset(campus_test, "vera", executor="ray", backends={"vlm": object()},
                          out_dir=tmp_path)
    assert not (tmp_path / "run.json").exists()  # nothing was claimed


# --------------------------------------------------------------------------------------
# Ray: a local cluster on this machine (2 CPUs, no dashboard), started once per module
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    scale.start_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def test_ray_gives_the_local_scores_classical(local_ray, campus_test, tmp_path):
    clips = CLIPS[:2]  # a normal and an anomalous clip, one per actor
    on_ray = scale.run_dataset(campus_test, "classical", executor="ray", actors=2,
                               out_dir=tmp_path / "r", videos=clips, cache=tmp_path / "cache",
                               progress=False)
    assert on_ray.summary["executor"] == "ray" and on_ray.summary["scored_now"] == 2
    scores = on_ray.frame_scores()
    assert sorted(scores) == sorted(clips)
    for name in clips:  # computed here, in this process, with a cache of its own
        local = scale.score_video(campus_test.path(name), "classical", cache=tmp_path / "local")
        np.testing.assert_array_equal(scores[name], local.frame_scores)
    y = np.concatenate([campus_test.frame_labels(n) for n in clips])
    s = np.concatenate([scores[n] for n in clips]).astype(np.float64)
    assert on_ray.summary["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_ray_goes_on_past_a_corrupt_video_and_saves_the_others(local_ray, with_a_corrupt_file,
                                                               tmp_path):
    bench = _with_copies(with_a_corrupt_file, ["corrupt", *CLIPS[:2]], tmp_path / "two")
    bench.table.loc[0, "num_frames"] = 150  # listed with a length: it fails in a worker
    out = tmp_path / "r"
    with pytest.raises(scale.RunFailed, match="'corrupt'") as err:
        scale.run_dataset(bench, "classical", executor="ray", actors=1, out_dir=out,
                          cache=tmp_path / "cache", progress=False)
    summary = _check_partial_run(err, bench, out, CLIPS[:2], {"corrupt": "VideoError"})
    assert summary["executor"] == "ray" and summary["scored_now"] == 2


def test_ray_pool_that_breaks_marks_the_rest_failed_with_the_cause(local_ray, campus_test,
                                                                     tmp_path):
    # every actor fails to load its model: nothing is scored, each video is named, the
    # cause is the model's own message (not Ray's traceback), and summary.json is written
    out = tmp_path / "r"
    with pytest.raises(scale.RunFailed, match="2 video") as err:
        scale.run_dataset(campus_test, "anomalyclip", "tiny", executor="ray", actors=1,
                          videos=CLIPS[:2], out_dir=out, cache=tmp_path / "c", progress=False,
                          clip_model="nope/none")
    failed = json.loads((out / "summary.json").read_text())["failed"]
    assert [f["video"] for f in failed] == CLIPS[:2]
    for f in failed:
        assert f["error"].startswith("not scored, the Ray pipeline stopped: ")
        assert "ModelUnavailableError: The clip model 'nope/none' is not available" in f["error"]
        assert "\x1b" not in f["error"] and 'File "' not in f["error"]
    assert err.value.result.summary["videos"] == 0


def test_ray_gives_the_local_scores_tiny_vera(local_ray, campus_test, tmp_path):
    clips = ["test_normal_02", "test_fallen_01"]
    local = scale.run_dataset(campus_test, "vera", "tiny", out_dir=tmp_path / "l", videos=clips,
                              cache=tmp_path / "cl", progress=False, **VERA_FAST)
    on_ray = scale.run_dataset(campus_test, "vera", "tiny", executor="ray", actors=1,
                               out_dir=tmp_path / "r", videos=clips, cache=tmp_path / "cr",
                               progress=False, **VERA_FAST)
    a, b = local.frame_scores(), on_ray.frame_scores()
    assert sorted(a) == sorted(b) == sorted(clips)
    for name in clips:
        np.testing.assert_array_equal(a[name], b[name])
    for run in (local, on_ray):
        s = run.summary
        assert s["profile"] == "tiny" and s["meaningless"] is True and s["warning"] == TINY_WARNING
        # VERA asks the VLM once per 48-frame position: the counts add up over the videos
        positions = sum(len(pd.read_csv(run.out_dir / "segments" / f"{n}.csv")) for n in clips)
        assert s["model_calls"]["vlm"]["items"] == positions
        assert run.per_video["model_calls"].tolist() == [2, 2]  # vlm + embedder, one batch each
    assert on_ray.summary["auc"] == local.summary["auc"]


# --------------------------------------------------------------------------------------
# The cost model (notebook 90's table)
# --------------------------------------------------------------------------------------


def _calls(method, **kw):
    return {(r["role"], r["kind"]): r["calls"] for r in scale.calls_per_minute(method, **kw)}


def test_calls_per_minute_match_the_reference_anchors():
    # REFERENCE, per minute of 30 fps video: LAVAD 225 LLM calls and (as published)
    # 5 x 1800 = 9000 captions; VERA 112.5 VLM calls; AnyAnomaly ~190-225 per keyword
    lavad = _calls("lavad")
    assert lavad[("llm", "llm")] == 225 and lavad[("captioner", "captioner")] == 112.5
    assert lavad[("embedder", "embedder")] == 1125 and lavad[("embedder", "embedder_video")] == 112.5
    assert _calls("lavad-published")[("captioner", "captioner")] == 9000
    assert _calls("lavad", captioners=5)[("captioner", "captioner")] == 562.5  # 16x fewer
    assert _calls("vera")[("vlm", "vlm")] == 112.5
    anyan = _calls("anyanomaly", keywords=2)
    assert anyan[("vlm", "vlm_1_image")] == 2 * 225  # 3 views x 75 segments x 2 keywords
    # CLIP: every frame + 4 context frames x (5x5 + 3x3 + 1) windows x 75 segments
    assert anyan[("clip", "clip")] == 1800 + 4 * 35 * 75
    assert _calls("anomalyclip") == {("clip", "clip"): 1800}
    assert _calls("vera", fps=24.0)[("vlm", "vlm")] == 24 * 60 / 16
    assert scale.calls_per_minute("classical") == []
    with pytest.raises(ValueError, match="unknown method"):
        scale.calls_per_minute("lavda")


def test_gpu_hours_follow_from_calls_and_seconds_per_call():
    spc = {"x": {"captioner": 1.0, "llm": 2.0, "embedder": 0.0, "embedder_video": 0.0,
                 "vlm": 4.0}}
    table = scale.cost_table(["lavad", "vera", "classical"], fps=30.0, profiles=("x",),
                             seconds_per_call=spc)
    hours = scale.gpu_hours(table, frames=30 * 60 * 60, fps=30.0, profile="x")  # one hour
    # per minute: LAVAD 112.5 x 1 s + 225 x 2 s; VERA 112.5 x 4 s; 60 minutes
    assert hours["lavad"] == pytest.approx((112.5 + 450) * 60 / 3600)
    assert hours["vera"] == pytest.approx(450 * 60 / 3600)
    assert hours["classical"] == 0
    ucf = scale.BENCHMARK_SIZES["ucf_crime"]
    assert ucf["frames"] / ucf["fps"] / 3600 == pytest.approx(10.28, abs=0.01)  # ~10 h of video


# --- output names: unique, reversible, no raw KeyError (issue 15) ----------------------------

import dataclasses  # noqa: E402


def _renamed(bench, mapping):
    """``bench`` restricted to ``mapping``'s videos, renamed (truth follows the new names)."""
    table = bench.table[bench.table["name"].isin(list(mapping))].copy()
    table["name"] = table["name"].map(mapping)
    truth = {mapping[k]: v for k, v in bench.truth.items() if k in mapping}
    return dataclasses.replace(bench, table=table.reset_index(drop=True), truth=truth)


def test_names_with_slashes_and_underscores_get_distinct_reversible_files(campus_test, tmp_path):
    bench = _renamed(campus_test, {"test_normal_01": "a/b", "test_vehicle_01": "a__b"})
    run = scale.run_dataset(bench, "classical", out_dir=tmp_path / "run", cache=tmp_path / "c",
                            progress=False)
    files = sorted(p.name for p in (tmp_path / "run" / "frame_scores").glob("*.parquet"))
    assert files == ["a%2Fb.parquet", "a__b.parquet"]
    scores = run.frame_scores()
    assert len(scores["a/b"]) == campus_test.num_frames("test_normal_01")
    assert len(scores["a__b"]) == campus_test.num_frames("test_vehicle_01")
    assert run.per_video["video"].tolist() == ["a/b", "a__b"]
    for name in ["a/b", "a__b", ".hidden", "a b", "café", "100%", "x%2Fy", "..", "-"]:
        stem = scale._stem(name)
        assert "/" not in stem and not stem.startswith(".") and scale.video_name(stem) == name
    assert len({scale._stem(n) for n in ["a/b", "a__b", "a%2Fb", "a_b"]}) == 4


def test_a_missing_score_file_is_a_clear_error_not_a_key_error(campus_test, tmp_path,
                                                               monkeypatch):
    real = scale._write_video
    monkeypatch.setattr(scale, "_write_video", lambda out, row: None
                        if row["video"] == "test_vehicle_01" else real(out, row))
    with pytest.raises(ValueError, match=r"no scores for 1 video\(s\) \(\['test_vehicle_01'\]"):
        scale.run_dataset(campus_test, "classical", out_dir=tmp_path / "run", videos=CLIPS[:2],
                          cache=tmp_path / "c", progress=False)


def test_duplicate_names_and_passwords_in_settings(campus_test, tmp_path):
    bench = _renamed(campus_test, {"test_normal_01": "same", "test_vehicle_01": "other"})
    bench.table.loc[1, "name"] = "same"
    with pytest.raises(ValueError, match=r"lists videos \['same'\] more than once"):
        scale.run_dataset(bench, "classical", out_dir=tmp_path / "dup", progress=False)
    sig = scale._signature("campus", "vera", "tiny",
                           {"vlm_model": "openai:m@http://me:s3cret@gpu:8000/v1"})
    assert sig["overrides"]["vlm_model"] == "openai:m@http://me:***@gpu:8000/v1"
