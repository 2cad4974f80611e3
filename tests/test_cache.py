import os

import numpy as np
import pytest

from vadnb.cache import Cache, file_digest, make_key


def test_memo_round_trip_without_pickle(fresh_cache):
    value = {"captions": ["a", "b"], "scores": np.arange(4, dtype=np.float32),
             "nested": [{"t": (1, 2)}, None, True, 1.5]}
    calls = []

    def compute():
        calls.append(1)
        return value

    first = fresh_cache.memo("stage", {"video": "abc", "k": 1}, compute)
    again = fresh_cache.memo("stage", {"k": 1, "video": "abc"}, compute)  # key order irrelevant
    assert len(calls) == 1 and fresh_cache.hits == 1 and fresh_cache.misses == 1
    assert again["captions"] == ["a", "b"] and again["nested"][0]["t"] == (1, 2)
    np.testing.assert_array_equal(again["scores"], value["scores"])
    assert again["scores"].dtype == np.float32
    # a different parameter is a different entry
    fresh_cache.memo("stage", {"video": "abc", "k": 2}, compute)
    assert len(calls) == 2
    # entries load with allow_pickle=False
    path = next((fresh_cache.root / "stages" / "stage").glob("*.npz"))
    with np.load(path, allow_pickle=False) as z:
        assert "__json__" in z.files


def test_uncacheable_values_are_refused(fresh_cache):
    with pytest.raises(TypeError, match="cannot cache"):
        fresh_cache.put("s", {}, {"x": object()})
    with pytest.raises(TypeError, match="cache key"):
        make_key({"x": object()})


def test_file_digest_follows_content_not_name(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(b"hello")
    b = tmp_path / "b.bin"
    b.write_bytes(b"hello")
    assert file_digest(a) == file_digest(b)
    a.write_bytes(b"hello!")
    os.utime(a, ns=(1, 1))
    assert file_digest(a) != file_digest(b)


def test_map_resumes_after_interruption(fresh_cache):
    seen = []

    def square(batch):
        if len(seen) >= 2:
            raise KeyboardInterrupt  # the run is killed after two batches
        seen.append(list(batch))
        return [x * x for x in batch]

    with pytest.raises(KeyboardInterrupt):
        fresh_cache.map("sq", {"v": 1}, range(10), square, batch_size=3)
    assert seen == [[0, 1, 2], [3, 4, 5]]

    resumed = []

    def square_again(batch):
        resumed.append(list(batch))
        return [x * x for x in batch]

    out = fresh_cache.map("sq", {"v": 1}, range(10), square_again, batch_size=3)
    assert out == [x * x for x in range(10)]
    assert resumed == [[6, 7, 8], [9]]  # only what the killed run had not finished
    # a third run is a whole-stage hit
    assert fresh_cache.map("sq", {"v": 1}, range(10), square_again, batch_size=3) == out
    assert len(resumed) == 2


def test_map_checks_result_count(fresh_cache):
    with pytest.raises(ValueError, match="2 results for 3 items"):
        fresh_cache.map("bad", {}, [1, 2, 3], lambda b: b[:2], batch_size=3)


def test_corrupt_entry_is_recomputed_and_atomic_writes_leave_no_temp(fresh_cache):
    fresh_cache.put("s", {"a": 1}, [1, 2])
    path = fresh_cache.path("s", make_key({"a": 1}))
    path.write_bytes(b"not an npz")
    assert fresh_cache.memo("s", {"a": 1}, lambda: [3]) == [3]
    assert not list(path.parent.glob(".tmp-*"))


def test_report_size_and_clear(fresh_cache):
    fresh_cache.put("one", {"a": 1}, np.zeros(1000))
    fresh_cache.put("two", {"a": 1}, "x")
    report = fresh_cache.report().set_index("stage")
    assert report.loc["one", "entries"] == 1 and report.loc["one", "MB"] > 0.007
    assert fresh_cache.size_bytes() > 8000
    fresh_cache.clear("one")
    assert fresh_cache.size_bytes("one") == 0 and fresh_cache.size_bytes("two") > 0
    fresh_cache.clear()
    assert fresh_cache.size_bytes() == 0


def test_disabled_cache_always_computes(tmp_path):
    cache = Cache(tmp_path, enabled=False)
    calls = []
    for _ in range(2):
        cache.memo("s", {}, lambda: calls.append(1) or 1)
    assert len(calls) == 2
