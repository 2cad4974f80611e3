"""The runtime: keys from what is sent, batches stored as they return, nothing redone warm."""

from __future__ import annotations

import numpy as np
import pytest

from vadnb import lavad, models
from vadnb.cache import CacheWarning, make_key
from vadnb.models.base import FailedReply
from vadnb.models.scripted import ScriptedCaptioner, ScriptedEmbedder, ScriptedLLM, ScriptedVLM
from vadnb.runtime import (Ask, Caption, Chat, Derived, EncodeImage, EncodeText, EncodeVideo,
                           Frame, FrameStore, Roles, Runtime, image_key, request_key)
from vadnb.video import decode_stats, read_frame_code, reset_decode_stats, write_test_video


@pytest.fixture
def clip_video(tmp_path):
    return write_test_video(tmp_path / "v.avi", num_frames=40, fps=10, size=(64, 48))


def _echo_llm(log: list):
    def answer(messages):
        log.append(messages[-1]["content"])
        return f"reply to: {messages[-1]['content'][-20:]}"
    return ScriptedLLM(answer, name="echo-llm")


def _summaries(rt: Runtime, descriptions: list[list[str]]) -> list[str]:
    """A pipeline step as a method writes it: build the prompt, send it through the map."""
    return rt.map("llm", [Chat(lavad.summary_messages(d), max_new_tokens=64)
                          for d in descriptions], batch_size=2)


def test_same_request_is_a_cache_hit_and_changed_text_is_asked(fresh_cache):
    log: list[str] = []
    rt = Runtime(Roles(backends={"llm": _echo_llm(log)}), fresh_cache)
    texts = [["a man walks"], ["a car parks"], ["a man walks"], ["a dog runs"], ["rain"]]
    first = _summaries(rt, texts)
    assert len(log) == 4  # the identical third request is asked once
    assert first[0] == first[2]
    again = Runtime(Roles(backends={"llm": _echo_llm(log)}), fresh_cache)
    assert _summaries(again, texts) == first and len(log) == 4
    assert again.model_calls().set_index("role").loc["llm", ["calls", "cached"]].tolist() == [0, 4]
    # one changed text: only its batch (of 2 unique requests) is asked again
    texts[3] = ["a dog bites"]
    assert _summaries(again, texts)[3] != first[3]
    assert len(log) == 6 and log[-2].endswith("a dog bites") and log[-1].endswith("rain")


def test_editing_prompt_code_asks_the_model_again(fresh_cache, monkeypatch):
    """The issue's stale-answer bug: editing the prompt function must not replay old replies."""
    log: list[str] = []
    texts = [["a man walks"], ["a car parks"]]
    _summaries(Runtime(Roles(backends={"llm": _echo_llm(log)}), fresh_cache), texts)
    assert len(log) == 2
    original = lavad.summary_messages

    def edited(description, config=None):
        messages = original(description, config)
        return [{"role": "user", "content": "Be brief. " + messages[0]["content"]}]

    monkeypatch.setattr(lavad, "summary_messages", edited)
    rt = Runtime(Roles(backends={"llm": _echo_llm(log)}), fresh_cache)
    replies = _summaries(rt, texts)
    assert len(log) == 4 and all(t.startswith("Be brief. ") for t in log[2:])
    assert rt.model_calls().loc[0, "calls"] == 1 and rt.model_calls().loc[0, "cached"] == 0
    assert replies == [f"reply to: {t[-20:]}" for t in log[2:]]


def test_key_covers_model_settings_and_images():
    chat = Chat([{"role": "user", "content": "hi"}], max_new_tokens=8)
    assert request_key("m", chat) == request_key("m", Chat([{"role": "user", "content": "hi"}], 8))
    assert request_key("m", chat) != request_key("other", chat)
    assert request_key("m", chat) != request_key("m", Chat(chat.messages, 9))
    assert request_key("m", chat) != request_key("m", Chat(chat.messages, 8, temperature=0.7))
    a, b = Frame("vid", 3), Frame("vid", 4)
    assert request_key("m", Ask((a,), "q")) != request_key("m", Ask((b,), "q"))
    assert request_key("m", Ask((a,), "q")) != request_key("m", Ask((a,), "q "))
    with pytest.raises(TypeError, match="not a runtime request"):
        request_key("m", {"prompt": "hi"})
    # a caption's length cap is part of what is asked, the model's own setting (None) too
    assert request_key("m", Caption(a)) != request_key("m", Caption(a, 30))
    assert request_key("m", Caption(a)) != make_key({"model": "m", "kind": "Caption",
                                                     "image": image_key(a)})


