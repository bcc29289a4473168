"""A real OTLP capture receiver for the tests: gRPC (grpcio) and HTTP/protobuf (stdlib
HTTP server) on 127.0.0.1, free ports, decoding with opentelemetry-proto.

It can be told to refuse requests (HTTP 503 / gRPC UNAVAILABLE) to test retries, and
it can be stopped and started again on the same ports to test an outage.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tools.rotel import wait_for_port

__all__ = ["CapturedSpan", "OtlpSink", "attributes_of", "value_of"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def value_of(value: AnyValue) -> Any:
    """A decoded ``AnyValue`` as a Python value (arrays as tuples, kvlists as dicts)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(value_of(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def attributes_of(attributes: Any) -> dict[str, Any]:
    """Repeated ``KeyValue`` as a dict."""
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in attributes:
        out[kv.key] = value_of(kv.value)
    return out


@dataclass
class CapturedSpan:
    """One received span with its resource and scope, attributes decoded."""

    span: Span
    resource: dict[str, Any]
    scope_name: str
    attributes: dict[str, Any]

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_span_id(self) -> str:
        return self.span.parent_span_id.hex()


class OtlpSink:
    """Captures OTLP trace exports over gRPC and HTTP.

    ``fail_next(n)`` makes the next ``n`` requests fail with a retryable error;
    ``stop()`` / ``start()`` take the receiver down and up on the same ports.
    """

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self.grpc_port = 0  # bound on first start (port 0: no race), kept for restarts
        self.http_port = 0
        self.requests: list[ExportTraceServiceRequest] = []
        self.request_bytes: list[bytes] = []
        self.headers: list[dict[str, str | bytes]] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._fail = 0
        self.failed_requests = 0
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._connections: set[Any] = set()
        self._answering = threading.Lock()
        self.partial_reject = 0
        """Spans to report as rejected (partial success) in the next reply."""

    # -- endpoints -----------------------------------------------------------------

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def endpoint(self, protocol: str) -> str:
        return self.grpc_endpoint if protocol == "grpc" else self.http_endpoint

    # -- capture -------------------------------------------------------------------

    def _take_failure(self) -> bool:
        with self._lock:
            if self._fail > 0:
                self._fail -= 1
                self.failed_requests += 1
                return True
        return False

    def _record(self, body: bytes,
                headers: Mapping[str, str | bytes]) -> ExportTraceServiceResponse:
        request = ExportTraceServiceRequest.FromString(body)
        reply = ExportTraceServiceResponse()
        with self._cond:
            self.requests.append(request)
            self.request_bytes.append(body)
            self.headers.append(dict(headers))
            if self.partial_reject:
                reply.partial_success.rejected_spans = self.partial_reject
                reply.partial_success.error_message = "rejected by the test"
                self.partial_reject = 0
            self._cond.notify_all()
        return reply

    def fail_next(self, n: int) -> None:
        with self._lock:
            self._fail = n

    def spans(self) -> list[CapturedSpan]:
        with self._lock:
            requests = list(self.requests)
        out = []
        for request in requests:
            for rs in request.resource_spans:
                resource = attributes_of(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        out.append(CapturedSpan(span, resource, ss.scope.name,
                                                attributes_of(span.attributes)))
        return out

    def span_count(self) -> int:
        with self._lock:
            return sum(len(ss.spans) for r in self.requests
                       for rs in r.resource_spans for ss in rs.scope_spans)

    def wait_for(self, predicate: Callable[[list[CapturedSpan]], bool] | int,
                 timeout: float = 10.0) -> list[CapturedSpan]:
        """Wait until ``predicate(spans)`` holds (or until ``n`` spans arrived)."""
        deadline = time.monotonic() + timeout
        while True:
            if isinstance(predicate, int):
                if self.span_count() >= predicate:
                    return self.spans()
            else:
                spans = self.spans()
                if predicate(spans):
                    return spans
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"sink has {self.span_count()} spans after {timeout}s")
            with self._cond:
                self._cond.wait(min(remaining, 0.05))

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> OtlpSink:
        sink = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
                if sink._take_failure():
                    context.abort(grpc.StatusCode.UNAVAILABLE, "told to fail")
                headers = {k: v for k, v in context.invocation_metadata()}
                return sink._record(request.SerializeToString(), headers)

        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        # the generated gRPC module has no annotations
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            Servicer(), server)
        self.grpc_port = server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        if not self.grpc_port:
            raise RuntimeError("could not bind the gRPC capture port")
        server.start()
        self._grpc = server

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with sink._lock:
                    sink._connections.add(self.connection)

            def finish(self) -> None:
                with sink._lock:
                    sink._connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if self.path != "/v1/traces":
                    self._reply(404, b"not found")
                    return
                if sink._take_failure():
                    self._reply(503, b"told to fail", {"Retry-After": "0"})
                    return
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with sink._answering:  # stop() waits: what is recorded gets its reply
                    reply = sink._record(body, headers)
                    self._reply(200, reply.SerializeToString(),
                                {"Content-Type": "application/x-protobuf"})

            def _reply(self, status: int, body: bytes,
                       headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        ThreadingHTTPServer.allow_reuse_address = True
        self._http = ThreadingHTTPServer(("127.0.0.1", self.http_port), Handler)
        self.http_port = self._http.server_address[1]
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._http_thread.start()
        wait_for_port(self.grpc_port)
        wait_for_port(self.http_port)
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            # a grace period lets requests already recorded get their reply: an aborted
            # reply would make the client (rightly) send the batch again
            self._grpc.stop(grace=2.0).wait()
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
            with self._answering, self._lock:
                # kept-alive connections outlive the listening socket
                connections, self._connections = list(self._connections), set()
                for conn in connections:
                    try:
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def __enter__(self) -> OtlpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
