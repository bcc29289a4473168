"""A local OpenAI-compatible chat-completions server for the LLM judge's tests: ``POST
/v1/chat/completions`` on a free 127.0.0.1 port (stdlib ``http.server``, one thread per
connection).

It checks what a real endpoint would and what the judge must do: the bearer key (401 when
``api_key`` is set and the request's differs), and that the app's **system prompt** is in
the prompt (400 when ``system_prompt`` is set and no message contains it). It records every
request (``requests``), counts requests in flight (``max_in_flight``), and can be told to
answer the next N requests with an error (``fail_next``) or not at all (``hang_next``).
The answer's text is ``reply(system, user)``: by default a success verdict in JSON.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DEFAULT_VERDICT", "FakeLLM", "RecordedRequest", "fake_llm"]

DEFAULT_VERDICT = '{"label": "success", "score": 0.9, "reason": "the answer does the job"}'


@dataclass(frozen=True)
class RecordedRequest:
    body: dict[str, Any]
    authorization: str | None

    @property
    def system(self) -> str:
        return next((m["content"] for m in self.body["messages"] if m["role"] == "system"), "")

    @property
    def user(self) -> str:
        return next((m["content"] for m in self.body["messages"] if m["role"] == "user"), "")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive connections of a client left open do not block
    fake: FakeLLM


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        with fake.lock:
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            status, doc, headers = fake.answer(raw, self.headers.get("authorization"))
            try:
                self._send(status, doc, headers)
            except OSError:  # the client gave up (a hang, a timeout)
                pass
        finally:
            with fake.lock:
                fake.in_flight -= 1

    def _send(self, status: int, doc: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class FakeLLM:
    """The fake endpoint's state and knobs (``fake_llm()`` serves one)."""

    def __init__(self, *, system_prompt: str | None = None, api_key: str | None = None,
                 reply: Callable[[str, str], str] | None = None, delay_s: float = 0.0) -> None:
        self.system_prompt = system_prompt
        """When set, a request none of whose messages contains it is answered 400."""
        self.api_key = api_key
        """When set, a request without ``Authorization: Bearer <api_key>`` is answered 401."""
        self.reply: Callable[[str, str], str] = reply or (lambda system, user: DEFAULT_VERDICT)
        self.delay_s = delay_s
        """How long each answer takes (to overlap requests)."""
        self.requests: list[RecordedRequest] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self._failures: list[tuple[int, str | None]] = []
        self._hangs = 0
        self._stopping = threading.Event()
        self.url = ""
        """Base URL, ``http://127.0.0.1:<port>/v1``, once served."""

    def fail_next(self, n: int, status: int = 503, retry_after: str | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (and a ``Retry-After``)."""
        with self.lock:
            self._failures += [(status, retry_after)] * n

    def hang_next(self, n: int) -> None:
        """Answer the next ``n`` requests only when the server stops (a hung endpoint)."""
        with self.lock:
            self._hangs += n

    def answer(self, raw: bytes, authorization: str | None
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, headers) for one request."""
        try:
            body = json.loads(raw)
            messages = body["messages"]
            texts = [str(m["content"]) for m in messages]
        except (ValueError, KeyError, TypeError):
            return 400, {"error": {"message": "need a JSON body with messages"}}, {}
        record = RecordedRequest(body, authorization)
        with self.lock:
            self.requests.append(record)
            failure = self._failures.pop(0) if self._failures else None
            hang = self._hangs > 0 and failure is None
            if hang:
                self._hangs -= 1
        if failure is not None:
            status, retry_after = failure
            headers = {"retry-after": retry_after} if retry_after is not None else {}
            return status, {"error": {"message": f"told to fail with {status}"}}, headers
        if hang:
            self._stopping.wait(60)
            return 503, {"error": {"message": "hung"}}, {}
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return 401, {"error": {"message": "Incorrect API key provided"}}, {}
        if self.system_prompt is not None and not any(self.system_prompt in t for t in texts):
            return 400, {"error": {"message": "the app's system prompt is not in the prompt"}}, {}
        if self.delay_s:
            self._stopping.wait(self.delay_s)
        content = self.reply(record.system, record.user)
        return 200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
            "model": body.get("model", "fake-judge"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": sum(len(t.split()) for t in texts),
                      "completion_tokens": len(content.split()),
                      "total_tokens": 0},
        }, {}


@contextmanager
def fake_llm(**options: Any) -> Iterator[FakeLLM]:
    """Serve a ``FakeLLM(**options)`` on a free 127.0.0.1 port until the block ends."""
    fake = FakeLLM(**options)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = fake
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake._stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