def test_the_caption_cap_reaches_the_captioner_and_is_asked_apart(fresh_cache, clip_video):
    sent: list[dict] = []

    class Recording(ScriptedCaptioner):
        def __call__(self, images, **generate):
            sent.append(generate)
            return super().__call__(images, **generate)

    captioner = Recording(lambda im: "a frame", name="cap")
    rt = Runtime(Roles(backends={"captioner": captioner}), fresh_cache)
    frame = rt.video(clip_video).frame(0)
    rt.map("captioner", [Caption(frame)])
    rt.map("captioner", [Caption(frame, 30)])
    assert sent == [{}, {"max_new_tokens": 30}]


def _mask(images, box):
    out = images[0].copy()
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = 0
    return out


def _grid(images):
    top = np.concatenate(images[:2], axis=1)
    return np.concatenate([top, np.concatenate(images[2:], axis=1)], axis=0)


def test_derived_images_are_keyed_by_recipe(fresh_cache, clip_video, monkeypatch):
    f = [Frame("vid", i) for i in range(4)]
    masked = Derived.of(_mask, [f[0]], box=(0, 0, 8, 8))
    assert masked.key == Derived.of(_mask, [f[0]], box=(0, 0, 8, 8)).key
    assert masked.key != Derived.of(_mask, [f[1]], box=(0, 0, 8, 8)).key
    assert masked.key != Derived.of(_mask, [f[0]], box=(0, 0, 9, 8)).key
    assert masked.key != Derived.of(_grid, f).key
    assert Derived.of(_grid, f).key != Derived.of(_grid, f[::-1]).key
    # the key is computed without pixels: no frame is decoded to key a derived image
    reset_decode_stats()
    request_key("vlm", Ask((Derived.of(_grid, f),), "what happens?"))
    assert decode_stats()["frames_decoded"] == 0
    # and the runtime builds the pixels from the recipe
    seen = []
    vlm = ScriptedVLM(lambda ims, p: seen.append(ims) or "ok", name="vlm-double")
    rt = Runtime(Roles(backends={"vlm": vlm}), fresh_cache)
    v = rt.video(clip_video)
    rt.map("vlm", [Ask((Derived.of(_grid, v.frames([3, 1, 2, 0])),), "grid?")])
    grid = seen[0][0]
    assert grid.shape == (96, 128, 3)
    assert [read_frame_code(grid[:48, :64]), read_frame_code(grid[48:, 64:])] == [3, 0]


def test_frames_are_decoded_once_in_any_request_order(fresh_cache, clip_video):
    seen: list[int] = []
    emb = ScriptedEmbedder(image_fn=lambda im: (seen.append(read_frame_code(im)),
                                                np.ones(4))[1], name="emb-double")
    rt = Runtime(Roles(backends={"embedder": emb}), fresh_cache)
    v = rt.video(clip_video)
    order = [30, 2, 17, 2, 39, 5]
    reset_decode_stats()
    rt.map("embedder", [EncodeImage(v.frame(i)) for i in order], batch_size=2)
    # overlapping clips: frames shared by two requests in different batches
    rt.map("embedder", [EncodeVideo(tuple(v.frames([c, c + 1, c + 2]))) for c in (20, 10, 21)],
           batch_size=1)
    assert seen[:5] == [30, 2, 17, 39, 5]
    assert seen[5:] == [20, 21, 22, 10, 11, 12, 21, 22, 23]
    stats = decode_stats()
    assert stats["opens"] == 2 and stats["frames_returned"] == 5 + 7


