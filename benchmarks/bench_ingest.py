"""Ingest rate (spans/s) over OTLP/HTTP and OTLP/gRPC into SQLite, against the bare decode
rate measured in the same run.

    .venv/bin/python benchmarks/bench_ingest.py [--quick] [--batch 8192] [--requests 24]

Every span is a task span of our convention (8 attributes, ~570 bytes: the most work per
span: span row, task row, session and user rollups), in requests of ``--batch`` spans
(a collector's batch; rotel's default is 8192), pre-encoded so the client costs little.
The receiver runs in its own process (``--serve``) on a fresh database with the default
settings (WAL, synchronous=FULL; HTTP and gRPC are also run with synchronous=NORMAL for
comparison); two client threads send the requests back to back. OTLP/JSON (hex ids, as the
OTLP/HTTP JSON exporters send it) is sent for a third of the requests (JSON parsing is
slow, and so is building the bodies).
Rates are wall-clock; the machine is shared and noisy, so compare the ratios.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
from _common import BASE_NS, export_request, task_attributes
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.aggregator import extract
from phospho_otel.receiver.decode import parse_json, parse_protobuf

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

SendOne = Callable[[dict[str, object], bytes], None]
"""Sends one body; keeps its client in the state it is given (one state per thread)."""


def _spans(spans: int, seed: int) -> Iterator[Span]:
    rng = random.Random(seed)
    for i in range(spans):
        trace_id = rng.randbytes(16)
        span_id = rng.randbytes(8)
        start = BASE_NS + (seed * spans + i) * 1_000_000
        end = start + rng.randrange(10**8, 10**9)
        user = rng.randrange(1000)
        task_id = "task_" + rng.randbytes(16).hex()
        yield Span(
            trace_id=trace_id,
            span_id=span_id,
            name="phospho.task",
            kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=start,
            end_time_unix_nano=end,
            attributes=task_attributes(
                task_id,
                input="What is the capital of France? " * 3,
                output="Paris is the capital of France. " * 5,
                session_id=f"session_{user}_{rng.randrange(10)}",
                user_id=f"user_{user}",
                semconv_version=True,
                metadata={"model": "gpt-4o-mini"},
            ),
        )


def build_request(spans: int, seed: int) -> ExportTraceServiceRequest:
    """``spans`` task spans: 1,000 users, 10 sessions each, SDK-like attributes."""
    return export_request(_spans(spans, seed), service="bench-app", scope="phospho_otel")


def serve(db: str, synchronous: str, analyzer: bool = False) -> None:
    """The receiver process: store + ingestor + HTTP (uvicorn) + gRPC on free ports, and
    with ``analyzer`` the insights' analyzer thread as the server runs it."""
    import socket

    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    from phospho_otel.aggregator.ingest import Ingestor
    from phospho_otel.insights.analyzer import Analyzer
    from phospho_otel.receiver.grpc import start_grpc_server
    from phospho_otel.receiver.http import otlp_traces_endpoint
    from phospho_otel.server.settings import ServerSettings
    from phospho_otel.store import open_store

    store = open_store(db, synchronous=synchronous)
    ingestor = Ingestor(store)
    settings = ServerSettings.from_env()  # the server's defaults and PHOSPHO_* variables
    worker = Analyzer(store, interval_s=settings.analyzer_interval_s) if analyzer else None
    if worker is not None:
        worker.start()
    _, grpc_port = start_grpc_server(
        ingestor, host="127.0.0.1", port=0, token=None, max_message_bytes=256 << 20
    )
    app = Starlette(
        routes=[Route("/v1/traces", otlp_traces_endpoint(ingestor, 256 << 20), methods=["POST"])]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    print(f"listening http={sock.getsockname()[1]} grpc={grpc_port}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.should_exit = True
    thread.join(10)
    ingestor.close()
    if worker is not None:
        worker.stop()
    store.close()


class Server:
    """A ``--serve`` child process on a fresh database."""

    def __init__(self, db: Path, synchronous: str, analyzer: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(db), "--synchronous", synchronous,
             *(["--analyzer"] if analyzer else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        match = re.search(r"http=(\d+) grpc=(\d+)", self.proc.stdout.readline())
        if not match:
            raise RuntimeError("benchmark server did not start")
        self.http_port, self.grpc_port = int(match.group(1)), int(match.group(2))

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(60)


def send_all(bodies: list[bytes], send_one: SendOne, clients: int) -> float:
    """Send every body with ``clients`` threads; returns the wall time."""
    queue = list(enumerate(bodies))
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        state: dict[str, object] = {}
        while True:
            with lock:
                if not queue:
                    return
                _, body = queue.pop(0)
            try:
                send_one(state, body)
            except Exception as exc:  # reported below
                errors.append(repr(exc))
                return

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"send failed: {errors[0]}")
    return elapsed


def http_sender(
    port: int, gzipped: bool, media_type: str = "application/x-protobuf"
) -> SendOne:
    headers = {"Content-Type": media_type}
    if gzipped:
        headers["Content-Encoding"] = "gzip"

    def send(state: dict[str, object], body: bytes) -> None:
        client = state.get("client")
        if not isinstance(client, httpx.Client):
            client = state["client"] = httpx.Client(timeout=120)
        while True:
            r = client.post(f"http://127.0.0.1:{port}/v1/traces", content=body, headers=headers)
            if r.status_code == 503:
                time.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            r.raise_for_status()
            return

    return send


def grpc_sender(port: int) -> SendOne:
    def send(state: dict[str, object], body: bytes) -> None:
        call = state.get("call")
        if not isinstance(call, grpc.UnaryUnaryMultiCallable):
            channel = grpc.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", -1)]
            )
            # No (de)serializers: the request and the reply are passed through as bytes.
            new_call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(EXPORT)
            call = state["call"] = new_call
        while True:
            try:
                call(body, timeout=120)
                return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                time.sleep(1)

    return send


def _otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON of a request (hex ids), as an OTLP/HTTP JSON exporter sends it."""
    doc = json_format.MessageToDict(request)
    for resource_spans in doc["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId"):
                    span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(doc).encode()


def _http(gzipped: bool) -> Callable[[Server], SendOne]:
    return lambda server: http_sender(server.http_port, gzipped)


def _http_json(server: Server) -> SendOne:
    return http_sender(server.http_port, False, "application/json")


def _grpc(server: Server) -> SendOne:
    return grpc_sender(server.grpc_port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--batch", type=int, default=8192, help="spans per request")
    parser.add_argument("--requests", type=int, default=24, help="requests per run")
    parser.add_argument("--clients", type=int, default=2, help="concurrent client threads")
    parser.add_argument("--serve", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--synchronous", default="FULL", help=argparse.SUPPRESS)
    parser.add_argument("--analyzer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.synchronous, args.analyzer)
        return
    batch, count = (1024, 4) if args.quick else (args.batch, args.requests)
    print(f"building {count} requests of {batch} task spans ...", flush=True)
    requests = [build_request(batch, seed) for seed in range(count)]
    bodies = [r.SerializeToString() for r in requests]
    total = batch * count
    print(f"{total} spans, {sum(map(len, bodies)) / total:.0f} bytes/span protobuf")

    started = time.perf_counter()
    for body in bodies:
        parse_protobuf(body)
    decode_rate = total / (time.perf_counter() - started)
    started = time.perf_counter()
    for body in bodies:
        extract(parse_protobuf(body))
    extract_rate = total / (time.perf_counter() - started)

    json_bodies = [_otlp_json(r) for r in requests[: max(2, count // 3)]]
    json_spans = batch * len(json_bodies)
    started = time.perf_counter()
    for body in json_bodies:
        parse_json(body)
    json_rate = json_spans / (time.perf_counter() - started)

    rows = [
        ("bare decode (protobuf parse)", decode_rate),
        ("decode + extract", extract_rate),
        ("bare decode OTLP/JSON", json_rate),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        gzipped = [gzip.compress(b, 6) for b in bodies]
        for name, synchronous, make_sender, payload in (
            ("OTLP/HTTP protobuf -> SQLite", "FULL", _http(False), bodies),
            ("OTLP/HTTP protobuf+gzip -> SQLite", "FULL", _http(True), gzipped),
            ("OTLP/HTTP JSON -> SQLite", "FULL", _http_json, json_bodies),
            ("OTLP/gRPC -> SQLite", "FULL", _grpc, bodies),
            ("OTLP/HTTP protobuf, synchronous=NORMAL", "NORMAL", _http(False), bodies),
            ("OTLP/gRPC, synchronous=NORMAL", "NORMAL", _grpc, bodies),
        ):
            db = Path(tmp) / f"{len(rows)}.db"
            server = Server(db, synchronous)
            try:
                elapsed = send_all(payload, make_sender(server), args.clients)
            finally:
                server.stop()
            rows.append((name, batch * len(payload) / elapsed))
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(f"{db}{suffix}"):
                    os.remove(f"{db}{suffix}")

    print(f"\n{'path':<40} {'spans/s':>10} {'vs bare decode':>15}")
    for name, rate in rows:
        print(f"{name:<40} {rate:>10,.0f} {rate / decode_rate:>15.4f}")
    http_rate = rows[3][1]
    print(f"\nOTLP/HTTP full ingest (synchronous=FULL): {http_rate:,.0f} spans/s "
          "(target >= 25,000)")


if __name__ == "__main__":
    main()
