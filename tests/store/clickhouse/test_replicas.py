"""Two aggregator replicas (two ``ClickHouseStore`` instances, as two processes would
have) on one ClickHouse database, fed the same spans at the same time in different
orders, with retries: the views stay exact (the oracle's), each span is stored once in
what a reader sees."""

from __future__ import annotations

import random
import threading

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from phospho_otel.aggregator.extract import extract
from phospho_otel.store.clickhouse import ClickHouseStore
from tests.store.clickhouse.workload import workload
from tests.support.clickhouse import new_database, shared_server
from tests.support.oracle import check_store


def feed(store: ClickHouseStore, requests: list[ExportTraceServiceRequest], seed: int,
         errors: list[BaseException]) -> None:
    """Write the requests in a shuffled order, in groups of one to three, each group
    retried once in a while (as a collector does after a lost reply)."""
    rng = random.Random(seed)
    order = requests[:]
    rng.shuffle(order)
    try:
        i = 0
        while i < len(order):
            n = rng.randint(1, 3)
            group = [extract(r) for r in order[i : i + n]]
            store.write(group)
            if rng.random() < 0.3:
                store.write(group)
            i += n
    except BaseException as exc:
        errors.append(exc)


def test_two_replicas_overlapping() -> None:
    """Every span goes through both replicas, concurrently: the views are exact."""
    server = shared_server()
    database = new_database("replicas")
    requests, _ = workload(7, tasks_n=400, users_n=30)
    a = ClickHouseStore("127.0.0.1", server.port, database)
    b = ClickHouseStore("127.0.0.1", server.port, database)
    try:
        errors: list[BaseException] = []
        threads = [threading.Thread(target=feed, args=(store, requests, seed, errors))
                   for store, seed in ((a, 1), (b, 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert errors == []
        state = check_store(a, requests)
        assert check_store(b, requests) == state
        assert len(state.tasks) == 400
        trace_ids = sorted({s.trace_id for r in requests for rs in r.resource_spans
                            for ss in rs.scope_spans for s in ss.spans})
        with a.read() as reader:
            traces = reader.get_traces(trace_ids)
        keys = [(s.span.trace_id, s.span.span_id) for t in traces for s in t.spans]
        assert len(keys) == len(set(keys)) == len(
            {(s.trace_id, s.span_id) for r in requests for rs in r.resource_spans
             for ss in rs.scope_spans for s in ss.spans})
    finally:
        a.close()
        b.close()