def test_resume_after_a_failure_mid_map_asks_only_unfinished_batches(fresh_cache):
    asked: list[str] = []

    def flaky(messages):
        text = messages[0]["content"]
        asked.append(text)
        if text == "q4":
            raise RuntimeError("killed")
        return text.upper()

    requests = [Chat([{"role": "user", "content": f"q{i}"}]) for i in range(7)]
    rt = Runtime(Roles(backends={"llm": ScriptedLLM(flaky, name="flaky")}), fresh_cache)
    with pytest.raises(RuntimeError, match="killed"):
        rt.map("llm", requests, batch_size=2)
    assert asked == ["q0", "q1", "q2", "q3", "q4"]
    asked.clear()
    good = Runtime(Roles(backends={"llm": ScriptedLLM(lambda m: m[0]["content"].upper(),
                                                      name="flaky")}), fresh_cache)
    seen: list[str] = []
    good.roles.given["llm"].fn = lambda m: seen.append(m[0]["content"]) or m[0]["content"].upper()
    assert good.map("llm", requests, batch_size=2) == [f"Q{i}" for i in range(7)]
    assert seen == ["q4", "q5", "q6"]


def test_failed_replies_are_returned_not_cached(fresh_cache):
    calls = []

    def answer(messages):
        calls.append(1)
        return FailedReply("empty answer") if len(calls) == 1 else "fine"

    rt = Runtime(Roles(backends={"llm": ScriptedLLM(answer, name="srv")}), fresh_cache)
    req = [Chat([{"role": "user", "content": "hello"}])]
    assert rt.map("llm", req)[0].failed
    assert rt.model_calls().loc[0, "failures"] == 1
    assert rt.map("llm", req) == ["fine"] and len(calls) == 2
    assert rt.map("llm", req) == ["fine"] and len(calls) == 2


def test_only_a_failed_or_damaged_batch_is_asked_again(fresh_cache):
    """Batches are stored as they return, one entry each; a batch holding a failed reply is
    not stored, and a damaged entry is named, removed and asked again, alone."""
    asked: list[str] = []
    failed: list[str] = []  # "b" fails the first time only

    def answer(messages):
        text = messages[0]["content"]
        asked.append(text)
        if text == "b" and not failed:
            failed.append(text)
            return FailedReply("empty")
        return text.upper()

    requests = [Chat([{"role": "user", "content": x}]) for x in "abcdef"]
    rt = Runtime(Roles(backends={"llm": ScriptedLLM(answer, name="srv")}), fresh_cache)
    out = rt.map("llm", requests, batch_size=2)
    assert out == ["A", "", "C", "D", "E", "F"] and out[1].failed
    assert len(list((fresh_cache.root / "stages" / "runtime.llm").glob("*.npz"))) == 2
    keys = [request_key(rt.roles.identity("llm"), r) for r in requests]
    fresh_cache.path("runtime.llm", make_key({"items": keys[2:4]})).write_bytes(b"")
    asked.clear()
    with pytest.warns(CacheWarning, match="damaged"):
        assert rt.map("llm", requests, batch_size=2) == ["A", "B", "C", "D", "E", "F"]
    assert asked == ["a", "b", "c", "d"]
    assert rt.map("llm", requests, batch_size=2) == ["A", "B", "C", "D", "E", "F"]
    assert asked == ["a", "b", "c", "d"]  # every batch stored now


def test_a_batch_of_vectors_is_one_entry_and_a_short_reply_is_an_error(fresh_cache):
    values = {f"t{i}": np.full(1000, i + 1, np.float32) for i in range(8)}
    embedder = ScriptedEmbedder(text_fn=values.__getitem__, name="vec")
    rt = Runtime(Roles(backends={"embedder": embedder}), fresh_cache)
    rt.map("embedder", [EncodeText(t) for t in values], batch_size=4)
    report = fresh_cache.report().set_index("stage").loc["runtime.embedder"]
    assert report["entries"] == 2  # two batches, each vector stored once (stacked)
    assert report["MB"] * 1e6 < 1.2 * sum(v.nbytes for v in values.values())
    embedder.encode_text = lambda texts: np.ones((len(texts) - 1, 4))
    with pytest.raises(RuntimeError, match="returned 2 answers for 3 requests"):
        rt.map("embedder", [EncodeText(t) for t in "xyz"])


