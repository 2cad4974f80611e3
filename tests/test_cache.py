import os

import numpy as np
import pytest

from vadnb.cache import Cache, CacheWarning, file_digest, make_key


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


def test_lists_of_like_arrays_are_stored_stacked_and_come_back_as_lists(fresh_cache):
    rng = np.random.default_rng(0)
    embeddings = [rng.normal(size=8).astype(np.float32) for _ in range(5)]
    mixed = [np.zeros(3), np.zeros(4), np.zeros(3, np.int64)]  # shapes / dtypes differ
    scalars = [np.array(1.5), np.array(2.5)]  # 0-d arrays stay arrays, stored apart
    value = {"emb": embeddings, "mixed": mixed, "one": [np.ones(2)], "empty": [],
             "scalars": scalars}
    fresh_cache.put("stage", {"k": 1}, value)
    path = next((fresh_cache.root / "stages" / "stage").glob("*.npz"))
    with np.load(path, allow_pickle=False) as z:
        shapes = sorted(z[k].shape for k in z.files if k != "__json__")
    assert shapes == [(), (), (2,), (3,), (3,), (4,), (5, 8)]  # the 5 embeddings: one member
    back = fresh_cache.get("stage", {"k": 1})
    assert isinstance(back["emb"], list) and len(back["emb"]) == 5
    for a, b in zip(back["emb"], embeddings):
        assert a.dtype == np.float32 and a.shape == (8,)
        np.testing.assert_array_equal(a, b)
    assert [a.shape for a in back["mixed"]] == [(3,), (4,), (3,)]
    assert back["mixed"][2].dtype == np.int64
    assert back["one"][0].shape == (2,) and back["empty"] == []
    assert all(type(a) is np.ndarray and a.shape == () for a in back["scalars"])


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


def test_corrupt_entry_is_recomputed_and_atomic_writes_leave_no_temp(fresh_cache):
    fresh_cache.put("s", {"a": 1}, [1, 2])
    path = fresh_cache.path("s", make_key({"a": 1}))
    path.write_bytes(b"not an npz")
    with pytest.warns(CacheWarning, match=r"\(stage 's'\) is damaged .*removed it"):
        assert fresh_cache.memo("s", {"a": 1}, lambda: [3]) == [3]
    assert not list(path.parent.glob(".tmp-*"))


def test_report_size_and_clear(fresh_cache):
    fresh_cache.put("one", {"a": 1}, np.zeros(1000))
    fresh_cache.put("two", {"a": 1}, "x")
    report = fresh_cache.report().set_index("stage")
    assert report.loc["one", "entries"] == 1 and report.loc["one", "MB"] > 0.007
    assert report.loc["two", "entries"] == 1
    fresh_cache.clear("one")
    assert fresh_cache.report()["stage"].tolist() == ["two"]
    fresh_cache.clear()
    assert fresh_cache.report().empty


def test_disabled_cache_always_computes(tmp_path):
    cache = Cache(tmp_path, enabled=False)
    calls = []
    for _ in range(2):
        cache.memo("s", {}, lambda: calls.append(1) or 1)
    assert len(calls) == 2


# --- damaged entries, unwritable folders, failed replies -------------------------------------

import errno  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import warnings  # noqa: E402

from vadnb.models.base import FailedReply, Reply  # noqa: E402
from vadnb.models.scripted import ScriptedLLM  # noqa: E402
from vadnb.runtime import Chat, Roles, Runtime  # noqa: E402


def _cut_short(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _bad_crc(data: bytes) -> bytes:
    i = data.index(b"\x93NUMPY") + 200  # inside the stored array's bytes
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]


def _bad_json(data: bytes) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a0=np.arange(100.0), __json__=np.array('{"x": [1, 2'))
    return buf.getvalue()


def _missing_array(data: bytes) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, __json__=np.array(json.dumps({"__ndarray__": 3})))
    return buf.getvalue()


@pytest.mark.parametrize("damage", [_cut_short, lambda d: b"", _bad_crc, _bad_json,
                                    _missing_array],
                         ids=["cut-short", "zero-bytes", "bad-crc", "bad-json", "missing-array"])
