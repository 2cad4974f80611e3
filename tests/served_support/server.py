"""A stand-in for ``vllm serve``: an OpenAI-compatible chat server on 127.0.0.1.

It wraps any vadnb llm / vlm backend (the tests use the tiny ones) behind
``POST /v1/chat/completions`` and ``GET /v1/models``, and can misbehave on purpose so the
client's retries, timeouts and concurrency limit can be tested:

- ``fail_next(n, status=500)``: answer the next ``n`` chat requests with that status;
- ``reply_next(*bodies)``: answer the next chat requests with these bodies instead: raw
  ``bytes`` (garbage JSON), or a dict of choice fields such as ``{"content": None}`` or
  ``{"content": "cut", "finish_reason": "length"}`` merged into a normal reply;
- ``delay_s``: sleep this long before answering (a slow model; also makes overlap visible);
- ``trickle_s``: send the reply one byte at a time, this many seconds apart (a stuck proxy);
- ``max_in_flight``: the most chat requests it was handling at the same time;
- ``requests`` / ``headers``: every chat request body / header dict, in arrival order;
- ``echo_headers``: an injected failure's body repeats the request's headers (credentials
  included), as some proxies do, so the client's error messages can be checked for them.

Start it with ``with TestServer(backends) as server: server.url`` (an ephemeral port;
always stopped on exit), or from a shell::

    python -m tests.served_support.server --port 8000   # tiny llm + vlm, Ctrl-C to stop
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

HOST = "127.0.0.1"


def decode_data_url(url: str) -> np.ndarray:
    """A ``data:image/...;base64,...`` URL back to a uint8 RGB array."""
    from PIL import Image

    if not url.startswith("data:image/") or ";base64," not in url:
        raise ValueError(f"not a base64 image data URL: {url[:40]!r}")
    raw = base64.b64decode(url.split(";base64,", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))


def split_content(messages: list[dict[str, Any]]) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Images found in the messages, and the messages with text-only content."""
    images: list[np.ndarray] = []
    plain: list[dict[str, Any]] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            texts = []
            for part in content:
                if part.get("type") == "image_url":
                    images.append(decode_data_url(part["image_url"]["url"]))
                elif part.get("type") == "text":
                    texts.append(part["text"])
            content = "\n".join(texts)
        plain.append({"role": m.get("role", "user"), "content": content})
    return images, plain


class TestServer:
    """An OpenAI-compatible server around ``backends`` ({served model name: backend})."""

    __test__ = False  # not a pytest test class

    def __init__(self, backends: dict[str, Any], port: int = 0, delay_s: float = 0.0):
        self.backends = dict(backends)
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.trickle_s = 0.0
        self.echo_headers = False
        self._scripted: list[Any] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._failures: list[int] = []
        self._state = threading.Lock()
        self._model_lock = threading.Lock()  # torch models answer one request at a time
        self._httpd = ThreadingHTTPServer((HOST, port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, ending in /v1, as a client wants it."""
        return f"http://{HOST}:{self._httpd.server_address[1]}/v1"

    def model_string(self, name: str) -> str:
        """``"openai:<name>@<url>"`` for ``vadnb.models.load(role, model=...)``."""
        return f"openai:{name}@{self.url}"

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._state:
            self._failures.extend([status] * n)

    def reply_next(self, *bodies: Any) -> None:
        with self._state:
            self._scripted.extend(bodies)

    def reset(self) -> None:
        with self._state:
            self.requests.clear()
            self.headers.clear()
            self._failures.clear()
            self._scripted.clear()
            self.max_in_flight = 0
            self.delay_s = 0.0
            self.trickle_s = 0.0
            self.echo_headers = False

    def start(self) -> TestServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # the work behind one chat request ---------------------------------------------------
    def answer(self, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any] | bytes]:
        with self._state:
            self.requests.append(body)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            status = self._failures.pop(0) if self._failures else 200
            scripted = self._scripted.pop(0) if self._scripted and status == 200 else None
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            if status != 200:
                error = {"message": "injected failure", "code": status}
                if self.echo_headers:
                    error["request_headers"] = dict(headers or {})
                return status, {"error": error}
            if isinstance(scripted, bytes):
                return 200, scripted
            if scripted is not None:
                choice = {"index": 0, "finish_reason": scripted.get("finish_reason", "stop"),
                          "message": {"role": "assistant", "content": scripted.get("content")}}
                return 200, {"id": "scripted", "object": "chat.completion",
                             "model": body.get("model"), "choices": [choice]}
            name = body.get("model")
            if name not in self.backends:
                return 404, {"error": {"message": f"model {name!r} not served; "
                                                  f"try one of {sorted(self.backends)}"}}
            backend = self.backends[name]
            images, messages = split_content(body["messages"])
            gen = {"max_new_tokens": int(body.get("max_tokens") or 16)}
            with self._model_lock:
                if backend.role == "vlm":
                    text = backend(images, messages[-1]["content"], **gen)
                else:
                    text = backend(messages, **gen)
            return 200, {
                "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
                "created": int(time.time()), "model": name,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        finally:
            with self._state:
                self._in_flight -= 1

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # answer at once: without this, headers and body go as two small packets
                # and Nagle + delayed ACK add ~40 ms to every reply
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, payload: dict[str, Any] | bytes) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if server.trickle_s:
                        for i in range(len(data)):
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                            time.sleep(server.trickle_s)
                    else:
                        self.wfile.write(data)
                except OSError:  # the client gave up (timed out, deadline)
                    self.close_connection = True

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": n, "object": "model", "owned_by": "vadnb-tests"}
                        for n in server.backends]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = dict(self.headers.items())
                with server._state:
                    server.headers.append(headers)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                self._send(*server.answer(body, headers))

        return Handler


def tiny_server(port: int = 0) -> TestServer:
    """A server for the tiny llm and vlm, served as ``tiny:llm`` and ``tiny:vlm``."""
    from vadnb.models import load

    return TestServer({"tiny:llm": load("llm", profile="tiny"),
                       "tiny:vlm": load("vlm", profile="tiny")}, port=port)


if __name__ == "__main__":  # pragma: no cover - a manual helper
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    with tiny_server(args.port) as srv:
        print(f"serving tiny:llm and tiny:vlm at {srv.url} (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