def test_given_backends_are_never_released(fresh_cache, clip_video):
    cap = ScriptedCaptioner(lambda im: "a frame", name="cap-double")
    rt = Runtime(Roles(backends={"captioner": cap}), fresh_cache)
    v = rt.video(clip_video)
    rt.map("captioner", [Caption(v.frame(0))])
    rt.release("captioner")
    rt.release()
    assert not cap.released and rt.roles.get("captioner") is cap


def _tiny_pipeline(rt: Runtime, video) -> tuple[list[str], list[np.ndarray]]:
    v = rt.video(video)
    captions = rt.map("captioner", [Caption(f) for f in v.frames(range(0, 40, 8))])
    rt.release("captioner")
    vectors = rt.map("clip", [EncodeImage(f) for f in v.frames([1, 9, 9, 33])])
    rt.release("clip")
    return captions, vectors


def test_warm_run_loads_no_model_and_decodes_no_frame(fresh_cache, clip_video):
    roles = Roles(profile="tiny")
    models.reset_load_stats()
    cold = Runtime(roles, fresh_cache)
    captions, vectors = _tiny_pipeline(cold, clip_video)
    loads = models.load_stats()
    assert sorted(loads["role"]) == ["captioner", "clip"]
    assert set(loads["model"]) == {roles.identity("captioner"), roles.identity("clip")}
    assert not roles.loaded  # released between stages
    models.reset_load_stats()
    reset_decode_stats()
    warm = Runtime(Roles(profile="tiny"), fresh_cache)
    again = _tiny_pipeline(warm, clip_video)
    assert models.load_stats().empty
    assert decode_stats() == {"opens": 0, "frames_decoded": 0, "frames_returned": 0}
    assert again[0] == captions
    np.testing.assert_array_equal(np.stack(again[1]), np.stack(vectors))
    table = warm.model_calls().set_index("role")
    assert table.loc["captioner", "cached"] == 5 and table.loc["clip", "cached"] == 3
    assert table["calls"].sum() == 0 and set(table["profile"]) == {"tiny"}


def test_the_vlm_image_cap_is_part_of_what_is_asked(fresh_cache, clip_video):
    """A VLM downsizes what it is sent to its cap: the cap is keyed, so replies made under
    another cap (another image) are never reused; the role's default is known unloaded."""
    from vadnb.models.hf import max_pixels_for

    sent: list[dict] = []

    class Capped(ScriptedVLM):
        def batch(self, items, **generate):
            sent.append(generate)
            return super().batch(items, **{k: v for k, v in generate.items()
                                           if k != "max_pixels"})

    def ask(cap):
        vlm = Capped(lambda images, prompt: "0", name="capped")
        vlm.max_pixels = cap
        rt = Runtime(Roles(backends={"vlm": vlm}), fresh_cache)
        rt.map("vlm", [Ask((rt.video(clip_video).frame(0),), "q")])
        return rt.model_calls().set_index("role").loc["vlm", "calls"]

    assert ask(1000) == 1 and ask(1000) == 0   # same cap: cached
    assert ask(2000) == 1                      # another cap: asked again
    assert [g.get("max_pixels") for g in sent] == [1000, 2000]
    assert Roles(entries={"vlm": "vlm-3b"}).image_cap("vlm") == max_pixels_for("vlm-3b")
    assert max_pixels_for("vlm-3b") != max_pixels_for("vlm")


# --------------------------------------------------------------------------- frames kept for the run


def _codes(log: list):
    """An embedder double that logs each image it sees: a frame's code, a 2x2 grid's four."""
    def read(im):
        h, w = im.shape[0] // 2, im.shape[1] // 2
        log.append(read_frame_code(im) if im.shape[:2] == (48, 64) else
                   tuple(read_frame_code(im[y:y + h, x:x + w]) for y in (0, h) for x in (0, w)))
        return np.ones(4)
    return ScriptedEmbedder(image_fn=read, name="codes")


