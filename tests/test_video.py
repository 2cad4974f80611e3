"""vadnb.video: exact frame indices on every kind of awkward file, and clear errors.

Every fixture video shows its own frame number as a bar code of big blocks
(vadnb.video.write_test_video / read_frame_code), so a test can check which frame a reader
really returned. The truth is a sequential decode with PyAV (a different code path from the
OpenCV reader under test): the image returned for index i must be the i-th frame it decodes.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vadnb import VideoError
from vadnb import video as V

N = 40      # frames in the regular fixtures
FPS = 25
SIZE = (64, 48)
# Irregular presentation times (ms) of the variable-frame-rate fixture.
VFR_MS = [0, 40, 80, 200, 240, 250, 260, 270, 500, 540, 580, 620, 660, 700,
          1000, 1040, 1080, 1120, 1160, 1200]
TRIM = 3    # frames the edit list of trim.mp4 hides


def _trim_edit_list(src: Path, dst: Path, frames: int) -> None:
    """Copy an MP4 and move its edit list's start ``frames`` frames later (hides them)."""
    data = bytearray(src.read_bytes())
    elst = data.find(b"elst")
    assert elst > 0 and data[elst + 4] == 0, "expected a version-0 edit list"
    mdhd = data.find(b"mdhd")
    timescale = struct.unpack(">I", data[mdhd + 16: mdhd + 20])[0]
    duration, media_time, rate = struct.unpack(">Iii", data[elst + 12: elst + 24])
    per_frame_media = timescale // FPS
    per_frame_movie = 1000 // FPS  # mvhd timescale of PyAV's mp4 muxer is 1000
    struct.pack_into(">Iii", data, elst + 12, duration - frames * per_frame_movie,
                     media_time + frames * per_frame_media, rate)
    dst.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    v = {
        "mp4": V.write_test_video(d / "plain.mp4", N, FPS, SIZE),  # x264 B-frames: an edit list
        "avi": V.write_test_video(d / "plain.avi", N, FPS, SIZE),
        # MPEG-TS starting at 10 s (its container start time is non-zero)
        "ts": V.write_test_video(d / "late.ts", N, FPS, SIZE, pts=[250 + i for i in range(N)]),
        # MP4 whose first frame has pts 10: the muxer writes an empty edit before it
        "offset_mp4": V.write_test_video(d / "offset.mp4", N, FPS, SIZE,
                                         pts=[10 + i for i in range(N)]),
        # AVI with B-frames: OpenCV's per-frame times are unusable, index / fps is right
        "bframes_avi": V.write_test_video(d / "bframes.avi", N, FPS, SIZE, options={"bf": "2"}),
        "vfr": V.write_test_video(d / "vfr.mkv", len(VFR_MS), FPS, SIZE, pts=VFR_MS,
                                  time_base=Fraction(1, 1000)),
    }
    _trim_edit_list(v["mp4"], d / "trim.mp4", TRIM)
    v["trim_mp4"] = d / "trim.mp4"
    shutil.copy(v["avi"], d / "lie.avi")
    V.patch_avi_frame_count(d / "lie.avi", 444)
    v["lying_avi"] = d / "lie.avi"
    return v


def _truth(path: Path) -> tuple[list[int], np.ndarray]:
    """Codes and times (s, from the first frame) of a sequential PyAV decode."""
    with av.open(str(path)) as c:
        pairs = [(V.read_frame_code(f.to_ndarray(format="rgb24")), f.time)
                 for f in c.decode(video=0)]
    times = np.array([t for _, t in pairs])
    return [code for code, _ in pairs], times - times[0]


def _codes(images: np.ndarray) -> list[int]:
    return [V.read_frame_code(im) for im in images]


