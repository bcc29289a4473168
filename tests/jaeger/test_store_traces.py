"""phospho_otel.store.traces: lookups and searches over a real SQLiteStore."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValueList

from phospho_otel.store import traces
from phospho_otel.store.sqlite import SQLiteStore
from phospho_otel.store.traces import TraceQuery

from .conftest import T0, TRACE_A, TRACE_B, Batch, attrs, dataset, make_span, request_of


@pytest.fixture
def filled(store: SQLiteStore) -> SQLiteStore:
    """The shared data set, written through the store."""
    store.write(dataset())
    return store


class TestLookups:
    """get_trace, get_traces, services, operations, dependencies."""

    def test_get_trace(self, filled: SQLiteStore) -> None:
        """Spans come back decoded, by start time, with their origin."""
        with filled.reader() as conn:
            found = traces.get_trace(conn, TRACE_A.to_bytes(16, "big"))
            assert traces.get_trace(conn, b"\xff" * 16) is None
        assert found is not None and not found.truncated
        assert [i.span.name for i in found.spans] == ["chat", "llm", "db.query"]
        assert [i.origin.service_name for i in found.spans] == ["app", "app", "db"]
        assert found.spans[0].origin.scope.name == "tests.jaeger"

    def test_get_traces_keeps_order_and_skips_unknown(self, filled: SQLiteStore) -> None:
        """Unknown ids are left out; duplicates once; order as asked."""
        a, b = TRACE_A.to_bytes(16, "big"), TRACE_B.to_bytes(16, "big")
        with filled.reader() as conn:
            found = traces.get_traces(conn, [b, b"\x01" * 16, a, b])
        assert [t.trace_id for t in found] == [b, a]

    def test_span_budget(self, filled: SQLiteStore) -> None:
        """max_total_spans stops loading further traces, never the first."""
        a, b = TRACE_A.to_bytes(16, "big"), TRACE_B.to_bytes(16, "big")
        with filled.reader() as conn:
            assert len(traces.get_traces(conn, [a, b], max_total_spans=3)) == 1
            assert len(traces.get_traces(conn, [a, b], max_total_spans=4)) == 2
            assert len(traces.get_traces(conn, [a], max_total_spans=0)) == 1

    def test_services_and_operations(self, store: SQLiteStore) -> None:
        """Distinct services and (name, kind) pairs, sorted, from the indexes."""
        batches = [
            Batch(f"svc-{i:02d}", [make_span(100 + i, 1, f"op-{i % 3}", kind=i % 6)])
            for i in range(30)
        ]
        batches.append(Batch("svc-00", [make_span(200, 1, "op-1", kind=3)]))
        store.write(request_of(batches))
        with store.reader() as conn:
            assert traces.services(conn) == [f"svc-{i:02d}" for i in range(30)]
            assert traces.operations(conn, "svc-00") == [("op-0", 0), ("op-1", 3)]
            assert traces.operations(conn, "missing") == []

    def test_dependencies_window(self, filled: SQLiteStore) -> None:
        """Only child spans started inside the window count."""
        with filled.reader() as conn:
            assert traces.dependencies(conn, T0, T0 + 10**9) == [("app", "db", 1)]
            assert traces.dependencies(conn, T0 + 10**9, T0 + 10**10) == []


class TestSearch:
    """find_trace_ids."""

    def test_needs_an_index(self, filled: SQLiteStore) -> None:
        """No service, session or user: ValueError, no scan."""
        with filled.reader() as conn, pytest.raises(ValueError):
            traces.find_trace_ids(conn, TraceQuery(tags={"llm.model": "gpt-x"}))

    def test_uses_the_indexes(self, filled: SQLiteStore) -> None:
        """The query plan of each search path uses an index, never a table scan."""
        with filled.reader() as conn:
            for query, index in [
                (TraceQuery(tags={"session.id": "s1"}), "spans_by_session"),
                (TraceQuery(tags={"user.id": "u1"}), "spans_by_user"),
                (TraceQuery(service="app"), "spans_by_service"),
                (TraceQuery(service="app", operation="chat"), "spans_by_operation"),
            ]:
                plan = " ".join(
                    str(row[3])
                    for row in conn.execute(
                        "EXPLAIN QUERY PLAN " + traces.candidates_sql(query)[0],
                        traces.candidates_sql(query)[1],
                    )
                )
                assert index in plan and "SCAN" not in plan, plan

    def test_session_from_another_convention(self, store: SQLiteStore) -> None:
        """session.id searches the store's session column, filled from any convention."""
        span = make_span(77, 1, "lf", attributes={"langfuse.session.id": "lf-sess"})
        store.write(request_of([Batch("lf", [span])]))
        with store.reader() as conn:
            found = traces.find_trace_ids(conn, TraceQuery(tags={"session.id": "lf-sess"}))
        assert found == [(77).to_bytes(16, "big")]

    def test_candidates_are_bounded(self, store: SQLiteStore) -> None:
        """Tags without an index decode at most max_candidates spans (newest first)."""
        spans = [
            make_span(
                500 + i,
                1,
                "op",
                start_ns=T0 + i * 1000,
                attributes={"n": i, "session.id": "bounded"},
            )
            for i in range(50)
        ]
        store.write(request_of([Batch("svc", spans)]))
        oldest = {"n": "0"}
        with store.reader() as conn:
            shallow = TraceQuery(service="svc", tags=oldest, max_candidates=49)
            assert traces.find_trace_ids(conn, shallow) == []
            deep = TraceQuery(service="svc", tags=oldest, max_candidates=50)
            assert traces.find_trace_ids(conn, deep) == [(500).to_bytes(16, "big")]
            newest = traces.find_trace_ids(
                conn, TraceQuery(tags={"session.id": "bounded"}, limit=3)
            )
        assert newest == [(500 + i).to_bytes(16, "big") for i in (49, 48, 47)]


class TestAttributeText:
    """attribute_text: the text a tag search compares."""

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (AnyValue(string_value="x"), "x"),
            (AnyValue(bool_value=True), "true"),
            (AnyValue(int_value=-3), "-3"),
            (AnyValue(double_value=2.0), "2"),
            (AnyValue(double_value=0.1), "0.1"),
            (AnyValue(bytes_value=b"\x00"), "AA=="),
            (
                AnyValue(
                    array_value=ArrayValue(
                        values=[AnyValue(int_value=1), AnyValue(string_value="a")]
                    )
                ),
                '[1,"a"]',
            ),
            (
                AnyValue(kvlist_value=KeyValueList(values=attrs({"k": True}))),
                '{"k":true}',
            ),
            (AnyValue(), ""),
        ],
    )
    def test_text(self, value: AnyValue, text: str) -> None:
        """Scalars as text, composites as compact JSON."""
        assert traces.attribute_text(value) == text
