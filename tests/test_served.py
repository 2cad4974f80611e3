"""The served (OpenAI-compatible) llm/vlm backend against a local test server on 127.0.0.1."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
from served_support.server import TestServer, decode_data_url

from vadnb import models
from vadnb.models import served
from vadnb.models.scripted import ScriptedLLM, ScriptedVLM


def _echo(messages):
    return "echo: " + messages[-1]["content"]


def _describe(images, prompt):
    return f"{len(images)} images, first pixel {int(images[0][0, 0, 0])}, prompt {prompt}"


@pytest.fixture(scope="module")
def tiny_backends():
    return {"llm": models.load("llm", profile="tiny"), "vlm": models.load("vlm", profile="tiny")}


@pytest.fixture(scope="module")
def server(tiny_backends):
    """Tiny models and scripted doubles behind one server; always stopped at the end."""
    backends = {"tiny:llm": tiny_backends["llm"], "tiny:vlm": tiny_backends["vlm"],
                "echo": ScriptedLLM(_echo, name="echo"),
                "describe": ScriptedVLM(_describe, name="describe")}
    with TestServer(backends) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(server):
    server.reset()
    yield
    server.reset()


def _stat(name):
    stats = models.call_stats()
    row = stats[stats["model"] == name]
    return (int(row["calls"].sum()), int(row["items"].sum())) if len(row) else (0, 0)


def test_model_string_is_parsed_and_checked():
    assert served.parse_model_string("openai:Qwen/Qwen2.5-VL-3B-Instruct@http://10.0.0.5:8000/v1/") \
        == ("Qwen/Qwen2.5-VL-3B-Instruct", "http://10.0.0.5:8000/v1")
    assert served.parse_model_string("openai:tiny:llm@https://h/v1") == ("tiny:llm", "https://h/v1")
    with pytest.raises(ValueError, match="openai:<model name>@<base url>"):
        served.parse_model_string("openai:Qwen/Qwen2.5-3B-Instruct")
    with pytest.raises(ValueError, match="only the llm and vlm roles"):
        models.load("clip", model="openai:ViT@http://127.0.0.1:1/v1")


def test_load_routes_to_the_served_backend(server):
    llm = models.load("llm", model=server.model_string("tiny:llm"))
    vlm = models.load("vlm-3b", model=server.model_string("tiny:vlm"), batch_size=3)
    assert isinstance(llm, served.ServedLLM) and isinstance(vlm, served.ServedVLM)
    assert (llm.profile, llm.meaningless) == ("tiny", True)  # tiny models stay flagged
    assert vlm.max_concurrency == 3
    other = served.ServedLLM("Qwen/Qwen2.5-3B-Instruct", server.url)
    assert (other.profile, other.meaningless) == ("custom", False)
    assert sorted(llm.models()) == ["describe", "echo", "tiny:llm", "tiny:vlm"]


def test_llm_reply_is_the_wrapped_models_reply(server, tiny_backends):
    msgs = [{"role": "system", "content": "You rate scenes."},
            {"role": "user", "content": "A man runs across the car park."}]
    direct = tiny_backends["llm"](msgs, max_new_tokens=6)
    llm = models.load("llm", model=server.model_string("tiny:llm"))
    assert llm(msgs, max_new_tokens=6) == direct
    sent = server.requests[-1]
    assert sent["model"] == "tiny:llm" and sent["messages"] == msgs
    assert sent["max_tokens"] == 6 and sent["temperature"] == 0.0  # greedy by default
    assert llm("just a string", max_new_tokens=4) == tiny_backends["llm"](
        [{"role": "user", "content": "just a string"}], max_new_tokens=4)


def test_vlm_sends_images_as_data_urls_in_order(server, tiny_backends):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(2))
    vlm = served.ServedVLM("tiny:vlm", server.url, image_format="png")  # lossless
    reply = vlm([a, b], "What happens?", max_new_tokens=5)
    content = server.requests[-1]["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image_url", "image_url", "text"]
    assert content[2]["text"] == "What happens?"
    np.testing.assert_array_equal(decode_data_url(content[0]["image_url"]["url"]), a)
    np.testing.assert_array_equal(decode_data_url(content[1]["image_url"]["url"]), b)
    assert reply == tiny_backends["vlm"]([a, b], "What happens?", max_new_tokens=5)
    # the default JPEG (lossy) keeps a natural, smooth picture closely
    smooth = np.dstack([*np.meshgrid(np.arange(64) * 4, np.arange(48) * 5), np.full((48, 64), 90)])
    smooth = smooth.astype(np.uint8)
    jpeg_url = served.image_data_url(smooth)
    assert jpeg_url.startswith("data:image/jpeg;base64,")
    jpeg = decode_data_url(jpeg_url)
    assert jpeg.shape == smooth.shape and np.abs(jpeg.astype(int) - smooth).mean() < 3


def test_batch_keeps_order_and_respects_the_concurrency_limit(server):
    server.delay_s = 0.15
    llm = served.ServedLLM("echo", server.url, max_concurrency=3)
    prompts = [f"clip {i}" for i in range(9)]
    t0 = time.perf_counter()
    replies = llm.batch([[{"role": "user", "content": p}] for p in prompts])
    elapsed = time.perf_counter() - t0
    assert replies == [f"echo: {p}" for p in prompts]
    assert server.max_in_flight == 3  # never more than the limit, and the limit is used
    assert elapsed >= 3 * 0.15  # 9 requests, 3 at a time -> at least 3 rounds


def test_vlm_batch_replies_follow_their_requests(server):
    vlm = served.ServedVLM("describe", server.url, max_concurrency=4, image_format="png")
    frames = [np.full((8, 8, 3), v, np.uint8) for v in (10, 200, 90)]
    replies = vlm.batch([([f], f"q{i}") for i, f in enumerate(frames)] + [(frames, "all")])
    assert replies == ["1 images, first pixel 10, prompt q0", "1 images, first pixel 200, prompt q1",
                       "1 images, first pixel 90, prompt q2", "3 images, first pixel 10, prompt all"]


def test_calls_are_counted_like_any_backend(server):
    llm = served.ServedLLM("echo", server.url)
    before = _stat("openai:echo")
    llm.batch([[{"role": "user", "content": str(i)}] for i in range(4)])
    llm([{"role": "user", "content": "one more"}])
    calls, items = _stat("openai:echo")
    assert (calls - before[0], items - before[1]) == (2, 5)


def test_server_errors_are_retried_with_backoff(server):
    server.fail_next(2, status=500)
    llm = served.ServedLLM("echo", server.url, backoff_s=0.05, max_retries=3)
    t0 = time.perf_counter()
    assert llm("hello") == "echo: hello"
    assert len(server.requests) == 3 and llm.retries == 2
    assert time.perf_counter() - t0 >= 0.05 + 0.10  # waited 0.05 s, then 0.10 s


def test_rate_limit_is_retried_too(server):
    server.fail_next(1, status=429)
    llm = served.ServedLLM("echo", server.url, backoff_s=0.01)
    assert llm("x") == "echo: x" and llm.retries == 1


def test_gives_up_after_max_retries_with_a_clear_error(server):
    server.fail_next(10, status=503)
    llm = served.ServedLLM("echo", server.url, backoff_s=0.01, max_retries=2)
    with pytest.raises(served.ServedModelError, match=r"failed 3 times.*curl"):
        llm("hello")
    assert len(server.requests) == 3


def test_client_errors_are_not_retried(server):
    llm = served.ServedLLM("no-such-model", server.url, backoff_s=0.01, max_retries=3)
    with pytest.raises(served.ServedModelError, match="refused the request.*models"):
        llm("hello")
    assert len(server.requests) == 1


def test_slow_replies_time_out_and_are_retried(server):
    server.delay_s = 1.0
    llm = served.ServedLLM("echo", server.url, timeout_s=0.2, max_retries=1, backoff_s=0.01)
    t0 = time.perf_counter()
    with pytest.raises(served.ServedModelError, match="Timeout"):
        llm("slow")
    assert time.perf_counter() - t0 < 0.9  # gave up before the server answered
    assert llm.retries == 1
    server.delay_s = 0.0
    time.sleep(1.0)  # let the server's sleeping handlers finish before the next test


def test_an_unreachable_server_fails_fast_and_says_so():
    llm = served.ServedLLM("x", "http://127.0.0.1:9/v1", max_retries=1, backoff_s=0.01,
                           timeout_s=2)
    with pytest.raises(served.ServedModelError, match="Is the server up"):
        llm("anyone?")


def test_reply_parsing():
    def reply(content):
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=content))])

    assert served._reply_text(reply("  [0.7]\n"), "t") == "[0.7]"
    assert served._reply_text(reply(None), "t") == ""
    assert served._reply_text(reply([{"type": "text", "text": "a "}, {"type": "text", "text": "b"}]),
                              "t") == "a b"
    with pytest.raises(served.ServedModelError, match="no choices"):
        served._reply_text(SimpleNamespace(choices=[]), "t")
