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
    def reply(content, finish="stop"):
        return {"choices": [{"message": {"content": content}, "finish_reason": finish}]}

    assert served._reply_text(reply("  [0.7]\n")) == "[0.7]"
    with pytest.raises(served._NullContent, match="null"):  # retried, then a FailedReply
        served._reply_text(reply(None))
    assert served._reply_text(reply([{"type": "text", "text": "a "},
                                     {"type": "text", "text": "b"}])) == "a b"
    assert served._reply_text(reply("[0.", "length")).truncated
    assert not served._reply_text(reply("[0.5]")).truncated
    with pytest.raises(served._Retry, match="no choices"):
        served._reply_text({"choices": []})


# --- hardening: failed replies, deadlines, garbage, secrets (issue 15) ------------------------

import base64  # noqa: E402
import json  # noqa: E402
import warnings  # noqa: E402

from vadnb.cache import Cache  # noqa: E402
from vadnb.models.base import FailedReply, Reply  # noqa: E402
from vadnb.runtime import Chat, Roles, Runtime  # noqa: E402


def _with_password(server, password="s3cret"):
    return server.url.replace("http://", f"http://me:{password}@")


def test_empty_and_null_replies_are_failed_and_never_cached(server, tmp_path):
    llm = served.ServedLLM("echo", server.url, max_concurrency=1, max_retries=1, backoff_s=0.01)
    rt = Runtime(Roles(backends={"llm": llm}), Cache(tmp_path))
    ask = [Chat([{"role": "user", "content": x}]) for x in ["a", "b"]]

    server.reply_next({"content": ""}, {"content": None}, {"content": None})
    with pytest.warns(RuntimeWarning, match="2 of 2 replies failed.*not cached"):
        first = rt.map("llm", ask)
    assert first == ["", ""] and all(isinstance(r, FailedReply) for r in first)
    assert len(server.requests) == 3  # the empty reply is final; the null one was retried
    # the server is fixed: the same run asks again instead of replaying the failure
    again = rt.map("llm", ask)
    assert again == ["echo: a", "echo: b"] and len(server.requests) == 5
    assert rt.map("llm", ask) == again  # now cached
    assert len(server.requests) == 5


def test_replies_say_when_they_hit_the_token_budget(server):
    llm = served.ServedLLM("echo", server.url)
    server.reply_next({"content": "The scene shows [0.", "finish_reason": "length"})
    cut = llm("rate it")
    assert isinstance(cut, Reply) and cut.truncated and cut == "The scene shows [0."
    whole = llm("rate it")
    assert isinstance(whole, Reply) and not whole.truncated


def test_a_trickling_server_cannot_hold_a_request_past_its_deadline(server):
    server.trickle_s = 0.5  # one byte every half second: ~2 minutes for the whole reply
    llm = served.ServedLLM("echo", server.url, timeout_s=2, max_retries=0)
    t0 = time.perf_counter()
    with pytest.raises(served.ServedModelError, match="TimeoutError.*timeout_s=2"):
        llm("hello")
    assert time.perf_counter() - t0 < 3.0


def test_garbage_json_is_retried_then_a_clear_error_naming_the_url(server):
    llm = served.ServedLLM("echo", _with_password(server), max_retries=1, backoff_s=0.01)
    server.reply_next(b"<html>502 bad gateway</html>", b'{"choices": [')
    with pytest.raises(served.ServedModelError, match="failed 2 times.*not JSON") as err:
        llm("hello")
    assert "127.0.0.1" in str(err.value) and "s3cret" not in str(err.value)
    assert "me:***@" in str(err.value)
    server.reply_next(b"not json")  # once: the retry gets the real reply
    assert llm("hello") == "echo: hello" and llm.retries == 2


def test_a_huge_reply_is_refused(server):
    llm = served.ServedLLM("echo", server.url, max_reply_bytes=10_000, max_retries=2)
    server.reply_next({"content": "x" * 50_000})
    with pytest.raises(served.ServedModelError, match="max_reply_bytes=10000"):
        llm("hello")
    assert len(server.requests) == 1  # not retried: the same question would get the same reply


