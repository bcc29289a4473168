"""Builders of OTLP requests and checks of the store's rollups, shared by the ingest tests."""

from __future__ import annotations

import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from otlp_values import any_value
from starlette.applications import Starlette
from starlette.routing import Route

from phospho_otel.receiver.grpc import start_grpc_server
from phospho_otel.receiver.http import otlp_traces_endpoint
from phospho_otel.receiver.ingest import Ingestor
from phospho_otel.store.sqlite import SQLiteStore

BASE_NS = 1_764_000_000_000_000_000




def make_span(
    attributes: dict[str, object],
    *,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent_span_id: bytes = b"",
    name: str = "span",
    start_ns: int = BASE_NS,
    end_ns: int | None = None,
    status_code: int = 0,
    rng: random.Random | None = None,
) -> Span:
    """One span with the given attributes (random ids unless given)."""
    rng = rng or random.Random()
    span = Span(
        trace_id=trace_id if trace_id is not None else rng.randbytes(16),
        span_id=span_id if span_id is not None else rng.randbytes(8),
        parent_span_id=parent_span_id,
        name=name,
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=end_ns if end_ns is not None else start_ns + 1_000_000,
    )
    span.status.code = status_code  # type: ignore[assignment]
    span.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in attributes.items())
    return span


def task_span(
    task_id: str,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    input: str = "hello",
    output: str | None = "hi",
    start_ns: int = BASE_NS,
    end_ns: int | None = None,
    status_code: int = 0,
    metadata: dict[str, object] | None = None,
    rng: random.Random | None = None,
    **kwargs: object,
) -> Span:
    """A task span of our convention."""
    attrs: dict[str, object] = {
        "phospho.span.type": "task",
        "phospho.semconv.version": "1.0.0",
        "phospho.task.id": task_id,
        "input.value": input,
    }
    if output is not None:
        attrs["output.value"] = output
    if session_id is not None:
        attrs["session.id"] = session_id
    if user_id is not None:
        attrs["user.id"] = user_id
    for key, value in (metadata or {}).items():
        attrs[f"phospho.metadata.{key}"] = value
    return make_span(
        attrs,
        name="task",
        start_ns=start_ns,
        end_ns=end_ns,
        status_code=status_code,
        rng=rng,
        **kwargs,  # type: ignore[arg-type]
    )


def feedback_span(
    task_id: str,
    flag: str,
    *,
    time_ns: int,
    notes: str | None = None,
    source: str | None = None,
    rng: random.Random | None = None,
) -> Span:
    """A feedback span of our convention (its time is its end)."""
    attrs: dict[str, object] = {
        "phospho.span.type": "feedback",
        "phospho.task.id": task_id,
        "phospho.feedback.flag": flag,
    }
    if notes is not None:
        attrs["phospho.feedback.notes"] = notes
    if source is not None:
        attrs["phospho.feedback.source"] = source
    return make_span(attrs, name="feedback", start_ns=time_ns, end_ns=time_ns, rng=rng)