def test_two_maps_over_the_same_frames_decode_each_frame_once(fresh_cache, clip_video):
    """Issue 22: a later stage sending frames an earlier one sent reads them from the run's
    store (AnyAnomaly's windows then VLM, VERA's answers then embeddings)."""
    seen: list = []
    roles = Roles(backends={"embedder": _codes(seen)})
    rt = Runtime(roles, fresh_cache)
    v = rt.video(clip_video)
    reset_decode_stats()
    rt.map("embedder", [EncodeImage(v.frame(i)) for i in (12, 3, 7, 3)], batch_size=2)
    assert decode_stats()["frames_returned"] == 3
    # a second map (another request kind, a derived image) over the same frames and one more
    rt.map("embedder", [EncodeImage(Derived.of(_grid, v.frames([7, 3, 12, 20]))),
                        EncodeVideo(tuple(v.frames([12, 3])))], batch_size=1)
    assert seen == [12, 3, 7, (7, 3, 12, 20), 12, 3]
    assert decode_stats()["frames_returned"] == 4 and decode_stats()["opens"] == 2
    # pixels for display, and a second runtime of the same run (VERA: one per video)
    assert [read_frame_code(p) for p in rt.pixels(v.frames([20, 7]))] == [20, 7]
    other = Runtime(roles, fresh_cache)
    other.video(clip_video)
    other.map("embedder", [EncodeImage(Derived.of(_mask, [v.frame(3)], box=(0, 0, 1, 1)))])
    assert decode_stats()["frames_returned"] == 4 and seen[-1] == 3
    # the end of the run frees them: a new map decodes again
    rt.release()
    assert len(rt.frames.frames) == 0 and rt.frames.bytes == 0
    rt.map("embedder", [EncodeVideo(tuple(v.frames([3, 12, 20])))])
    assert decode_stats()["frames_returned"] == 7 and seen[-3:] == [3, 12, 20]


@pytest.mark.parametrize("room, opens", [(9, 1), (8, 2)])
def test_planned_frames_are_decoded_in_one_pass_within_the_budget(fresh_cache, clip_video,
                                                                  room, opens):
    """A plan names the frames of every later stage: the first miss decodes them all (room
    for the 9 planned frames). Over the budget the plan is dropped: each map decodes its own."""
    seen: list = []
    store = FrameStore(budget=room * 48 * 64 * 3)
    rt = Runtime(Roles(backends={"embedder": _codes(seen)}), fresh_cache, frames=store)
    v = rt.video(clip_video)
    firsts = [EncodeImage(f) for f in v.frames([30, 2, 11])]
    seconds = [EncodeVideo(tuple(v.frames([5, 2]))), EncodeImage(Derived.of(_grid, v.frames(
        [39, 20, 21, 22])))]
    reset_decode_stats()
    rt.plan(firsts, seconds, v.frame(8))
    assert decode_stats()["opens"] == 0  # a plan decodes nothing by itself
    rt.map("embedder", firsts)
    rt.map("embedder", seconds)
    assert seen == [30, 2, 11, 5, 2, (39, 20, 21, 22)]
    assert decode_stats()["opens"] == opens
    assert decode_stats()["frames_returned"] == (9 if opens == 1 else 3 + 5)