KINDS = ["mp4", "avi", "ts", "offset_mp4", "vfr", "trim_mp4", "lying_avi", "bframes_avi"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_frame_matches_a_sequential_decode(videos, kind):
    codes, times = _truth(videos[kind])
    frames = V.read_frames(videos[kind])
    assert frames.images.dtype == np.uint8 and frames.images.shape[1:] == (48, 64, 3)
    assert frames.indices.dtype == np.int64
    np.testing.assert_array_equal(frames.indices, np.arange(len(codes)))
    assert _codes(frames.images) == codes
    np.testing.assert_allclose(frames.timestamps_s, times, atol=1e-3)
    info = V.probe(videos[kind])
    assert info.num_frames == len(codes) and (info.width, info.height) == SIZE


def test_fixtures_are_what_they_claim(videos):
    # plain files decode to 0..N-1; the awkward ones really are awkward
    assert _truth(videos["mp4"])[0] == list(range(N))
    assert b"elst" in videos["mp4"].read_bytes()
    assert _truth(videos["trim_mp4"])[0] == list(range(TRIM, N))
    with av.open(str(videos["ts"])) as c:
        assert c.start_time >= 9_000_000  # microseconds: the stream starts near 10 s
    cap = cv2.VideoCapture(str(videos["lying_avi"]))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 444
    cap.release()


def test_timestamps_fall_back_to_index_over_fps(videos, monkeypatch, fresh_cache):
    # PyAV reads the B-frame AVI's timestamps correctly ...
    assert V.probe(videos["bframes_avi"]).timestamps_from == "decoder"
    np.testing.assert_allclose(V.frame_times(videos["bframes_avi"]), np.arange(N) / FPS)
    # ... OpenCV's per-frame times for it are unusable: index / fps is used instead
    monkeypatch.setitem(V._BACKENDS, "pyav", lambda path: None)
    info = V.probe(videos["bframes_avi"], cache=fresh_cache)
    assert info.backend == "opencv" and info.seekable is False
    assert info.timestamps_from == "index/fps" and info.fps == FPS
    np.testing.assert_allclose(V.frame_times(videos["bframes_avi"], cache=fresh_cache),
                               np.arange(N) / FPS)
    frames = V.read_frames(videos["bframes_avi"], fps=2, cache=fresh_cache)
    assert frames.indices.tolist() == [0, 13, 25, 38]
    assert _codes(frames.images) == [0, 13, 25, 38]
    assert V.probe(videos["mp4"]).timestamps_from == "decoder"


def test_rgb_channel_order(videos):
    top_left = V.read_frames(videos["avi"], indices=[0]).images[0, 2:8, 2:12]
    r, g, b = top_left.reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60  # the colour key's first block is red


@pytest.mark.parametrize("fps, expected", [
    (1, [0, 25]),
    (2, [0, 13, 25, 38]),       # 0.52 s is the first frame at or after 0.5 s; 1.52 after 1.5
    (3, [0, 9, 17, 25, 34]),    # 1/3 s -> frame 8.33 -> 9; 2/3 -> 16.7 -> 17; 4/3 -> 33.3 -> 34
    (25, list(range(N))),
    (100, list(range(N))),      # faster than the video: every frame, once
])
def test_fps_sampling_constant_rate(videos, fps, expected):
    for kind in ("avi", "mp4", "ts"):
        frames = V.read_frames(videos[kind], fps=fps)
        assert frames.indices.tolist() == expected
        assert _codes(frames.images) == expected
        np.testing.assert_allclose(frames.timestamps_s, np.array(expected) / FPS, atol=1e-3)


@pytest.mark.parametrize("fps, expected", [
    (4, [0, 5, 8, 14]),   # targets 0, .25, .5, .75 (-> 1.0 s), 1.0 (same frame, once)
    (10, [0, 3, 8, 11, 13, 14, 17, 19]),
    (1, [0, 14]),
])
def test_fps_sampling_uses_real_timestamps_on_variable_frame_rate(videos, fps, expected):
    frames = V.read_frames(videos["vfr"], fps=fps)
    assert frames.indices.tolist() == expected
    assert _codes(frames.images) == expected
    np.testing.assert_allclose(frames.timestamps_s, np.array(VFR_MS)[expected] / 1000, atol=1e-6)
    np.testing.assert_allclose(V.frame_times(videos["vfr"]), np.array(VFR_MS) / 1000, atol=1e-6)


def test_sample_indices_rule_by_hand():
    times = np.array([0.0, 0.1, 0.35, 0.4, 0.9, 1.0])
    assert V.sample_indices(times, 5).tolist() == [0, 2, 3, 4, 5]  # .2->.35, .4, .6->.9, .8->.9
    assert V.sample_indices(times, 1).tolist() == [0, 5]
    assert V.sample_indices(np.zeros(0), 1).tolist() == []


@pytest.mark.parametrize("kind", ["mp4", "trim_mp4", "lying_avi", "vfr"])
def test_arbitrary_indices_in_the_order_asked(videos, kind):
    codes, _ = _truth(videos[kind])
    n = len(codes)
    asked = [n - 1, 7, 3, 3, 0, 12, 7]
    frames = V.read_frames(videos[kind], indices=asked)
    assert frames.indices.tolist() == asked
    assert _codes(frames.images) == [codes[i] for i in asked]
    assert len(V.read_frames(videos[kind], indices=[])) == 0


def test_edit_list_that_hides_frames(videos):
    info = V.probe(videos["trim_mp4"])
    assert info.num_frames == N - TRIM and info.header_frames == N
    frames = V.read_frames(videos["trim_mp4"], indices=[0, 10])
    assert _codes(frames.images) == [TRIM, 10 + TRIM]
    assert frames.timestamps_s.tolist() == pytest.approx([0.0, 0.4], abs=1e-3)


def test_lying_avi_header(videos):
    info = V.probe(videos["lying_avi"])
    assert (info.num_frames, info.header_frames) == (N, 444)
    with pytest.raises(VideoError, match=rf"lie.avi.*\[100\].*{N} decodable frames.*444"):
        V.read_frames(videos["lying_avi"], indices=[0, 100])


def test_size_resizes_with_inter_area(videos):
    full = V.read_frames(videos["avi"], indices=[5, 9])
    small = V.read_frames(videos["avi"], indices=[5, 9], size=(32, 24))
    assert small.images.shape == (2, 24, 32, 3)
    for big, got in zip(full.images, small.images):
        np.testing.assert_array_equal(got, cv2.resize(big, (32, 24), interpolation=cv2.INTER_AREA))
    assert _codes(small.images) == [5, 9]


def test_iter_frames_chunks(videos):
    chunks = list(V.iter_frames(videos["mp4"], chunk=7))
    assert [len(c) for c in chunks] == [7, 7, 7, 7, 7, 5]
    assert np.concatenate([c.indices for c in chunks]).tolist() == list(range(N))
    assert _codes(np.concatenate([c.images for c in chunks])) == list(range(N))
    # unsorted across chunks: the second chunk goes back in the video
    asked = [30, 31, 2, 5, 2]
    chunks = list(V.iter_frames(videos["trim_mp4"], indices=asked, chunk=2))
    assert [c.indices.tolist() for c in chunks] == [[30, 31], [2, 5], [2]]
    got = _codes(np.concatenate([c.images for c in chunks]))
    assert got == [i + TRIM for i in asked]


def test_extract_frames_names_files_by_index(videos, tmp_path):
    paths = V.extract_frames(videos["avi"], tmp_path / "jpg", fps=5, quality=90)
    expected = [0, 5, 10, 15, 20, 25, 30, 35]
    assert [p.name for p in paths] == [f"frame_{i:06d}.jpg" for i in expected]
    for p, i in zip(paths, expected):
        rgb = cv2.imread(str(p))[..., ::-1]
        assert rgb.shape == (48, 64, 3) and V.read_frame_code(rgb) == i


def test_probe_is_cached_by_content(videos, fresh_cache, monkeypatch, tmp_path):
    first = V.probe(videos["vfr"], cache=fresh_cache)
    assert fresh_cache.misses == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("probe decoded the file again")

    monkeypatch.setattr(V, "_scan", no_decoding)
    copy = tmp_path / "renamed.mkv"
    shutil.copy(videos["vfr"], copy)
    assert V.probe(copy, cache=fresh_cache) == first  # same content, other name: a hit
    assert fresh_cache.hits == 1
    monkeypatch.undo()
    V.write_test_video(copy, 5, FPS, SIZE)  # new content: probed again
    assert V.probe(copy, cache=fresh_cache).num_frames == 5


@pytest.mark.parametrize("kind", ["trim_mp4", "vfr", "ts"])
def test_opencv_fallback_gives_the_same_frames(videos, kind, monkeypatch, fresh_cache, tmp_path):
    from vadnb.cache import Cache

    expected = V.read_frames(videos[kind], cache=Cache(tmp_path / "pyav-cache"))
    assert V.probe(videos[kind], cache=Cache(tmp_path / "pyav-cache")).backend == "pyav"
    monkeypatch.setitem(V._BACKENDS, "pyav", lambda path: None)  # PyAV cannot open it
    info = V.probe(videos[kind], cache=fresh_cache)
    assert info.backend == "opencv" and not info.seekable
    got = V.read_frames(videos[kind], cache=fresh_cache)
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_allclose(got.timestamps_s, expected.timestamps_s, atol=1e-3)
    assert _codes(got.images) == _codes(expected.images)
    np.testing.assert_array_equal(V.read_frames(videos[kind], fps=4, cache=fresh_cache).indices,
                                  V.sample_indices(expected.timestamps_s, 4))


# ----------------------------------------------------------------------------- bad input

def _zero_frame_video(path: Path) -> Path:
    """A valid MKV with a video stream whose packets hold no decodable picture."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            packet = av.Packet(bytes(200))
            packet.stream, packet.pts, packet.dts = s, i, i
            packet.time_base = Fraction(1, FPS)
            c.mux(packet)
    return path


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(VideoError, match=r"not found: .*nope\.mp4"):
        V.probe(tmp_path / "nope.mp4")
    (tmp_path / "clips.mp4").mkdir()
    with pytest.raises(VideoError, match=r"clips\.mp4 is an empty directory"):
        V.read_frames(tmp_path / "clips.mp4")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(VideoError, match=r"empty\.mp4 is empty"):
        V.probe(empty)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "stream.mp4"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(VideoError, match=r"stream\.mp4 is not a regular file"):
        V.probe(fifo)


def test_text_file_renamed_mp4(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are meeting notes, not a video\n" * 50)
    with pytest.raises(VideoError, match=r"notes\.mp4 is not a video that can be decoded"):
        V.probe(fake)


def test_zero_decodable_frames(tmp_path):
    with pytest.raises(VideoError, match=r"0 decodable frames: .*zero\.mkv"):
        V.read_frames(_zero_frame_video(tmp_path / "zero.mkv"))


@pytest.mark.parametrize("kind, name", [("avi", "cut.avi"), ("vfr", "cut.mkv")])
def test_truncated_file_says_how_many_frames_were_read(videos, tmp_path, kind, name):
    data = videos[kind].read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) * 6 // 10])
    cap = cv2.VideoCapture(str(cut))
    readable = 0
    while cap.grab():
        readable += 1
    cap.release()
    with pytest.raises(VideoError, match=rf"{re.escape(name)} is truncated") as err:
        V.probe(cut)
    assert re.search(rf"only {readable} frames? could be read", str(err.value))
    assert 0 < readable < len(_truth(videos[kind])[0])


def test_truncated_mp4_without_index(videos, tmp_path):
    data = videos["mp4"].read_bytes()  # PyAV writes the moov index at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"cut\.mp4 is truncated.*0 frames decoded"):
        V.probe(cut)


def test_bad_arguments(videos):
    path = videos["avi"]
    for fps in (0, -1, float("nan")):
        with pytest.raises(VideoError, match=r"plain\.avi: fps must be > 0"):
            V.read_frames(path, fps=fps)
    with pytest.raises(VideoError, match=rf"out of range: \[{N}\].*{N} decodable frames"):
        V.read_frames(path, indices=[0, N])
    with pytest.raises(VideoError, match=r"out of range: \[-1\]"):
        V.read_frames(path, indices=[-1])
    with pytest.raises(VideoError, match="fps or indices, not both"):
        V.read_frames(path, fps=1, indices=[0])
    with pytest.raises(VideoError, match="whole frame numbers"):
        V.read_frames(path, indices=[1.5])
    with pytest.raises(VideoError, match=r"size must be \(width, height\)"):
        V.read_frames(path, size=(0, 24))
    with pytest.raises(VideoError, match="chunk must be a positive"):
        V.iter_frames(path, chunk=0)
    with pytest.raises(VideoError, match="fps must be > 0"):
        V.iter_frames(path, fps=-2)  # checked at the call, before any decoding
    assert issubclass(VideoError, ValueError)


def test_benchmark_script_runs_on_a_given_file(videos, long_avi, capsys):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_video.py"
    spec = importlib.util.spec_from_file_location("bench_video", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main([str(videos["avi"]), "--fps", "5", "--repeat", "1", "--no-subprocess",
                         "--long", str(long_avi)])
    printed = capsys.readouterr().out
    assert "read_frames(fps=5)" in printed and "every frame" in printed
    assert re.search(r"read_frames\(fps=5\)\s+8\s", printed)  # 0, 5, ..., 35
    assert re.search(r"OpenCV grab \+ retrieve fps=5 frames\s+8\s", printed)  # the same 8
    assert re.search(r"read_frames\(indices=\[90, 240, 390, 540\]\)\s+4\s", printed)
    assert result["ratio"] == pytest.approx(result["all_s"] / result["fps_s"])
    assert result["same_pixels"] is True  # vadnb's seek and PyAV's by hand agree
    assert set(result["ratios"]) == {"probe / grab loop", "read_frames(fps) / grab loop",
                                     "4 indices / PyAV seeking", "read_frames() peak / output"}
    assert "target <= 1.3x" in printed and "target <= 3.0x" in printed


def test_decode_stats_count_opens_frames_decoded_and_returned(tmp_path):
    path = V.write_test_video(tmp_path / "count.mp4", 30, FPS, SIZE)
    V.probe(path, cache=tmp_path / "c")  # the counting pass: 30 frames decoded, none returned
    V.reset_decode_stats()
    V.read_frames(path, indices=[3, 7], cache=tmp_path / "c")
    stats = V.decode_stats()
    assert stats["opens"] == 1 and stats["frames_returned"] == 2
    assert stats["frames_decoded"] == 8  # frames 0..7 stepped over, 3 and 7 retrieved
    V.reset_decode_stats()
    assert V.decode_stats() == {"opens": 0, "frames_decoded": 0, "frames_returned": 0}


# ----------------------------------------------------------------------------- seeking

def _seek_everywhere(monkeypatch):
    """Seek on every jump, however short: the fixtures are too short to seek otherwise."""
    monkeypatch.setattr(V, "_SEEK_MIN_SKIP", 0)


@pytest.mark.parametrize("kind", KINDS)
def test_seeking_returns_the_sequential_frames_pixel_for_pixel(videos, kind, monkeypatch):
    sequential = V.read_frames(videos[kind])  # every frame: one sequential pass
    n = len(sequential)
    _seek_everywhere(monkeypatch)
    rng = np.random.default_rng(len(kind))
    V.reset_decode_stats()
    for _ in range(4):
        asked = rng.integers(0, n, size=5)
        got = V.read_frames(videos[kind], indices=asked)
        np.testing.assert_array_equal(got.indices, asked)
        np.testing.assert_array_equal(got.images, sequential.images[asked])
        np.testing.assert_array_equal(got.timestamps_s, sequential.timestamps_s[asked])
    # iter_frames with chunks that go back in the video: seeks back
    asked = [n - 1, n - 2, 1, n // 2, 0]
    chunks = list(V.iter_frames(videos[kind], indices=asked, chunk=1))
    np.testing.assert_array_equal(np.concatenate([c.images for c in chunks]),
                                  sequential.images[asked])
    info = V.probe(videos[kind])
    if kind != "vfr":  # one key frame only: nothing to seek to
        assert info.seekable and V.seek_stats()["seeks"] > 0, V.seek_stats()
    assert V.seek_stats()["fallbacks"] == 0


@pytest.fixture(scope="module")
def long_avi(tmp_path_factory) -> Path:
    """600 frames of MPEG-4 in AVI, a key frame every 12: a file worth seeking in."""
    return V.write_test_video(tmp_path_factory.mktemp("long") / "long.avi", 600, FPS, SIZE)


def test_a_few_far_frames_seek_instead_of_decoding_everything(long_avi):
    asked = [590, 301, 12, 455]
    V.probe(long_avi)
    V.reset_decode_stats()
    got = V.read_frames(long_avi, indices=asked)
    stats, seeks = V.decode_stats(), V.seek_stats()
    assert _codes(got.images) == asked
    assert seeks["seeks"] >= 3 and seeks["fallbacks"] == 0
    assert stats["opens"] == 1 and stats["frames_returned"] == 4
    assert stats["frames_decoded"] < 100  # a sequential read decodes 591
    with av.open(str(long_avi)) as c:  # the same pixels as a sequential PyAV decode
        truth = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0))
                 if i in asked]
    np.testing.assert_array_equal(got.images, np.stack(truth)[np.argsort(np.argsort(asked))])


def test_dense_ascending_reads_keep_one_sequential_pass(long_avi):
    V.probe(long_avi)
    V.reset_decode_stats()
    got = V.read_frames(long_avi, indices=np.arange(0, 600, 3))
    assert _codes(got.images) == list(range(0, 600, 3))
    assert V.seek_stats()["seeks"] == 0
    assert V.decode_stats()["opens"] == 1 and V.decode_stats()["frames_decoded"] == 598
    V.reset_decode_stats()
    assert len(V.read_frames(long_avi, fps=1)) == 24
    assert V.seek_stats()["seeks"] == 0 and V.decode_stats()["frames_decoded"] == 576


def test_a_seek_that_lands_on_the_wrong_frame_falls_back_to_sequential(long_avi, monkeypatch,
                                                                       fresh_cache):
    # an index that does not match the decode: frame 499 indexed with another pts (as a file
    # that changed, or a decoder that renumbers frames after a seek, would give)
    record = dict(V._probe_record(long_avi, fresh_cache)[1])
    record["pts"] = record["pts"].copy()
    record["pts"][499] += 10_000
    monkeypatch.setattr(V, "_probe_record", lambda *a, **k: (Path(long_avi), record))
    V.reset_decode_stats()
    got = V.read_frames(long_avi, indices=[500, 20])
    assert _codes(got.images) == [500, 20]
    assert V.seek_stats()["fallbacks"] == 1


# ----------------------------------------------------------------------------- memory

def test_read_frames_peak_memory_is_the_output_plus_a_frame(tmp_path):
    import tracemalloc

    path = V.write_test_video(tmp_path / "mem.avi", 120, FPS, (320, 240))
    V.probe(path, cache=tmp_path / "c")
    tracemalloc.start()
    try:
        frames = V.read_frames(path, cache=tmp_path / "c")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output = frames.images.nbytes
    assert output == 120 * 240 * 320 * 3
    assert peak < output + 8 * 240 * 320 * 3, (peak, output)  # the output and a few frames
    assert _codes(frames.images) == list(range(120))


def test_frame_size_change_mid_video_is_named_and_size_resizes(tmp_path, fresh_cache):
    # two MPEG-TS streams of different sizes, one after the other (as a concatenated
    # recording gives). Frames are converted in a second thread: its error must reach the
    # caller, naming the frame, and a read that resizes must give every frame in order.
    a = V.write_test_video(tmp_path / "a.ts", 30, FPS, (160, 128))
    b = V.write_test_video(tmp_path / "b.ts", 30, FPS, (192, 144), start_code=30)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    assert V.probe(joined, cache=fresh_cache).num_frames == 60
    with pytest.raises(VideoError, match=r"joined\.ts: frame 30 is 192x144, earlier frames are "
                                         r"160x128: the frame size changes.*pass size="):
        V.read_frames(joined, cache=fresh_cache)
    with pytest.raises(VideoError, match=r"frame 30 is 192x144"):
        list(V.iter_frames(joined, chunk=7, cache=fresh_cache))
    got = V.read_frames(joined, size=(160, 128), cache=fresh_cache)
    assert _codes(got.images) == list(range(60))
    sampled = V.read_frames(joined, indices=[59, 3, 30, 3, 29], size=(160, 128),
                            cache=fresh_cache)
    assert _codes(sampled.images) == [59, 3, 30, 3, 29]
    assert np.array_equal(sampled.images, got.images[[59, 3, 30, 3, 29]])


def test_output_is_written_whole_without_huge_page_advice(monkeypatch):
    # the frames' array is allocated with numpy's huge-page advice off, and the switch is put
    # back as it was, also when the allocation fails
    calls = []
    monkeypatch.setattr(V, "_madvise_hugepage", lambda on: calls.append(on) or True)
    out = V._output(3, (4, 5))
    assert out.shape == (3, 4, 5, 3) and out.dtype == np.uint8 and out.flags.writeable
    assert calls == [False, True]
    with pytest.raises(ValueError):
        V._output(-1, (4, 5))
    assert calls == [False, True, False, True]
    monkeypatch.undo()
    before = V._madvise_hugepage(True)
    assert V._madvise_hugepage(before) is True  # this numpy has the switch, and it works


def test_reads_in_threads_leave_numpys_huge_page_switch_as_it_was(monkeypatch):
    # the switch is process-wide: allocations racing in threads must not leave it off. A
    # slow stand-in for the switch makes the threads interleave.
    import time
    from concurrent.futures import ThreadPoolExecutor

    state = {"on": True, "off_now": 0, "most_off": 0}

    def slow_switch(on: bool) -> bool:
        before = state["on"]
        state["off_now"] += -1 if on else 1  # allocations inside their switched-off window
        state["most_off"] = max(state["most_off"], state["off_now"])
        time.sleep(0.0005)
        state["on"] = on
        return before

    monkeypatch.setattr(V, "_madvise_hugepage", slow_switch)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: V._output(2, (8, 8)), range(200)))
    assert state["on"] is True and state["most_off"] == 1


# ----------------------------------------------------------------------------- damage

@pytest.fixture(scope="module")
def damaged_mp4(tmp_path_factory) -> Path:
    """60 frames of H.264 (a key frame every 10) with 1 KB of flipped bytes in the middle."""
    d = tmp_path_factory.mktemp("damaged")
    whole = V.write_test_video(d / "whole.mp4", 60, FPS, (160, 128), options={"g": "10"})
    data = bytearray(whole.read_bytes())
    mid = len(data) // 2
    data[mid: mid + 1024] = bytes(b ^ 0xFF for b in data[mid: mid + 1024])
    (d / "damaged.mp4").write_bytes(bytes(data))
    return d / "damaged.mp4"


def _decode_past_errors(path: Path) -> tuple[list[int], list[int]]:
    """What ffmpeg does: decode packet by packet, skipping the ones the decoder rejects.
    Returns the frames' pts and the pts of every packet that carries a picture."""
    frames, packets = [], []
    with av.open(str(path)) as c:
        for packet in c.demux(video=0):
            if packet.size:
                packets.append(packet.pts)
            try:
                frames += [f.pts for f in packet.decode()]
            except av.error.InvalidDataError:
                pass
    return frames, packets


def test_damaged_block_is_decoded_past_and_reported(damaged_mp4, fresh_cache):
    frames_pts, packets_pts = _decode_past_errors(damaged_mp4)
    order = sorted(packets_pts)
    lost = [i for i, t in enumerate(order) if t not in set(frames_pts)]
    assert 0 < len(lost) < 20 and len(frames_pts) + len(lost) == 60  # a real, partial loss
    with pytest.warns(V.DamagedVideoWarning, match=r"damaged\.mp4 is damaged.*could not be "
                                                  r"decoded \(the file's frames \d"):
        info = V.probe(damaged_mp4, cache=fresh_cache)
    assert info.num_frames == 60  # the undamaged count: every frame keeps its true index
    missing = [i for a, b in info.lost_ranges for i in range(a, b + 1)]
    assert set(lost) <= set(missing) and len(missing) == info.lost_frames < 30
    assert info.damaged_packets > 0
    assert not info.seekable  # a damaged file is read sequentially only
    with pytest.warns(V.DamagedVideoWarning):
        frames = V.read_frames(damaged_mp4, cache=fresh_cache)
    assert len(frames) == 60 - info.lost_frames
    assert frames.indices.tolist() == [i for i in range(60) if i not in missing]
    assert _codes(frames.images) == frames.indices.tolist()  # each frame is its true index
    with pytest.warns(V.DamagedVideoWarning):  # every read says so, not only the first
        last = V.read_frames(damaged_mp4, indices=[59], cache=fresh_cache)
    assert _codes(last.images) == [59]
    with pytest.warns(V.DamagedVideoWarning), \
            pytest.raises(VideoError, match=rf"damaged\.mp4: frame\(s\) \[{missing[0]}\] .*lost"):
        V.read_frames(damaged_mp4, indices=[0, missing[0]], cache=fresh_cache)


def test_mpeg_ts_cut_short_warns(videos, tmp_path, fresh_cache):
    data = videos["ts"].read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) * 6 // 10 + 100])  # not at a 188-byte packet boundary
    with pytest.warns(V.DamagedVideoWarning, match=r"cut\.ts: it ends \d+ bytes into a "
                                                  r"188-byte MPEG-TS packet"):
        info = V.probe(cut, cache=fresh_cache)
    assert 0 < info.num_frames < N
    whole = tmp_path / "whole.ts"
    shutil.copy(videos["ts"], whole)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert V.probe(whole, cache=fresh_cache).num_frames == N