def make_request(spans: Sequence[Span], service: str = "test-app") -> ExportTraceServiceRequest:
    """One export request holding the spans under one resource and scope."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value=service))
    )
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "tests"
    scope_spans.spans.extend(spans)
    return request


def dump(store: SQLiteStore) -> dict[str, list[tuple[object, ...]]]:
    """The views' tables, sorted, for comparing two stores."""
    out = {}
    with store.reader() as conn:
        for table, order in (
            ("tasks", "task_id"),
            ("sessions", "session_id"),
            ("users", "user_id"),
            ("feedback", "trace_id, span_id"),
        ):
            out[table] = [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY {order}")]
        out["spans"] = [
            tuple(r)
            for r in conn.execute(
                "SELECT trace_id, span_id, session_id, user_id, span FROM spans "
                "ORDER BY trace_id, span_id"
            )
        ]
    return out


def check_rollups(conn: sqlite3.Connection) -> None:
    """Assert that ``sessions`` and ``users`` equal a recomputation from ``tasks`` (a
    session's ``last_flag`` is its last task's ``flag``)."""
    expected_sessions = {}
    for row in conn.execute(
        "SELECT session_id, min(user_id), count(*), min(start_ns), max(end_ns), "
        "total(flag = 'success'), total(flag = 'failure'), total(status = 'error') "
        "FROM tasks WHERE session_id IS NOT NULL GROUP BY session_id"
    ):
        session_id = row[0]
        first = conn.execute(
            "SELECT task_id, start_ns, input FROM tasks WHERE session_id = ? "
            "ORDER BY start_ns, task_id LIMIT 1",
            (session_id,),
        ).fetchone()
        last = conn.execute(
            "SELECT task_id, start_ns, input, output, status, flag FROM tasks "
            "WHERE session_id = ? "
            "ORDER BY start_ns DESC, task_id DESC LIMIT 1",
            (session_id,),
        ).fetchone()
        expected_sessions[session_id] = (
            *row[1:5],
            *tuple(first),
            *tuple(last),
            int(row[5]),
            int(row[6]),
            int(row[7]),
        )
    actual_sessions = {
        r[0]: tuple(r[1:])
        for r in conn.execute(
            "SELECT session_id, user_id, task_count, start_ns, end_ns, first_task_id, "
            "first_start_ns, first_input, last_task_id, last_start_ns, last_input, "
            "last_output, last_status, last_flag, success_count, failure_count, error_count "
            "FROM sessions"
        )
    }
    assert actual_sessions == expected_sessions
    expected_users: dict[str, list[object]] = {}
    for row in conn.execute(
        "SELECT user_id, count(*), min(start_ns), max(end_ns), total(flag = 'success'), "
        "total(flag = 'failure'), total(status = 'error') FROM tasks "
        "WHERE user_id IS NOT NULL GROUP BY user_id"
    ):
        expected_users[row[0]] = [row[1], 0, row[2], row[3], int(row[4]), int(row[5]), int(row[6])]
    for user_id, sessions in conn.execute(
        "SELECT user_id, count(*) FROM sessions WHERE user_id IS NOT NULL GROUP BY user_id"
    ):
        expected_users[user_id][1] = sessions
    actual_users = {
        r[0]: list(r[1:])
        for r in conn.execute(
            "SELECT user_id, task_count, session_count, first_seen_ns, last_seen_ns, "
            "success_count, failure_count, error_count FROM users"
        )
    }
    assert actual_users == expected_users
    # Each task's flag is its latest feedback.
    for task_id, flag in conn.execute("SELECT task_id, flag FROM tasks"):
        latest = conn.execute(
            "SELECT flag FROM feedback WHERE task_id = ? "
            "ORDER BY time_ns DESC, trace_id DESC, span_id DESC LIMIT 1",
            (task_id,),
        ).fetchone()
        assert flag == (latest[0] if latest else None), task_id




@dataclass
class Receiver:
    """A running store + ingestor + OTLP/HTTP (uvicorn) + OTLP/gRPC receiver."""

    store: SQLiteStore
    ingestor: Ingestor
    http_port: int
    grpc_port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/traces"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


@contextmanager
def running_receiver(
    db_path: str | os.PathLike[str],
    *,
    token: str | None = None,
    max_body_bytes: int = 64 * 1024 * 1024,
    max_pending_spans: int = 200_000,
) -> Iterator[Receiver]:
    """Run the receivers on 127.0.0.1 (free ports) in this process until the block ends."""
    store = SQLiteStore(db_path)
    ingestor = Ingestor(store, max_pending_spans=max_pending_spans)
    grpc_server, grpc_port = start_grpc_server(
        ingestor, host="127.0.0.1", port=0, token=token, max_message_bytes=max_body_bytes
    )
    app = Starlette(
        routes=[
            Route("/v1/traces", otlp_traces_endpoint(ingestor, max_body_bytes), methods=["POST"])
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    http_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield Receiver(store, ingestor, http_port, grpc_port)
    finally:
        server.should_exit = True
        thread.join(10)
        grpc_server.stop(0).wait(5)
        ingestor.close()
        store.close()
        sock.close()
