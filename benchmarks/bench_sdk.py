"""SDK benchmark: hot path, CPU per exported task, and a 100k burst, each against the
stock OpenTelemetry pipeline measured in the same run.

    .venv/bin/python benchmarks/bench_sdk.py [--quick]

Every measurement runs in a fresh subprocess (clean globals, its own peak RSS); spans go
over real OTLP/HTTP to a receiver subprocess on 127.0.0.1 that parses every request.

1. Hot path: µs per ``phospho.log()`` and per ``with phospho.task()`` against a bare SDK
   span with the same attributes and no processor (target <= 1.25x), measured as the
   calling thread's CPU time (``time.thread_time``) while the export thread runs as in
   production (its CPU is in 2.); wall-clock figures, which include waiting for the GIL
   held by the export thread, are printed beside.
2. CPU per exported task: process CPU (app + export threads) for N tasks until the
   receiver has them, phospho vs stock ``BatchSpanProcessor`` + ``OTLPSpanExporter``
   (HTTP, its queue raised to N so it drops nothing) (target <= 0.6x).
3. Burst: 100,000 ``log()`` calls as fast as possible with default settings: tasks/s
   delivered, tasks dropped, peak RSS; the stock pipeline with its defaults beside it
   (target: 0 dropped).
4. Start-up: wall time of ``init()``, of the first ``log()`` (which runs the fast path's
   parity self-test once, ``phospho_otel/sdk/_parity.py``) and of the next one, median
   over fresh providers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HERE = os.path.abspath(__file__)

ATTRS_EXAMPLE: dict[str, Any] = {
    "input": "What is the meaning of life?",
    "output": "42",
    "raw_input": {"chat_history": []},
    "metadata": {"system_prompt": "You are a helpful assistant.", "version_id": "1.0.0",
                 "generation_time": 0.1},
    "user_id": "roger@gmail.com",
}


# -- receiver subprocess ---------------------------------------------------------------

def run_receiver(port_file: str) -> None:
    """OTLP/HTTP receiver: parses every request, counts spans; GET /count, POST /reset."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    lock = threading.Lock()
    state = {"spans": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, body: bytes, ctype: str = "application/x-protobuf") -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            with lock:
                self._reply(json.dumps(state).encode(), "application/json")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path == "/reset":
                with lock:
                    state["spans"] = 0
                self._reply(b"{}", "application/json")
                return
            request = ExportTraceServiceRequest.FromString(body)
            n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            with lock:
                state["spans"] += n
            self._reply(b"")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever(poll_interval=0.1)


