"""Served models: the ``llm`` and ``vlm`` roles answered by an OpenAI-compatible server.

``load("llm", model="openai:<served model name>@http://gpu-box:8000/v1")`` speaks the
server's ``/v1/chat/completions`` (e.g. ``vllm serve``) with the local backends' calls; the
string travels through Config fields and Ray unchanged (notebook 90). At most
``max_concurrency`` requests at once, one ``timeout_s`` deadline and a ``max_reply_bytes``
cap each; transient failures (connection, timeout, 429/5xx, a reply of another shape, a
null content) are retried with back-off, other HTTP errors raised at once. An empty reply is
a :class:`~vadnb.models.base.FailedReply`, never cached. Credentials (a URL password holding
``@`` or ``/``, key query values, Bearer/Basic values, the API key) show as ``***`` in every
message (:func:`redact`); ``$OPENAI_*`` variables are sent to ``*.openai.com`` only.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import re
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from .base import Backend, FailedReply, LLMBackend, Messages, Reply, VLMBackend, to_pil
from .hf import DEFAULT_MAX_PIXELS, fit_pixels, vlm_messages

#: The prefix that routes ``vadnb.models.load(role, model=...)`` here.
PREFIX = "openai:"

#: The environment variable holding the served models' API key (``vllm serve --api-key``).
API_KEY_ENV = "VADNB_SERVED_API_KEY"

_MODEL_STRING = re.compile(r"^openai:(?P<model>.+?)@(?P<url>https?://\S+)$")
# a URL in a text: scheme:// up to a blank or a quote (a password may hold @ / : ? #, and
# inside JSON text an escaped quote \" too)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^\s'\"<>`\\]|\\.)+")
# what may follow the userinfo's "@": a host name or [IPv6], a port, then the path
_HOST = re.compile(r"(?:[A-Za-z0-9._~%-]+|\[[0-9A-Fa-f:.]+\])(?::\d*)?(?=[/?#]|$)")
# query parameters whose value is a credential (?api_key=..., &token=..., &sig=...)
_SECRET_PARAM = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential", re.IGNORECASE)
# credentials in an Authorization header echoed by a server (Bearer sk-..., Basic bWU6...):
# 8 or more token characters, at least one of them not a letter, so that prose such as
# "cut at the token budget" is left alone
_CREDENTIAL = r"(?=[A-Za-z0-9._~+/=:-]{8})(?=[A-Za-z]*[0-9._~+/=:-])[A-Za-z0-9._~+/=:-]+"
_AUTH_VALUE = re.compile(r"\b(?P<kind>Bearer|Basic|Token)(?P<gap>\s+)" + _CREDENTIAL,
                         re.IGNORECASE)
_USER = re.compile(r"[A-Za-z0-9._-]+")
MASK = "***"


class ServedModelError(RuntimeError):
    """A served model did not answer (after the retries), or answered with an error."""


def split_userinfo(url: str) -> tuple[str | None, str]:
    """``(userinfo, url without it)``: the userinfo ends at the last ``@`` that a host follows,
    so a raw password may hold ``@ / : ? #`` (urlsplit would take part of it for the host)."""
    scheme, sep, rest = url.partition("://")
    for at in reversed([i for i, ch in enumerate(rest) if ch == "@"] if sep else []):
        if _HOST.match(rest, at + 1):
            return rest[:at], f"{scheme}://{rest[at + 1:]}"
    return None, url