def test_a_damaged_entry_is_named_removed_and_recomputed(fresh_cache, damage):
    fresh_cache.put("s", {"a": 1}, {"x": np.arange(100.0)})
    path = fresh_cache.path("s", make_key({"a": 1}))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(CacheWarning, match=f"{path.name}.*damaged.*compute it again"):
        value = fresh_cache.memo("s", {"a": 1}, lambda: {"x": np.arange(3.0)})
    np.testing.assert_array_equal(value["x"], np.arange(3.0))
    assert fresh_cache.damaged == [path]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recomputed entry is whole again: no warning
        np.testing.assert_array_equal(fresh_cache.get("s", {"a": 1})["x"], np.arange(3.0))


def test_an_unwritable_folder_returns_the_result_and_warns_once(tmp_path):
    root = tmp_path / "cache"
    root.mkdir()
    (root / "stages").write_text("a file where the stages folder should be")  # cannot mkdir
    cache = Cache(root)
    with pytest.warns(CacheWarning, match="cannot write to the cache folder") as caught:
        assert cache.memo("s", {"a": 1}, lambda: [1, 2]) == [1, 2]
        rt = Runtime(Roles(backends={"llm": ScriptedLLM(lambda m: m[0]["content"])}), cache)
        assert rt.map("llm", [Chat([{"role": "user", "content": f"{i}"}]) for i in range(5)],
                      batch_size=2) == ["0", "1", "2", "3", "4"]
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1
    assert cache.write_errors == 4


def test_a_full_disk_returns_the_result_and_leaves_no_temp_file(fresh_cache, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", no_space)
    with pytest.warns(CacheWarning, match="No space left"):
        assert fresh_cache.memo("s", {"a": 1}, lambda: "result") == "result"
    assert not list(fresh_cache.root.rglob(".tmp-*"))
    monkeypatch.undo()
    assert fresh_cache.memo("s", {"a": 1}, lambda: "again") == "again"  # nothing was kept


def test_failed_replies_are_returned_but_never_stored(fresh_cache):
    assert fresh_cache.put("s", {}, {"replies": [Reply("a"), FailedReply("x")]}) is False
    assert fresh_cache.put("s", {}, {"replies": [FailedReply("x")]}) is False
    assert fresh_cache.get("s", {}) is None
    assert fresh_cache.put("s", {"k": 1}, {"replies": [Reply("a"), ""]}) is True  # "" is a reply
    assert fresh_cache.memo("s", {}, lambda: [Reply("fine")]) == ["fine"]


def test_replies_keep_their_truncated_flag(fresh_cache):
    fresh_cache.put("r", {}, [Reply("cut", truncated=True, num_tokens=12), Reply("ok"), "plain"])
    cut, ok, plain = fresh_cache.get("r", {})
    assert (cut, cut.truncated, cut.num_tokens) == ("cut", True, 12)
    assert isinstance(ok, Reply) and not ok.truncated
    assert type(plain) is str


def test_a_whole_entry_with_foreign_content_is_named_and_recomputed(fresh_cache):
    def columns():
        return {"speed": np.arange(3.0), "people": np.ones(3)}

    def check(value):
        if not isinstance(value, dict) or set(value) != {"speed", "people"}:
            raise ValueError(f"not the columns speed, people: {value!r:.40}")

    # another stage's entry copied under this key: a valid file, the wrong keys
    fresh_cache.put("facts", {"v": 1}, {"x": np.arange(5.0)})
    path = fresh_cache.path("facts", make_key({"v": 1}))
    with pytest.warns(CacheWarning, match=f"{path.name}.*'facts'.*does not hold what stage "
                                          "'facts' stores.*ValueError.*compute it again"):
        value = fresh_cache.memo("facts", {"v": 1}, columns, check=check)
    assert set(value) == {"speed", "people"} and fresh_cache.damaged == [path]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recomputed entry passes the check: no warning
        assert set(fresh_cache.memo("facts", {"v": 1}, columns, check=check)) == {"speed", "people"}
    assert fresh_cache.hits == 1



def test_a_cached_reply_cut_inside_an_emoji_comes_back_repaired(fresh_cache):
    """An entry stored before replies were repaired (issue 21) no longer breaks every re-run."""
    path = fresh_cache.path("llm", make_key({"q": 1}))
    old = {"__reply__": "a fight \ud83d", "truncated": True, "num_tokens": None}
    path.parent.mkdir(parents=True)
    np.savez(path, __json__=np.array(json.dumps(old)))
    reply = fresh_cache.get("llm", {"q": 1})
    assert isinstance(reply, Reply) and reply == "a fight \ufffd" and reply.truncated
    reply.encode("utf-8")  # writable
