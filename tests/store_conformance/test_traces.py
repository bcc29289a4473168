"""The trace reads of the store API (``TraceReader``: traces by id, trace search, services,
operations, dependencies) over the trace data set (``tests/support/traces``), on every
backend."""

from __future__ import annotations

import pytest

from phospho_otel.errors import BadRequest
from phospho_otel.store.api import Store, TraceQuery
from tests.support.oracle import write
from tests.support.otlp import Batch, request_of
from tests.support.traces import SCOPE, T0, TRACE_A, TRACE_B, dataset, span, trace_bytes


@pytest.fixture
def filled(store: Store) -> Store:
    """The trace data set, written through the store."""
    (result,) = write(store, dataset())
    assert result.spans_stored == 6, result
    return store


class TestLookups:
    """get_traces, services, operations, dependencies."""

    def test_get_trace(self, filled: Store) -> None:
        """Spans come back decoded, by start time, with their origin."""
        with filled.read() as r:
            (found,) = r.get_traces([trace_bytes(TRACE_A)])
            assert r.get_traces([b"\xff" * 16]) == []
        assert found.trace_id == trace_bytes(TRACE_A) and not found.truncated
        assert [i.span.name for i in found.spans] == ["chat", "llm", "db.query"]
        assert [i.origin.service_name for i in found.spans] == ["app", "app", "db"]
        assert found.spans[0].origin.scope.name == SCOPE
        assert found.spans[0].origin.scope.version == "1.0"
        resource = {kv.key for kv in found.spans[0].origin.resource.attributes}
        assert resource == {"service.name", "host.name", "pid"}
        llm = found.spans[1].span
        assert llm.status.message == "rate limited" and llm.events[0].name == "retry"
        assert llm.parent_span_id == (1).to_bytes(8, "big")

    def test_get_traces_keeps_order_and_skips_unknown(self, filled: Store) -> None:
        """Unknown ids are left out; duplicates once; order as asked."""
        a, b = trace_bytes(TRACE_A), trace_bytes(TRACE_B)
        with filled.read() as r:
            found = r.get_traces([b, b"\x01" * 16, a, b])
        assert [t.trace_id for t in found] == [b, a]

    def test_span_budget(self, filled: Store) -> None:
        """max_total_spans stops loading further traces, never the first."""
        a, b = trace_bytes(TRACE_A), trace_bytes(TRACE_B)
        with filled.read() as r:
            assert len(r.get_traces([a, b], max_total_spans=3)) == 1
            assert len(r.get_traces([a, b], max_total_spans=4)) == 2
            assert len(r.get_traces([a], max_total_spans=0)) == 1

    def test_services_and_operations(self, store: Store) -> None:
        """Distinct services and (name, kind) pairs, sorted."""
        batches = [
            Batch(f"svc-{i:02d}", [span(100 + i, 1, f"op-{i % 3}", kind=i % 6)])
            for i in range(30)
        ]
        batches.append(Batch("svc-00", [span(200, 1, "op-1", kind=3)]))
        write(store, request_of(batches))
        with store.read() as r:
            assert r.services() == [f"svc-{i:02d}" for i in range(30)]
            assert r.operations("svc-00") == [("op-0", 0), ("op-1", 3)]
            assert r.operations("missing") == []

    def test_empty_store(self, store: Store) -> None:
        """No spans: no services, traces or dependencies."""
        with store.read() as r:
            assert r.services() == []
            assert r.get_traces([trace_bytes(TRACE_A)]) == []
            assert r.find_trace_ids(TraceQuery(service="app")) == []
            assert r.dependencies(0, 2**62) == []

    def test_dependencies_window(self, filled: Store) -> None:
        """Only child spans started inside the window count."""
        with filled.read() as r:
            assert r.dependencies(T0, T0 + 10**9) == [("app", "db", 1)]
            assert r.dependencies(T0 + 10**9, T0 + 10**10) == []


class TestSearch:
    """find_trace_ids."""

    def test_needs_an_index(self, filled: Store) -> None:
        """No service, session or user: BadRequest, no scan."""
        with filled.read() as r, pytest.raises(BadRequest):
            r.find_trace_ids(TraceQuery(tags={"llm.model": "gpt-x"}))

    def test_by_session_user_service(self, filled: Store) -> None:
        """session.id, user.id and service searches, newest matching span first;
        conditions on one span."""
        a, b = trace_bytes(TRACE_A), trace_bytes(TRACE_B)
        c, d = trace_bytes(0x0C), trace_bytes(0x0D)
        with filled.read() as r:
            assert r.find_trace_ids(TraceQuery(tags={"session.id": "s1"})) == [b, a]
            assert r.find_trace_ids(TraceQuery(tags={"user.id": "u1"})) == [c, b, a]
            assert r.find_trace_ids(TraceQuery(tags={"session.id": "s2", "user.id": "u1"})) \
                == [c]
            assert r.find_trace_ids(TraceQuery(tags={"session.id": "s2", "user.id": "u2"})) \
                == []
            assert r.find_trace_ids(TraceQuery(service="worker")) == [d]
            assert r.find_trace_ids(TraceQuery(service="app", operation="llm")) == [a]
            assert r.find_trace_ids(TraceQuery(service="app", limit=1)) == [c]
            assert r.find_trace_ids(TraceQuery(service="app", tags={"llm.model": "gpt-x"})) \
                == [a]
            assert r.find_trace_ids(TraceQuery(service="app", tags={"error": "true"})) == [a]
            assert r.find_trace_ids(TraceQuery(service="app", duration_min_ns=2 * 10**9)) \
                == [b]
            assert r.find_trace_ids(TraceQuery(
                tags={"user.id": "u1"}, start_min_ns=T0 + 3 * 10**9,
                start_max_ns=T0 + 5 * 10**9)) == [c]

    def test_session_from_another_convention(self, store: Store) -> None:
        """session.id searches the store's session column, filled from any convention."""
        lf = span(77, 1, "lf", attributes={"langfuse.session.id": "lf-sess"})
        write(store, request_of([Batch("lf", [lf])]))
        with store.read() as r:
            found = r.find_trace_ids(TraceQuery(tags={"session.id": "lf-sess"}))
        assert found == [(77).to_bytes(16, "big")]

    def test_candidates_are_bounded(self, store: Store) -> None:
        """Tags without an index decode at most max_candidates spans (newest first)."""
        spans = [
            span(500 + i, 1, "op", start_ns=T0 + i * 1000,
                 attributes={"n": i, "session.id": "bounded"})
            for i in range(50)
        ]
        write(store, request_of([Batch("svc", spans)]))
        oldest = {"n": "0"}
        with store.read() as r:
            shallow = TraceQuery(service="svc", tags=oldest, max_candidates=49)
            assert r.find_trace_ids(shallow) == []
            deep = TraceQuery(service="svc", tags=oldest, max_candidates=50)
            assert r.find_trace_ids(deep) == [(500).to_bytes(16, "big")]
            newest = r.find_trace_ids(TraceQuery(tags={"session.id": "bounded"}, limit=3))
        assert newest == [(500 + i).to_bytes(16, "big") for i in (49, 48, 47)]
