"""The real service as a child process (``python -m phospho_otel serve``) and clients that
send it OTLP the way collectors do: whole requests of task spans, over HTTP or gRPC,
acknowledged or not. Used by the crash and fault tests, which then read what was stored
through the store API (``tests/support/oracle``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from tests.support.otlp import BASE_NS, feedback_span, make_request, task_span

__all__ = [
    "EXPORT",
    "TASKS_PER_REQUEST",
    "Reply",
    "requests_for",
    "send_grpc",
    "send_http",
    "start_server",
    "task_ids",
]

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LINE = re.compile(r"listening http=127\.0\.0\.1:(\d+) grpc=127\.0\.0\.1:(\d+)")
TASKS_PER_REQUEST = 40


def start_server(db: Path, *options: str,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int, int]:
    """Start ``python -m phospho_otel serve --store db`` on free ports (plus ``options``;
    ``env`` adds variables to an environment without the caller's ``PHOSPHO_*``); wait
    for its ready line. Returns the process, its HTTP port and its gRPC port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "phospho_otel", "serve", "--store", str(db),
         "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PHOSPHO_")},
             **(env or {})},
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        match = LINE.search(line)
        if match:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining
            return proc, int(match.group(1)), int(match.group(2))
    raise AssertionError(f"server did not start: {''.join(seen)!r}")


def task_ids(sender: int, r: int, tasks: int = TASKS_PER_REQUEST) -> set[str]:
    """The task ids of request ``r`` of ``sender`` (``requests_for``)."""
    return {f"c{sender}-{r}-{t}" for t in range(tasks)}


def requests_for(sender: int, n: int, *, tasks: int = TASKS_PER_REQUEST,
                 input_size: int = 200, sessions: int = 37) -> list[ExportTraceServiceRequest]:
    """``n`` requests of ``tasks`` tasks each, spread over ``sessions`` sessions of the
    sender, plus a feedback span for every tenth task."""
    out = []
    for r in range(n):
        spans = []
        for t in range(tasks):
            task_id = f"c{sender}-{r}-{t}"
            spans.append(task_span(
                task_id, session_id=f"c{sender}-s{(r * tasks + t) % sessions}",
                user_id=f"c-u{t % 7}", input="x" * input_size, start_ns=BASE_NS + r * 1000 + t,
            ))
            if t % 10 == 0:
                spans.append(feedback_span(task_id, "success", time_ns=BASE_NS + r))
        out.append(make_request(spans))
    return out


class Reply:
    """How a send ended: ``ok`` (acknowledged), else the status (HTTP status, gRPC code
    name, or ``"unreachable"`` / ``"timeout"``), the server's message and its
    Retry-After in seconds (HTTP only, when given)."""

    __slots__ = ("message", "ok", "retry_after_s", "status")

    def __init__(self, ok: bool, status: str, message: str = "",
                 retry_after_s: float | None = None) -> None:
        self.ok, self.status, self.message, self.retry_after_s = ok, status, message, retry_after_s


def send_http(port: int, request: ExportTraceServiceRequest | bytes,
              timeout: float = 10) -> Reply:
    """POST one OTLP/protobuf request."""
    body = request if isinstance(request, bytes) else request.SerializeToString()
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/traces", content=body,
                       headers={"Content-Type": "application/x-protobuf"}, timeout=timeout)
    except httpx.TimeoutException:
        return Reply(False, "timeout")
    except httpx.HTTPError:
        return Reply(False, "unreachable")
    retry = r.headers.get("Retry-After")
    return Reply(r.status_code == 200, str(r.status_code), r.text,
                 float(retry) if retry else None)


def send_grpc(channel: grpc.Channel, request: ExportTraceServiceRequest | bytes,
              timeout: float = 10) -> Reply:
    """Export one request over gRPC (the request and reply passed through as bytes)."""
    body = request if isinstance(request, bytes) else request.SerializeToString()
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(EXPORT)
    try:
        call(body, timeout=timeout)
    except grpc.RpcError as exc:  # raised by a call: it is also a grpc.Call
        code = exc.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Reply(False, "timeout")
        return Reply(False, code.name, exc.details() or "")
    return Reply(True, "OK")

