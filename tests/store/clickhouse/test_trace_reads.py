"""The ClickHouse ``TraceReader``'s read paths against SQLite's answers on the same spans:
a search by service read from the newest spans back (windows widening over a sparse
past, many spans per trace), traces read many per query with a span budget, and the
service and operation lists of a database made before ``span_operations`` existed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.store import open_store
from phospho_otel.store.api import Store, TraceQuery
from phospho_otel.store.clickhouse import ClickHouseStore
from tests.support.clickhouse import new_database, shared_server
from tests.support.oracle import write
from tests.support.otlp import BASE_NS, SEC, make_request, make_span

HOUR = 3600 * SEC


def _spans(rng: random.Random) -> list[tuple[str, Span]]:
    """(service, span): a dense last minute, a sparse past hour, a trace of 300 spans."""
    out: list[tuple[str, Span]] = []
    for i in range(40):  # the past: one trace every 90 s, two services
        trace = rng.randbytes(16)
        start = BASE_NS + i * 90 * SEC
        out.append(("api", make_span({}, trace_id=trace, name="get", start_ns=start,
                                     end_ns=start + (i % 7) * SEC, rng=rng)))
        out.append(("db", make_span({}, trace_id=trace, name="query", start_ns=start + 1,
                                    kind=Span.SPAN_KIND_CLIENT, rng=rng)))
    big = rng.randbytes(16)
    for j in range(300):  # one trace, the newest spans of all
        out.append(("api", make_span({}, trace_id=big, name="get",
                                     start_ns=BASE_NS + HOUR - j * 1000, rng=rng)))
    for i in range(5):  # a few traces just before it
        out.append(("api", make_span({}, name="post", start_ns=BASE_NS + HOUR - SEC - i,
                                     kind=Span.SPAN_KIND_SERVER, rng=rng)))
    rng.shuffle(out)
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, ClickHouseStore]]:
    server = shared_server()
    sqlite = open_store(str(Path(tmp_path_factory.mktemp("reads")) / "s.db"))
    clickhouse = ClickHouseStore("127.0.0.1", server.port, new_database("trace_reads"))
    spans = _spans(random.Random(5))
    for start in range(0, len(spans), 97):  # several batches, several parts
        chunk = spans[start:start + 97]
        for service in ("api", "db"):
            request = make_request([s for svc, s in chunk if svc == service], service=service)
            write(sqlite, request)
            write(clickhouse, request)
    yield sqlite, clickhouse
    sqlite.close()
    clickhouse.close()


def _both(stores: tuple[Store, ClickHouseStore], query: TraceQuery) -> tuple[list[bytes], ...]:
    answers = []
    for store in stores:
        with store.read() as reader:
            answers.append(reader.find_trace_ids(query))
    return tuple(answers)


@pytest.mark.parametrize("limit", [1, 3, 6, 7, 8, 9, 20, 100])
@pytest.mark.parametrize("service, operation", [("api", None), ("api", "get"), ("db", None),
                                                 ("api", "post")])
@pytest.mark.parametrize("end", [HOUR, 2 * HOUR])
def test_search_by_service_as_sqlite(stores: tuple[Store, ClickHouseStore], limit: int,
                                     service: str, operation: str | None, end: int) -> None:
    """Newest first, exactly SQLite's answer, however far back the traces are (the
    first window holds 6 traces, the big one first, then 2 more per wider window)."""
    query = TraceQuery(service=service, operation=operation, start_min_ns=BASE_NS - HOUR,
                       start_max_ns=BASE_NS + end, limit=limit)
    sqlite, clickhouse = _both(stores, query)
    assert clickhouse == sqlite
    assert len(clickhouse) == min(limit, {"api": 46, "db": 40}[service] if operation is None
                                  else {"get": 41, "post": 5}[operation])


@pytest.mark.parametrize("query", [
    TraceQuery(service="api", duration_min_ns=5 * SEC, start_min_ns=BASE_NS,
               start_max_ns=BASE_NS + HOUR, limit=4),
    TraceQuery(service="api", start_min_ns=BASE_NS + 10 * 90 * SEC,
               start_max_ns=BASE_NS + 20 * 90 * SEC, limit=50),
    TraceQuery(service="db", limit=5),
], ids=["duration", "window", "unbounded"])
def test_search_conditions_as_sqlite(stores: tuple[Store, ClickHouseStore],
                                     query: TraceQuery) -> None:
    sqlite, clickhouse = _both(stores, query)
    assert clickhouse == sqlite and clickhouse


def test_many_traces_with_a_span_budget(stores: tuple[Store, ClickHouseStore]) -> None:
    """Traces read 100 per query keep get_traces' order and its span budget."""
    with stores[0].read() as reader:
        ids = reader.find_trace_ids(TraceQuery(service="api", limit=1000))
    ids = [*ids[::-1], b"\x01" * 16]  # an unknown id is left out
    answers = []
    for store in stores:
        with store.read() as reader:
            answers.append([
                [(t.trace_id, [s.span.SerializeToString() for s in t.spans], t.truncated)
                 for t in reader.get_traces(ids, max_total_spans=budget)]
                for budget in (None, 1, 50, 301)])
    assert answers[1] == answers[0]
    assert [len(a) for a in answers[1]] == [46, 1, 25, 46]


def test_operations_of_an_earlier_database(stores: tuple[Store, ClickHouseStore]) -> None:
    """A database made before span_operations existed: reopening it fills
    span_operations_before from its spans, and the lists are the same."""
    sqlite, clickhouse = stores
    with sqlite.read() as reader:
        want = reader.services(), [reader.operations(s) for s in ("api", "db", "none")]
    db = clickhouse.endpoint.database
    client = shared_server().client()
    try:
        for name in ("span_operations_mv", "span_operations", "span_operations_before"):
            client.execute(f"DROP TABLE {db}.{name}")
        reopened = ClickHouseStore("127.0.0.1", shared_server().port, db)
        try:
            assert client.execute(f"SELECT count() FROM {db}.span_operations")[0][0] == 0
            with reopened.read() as reader:
                got = reader.services(), [reader.operations(s) for s in ("api", "db", "none")]
        finally:
            reopened.close()
    finally:
        client.disconnect()
    assert got == want
    assert want == (["api", "db"], [[("get", Span.SPAN_KIND_INTERNAL),
                                     ("post", Span.SPAN_KIND_SERVER)],
                                    [("query", Span.SPAN_KIND_CLIENT)], []])
