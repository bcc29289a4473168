"""Feedback given through the API (the dashboard's "mark success / failure" too)::

    POST /api/tasks/{task_id}/feedback        {"flag": "success", "notes": "...", "source": "owner"}
    POST /api/sessions/{session_id}/feedback  (the same body)

The body is a JSON object (``Content-Type: application/json``, at most
``MAX_BODY_BYTES``): ``flag`` (``success`` | ``failure``, required), ``notes`` (a string of
at most ``MAX_NOTES_CHARS`` characters, or null), ``source`` (a non-empty string of at
most ``MAX_SOURCE_CHARS``, default ``owner``); any other key is refused.

The feedback becomes exactly the span the SDK's ``user_feedback()`` sends
(``feedback_request``: a ``feedback`` span naming the task by ``phospho.task.id``, linked
to the task's span, with the task's ``session.id`` / ``user.id``; or a
``session_feedback`` span with ``session.id``), with random trace and span ids, in an
``ExportTraceServiceRequest`` from the service ``phospho-otel``, and goes through the
server's ``Ingestor`` like any span: the store's idempotency and latest-feedback-wins
rules apply, and the answer (200, the feedback as JSON) comes once it is durable.

Errors: 404 unknown task or session; 400 a bad body (naming the field); 413 a body over
the limit; 415 another content type; 503 (``Retry-After``) when ingest is overloaded or
the store unavailable; 500 when the store cannot keep it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from phospho_otel.api.serialize import ns_to_iso
from phospho_otel.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from phospho_otel.semconv import (
    SEMCONV_VERSION,
    FeedbackFlagValues,
    FeedbackSourceValues,
    PhosphoAttributes,
    SessionAttributes,
    SpanTypeValues,
    UserAttributes,
)
from phospho_otel.store.api import Store

__all__ = [
    "FEEDBACK_FIELDS",
    "FEEDBACK_PATHS",
    "MAX_BODY_BYTES",
    "MAX_NOTES_CHARS",
    "MAX_SOURCE_CHARS",
    "SERVICE_NAME",
    "FeedbackBody",
    "FeedbackIngestor",
    "feedback_request",
    "feedback_routes",
    "parse_feedback_body",
]

SERVICE_NAME = "phospho-otel"
"""``service.name`` of the requests made here."""
SCOPE_NAME = "phospho_otel"
"""The instrumentation scope, the SDK's tracer name."""
MAX_BODY_BYTES = 65_536
MAX_NOTES_CHARS = 10_000
MAX_SOURCE_CHARS = 200
FEEDBACK_PATHS = {"task": "/api/tasks/{task_id}/feedback",
                  "session": "/api/sessions/{session_id}/feedback"}
"""The routes, as the OpenAPI document names them."""
_FLAGS = tuple(v.value for v in FeedbackFlagValues)
_STR = {"type": ["string", "null"]}
FEEDBACK_FIELDS: dict[str, dict[str, Any]] = {
    "task_id": {**_STR, "description": "the task (null for feedback on a session)"},
    "session_id": {**_STR, "description": "the session (the task's, for task feedback)"},
    "flag": {"enum": list(_FLAGS)},
    "notes": _STR,
    "source": {"type": "string"},
    "time": {"type": "string", "format": "date-time"},
    "trace_id": {"type": "string", "description": "of the feedback span"},
    "span_id": {"type": "string", "description": "of the feedback span"},
}
"""The answer's fields (name -> JSON schema)."""
FEEDBACK_BODY_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["flag"], "additionalProperties": False, "properties": {
        "flag": {"enum": list(_FLAGS)},
        "notes": {"type": ["string", "null"], "maxLength": MAX_NOTES_CHARS},
        "source": {"type": "string", "minLength": 1, "maxLength": MAX_SOURCE_CHARS,
                   "default": FeedbackSourceValues.OWNER.value}}}
"""The request body's JSON schema."""


class FeedbackIngestor(Protocol):
    """What the routes feed: the server's ``aggregator.ingest.Ingestor`` (``ingest``
    returns once the request is durable; raises ``errors.Overloaded`` when the queue is
    full, the store's error when the write failed)."""

    async def ingest(self, request: ExportTraceServiceRequest) -> Any:
        ...


class FeedbackBody:
    """A checked request body."""

    __slots__ = ("flag", "notes", "source")

    def __init__(self, flag: str, notes: str | None, source: str) -> None:
        self.flag = flag
        self.notes = notes
        self.source = source