def test_a_password_in_the_url_is_sent_as_basic_auth_and_shown_nowhere(server):
    url = _with_password(server)
    llm = models.load("llm", model=f"openai:echo@{url}")
    assert llm("hi") == "echo: hi"
    sent = server.headers[-1]["Authorization"]
    assert sent == "Basic " + base64.b64encode(b"me:s3cret").decode()
    assert "s3cret" not in repr(llm) and "s3cret" not in llm.base_url
    assert "s3cret" not in " ".join(models.call_stats()["model"])
    server.fail_next(5, status=503)
    bad = served.ServedLLM("echo", url, max_retries=0)
    with pytest.raises(served.ServedModelError) as err:
        bad("hi")
    assert "s3cret" not in str(err.value) and "me:***@" in str(err.value)
    with pytest.raises(ValueError) as err:
        served.parse_model_string(f"openai:{url}")  # no model name: the URL is echoed
    assert "s3cret" not in str(err.value)
    assert served.redact("x http://a:b@h/v1 and https://c:d@k:1/v1") == \
        "x http://a:***@h/v1 and https://c:***@k:1/v1"


def test_openai_variables_go_to_openai_hosts_only(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-secret")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-secret")
    monkeypatch.delenv(served.API_KEY_ENV, raising=False)
    llm = served.ServedLLM("echo", server.url)
    llm("hi")
    sent = " ".join(f"{k}={v}" for k, v in server.headers[-1].items())
    assert "secret" not in sent
    openai = served.ServedLLM("gpt-4o-mini", "https://api.openai.com/v1")  # builds, sends nothing
    assert openai._headers["Authorization"] == "Bearer sk-openai-secret"
    assert openai._headers["OpenAI-Organization"] == "org-secret"
    assert openai._headers["OpenAI-Project"] == "proj-secret"


def test_load_passes_timeout_retries_and_api_key(server, monkeypatch):
    monkeypatch.setenv(served.API_KEY_ENV, "key-from-env")
    llm = models.load("llm", model=server.model_string("echo"))
    llm("hi")
    assert server.headers[-1]["Authorization"] == "Bearer key-from-env"  # the default
    llm = models.load("llm", model=server.model_string("echo"), timeout_s=3, max_retries=0,
                      api_key="given-key")
    assert (llm.timeout_s, llm.max_retries) == (3.0, 0)
    llm("hi")
    assert server.headers[-1]["Authorization"] == "Bearer given-key"
    server.fail_next(1, status=503)
    with pytest.raises(served.ServedModelError, match="failed 1 times"):
        llm("hi")  # max_retries=0: no second try
    with pytest.raises(ValueError, match="timeout_s apply to served models only"):
        models.load("llm", profile="tiny", timeout_s=3)
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        models.load("llm", model=server.model_string("echo"), timeout_s=0)


# --- issue 21: reply shapes, credentials with any characters, echoed headers ------------------


def test_a_reply_of_the_wrong_shape_is_retried_then_named(server):
    llm = served.ServedLLM("echo", server.url, max_retries=1, backoff_s=0.01)
    server.reply_next(b'{"choices":[{"message":"[0.7]"}]}', b'{"choices":[{"message":"[0.7]"}]}')
    with pytest.raises(served.ServedModelError,
                       match=r"failed 2 times.*choices\[0\]\.message is a str, not an object"):
        llm("rate it")
    server.reply_next(b'{"choices":[{"message":{"content":"a fight \\ud83d"}}]}')  # cut emoji
    assert llm("rate it") == "a fight \ufffd"
    server.reply_next(b'{"choices":[{"message":{"content":{"text":1}}}]}')  # once, then fine
    assert llm("hello") == "echo: hello" and llm.retries == 2
    with pytest.raises(served._Retry, match=r"choices\[0\]\.message\.content is a dict"):
        served._reply_text({"choices": [{"message": {"content": {"a": 1}}}]})
    with pytest.raises(served._Retry, match=r"choices\[0\] is a str"):
        served._reply_text({"choices": ["[0.7]"]})


