"""``insights.webhooks.WebhookSender`` against a real HTTP server on 127.0.0.1 that fails
the first requests as told, records what it received and how long apart."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from phospho_otel.insights.webhooks import WebhookSender, event_payload
from phospho_otel.model.analysis import DetectedEvent


@dataclass
class Hook:
    """What the server answers and what it received."""

    url: str
    fail_first: int = 0
    """Answer this many requests with ``fail_status`` before succeeding."""
    fail_status: int = 503
    retry_after: str | None = None
    delay_s: float = 0.0
    received: list[tuple[float, str, dict[str, object]]] = field(default_factory=list)
    """(monotonic time, path, JSON body) of every request, failed or not."""
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def bodies(self) -> list[dict[str, object]]:
        with self.lock:
            return [body for _, _, body in self.received]


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook(url="")
    state.release.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            with state.lock:
                state.received.append((time.monotonic(), self.path, body))
                state.headers.append(dict(self.headers))
                failing = state.fail_first > 0
                if failing:
                    state.fail_first -= 1
            state.release.wait(10)
            if state.delay_s:
                time.sleep(state.delay_s)
            self.send_response(state.fail_status if failing else 204)
            if failing and state.retry_after is not None:
                self.send_header("Retry-After", state.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


def wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_delivers_json(hook: Hook) -> None:
    sender = WebhookSender()
    event = DetectedEvent("frustration", "regex", 1.0, "input")
    payload = event_payload(event, task_id="t1", session_id="s1", user_id="u1", time_ns=5,
                            input="wtf")
    assert sender.send(hook.url, payload)
    assert sender.send(hook.url, {"n": 2, "text": "héllo"})
    wait_for(lambda: sender.sent == 2)
    assert hook.bodies() == [
        {"event": "frustration", "source": "regex", "score": 1.0, "scope": "input",
         "task_id": "t1", "session_id": "s1", "user_id": "u1", "time_ns": 5, "input": "wtf"},
        {"n": 2, "text": "héllo"}]
    assert hook.headers[0]["Content-Type"] == "application/json"
    assert (sender.sent, sender.failed, sender.dropped, sender.pending) == (2, 0, 0, 0)
    assert sender.close(1.0)


def test_not_json_raises_at_the_call_site() -> None:
    sender = WebhookSender()
    with pytest.raises(TypeError):
        sender.send("http://127.0.0.1:9/", {"x": object()})
    with pytest.raises(ValueError):
        sender.send("http://127.0.0.1:9/", {"x": float("nan")})
    assert sender.pending == 0


def test_retries_5xx_with_exponential_backoff(hook: Hook) -> None:
    hook.fail_first = 3
    sender = WebhookSender(max_attempts=5, backoff_s=0.05)
    sender.send(hook.url, {"id": 1})
    wait_for(lambda: sender.sent == 1)
    times = [t for t, _, _ in hook.received]
    assert len(times) == 4 and hook.bodies() == [{"id": 1}] * 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 0.05, 0.1, 0.2 s (doubling), with some slack for scheduling
    for gap, expected in zip(gaps, (0.05, 0.1, 0.2), strict=True):
        assert expected * 0.9 <= gap < expected + 0.5, gaps
    assert (sender.sent, sender.failed, sender.dropped) == (1, 0, 0)
    sender.close(1.0)


def test_429_honours_retry_after(hook: Hook) -> None:
    hook.fail_first, hook.fail_status, hook.retry_after = 1, 429, "1"
    sender = WebhookSender(backoff_s=0.01)
    sender.send(hook.url, {"id": 1})
    wait_for(lambda: sender.sent == 1)
    first, second = (t for t, _, _ in hook.received)
    assert second - first >= 0.9
    sender.close(1.0)


def test_gives_up_after_max_attempts(hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    hook.fail_first = 100
    sender = WebhookSender(max_attempts=3, backoff_s=0.01)
    with caplog.at_level(logging.WARNING, logger="phospho_otel.insights.webhooks"):
        sender.send(hook.url, {"id": 1})
        wait_for(lambda: sender.failed == 1)
    assert len(hook.received) == 3
    assert any("HTTP 503 after 3 attempt(s)" in r.getMessage() for r in caplog.records)
    assert (sender.sent, sender.failed, sender.dropped) == (0, 1, 0)
    sender.close(1.0)


def test_4xx_is_not_retried(hook: Hook) -> None:
    hook.fail_first, hook.fail_status = 1, 400
    sender = WebhookSender(backoff_s=0.01)
    sender.send(hook.url, {"id": 1})
    wait_for(lambda: sender.failed == 1)
    time.sleep(0.1)
    assert len(hook.received) == 1 and sender.sent == 0
    sender.close(1.0)


def test_connection_refused_is_retried_then_given_up() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    sender = WebhookSender(max_attempts=2, backoff_s=0.01, timeout_s=1)
    sender.send(f"http://127.0.0.1:{port}/", {"id": 1})
    wait_for(lambda: sender.failed == 1)
    assert sender.sent == 0
    sender.close(1.0)


def test_a_retry_does_not_hold_up_the_others(hook: Hook) -> None:
    hook.fail_first = 1
    sender = WebhookSender(backoff_s=0.5)
    sender.send(hook.url, {"id": 1})  # fails, retried in 0.5 s
    wait_for(lambda: len(hook.received) == 1)
    sender.send(hook.url, {"id": 2})
    wait_for(lambda: sender.sent == 2)
    assert [b["id"] for b in hook.bodies()] == [1, 2, 1]
    sender.close(1.0)


def test_queue_is_bounded_and_send_never_blocks(hook: Hook,
                                                caplog: pytest.LogCaptureFixture) -> None:
    hook.release.clear()  # the server holds the first request
    sender = WebhookSender(max_queue=5, timeout_s=10)
    with caplog.at_level(logging.WARNING, logger="phospho_otel.insights.webhooks"):
        assert sender.send(hook.url, {"id": 0})
        wait_for(lambda: len(hook.received) == 1)  # under way: not in the queue any more
        start = time.monotonic()
        accepted = [sender.send(hook.url, {"id": i}) for i in range(1, 21)]
        assert time.monotonic() - start < 0.5
    assert accepted == [True] * 5 + [False] * 15
    assert sender.dropped == 15 and sender.pending == 6
    full = [r for r in caplog.records if "waiting; dropping" in r.getMessage()]
    assert len(full) == 1  # once per minute, not once per drop
    hook.release.set()
    wait_for(lambda: sender.sent == 6)
    assert [b["id"] for b in hook.bodies()] == [0, 1, 2, 3, 4, 5]
    assert sender.close(1.0)


def test_close_drains_then_drops(hook: Hook) -> None:
    hook.delay_s = 0.05
    sender = WebhookSender()
    for i in range(5):
        sender.send(hook.url, {"id": i})
    assert sender.close(5.0)
    assert sender.sent == 5 and sender.dropped == 0
    assert not sender.send(hook.url, {"id": 9})  # closed
    assert sender.dropped == 1

    hook.fail_first, hook.delay_s = 100, 0.0
    slow = WebhookSender(backoff_s=5.0)
    slow.send(hook.url, {"id": 1})
    wait_for(lambda: len(hook.received) == 6)
    start = time.monotonic()
    assert not slow.close(0.5)  # its retry is due after the close's deadline
    assert time.monotonic() - start < 2.0
    assert (slow.sent, slow.failed, slow.dropped) == (0, 0, 1)


def test_arguments_are_checked() -> None:
    for kwargs in ({"max_queue": 0}, {"timeout_s": 0}, {"max_attempts": 0},
                   {"backoff_s": -1}):
        with pytest.raises(ValueError):
            WebhookSender(**kwargs)