def receiver_count(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as r:
        return int(json.load(r)["spans"])


def receiver_reset(port: int) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/reset", data=b"", method="POST")
    urllib.request.urlopen(req, timeout=5).read()


def wait_delivered(port: int, n: int, timeout: float) -> tuple[int, float]:
    """Spans the receiver got once it has ``n`` or stopped getting more (0.5 s), and
    the ``perf_counter()`` time of the last increase."""
    deadline = time.monotonic() + timeout
    count = receiver_count(port)
    changed = time.perf_counter()
    while count < n and time.monotonic() < deadline:
        time.sleep(0.01)
        new = receiver_count(port)
        if new != count:
            count, changed = new, time.perf_counter()
        elif time.perf_counter() - changed > 0.5:
            break
    return count, changed


# -- stages (each in its own subprocess) ---------------------------------------------------

def _bare_tracer() -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider(resource=Resource.create({"service.name": "bench"})).get_tracer("b")


def _example_attributes(session_id: str) -> dict[str, Any]:
    """The attributes log() writes for the example call (task id varies per call)."""
    from phospho_otel.sdk._client import task_attributes

    return task_attributes(
        ATTRS_EXAMPLE["input"], output=ATTRS_EXAMPLE["output"],
        raw_input=ATTRS_EXAMPLE["raw_input"], metadata=ATTRS_EXAMPLE["metadata"],
        task_id="0" * 32, session_id=session_id, user_id=ATTRS_EXAMPLE["user_id"],
    )


def _timed(fn: Any, n: int, rounds: int) -> tuple[float, float]:
    """Median µs per call of ``fn(n)`` over rounds: (app-thread CPU, wall)."""
    cpu, wall = [], []
    for _ in range(rounds):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        fn(n)
        wall.append((time.perf_counter() - t0) / n * 1e6)
        cpu.append((time.thread_time() - c0) / n * 1e6)
    return statistics.median(cpu), statistics.median(wall)


def stage_hot(args: argparse.Namespace) -> dict[str, Any]:
    import gc

    from opentelemetry.sdk.trace import TracerProvider

    import phospho_otel as phospho

    n, rounds = args.n, args.rounds
    session_id = phospho.new_session()
    attrs = _example_attributes(session_id)
    keys = list(attrs)
    values = list(attrs.values())
    tracer = _bare_tracer()

    def bare_span(k: int) -> None:
        for _ in range(k):
            tracer.start_span("task", attributes=dict(zip(keys, values, strict=True))).end()

    def bare_with(k: int) -> None:
        for _ in range(k):
            attributes = dict(zip(keys, values, strict=True))
            with tracer.start_as_current_span("task", attributes=attributes) as s:
                s.set_attribute("output.value", "42")

    provider = TracerProvider()
    phospho.init(endpoint=f"http://127.0.0.1:{args.port}", tracer_provider=provider)
    ex = ATTRS_EXAMPLE

    def log(k: int) -> None:
        for _ in range(k):
            phospho.log(ex["input"], ex["output"], raw_input=ex["raw_input"],
                        metadata=ex["metadata"], session_id=session_id, user_id=ex["user_id"])

    def task(k: int) -> None:
        for _ in range(k):
            with phospho.task(input=ex["input"], raw_input=ex["raw_input"],
                              metadata=ex["metadata"], session_id=session_id,
                              user_id=ex["user_id"]) as t:
                t.set_output("42")

    gc.collect()
    results: dict[str, Any] = {}
    for name, fn in (("bare_span", bare_span), ("log", log), ("bare_with", bare_with),
                     ("task", task)):
        fn(200)  # warm up
        phospho.flush(30)
        results[name] = _timed(fn, n, rounds)
    results["dropped"] = phospho.stats().dropped
    phospho.shutdown(timeout_s=30)
    return results


def stage_cpu(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n
    receiver_reset(args.port)
    endpoint = f"http://127.0.0.1:{args.port}"
    ex = ATTRS_EXAMPLE
    if args.pipeline == "phospho":
        from opentelemetry.sdk.trace import TracerProvider

        import phospho_otel as phospho

        phospho.init(endpoint=endpoint, tracer_provider=TracerProvider())
        session_id = phospho.new_session()
        c0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(n):
            phospho.log(ex["input"], ex["output"], raw_input=ex["raw_input"],
                        metadata=ex["metadata"], session_id=session_id, user_id=ex["user_id"])
        app_s = time.perf_counter() - t0
        phospho.flush(120)
        delivered, done = wait_delivered(args.port, n, 60)
        cpu = time.process_time() - c0
        dropped = phospho.stats().dropped
        phospho.shutdown()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        import phospho_otel as phospho

        provider = TracerProvider()
        kwargs: dict[str, Any] = {}
        if args.stock_queue:
            kwargs = {"max_queue_size": args.stock_queue}
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces"),
                                       **kwargs)
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("stock")
        session_id = phospho.new_session()
        attrs = _example_attributes(session_id)
        c0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(n):
            a = dict(attrs)
            a["phospho.task.id"] = phospho.new_task_id()
            tracer.start_span("task", attributes=a).end()
        app_s = time.perf_counter() - t0
        processor.force_flush(120_000)
        delivered, done = wait_delivered(args.port, n, 60)
        cpu = time.process_time() - c0
        dropped = n - delivered
        provider.shutdown()
    wall = done - t0
    return {
        "n": n,
        "delivered": delivered,
        "dropped": dropped,
        "cpu_us_per_exported": cpu / max(delivered, 1) * 1e6,
        "app_seconds": app_s,
        "wall_seconds": wall,
        "delivered_per_s": delivered / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def stage_start(args: argparse.Namespace) -> dict[str, Any]:
    from opentelemetry.sdk.trace import TracerProvider

    import phospho_otel as phospho

    endpoint = f"http://127.0.0.1:{args.port}"
    times: dict[str, list[float]] = {"init": [], "first": [], "next": []}
    for _ in range(args.rounds):
        provider = TracerProvider()  # a new tracer: a new fast path, a new self-test
        t0 = time.perf_counter()
        phospho.init(endpoint=endpoint, tracer_provider=provider)
        t1 = time.perf_counter()
        phospho.log("first")
        t2 = time.perf_counter()
        phospho.log("next")
        t3 = time.perf_counter()
        phospho.shutdown(timeout_s=10)
        provider.shutdown()
        for key, value in (("init", t1 - t0), ("first", t2 - t1), ("next", t3 - t2)):
            times[key].append(value * 1e6)
    return {key: statistics.median(values) for key, values in times.items()}


STAGES = {"hot": stage_hot, "cpu": stage_cpu, "start": stage_start}


def run_stage(stage: str, port: int, **kw: Any) -> dict[str, Any]:
    argv = [sys.executable, HERE, "--stage", stage, "--port", str(port)]
    for key, value in kw.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--stage", choices=sorted(STAGES))
    parser.add_argument("--receiver", metavar="PORT_FILE")
    parser.add_argument("--port", type=int)
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pipeline", default="phospho")
    parser.add_argument("--stock-queue", type=int, default=0)
    args = parser.parse_args()
    if args.receiver:
        run_receiver(args.receiver)
        return
    if args.stage:
        print(json.dumps(STAGES[args.stage](args)))
        return

    import tempfile

    port_file = os.path.join(tempfile.mkdtemp(prefix="bench-sdk-"), "port")
    receiver = subprocess.Popen([sys.executable, HERE, "--receiver", port_file])
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(port_file):
            if time.monotonic() > deadline:
                raise RuntimeError("receiver did not start")
            time.sleep(0.02)
        port = int(open(port_file).read())
        hot_n, cpu_n, burst_n = (2000, 5000, 20_000) if args.quick else (10_000, 20_000, 100_000)
        rounds = 3 if args.quick else 7

        print(f"phospho-otel SDK benchmark ({'quick' if args.quick else 'full'}); "
              f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
        hot = run_stage("hot", port, n=hot_n, rounds=rounds)
        print("\n1. Hot path, µs per call (median of rounds): app-thread CPU | wall")
        for label, name, base in (
            ("bare SDK span, same attributes   ", "bare_span", None),
            ("phospho.log()                    ", "log", "bare_span"),
            ("bare `with start_as_current_span`", "bare_with", None),
            ("`with phospho.task()`            ", "task", "bare_with"),
        ):
            cpu, wall = hot[name]
            line = f"   {label} {cpu:7.1f} | {wall:7.1f}"
            if base:
                line += (f"   ratio {cpu / hot[base][0]:.2f}x | {wall / hot[base][1]:.2f}x"
                         " (target <= 1.25x)")
            print(line)

        ours = run_stage("cpu", port, n=cpu_n, pipeline="phospho")
        stock = run_stage("cpu", port, n=cpu_n, pipeline="stock", stock_queue=cpu_n)
        print(f"\n2. CPU per exported task, {cpu_n} tasks over OTLP/HTTP (app + export threads)")
        print(f"   stock BatchSpanProcessor+OTLPSpanExporter {stock['cpu_us_per_exported']:7.1f} µs"
              f"  ({stock['delivered']} delivered)")
        print(f"   phospho                                   {ours['cpu_us_per_exported']:7.1f} µs"
              f"  ({ours['delivered']} delivered)   ratio "
              f"{ours['cpu_us_per_exported'] / stock['cpu_us_per_exported']:.2f}x"
              " (target <= 0.6x)")

        burst = run_stage("cpu", port, n=burst_n, pipeline="phospho")
        stock_burst = run_stage("cpu", port, n=burst_n, pipeline="stock")
        print(f"\n3. Burst of {burst_n} log() calls as fast as possible, default settings")
        for name, r in (("phospho", burst), ("stock (defaults)", stock_burst)):
            print(f"   {name:17s} delivered {r['delivered']:6d}  dropped {r['dropped']:6d}  "
                  f"{r['delivered_per_s']:7.0f} tasks/s delivered  "
                  f"app loop {r['app_seconds']:.2f}s  peak RSS {r['peak_rss_mb']:.0f} MB")
        print("   target: 0 dropped")

        start = run_stage("start", port, rounds=10 if args.quick else 30)
        print("\n4. Start-up, wall µs (median over fresh providers)")
        print(f"   init() {start['init']:7.0f}   first log() {start['first']:7.0f} "
              f"(runs the parity self-test)   next log() {start['next']:7.1f}")
    finally:
        receiver.terminate()
        receiver.wait()


if __name__ == "__main__":
    main()