def test_redact_masks_any_userinfo_and_credential_parameters():
    cases = {
        "openai:m@http://me:p@ss/w:rd@gpu-box:8000/v1": "openai:m@http://me:***@gpu-box:8000/v1",
        "see https://u:a?b#c@host/v1 now": "see https://u:***@host/v1 now",
        "http://sk-live-123@host/v1": "http://***@host/v1",
        "http://h:1/v1?api_key=k&model=m&access_token=t&Password=x":
            "http://h:1/v1?api_key=***&model=m&access_token=***&Password=***",
        "http://[::1]:8000/v1": "http://[::1]:8000/v1",
        "Authorization: Bearer sk-abc.def and Basic bWU6cA==":
            "Authorization: Bearer *** and Basic ***",
        # prose about tokens is no credential (LAVAD's parse report says this)
        "25 cut at the token budget (25 of them unparseable)":
            "25 cut at the token budget (25 of them unparseable)",
    }
    for text, shown in cases.items():
        assert served.redact(text) == shown
    assert served.redact("key sk-known-key in a body", ["sk-known-key"]) == "key *** in a body"
    as_json = json.dumps({"llm_model": 'openai:m@http://me:p"w@rd@h:1/v1'})  # run.json's text
    assert served.redact(as_json) == '{"llm_model": "openai:m@http://me:***@h:1/v1"}'

    assert served.split_userinfo("http://me:p@ss/w:rd@h:1/v1") == ("me:p@ss/w:rd", "http://h:1/v1")


def test_a_password_with_at_and_slash_authenticates_and_is_shown_nowhere(server):
    server.echo_headers = True  # its errors repeat the request's headers, as some proxies do
    url = _with_password(server, "p@ss/w:rd")
    llm = models.load("llm", model=f"openai:echo@{url}", max_retries=0)
    assert llm("hi") == "echo: hi"  # the host is the server's, not "ss"
    assert server.headers[-1]["Authorization"] == \
        "Basic " + base64.b64encode(b"me:p@ss/w:rd").decode()
    assert "ss/w:rd" not in repr(llm) and "ss/w:rd" not in llm.base_url
    server.fail_next(1, status=503)
    with pytest.raises(served.ServedModelError) as err:
        llm("hi")
    text = str(err.value)
    assert "HTTP 503" in text and "127.0.0.1" in text and "me:***@" in text
    assert "ss/w:rd" not in text and base64.b64encode(b"me:p@ss/w:rd").decode() not in text


def test_an_error_body_echoing_the_api_key_does_not_repeat_it(server):
    server.echo_headers = True
    llm = served.ServedLLM("echo", server.url, api_key="sk-live-0123456789", max_retries=0)
    server.fail_next(1, status=401)
    with pytest.raises(served.ServedModelError, match="HTTP 401") as err:
        llm("hi")
    assert "0123456789" not in str(err.value) and "Bearer ***" in str(err.value)
    server.fail_next(1, status=500)
    with pytest.raises(served.ServedModelError, match="HTTP 500") as err:
        llm("hi")
    assert "0123456789" not in str(err.value)


class _RecordingProcessor:
    """Wraps a VLM processor; records the size of every image that reaches it."""

    def __init__(self, inner):
        self.inner, self.sizes = inner, []

    def __call__(self, *args, images=None, **kwargs):
        self.sizes += [im.size for row in (images or []) for im in row]
        return self.inner(*args, images=images, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("role, size", [("vlm-3b", (854, 480)),  # AnyAnomaly: 856x480 cap
                                        ("vlm", (597, 336))])  # VERA: 448x448 cap
def test_local_and_served_vlm_get_the_roles_image_cap(server, role, size):
    """A 1920x1080 frame reaches the model at the role's cap (aspect kept), whether the VLM
    runs here or on a server; before, AnyAnomaly's 856x480 never reached either."""
    from vadnb.models.hf import fit_pixels, max_pixels_for

    frame = np.zeros((1080, 1920, 3), np.uint8)
    cap = max_pixels_for(role)
    from PIL import Image

    assert fit_pixels(Image.new("RGB", (1920, 1080)), cap).size == size
    local = models.load(role, profile="tiny")
    local.processor = _RecordingProcessor(local.processor)
    local.batch([([frame], "q")], max_new_tokens=1)
    assert local.processor.sizes == [size]
    remote = models.load(role, model=f"openai:describe@{server.url}")
    remote.batch([([frame], "q")], max_new_tokens=1)
    url = server.requests[-1]["messages"][0]["content"][0]["image_url"]["url"]
    assert decode_data_url(url).shape[:2] == (size[1], size[0])
    # a per-call cap still wins, on both
    remote.batch([([frame], "q")], max_new_tokens=1, max_pixels=56 * 56)
    url = server.requests[-1]["messages"][0]["content"][0]["image_url"]["url"]
    assert decode_data_url(url).shape[:2] == fit_pixels(Image.new("RGB", (1920, 1080)),
                                                        56 * 56).size[::-1]
