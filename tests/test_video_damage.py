"""vadnb.video on damaged files and gapped frame folders: lost frames are counted, named and
warned about, and every other frame keeps its true index (its place in the undamaged video),
so per-frame labels still line up.

Every video shows its own frame number as a bar code (vadnb.video.write_test_video), so a test
checks that each returned frame shows the index it is returned under.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vadnb import VideoError
from vadnb import video as V

N = 120     # frames of each damaged video
FPS = 25
SIZE = (160, 128)


def _packets(path: Path) -> list[tuple[int, int]]:
    """``(byte position, size)`` of every video packet the demuxer reads, in file order."""
    with av.open(str(path)) as c:
        return [(int(q.pos), int(q.size)) for q in c.demux(video=0) if q.size]


def _damage(whole: Path, out: Path, nbytes: int = 400) -> Path:
    """A copy of ``whole`` with ``nbytes`` zeroed from inside the data of a packet in the
    middle of the video (far from the header), one small enough that the zeros run on over
    the next packet's header too, as a damaged disk block does."""
    data = bytearray(whole.read_bytes())
    packets = _packets(whole)
    pos, size = next((pos, size) for pos, size in packets[N // 2:] if size < nbytes - 100)
    start = pos + 16
    data[start: start + nbytes] = bytes(nbytes)
    out.write_bytes(bytes(data))
    return out


def _decoded_codes(path: Path) -> list[int]:
    """What ffmpeg shows: decode packet by packet past the rejected ones, read each code."""
    codes = []
    with av.open(str(path)) as c:
        for packet in c.demux(video=0):
            try:
                codes += [V.read_frame_code(f.to_ndarray(format="rgb24"))
                          for f in packet.decode()]
            except av.error.InvalidDataError:
                pass
    return codes


def _codes(images: np.ndarray) -> list[int]:
    return [V.read_frame_code(im) for im in images]


def _expand(ranges) -> list[int]:
    return [i for a, b in ranges for i in range(a, b + 1)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Whole and damaged H.264 AVI and MKV files (a key frame every 10, B-frames)."""
    d = tmp_path_factory.mktemp("damage")
    out = {}
    for ext in ("avi", "mkv"):
        whole = V.write_test_video(d / f"whole.{ext}", N, FPS, SIZE, codec="libx264",
                                   options={"g": "10"})
        out[ext] = whole
        out[f"damaged_{ext}"] = _damage(whole, d / f"damaged.{ext}")
    return out


@pytest.mark.parametrize("ext", ["avi", "mkv"])
def test_damaged_file_keeps_true_indices(videos, ext, fresh_cache):
    path = videos[f"damaged_{ext}"]
    shown = _decoded_codes(path)
    never_shown = sorted(set(range(N)) - set(shown))
    assert 0 < len(never_shown) < 30  # a real, partial loss
    with pytest.warns(V.DamagedVideoWarning, match=rf"damaged\.{ext} is damaged.*"
                                                   rf"could not be decoded \(the file's frames "
                                                   rf"\d+-\d+, counted from 0.*keep their true "
                                                   "indices"):
        info = V.probe(path, cache=fresh_cache)
    assert info.num_frames == N  # not the decoded count: the undamaged video's
    assert not info.seekable
    with pytest.warns(V.DamagedVideoWarning):
        frames = V.read_frames(path, cache=fresh_cache)
    returned = frames.indices.tolist()
    assert _codes(frames.images) == returned  # every frame shows the index it is given
    missing = sorted(set(range(N)) - set(returned))
    assert info.lost_frames == len(missing) == N - len(frames)
    assert _expand(info.lost_ranges) == missing
    assert set(never_shown) <= set(missing)  # every picture the decoder never gave is lost
    assert returned[-1] == N - 1  # the end is reached, at its true index
    np.testing.assert_allclose(frames.timestamps_s, np.asarray(returned) / FPS, atol=1e-3)
    if ext == "mkv":  # its timestamps place every lost frame: exactly those never shown
        assert missing == never_shown
    else:  # the AVI demuxer skipped whole chunks: the index counts them
        assert info.lost_frames >= N - len(_packets(path)) > 0

    after = missing[-1] + 1
    with pytest.warns(V.DamagedVideoWarning):
        some = V.read_frames(path, indices=[N - 1, 0, after, after], cache=fresh_cache)
    assert some.indices.tolist() == _codes(some.images) == [N - 1, 0, after, after]
    with pytest.warns(V.DamagedVideoWarning):
        sampled = V.read_frames(path, fps=5, cache=fresh_cache)
    assert set(sampled.indices.tolist()).isdisjoint(missing)
    assert _codes(sampled.images) == sampled.indices.tolist()
    with pytest.warns(V.DamagedVideoWarning), pytest.raises(
            VideoError, match=rf"damaged\.{ext}: frame\(s\) \[{missing[0]}\] \(1 in all\) are "
                              r"lost.*lost_ranges"):
        V.read_frames(path, indices=[0, missing[0]], cache=fresh_cache)


@pytest.mark.parametrize("ext", ["avi", "mkv"])
def test_whole_file_reports_no_loss(videos, ext, fresh_cache):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = V.probe(videos[ext], cache=fresh_cache)
        frames = V.read_frames(videos[ext], cache=fresh_cache)
    assert (info.num_frames, info.lost_frames, info.lost_ranges) == (N, 0, ())
    assert frames.indices.tolist() == _codes(frames.images) == list(range(N))


# ----------------------------------------------------------------------------- frame folders

def _folder(folder: Path, names: dict[str, int]) -> Path:
    """Images named ``names`` (file name -> the code each shows)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, code in names.items():
        assert cv2.imwrite(str(folder / name), V._code_image(code, 64, 48)[..., ::-1])
    return folder


def test_frame_folder_with_a_gap_keeps_numbers_as_indices(tmp_path, fresh_cache):
    folder = _folder(tmp_path / "gap", {f"{i:03d}.png": i for i in range(10) if i != 4})
    with pytest.warns(V.DamagedVideoWarning, match=r"gap: 1 image\(s\) missing from this frame "
                                                   r"folder's numbering \(frames 4, counted "
                                                   r"from 000\.png as frame 0\)"):
        info = V.probe(folder, cache=fresh_cache)
    assert (info.num_frames, info.lost_frames, info.lost_ranges) == (10, 1, ((4, 4),))
    assert V.folder_frame_count(folder) == 10
    with pytest.warns(V.DamagedVideoWarning):
        frames = V.read_frames(folder, cache=fresh_cache)
    assert frames.indices.tolist() == _codes(frames.images) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    np.testing.assert_allclose(frames.timestamps_s, frames.indices / 30)
    with pytest.warns(V.DamagedVideoWarning):
        asked = V.read_frames(folder, indices=[9, 5, 3], cache=fresh_cache)
    assert _codes(asked.images) == [9, 5, 3]
    with pytest.warns(V.DamagedVideoWarning), \
            pytest.raises(VideoError, match=r"gap: frame\(s\) \[4\] \(1 in all\) are lost"):
        V.read_frames(folder, indices=[4], cache=fresh_cache)


def test_frame_folder_numbered_from_one(tmp_path, fresh_cache):
    # img_0001 .. img_0006 without 0003 and 0004: frame i is img_{i + 1}
    names = {f"img_{k:04d}.jpg": k - 1 for k in (1, 2, 5, 6)}
    folder = _folder(tmp_path / "from_one", names)
    with pytest.warns(V.DamagedVideoWarning, match=r"frames 2-3, counted from img_0001\.jpg"):
        info = V.probe(folder, cache=fresh_cache)
    assert (info.num_frames, info.lost_ranges) == (6, ((2, 3),))
    with pytest.warns(V.DamagedVideoWarning):
        frames = V.read_frames(folder, cache=fresh_cache)
    assert frames.indices.tolist() == _codes(frames.images) == [0, 1, 4, 5]


def test_frame_folder_without_common_numbering_uses_name_order(tmp_path, fresh_cache):
    # no one numbering (different texts around the numbers): natural name order, no gaps
    names = {"a7.png": 0, "b3.png": 1, "c10.png": 2, "dusk.png": 3}
    folder = _folder(tmp_path / "mixed", names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = V.probe(folder, cache=fresh_cache)
        frames = V.read_frames(folder, cache=fresh_cache)
    assert (info.num_frames, info.lost_frames) == (4, 0)
    assert V.folder_frame_count(folder) == 4
    assert frames.indices.tolist() == _codes(frames.images) == [0, 1, 2, 3]


def test_a_benchmarks_frame_count_of_a_gapped_folder_includes_the_lost_frame(tmp_path):
    """Labels are per true frame index, so a benchmark counts a gapped folder's frames as
    probe does (the numbering's span), not its images."""
    from vadnb.data.benchmarks import count_frames

    for i in range(10):
        if i != 4:
            cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((8, 8, 3), i * 20, np.uint8))
    with pytest.warns(UserWarning):
        assert V.probe(tmp_path).num_frames == 10
    assert count_frames(tmp_path) == 10


def test_a_folder_written_by_extract_frames_keeps_source_indices_without_warning(tmp_path):
    """extract_frames' JPEGs are named by source index: read back, each keeps that index and
    the gaps between samples are sampling (no warning), not lost frames."""
    clip = V.write_test_video(tmp_path / "clip.avi", num_frames=40, fps=10, size=(64, 48))
    out = tmp_path / "frames"
    V.extract_frames(clip, out, indices=[3, 13, 27], quality=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = V.probe(out)
        frames = V.read_frames(out, indices=[13, 27])
    assert info.lost_frames == 0 and info.num_frames == 28
    assert frames.indices.tolist() == [13, 27]
    assert [V.read_frame_code(im) for im in frames.images] == [13, 27]
    with pytest.raises(VideoError, match="not in this folder"):
        V.read_frames(out, indices=[4])
    # the same images without the manifest: a gapped folder (lost frames, warned)
    (out / V.FRAMES_MANIFEST).unlink()
    with pytest.warns(UserWarning, match="missing from this frame folder"):
        assert V.probe(out).lost_frames == 22  # 4..26 less 13, counted from frame 3