def _redact_url(url: str) -> str:
    """One URL with its userinfo (a plain user name kept) and credential query values masked."""
    userinfo, bare = split_userinfo(url)
    try:
        parts = urlsplit(bare)
    except ValueError:  # e.g. an unclosed [IPv6 bracket: show nothing after the scheme
        return f"{bare.partition('://')[0]}://{MASK}"
    netloc = parts.netloc
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        shown = f"{user}:{MASK}" if colon and _USER.fullmatch(user) else MASK
        netloc = f"{shown}@{netloc}"
    items = [item.partition("=") for item in parts.query.split("&")]
    query = "&".join(n + eq + (MASK if eq and _SECRET_PARAM.search(unquote_plus(n)) else v)
                     for n, eq, v in items)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact(text: Any, secrets: Sequence[str] = ()) -> str:
    """``text`` with every credential in it replaced by ``***``: each URL's userinfo and
    key/token/secret/password query values, ``Bearer``/``Basic`` values, and ``secrets``.

    >>> redact("openai:m@http://me:p@ss/w:rd@gpu-box:8000/v1?api_key=k1&n=2")
    'openai:m@http://me:***@gpu-box:8000/v1?api_key=***&n=2'
    """
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:  # a one-letter "secret" would mask every word
            out = out.replace(secret, MASK)
    out = _URL.sub(lambda m: _redact_url(m.group(0)), out)
    return _AUTH_VALUE.sub(lambda m: f"{m.group('kind')}{m.group('gap')}{MASK}", out)