def parse_feedback_body(raw: bytes) -> FeedbackBody:
    """The body checked (``BadRequest`` naming what is wrong)."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("body: not JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest("body: must be a JSON object with flag, notes, source")
    unknown = sorted(set(doc) - {"flag", "notes", "source"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field; accepted: flag, notes, source")
    flag = doc.get("flag")
    if flag not in _FLAGS:
        raise BadRequest(f"flag: must be one of {', '.join(_FLAGS)}, got {flag!r}")
    notes = doc.get("notes")
    if notes is not None and not isinstance(notes, str):
        raise BadRequest(f"notes: must be a string or null, got {type(notes).__name__}")
    if notes is not None and len(notes) > MAX_NOTES_CHARS:
        raise BadRequest(f"notes: at most {MAX_NOTES_CHARS} characters, got {len(notes)}")
    source = doc.get("source", FeedbackSourceValues.OWNER.value)
    if not isinstance(source, str) or not source:
        raise BadRequest(f"source: must be a non-empty string, got {source!r}")
    if len(source) > MAX_SOURCE_CHARS:
        raise BadRequest(f"source: at most {MAX_SOURCE_CHARS} characters, got {len(source)}")
    return FeedbackBody(flag, notes, source)


def _attribute(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _random_id(size: int) -> bytes:
    while True:
        raw = os.urandom(size)
        if any(raw):  # all zeros is an invalid id
            return raw


def feedback_request(*, flag: str, task_id: str | None = None, session_id: str | None = None,
                     user_id: str | None = None, notes: str | None = None,
                     source: str = FeedbackSourceValues.OWNER.value,
                     time_ns: int | None = None,
                     task_span: tuple[bytes, bytes] | None = None) -> ExportTraceServiceRequest:
    """The export request of one feedback span, as the SDK's ``user_feedback`` makes it.

    With ``task_id``: a ``feedback`` span about that task (``session_id`` / ``user_id``
    go on it too, and a link to ``task_span``, the task's ``(trace_id, span_id)``, when
    given). Without: a ``session_feedback`` span about ``session_id`` (then required).
    ``time_ns``: when it was given (now by default); the span starts and ends then."""
    if flag not in _FLAGS:
        raise ValueError(f"flag must be one of {', '.join(_FLAGS)}, got {flag!r}")
    if task_id is None and session_id is None:
        raise ValueError("feedback needs a task_id or a session_id")
    at = time.time_ns() if time_ns is None else time_ns
    kind = SpanTypeValues.FEEDBACK if task_id is not None else SpanTypeValues.SESSION_FEEDBACK
    attributes = [_attribute(PhosphoAttributes.SPAN_TYPE, kind.value),
                  _attribute(PhosphoAttributes.SEMCONV_VERSION, SEMCONV_VERSION)]
    if task_id is not None:
        attributes.append(_attribute(PhosphoAttributes.TASK_ID, task_id))
    attributes += [_attribute(PhosphoAttributes.FEEDBACK_FLAG, flag),
                   _attribute(PhosphoAttributes.FEEDBACK_SOURCE, source)]
    if notes is not None:
        attributes.append(_attribute(PhosphoAttributes.FEEDBACK_NOTES, notes))
    if session_id is not None:
        attributes.append(_attribute(SessionAttributes.SESSION_ID, session_id))
    if user_id is not None:
        attributes.append(_attribute(UserAttributes.USER_ID, user_id))
    span = Span(trace_id=_random_id(16), span_id=_random_id(8), name=kind.value,
                kind=Span.SpanKind.SPAN_KIND_INTERNAL, start_time_unix_nano=at,
                end_time_unix_nano=at, attributes=attributes)
    if task_id is not None and task_span is not None:
        span.links.append(Span.Link(trace_id=task_span[0], span_id=task_span[1],
                                    attributes=[_attribute(PhosphoAttributes.TASK_ID, task_id)]))
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[_attribute("service.name", SERVICE_NAME)]),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name=SCOPE_NAME, version=_version()),
                                spans=[span])])])


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("phospho-otel")
    except Exception:  # not installed as a distribution
        return "0"


async def _read_json_body(request: Request) -> FeedbackBody:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media_type or '(none)'!r}: use application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {MAX_BODY_BYTES}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise PayloadTooLarge(f"body is over the limit of {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest("body: the client went away") from None
    return parse_feedback_body(b"".join(chunks))


def _answer(request: ExportTraceServiceRequest, task_id: str | None,
            session_id: str | None, body: FeedbackBody) -> dict[str, Any]:
    span = request.resource_spans[0].scope_spans[0].spans[0]
    return {"task_id": task_id, "session_id": session_id, "flag": body.flag,
            "notes": body.notes, "source": body.source,
            "time": ns_to_iso(span.end_time_unix_nano), "trace_id": span.trace_id.hex(),
            "span_id": span.span_id.hex()}


def feedback_routes(ingestor: FeedbackIngestor, store: Store) -> list[BaseRoute]:
    """``POST /api/tasks/{task_id}/feedback`` and ``POST /api/sessions/{session_id}/feedback``
    feeding ``ingestor``; ``store`` answers whether the task or session exists. Errors
    are ``errors.ServerError``s, answered by ``api.errors`` (``Overloaded``: 503 with
    ``Retry-After``; a ``StoreError``: 500 with the store's message)."""

    async def ingest(request: ExportTraceServiceRequest) -> None:
        await ingestor.ingest(request)

    def task_of(task_id: str) -> tuple[str | None, str | None, tuple[bytes, bytes]]:
        with store.read() as reader:
            row = reader.get_task(task_id)
        if row is None:
            raise NotFound(f"no task with id {task_id!r}")
        t = row.task
        return t.session_id, t.user_id, (t.trace_id, t.span_id)

    def session_of(session_id: str) -> str | None:
        with store.read() as reader:
            session = reader.get_session(session_id)
        if session is None:
            raise NotFound(f"no session with id {session_id!r}")
        return session.user_id

    async def task_feedback(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        session_id, user_id, task_span = await run_in_threadpool(task_of, task_id)
        body = await _read_json_body(request)
        export = feedback_request(flag=body.flag, task_id=task_id, session_id=session_id,
                                  user_id=user_id, notes=body.notes, source=body.source,
                                  task_span=task_span)
        await ingest(export)
        return JSONResponse(_answer(export, task_id, session_id, body))

    async def session_feedback(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        user_id = await run_in_threadpool(session_of, session_id)
        body = await _read_json_body(request)
        export = feedback_request(flag=body.flag, session_id=session_id, user_id=user_id,
                                  notes=body.notes, source=body.source)
        await ingest(export)
        return JSONResponse(_answer(export, None, session_id, body))

    endpoints: dict[str, Callable[[Request], Awaitable[Response]]] = {
        "task": task_feedback, "session": session_feedback}
    return [Route(path.replace("}", ":path}"), endpoints[kind], methods=["POST"])
            for kind, path in FEEDBACK_PATHS.items()]