def test_kept_frames_stay_within_the_budget_least_recently_used_out(fresh_cache, clip_video):
    frame_bytes = 48 * 64 * 3
    store = FrameStore(budget=10 * frame_bytes + frame_bytes // 2)  # room for 10 frames
    seen: list = []
    rt = Runtime(Roles(backends={"embedder": _codes(seen)}), fresh_cache, frames=store)
    v = rt.video(clip_video)
    reset_decode_stats()
    rt.map("embedder", [EncodeImage(f) for f in v.frames(range(40))], batch_size=4)
    assert store.peak == 10 * frame_bytes and store.bytes == 10 * frame_bytes
    assert [f.index for f in store.frames] == list(range(30, 40))  # the 10 most recent
    assert not store.get(v.frame(35)).flags.writeable  # shared with later calls: read-only
    # frames 0 and 1 are not kept: decoded again. 35 is kept, so it's used, not re-decoded
    reset_decode_stats()
    rt.map("embedder", [EncodeVideo(tuple(v.frames([0, 35, 1])))])
    assert decode_stats()["frames_returned"] == 2 and seen[-3:] == [0, 35, 1]
    # a map needing more than the budget: frames taken from the store at its start are
    # served to its last batch though the frames decoded meanwhile pushed them out
    reset_decode_stats()
    rt.map("embedder", [EncodeImage(f) for f in v.frames(range(10, 30))]
           + [EncodeVideo(tuple(v.frames([36, 37])))], batch_size=1)
    assert seen[-22:] == [*range(10, 30), 36, 37]
    assert decode_stats()["frames_returned"] == 20 and v.frame(36) not in store.frames
    assert store.peak == 10 * frame_bytes and len(store.frames) == 10
    # a budget of 0 keeps nothing (the old behaviour: each map decodes its own frames)
    none = FrameStore(budget=0)
    none.put(v.frame(0), np.zeros((48, 64, 3), np.uint8))
    assert len(none.frames) == 0 and none.peak == 0


def _campus_clip():
    from vadnb.data import load_campus

    try:
        return load_campus().subset("test").videos["path"].iloc[0]
    except (ImportError, FileNotFoundError):
        pytest.skip("the campus clips are not built here")


@pytest.mark.parametrize("method, options", [
    ("anyanomaly", {"prompts": ["a person falling", "a car on the path"]}),
    ("flashback", {"memory": "handwritten"}),
])
def test_a_cold_method_run_decodes_one_forward_pass(method, options, fresh_cache):
    """AnyAnomaly sends the key and context frames to CLIP (every frame, then windows)
    and to the VLM: each frame is decoded once. Flashback's segments overlap: likewise."""
    import vadnb
    from vadnb.video import probe, seek_stats

    path = _campus_clip()
    n = probe(path, cache=fresh_cache).num_frames  # the probe's own pass, cached per file
    reset_decode_stats()
    det = vadnb.detect(path, method=method, profile="tiny", cache=fresh_cache, **options)
    assert det.model_calls["calls"].sum() > 0  # cold: the models were asked
    stats = decode_stats()
    assert stats["opens"] == 1 and stats["frames_decoded"] <= n
    assert stats["frames_returned"] <= n and seek_stats()["fallbacks"] == 0


@pytest.mark.parametrize("method", ["lavad", "vera"])
def test_a_cold_run_decodes_once_and_a_warm_rerun_decodes_and_loads_nothing(method, fresh_cache):
    """LAVAD captions the centre frames, then embeds the window frames; VERA asks the VLM
    about each window, then embeds clips whose frames the VLM never saw. The pipeline plans
    every frame at its start, so a cold run decodes them all in one forward pass; a warm
    re-run reads every answer from the cache: no frame decoded, no model loaded."""
    import vadnb
    from vadnb.video import probe, seek_stats

    path = _campus_clip()
    n = probe(path, cache=fresh_cache).num_frames  # the probe's own pass, cached per file
    reset_decode_stats()
    cold = vadnb.detect(path, method=method, profile="tiny", cache=fresh_cache)
    assert cold.model_calls["calls"].sum() > 0
    stats = decode_stats()
    assert stats["opens"] == 1 and stats["frames_decoded"] <= n
    assert seek_stats()["fallbacks"] == 0
    reset_decode_stats()
    models.reset_load_stats()
    warm = vadnb.detect(path, method=method, profile="tiny", cache=fresh_cache)
    assert decode_stats() == {"opens": 0, "frames_decoded": 0, "frames_returned": 0}
    assert models.load_stats().empty and warm.model_calls["calls"].sum() == 0
    np.testing.assert_array_equal(warm.frame_scores, cold.frame_scores)