def redact_values(value: Any) -> Any:
    """``value`` with :func:`redact` applied to every string in its dicts, lists and tuples;
    what holds no credential comes back as the same object."""
    if isinstance(value, str):
        clean = redact(value)
        return value if clean == value else clean
    if isinstance(value, dict):
        new = {k: redact_values(v) for k, v in value.items()}
        return value if all(new[k] is v for k, v in value.items()) else new
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        items = [redact_values(v) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    return value


def parse_model_string(spec: str) -> tuple[str, str]:
    """Split ``"openai:<model>@<base_url>"`` into ``(model, base_url)``."""
    m = _MODEL_STRING.match(str(spec).strip())
    if not m:
        raise ValueError(
            f"served model {redact(spec)!r} is not of the form 'openai:<model name>@<base url>', "
            "e.g. 'openai:Qwen/Qwen2.5-3B-Instruct@http://127.0.0.1:8000/v1' (the URL your "
            "`vllm serve` prints, ending in /v1)")
    return m.group("model"), m.group("url").rstrip("/")


def image_data_url(image: Any, image_format: str = "jpeg", quality: int = 90) -> str:
    """An image (uint8 RGB array or PIL) as a ``data:image/...;base64,...`` URL."""
    fmt = "JPEG" if image_format.lower() in ("jpg", "jpeg") else image_format.upper()
    buf = io.BytesIO()
    to_pil(image).save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


class _Retry(Exception):
    """A transient failure of one attempt (the request is sent again, up to max_retries)."""


class _NullContent(_Retry):
    """A reply whose content is null: after the retries, a :class:`FailedReply`."""


def _shown(value: Any) -> str:
    """A short, redacted JSON view of part of a reply, for an error message."""
    return redact(json.dumps(value, default=str))[:200]


def _reply_text(response: Any) -> Reply:
    """The first choice of a parsed chat completion as a :class:`Reply`; :class:`_Retry`
    naming the field when it is not ``{"choices": [{"message": {"content": ...}}]}``."""
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices or not isinstance(choices, list):
        raise _Retry(f"the reply has no choices: {_shown(response)}")
    first = choices[0]
    if not isinstance(first, dict):
        raise _Retry(f"choices[0] is a {type(first).__name__}, not an object: {_shown(first)}")
    message = first.get("message")
    if not isinstance(message, dict):
        raise _Retry(f"choices[0].message is a {type(message).__name__}, not an object with "
                     f"a content: {_shown(message)}")
    content = message.get("content")
    if content is None:
        raise _NullContent("the reply's content is null")
    if isinstance(content, list):  # some servers return content parts
        texts = [p if isinstance(p, str) else p.get("text", "") if isinstance(p, dict) else None
                 for p in content]
        content = "".join(texts) if all(isinstance(t, str) for t in texts) else content
    if not isinstance(content, str):
        raise _Retry(f"choices[0].message.content is a {type(content).__name__}, not a string "
                     f"(or a list of text parts): {_shown(content)}")
    usage = response.get("usage") or {}
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return Reply(content.strip(), truncated=first.get("finish_reason") == "length",
                 num_tokens=tokens if isinstance(tokens, int) and tokens > 0 else None)


class _ServedBackend(Backend):
    """Shared connection settings, thread pool, deadlines and retries of the served roles."""

    def __init__(self, model: str, base_url: str, *, max_concurrency: int = 8,
                 timeout_s: float = 120.0, max_retries: int = 3, backoff_s: float = 0.5,
                 max_backoff_s: float = 8.0, max_new_tokens: int = 256,
                 api_key: str | None = None, max_reply_bytes: int = 8 << 20):
        tiny = model.startswith("tiny:")  # the suite's test server: meaningless, profile tiny
        # the name (used in cache keys) is the model, not the URL: moving a server keeps the cache
        super().__init__(f"{PREFIX}{model}", profile="tiny" if tiny else "custom",
                         device="served", batch_size=max_concurrency, meaningless=tiny)
        if int(max_concurrency) < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if not float(timeout_s) > 0:
            raise ValueError(f"timeout_s must be positive seconds, got {timeout_s}")
        if int(max_retries) < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        self.model = model
        userinfo, bare = split_userinfo(base_url.rstrip("/"))  # before urlsplit reads the host
        self._url = urlsplit(bare)
        if self._url.scheme not in ("http", "https") or not self._url.hostname:
            raise ValueError(f"served model URL {redact(base_url)!r} must be "
                             "http(s)://host[:port]/...")
        self.base_url = redact(base_url.rstrip("/"))  # what messages show
        self.max_concurrency, self.max_retries = int(max_concurrency), int(max_retries)
        self.timeout_s, self.backoff_s = float(timeout_s), float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_new_tokens, self.max_reply_bytes = int(max_new_tokens), int(max_reply_bytes)
        self.retries = 0  # retried requests since creation (a health signal)
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        self._headers = self._make_headers(api_key, userinfo)

    def __repr__(self) -> str:
        flag = ", tiny: outputs are meaningless" if self.meaningless else ""
        return f"{type(self).__name__}({self.name!r}, url={self.base_url!r}{flag})"

    def _make_headers(self, api_key: str | None, userinfo: str | None) -> dict[str, str]:
        """Content type and credentials (sets ``_secrets``, what no message may repeat);
        OpenAI's own variables go to OpenAI hosts only."""
        host = (self._url.hostname or "").lower().rstrip(".")
        openai_host = host == "openai.com" or host.endswith(".openai.com")
        key = api_key or os.environ.get(API_KEY_ENV) or (
            os.environ.get("OPENAI_API_KEY") if openai_host else None)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        user, _, password = (unquote(p) for p in (userinfo or "").partition(":"))
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif userinfo is not None:  # http://user:pw@host/v1: basic auth
            pair = f"{user}:{password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        self._secrets = tuple(s for s in (key, password, userinfo) if s)
        if openai_host:
            for var, header in (("OPENAI_ORG_ID", "OpenAI-Organization"),
                                ("OPENAI_PROJECT_ID", "OpenAI-Project")):
                if os.environ.get(var):
                    headers[header] = os.environ[var]
        return headers

    def _http(self, method: str, route: str, body: dict[str, Any] | None = None
              ) -> tuple[int, bytes]:
        """``(status, reply bytes)`` of one request under one deadline; :class:`_Retry` on a
        transient failure."""
        url = self._url
        port = url.port or (443 if url.scheme == "https" else 80)  # an IPv6 host needs it
        if url.scheme == "https":
            if self._tls is None:  # certificates checked, as any HTTPS client does
                self._tls = ssl.create_default_context()
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                url.hostname, port, timeout=self.timeout_s, context=self._tls)
        else:
            conn = http.client.HTTPConnection(url.hostname, port, timeout=self.timeout_s)
        expired = threading.Event()

        def cut() -> None:  # the deadline: unblock whatever read or write is waiting
            expired.set()
            with contextlib.suppress(OSError, AttributeError):  # no socket yet: None
                conn.sock.shutdown(socket.SHUT_RDWR)

        deadline = time.monotonic() + self.timeout_s
        timer = threading.Timer(self.timeout_s, cut)
        timer.daemon = True
        timer.start()
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, url.path + route, body=data, headers=self._headers)
            response = conn.getresponse()
            chunks, size = [], 0
            for chunk in iter(lambda: response.read(65536), b""):
                size += len(chunk)
                if size > self.max_reply_bytes:
                    raise ServedModelError(
                        f"{self._where()} sent a reply larger than max_reply_bytes="
                        f"{self.max_reply_bytes}; is {self.base_url} really a chat server?")
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    expired.set()
                    break
            if expired.is_set():
                raise TimeoutError
            return response.status, b"".join(chunks)
        except (OSError, http.client.HTTPException) as err:
            if expired.is_set():
                raise _Retry(f"TimeoutError: no complete reply within timeout_s="
                             f"{self.timeout_s:g} s") from None
            raise _Retry(f"{type(err).__name__}: {redact(err)}") from err
        finally:
            timer.cancel()
            conn.close()

    def _where(self) -> str:
        return f"served {self.role} {self.model!r} at {self.base_url}"

    def _attempt(self, payload: dict[str, Any]) -> Reply:
        """One chat completion: a Reply, or an exception."""
        status, data = self._http("POST", "/chat/completions", payload)
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}: {self._excerpt(data, 200)}")
        if status != 200:
            raise ServedModelError(
                f"{self._where()} refused the request (HTTP {status}: "
                f"{self._excerpt(data, 300)}). Check the model name "
                f"(`curl {self.base_url}/models` lists them), the API key (${API_KEY_ENV} or "
                "api_key=...) and the request size.")
        try:
            parsed = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise _Retry(f"the reply is not JSON: {self._excerpt(data, 120)!r}") from None
        return _reply_text(parsed)

    def _excerpt(self, data: bytes, size: int) -> str:
        """The start of a reply body, credentials masked first, then cut (no half key shows)."""
        return redact(data[: size + 2000].decode("utf-8", "replace"), self._secrets)[:size]

    def _complete(self, messages: Messages, max_new_tokens: int, temperature: float,
                  top_p: float, repetition_penalty: float = 1.0) -> Reply:
        """One chat completion with retries and exponential back-off."""
        payload = {"model": self.model, "messages": messages, "max_tokens": int(max_new_tokens),
                   "temperature": float(temperature), "top_p": float(top_p)}
        if repetition_penalty != 1.0:  # vLLM's and TGI's extra sampling parameter
            payload["repetition_penalty"] = float(repetition_penalty)
        for attempt in range(self.max_retries + 1):
            try:
                reply = self._attempt(payload)
                return reply or FailedReply(f"{self._where()} gave an empty reply")
            except _Retry as err:
                if attempt == self.max_retries:
                    if isinstance(err, _NullContent):
                        return FailedReply(f"{self._where()}: {err} ({attempt + 1} tries)")
                    raise ServedModelError(
                        f"{self._where()} failed {attempt + 1} times (last: "
                        f"{redact(err, self._secrets)}). Is the "
                        f"server up (`curl {self.base_url}/models`)? Raise timeout_s for slow "
                        "models, max_retries for a flaky server, or lower max_concurrency."
                    ) from None
                with self._lock:
                    self.retries += 1
                time.sleep(min(self.max_backoff_s, self.backoff_s * 2 ** attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _run_all(self, conversations: list[Messages], max_new_tokens: int | None,
                 temperature: float, top_p: float, repetition_penalty: float = 1.0,
                 ) -> list[Reply]:
        """Send every conversation, at most ``max_concurrency`` at a time, replies in order."""
        tokens = int(max_new_tokens or self.max_new_tokens)
        sampling = (temperature, top_p, repetition_penalty)
        workers = max(1, min(self.max_concurrency, len(conversations)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="served") as pool:
            futures = [pool.submit(self._complete, c, tokens, *sampling) for c in conversations]
            replies = [f.result() for f in futures]
        failed = [r for r in replies if getattr(r, "failed", False)]
        if failed:
            warnings.warn(f"{len(failed)} of {len(replies)} replies failed ({failed[0].error}); "
                          "they count as unparseable and are not cached: run again to ask again",
                          RuntimeWarning, stacklevel=3)
        return replies

    def models(self) -> list[str]:
        """The model names the server offers (``GET /v1/models``)."""
        try:
            status, data = self._http("GET", "/models")
            listing = json.loads(data) if status == 200 else None
            return [m["id"] for m in listing["data"]]
        except (_Retry, ValueError, KeyError, TypeError) as err:
            raise ServedModelError(f"{self.base_url}/models did not list the served models "
                                   f"({redact(err, self._secrets)})") from None


class ServedLLM(_ServedBackend, LLMBackend):
    """``llm(messages) -> Reply`` on a server (one string is sent as a user message)."""

    def batch(self, list_of_messages: Sequence[Messages | str], max_new_tokens: int | None = None,
              temperature: float = 0.0, top_p: float = 1.0,
              choices: Sequence[str] | None = None) -> list[Reply]:
        """One reply per conversation; greedy (temperature 0) unless told otherwise."""
        if choices is not None:
            raise NotImplementedError(
                f"{self.name}: choices= scores each allowed reply by the model's likelihood, "
                "which a served model does not return here; load the LLM locally "
                "(models.load('llm', profile=...)) or parse its free-text replies")
        conversations = [[{"role": "user", "content": m}] if isinstance(m, str) else list(m)
                         for m in list_of_messages]
        with self._count(len(conversations)):
            return self._run_all(conversations, max_new_tokens, temperature, top_p)


class ServedVLM(_ServedBackend, VLMBackend):
    """``vlm(images, prompt) -> Reply`` on a server: images as base64 data URLs, then the
    prompt, each image capped to ``max_pixels`` as the local VLM caps it (:func:`fit_pixels`)."""

    def __init__(self, model: str, base_url: str, *, image_format: str = "jpeg",
                 max_new_tokens: int = 128, max_pixels: int | None = None, **kwargs: Any):
        super().__init__(model, base_url, max_new_tokens=max_new_tokens, **kwargs)
        self.image_format = image_format
        self.max_pixels = max_pixels or DEFAULT_MAX_PIXELS

    def message(self, images: Sequence[Any], prompt: str, max_pixels: int | None = None,
                system: str | None = None) -> Messages:
        """The chat messages sent for ``images`` and ``prompt`` (images capped to ``max_pixels``,
        default the backend's; after a ``system`` message, if any)."""
        cap = max_pixels or self.max_pixels
        urls = [image_data_url(fit_pixels(to_pil(im), cap), self.image_format) for im in images]
        return vlm_messages([{"type": "image_url", "image_url": {"url": u}} for u in urls],
                            str(prompt), system)

    def batch(self, requests: Sequence[tuple[Sequence[Any], str]],
              max_new_tokens: int | None = None, temperature: float = 0.0, top_p: float = 1.0,
              max_pixels: int | None = None, repetition_penalty: float = 1.0,
              system: str | None = None) -> list[Reply]:
        """One reply per ``(images, prompt)`` request; greedy unless ``temperature > 0``."""
        conversations = [self.message(images, prompt, max_pixels, system)
                         for images, prompt in requests]
        with self._count(len(conversations)):
            return self._run_all(conversations, max_new_tokens, temperature, top_p,
                                 repetition_penalty)


_CLASSES = {"llm": ServedLLM, "vlm": ServedVLM}


def load_served(role: str, spec: str, batch_size: int | None = None, **kwargs: Any) -> Backend:
    """The served backend of ``role`` for ``spec`` = ``"openai:<model>@<base_url>"``;
    ``kwargs`` set to None keep the defaults, ``batch_size`` is the concurrency limit."""
    base = role.split("-", 1)[0]
    if base not in _CLASSES:
        raise ValueError(f"only the llm and vlm roles can be served (got {role!r}); load "
                         f"{role!r} locally with a hub id or a profile instead")
    model, url = parse_model_string(spec)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if batch_size and "max_concurrency" not in kwargs:
        kwargs["max_concurrency"] = int(batch_size)
    return _CLASSES[base](model, url, **kwargs)