# ----------------------------------------------------------------------------- frame folders

def _frame_folder(folder: Path, count: int, size=SIZE, ext: str = ".jpg",
                  names=lambda i: f"{i}") -> Path:
    """Images showing their index as a bar code, named without zero padding (natural sort)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        bgr = V._code_image(i, *size)[..., ::-1]
        assert cv2.imwrite(str(folder / f"{names(i)}{ext}"), bgr)
    return folder


def test_frame_folder_is_a_video(tmp_path, fresh_cache):
    folder = _frame_folder(tmp_path / "01_0014", 25)
    (folder / "notes.txt").write_text("not a frame")  # other files are ignored
    info = V.probe(folder, cache=fresh_cache)
    assert (info.num_frames, info.width, info.height) == (25, *SIZE)
    assert (info.source, info.backend, info.fps, info.fps_from) == ("folder", "images", 30.0,
                                                                   "default")
    frames = V.read_frames(folder, cache=fresh_cache)  # natural order: 2 before 10
    assert _codes(frames.images) == list(range(25))
    np.testing.assert_allclose(frames.timestamps_s, np.arange(25) / 30)
    asked = [24, 3, 3, 10, 0]
    assert _codes(V.read_frames(folder, indices=asked, cache=fresh_cache).images) == asked
    given = V.read_frames(folder, fps=5, frame_rate=25, cache=fresh_cache)
    assert given.indices.tolist() == [0, 5, 10, 15, 20] and _codes(given.images) == [0, 5, 10, 15, 20]
    assert V.probe(folder, frame_rate=25, cache=fresh_cache).fps_from == "given"
    chunks = list(V.iter_frames(folder, chunk=10, size=(32, 24), cache=fresh_cache))
    assert [len(c) for c in chunks] == [10, 10, 5] and chunks[0].images.shape[1:] == (24, 32, 3)
    paths = V.extract_frames(folder, tmp_path / "out", indices=[7, 12], cache=fresh_cache)
    assert [p.name for p in paths] == ["frame_000007.jpg", "frame_000012.jpg"]
    with pytest.raises(VideoError, match="frame_rate is for frame folders only"):
        V.probe(tmp_path / "out" / "frame_000007.jpg", frame_rate=25)


def test_frame_folder_digest_follows_names_and_contents(tmp_path):
    from vadnb.cache import file_digest

    folder = _frame_folder(tmp_path / "a", 5, ext=".png")
    first = file_digest(folder)
    copy = tmp_path / "b"
    shutil.copytree(folder, copy)
    assert file_digest(copy) == first  # content, not path
    (copy / "4.png").rename(copy / "5.png")
    assert file_digest(copy) != first  # a renamed image
    shutil.rmtree(copy)
    shutil.copytree(folder, copy)
    assert file_digest(copy) == first
    bgr = V._code_image(9, *SIZE)[..., ::-1]
    cv2.imwrite(str(copy / "2.png"), bgr)
    os.utime(copy / "2.png", ns=((folder / "2.png").stat().st_atime_ns,
                                 (folder / "2.png").stat().st_mtime_ns))
    assert file_digest(copy) != first  # same names, one image changed


def test_frame_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match=r"empty is an empty directory"):
        V.probe(empty)
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("x")
    with pytest.raises(VideoError, match=r"texts is a directory with no image files.*a\.txt"):
        V.read_frames(texts)
    mixed = _frame_folder(tmp_path / "mixed", 6)
    cv2.imwrite(str(mixed / "4.jpg"), V._code_image(4, 32, 24)[..., ::-1])
    with pytest.raises(VideoError, match=r"mixed: the images .* differ in size: 0\.jpg is 64x48, "
                                         r"4\.jpg \(frame 4\) is 32x24; pass size="):
        V.read_frames(mixed)
    assert _codes(V.read_frames(mixed, size=(64, 48)).images) == list(range(6))
    fake = _frame_folder(tmp_path / "fake", 6)
    (fake / "3.jpg").write_text("not an image")
    with pytest.raises(VideoError, match=r"fake/3\.jpg: not a readable image.*frame 3"):
        V.probe(fake)
    cut = _frame_folder(tmp_path / "cut", 6)
    noise = np.random.default_rng(0).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    cv2.imwrite(str(cut / "5.jpg"), noise)  # a big picture part, after a small header
    data = (cut / "5.jpg").read_bytes()
    (cut / "5.jpg").write_bytes(data[: len(data) // 2])  # the header survives, the pixels not
    V.probe(cut)
    assert _codes(V.read_frames(cut, indices=[4]).images) == [4]
    with pytest.raises(VideoError, match=r"cut/5\.jpg: cannot decode this image.*frame 5"):
        V.read_frames(cut)
    with pytest.raises(VideoError, match="frame_rate must be"):
        V.probe(cut, frame_rate=0)


def test_a_method_runs_on_a_frame_folder(tmp_path):
    import vadnb

    folder = _frame_folder(tmp_path / "clip", 40, size=(96, 64))
    det = vadnb.detect(folder, method="classical")
    assert det.frame_scores.shape == (40,) and np.all(np.isfinite(det.frame_scores))
    assert det.fps == 30.0


def test_run_dataset_scores_frame_folders(tmp_path):
    import pandas as pd

    from vadnb import scale
    from vadnb.data.benchmarks import Benchmark

    root = tmp_path / "frames"
    table = pd.DataFrame({
        "name": ["01_0014", "01_0015"], "split": ["test", "test"],
        "path": [str(_frame_folder(root / n, k, size=(96, 64))) for n, k in
                 (("01_0014", 30), ("01_0015", 36))],
        "label": ["Normal", "Anomaly"], "is_anomalous": [False, True],
        "num_frames": [30, 36], "fps": [30.0, 30.0]})
    bench = Benchmark(name="folders", root=root, table=table,
                      truth={"01_0014": [], "01_0015": [(10, 20)]}, classes=["Anomaly"])
    run = scale.run_dataset(bench, "classical", out_dir=tmp_path / "run", cache=tmp_path / "c",
                            progress=False)
    scores = run.frame_scores()
    assert {k: len(v) for k, v in scores.items()} == {"01_0014": 30, "01_0015": 36}


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="needs the ffmpeg binary to tag a rotation")
@pytest.mark.parametrize("degrees, turns", [(90, 1), (270, -1)])
def test_rotated_phone_video_is_read_upright_like_opencv(videos, tmp_path, degrees, turns):
    import subprocess

    rotated = tmp_path / f"rot{degrees}.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(videos["mp4"]), "-c", "copy",
                    "-metadata:s:v:0", f"rotate={degrees}", str(rotated)], check=True)
    info = V.probe(rotated)
    assert (info.width, info.height) == (SIZE[1], SIZE[0])
    got = V.read_frames(rotated, indices=[0, 5])
    plain = V.read_frames(videos["mp4"], indices=[0, 5])
    np.testing.assert_array_equal(got.images, np.rot90(plain.images, turns, axes=(1, 2)))
    cap = cv2.VideoCapture(str(rotated))  # OpenCV applies the rotation too
    ok, bgr = cap.read()
    cap.release()
    np.testing.assert_array_equal(got.images[0], bgr[..., ::-1])
