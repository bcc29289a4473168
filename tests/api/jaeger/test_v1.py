"""Jaeger v1 JSON API (/api/...), the routes Grafana's Jaeger data source calls."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from phospho_otel.api.jaeger import v1 as jaeger_v1
from phospho_otel.store.api import Store
from tests.support.oracle import write
from tests.support.otlp import Batch, request_of
from tests.support.traces import T0, TRACE_A, TRACE_B, TRACE_C, TRACE_D, hex_id
from tests.support.traces import span as make_span

WINDOW = {"start": str(T0 // 1000 - 1_000_000), "end": str(T0 // 1000 + 60_000_000)}
"""start/end (microseconds) around the data set."""


def ok(client: httpx.Client, url: str, **params: Any) -> dict[str, Any]:
    """GET, assert 200 and Jaeger's envelope, return the body."""
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, dict)
    assert set(body) == {"data", "total", "limit", "offset", "errors"}
    return body


def error(client: httpx.Client, url: str, status: int, **params: Any) -> str:
    """GET, assert ``status`` with errors [{code, msg}], return the message."""
    r = client.get(url, params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["data"] is None
    assert body["errors"][0]["code"] == status
    return str(body["errors"][0]["msg"])


def trace_ids(body: dict[str, Any]) -> set[str]:
    """The trace ids of a search answer (each trace has spans)."""
    for trace in body["data"]:
        assert trace["spans"], "a trace without spans"
    return {t["traceID"] for t in body["data"]}


def tags_of(item: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """{key: (type, value)} of a span's or process's tags."""
    return {t["key"]: (t["type"], t["value"]) for t in item["tags"]}


class TestServicesAndOperations:
    """GET /api/services, /api/services/{s}/operations, /api/operations."""

    def test_services(self, jaeger_url: str, client: httpx.Client) -> None:
        """Every service that sent spans, sorted, in the envelope."""
        body = ok(client, jaeger_url + "/api/services")
        assert body["data"] == ["app", "db", "worker"]
        assert body["total"] == 3 and body["errors"] is None

    def test_service_operations(self, jaeger_url: str, client: httpx.Client) -> None:
        """A service's span names."""
        assert ok(client, jaeger_url + "/api/services/app/operations")["data"] == ["chat", "llm"]
        assert ok(client, jaeger_url + "/api/services/nope/operations")["data"] == []

    def test_operations_with_kind(self, jaeger_url: str, client: httpx.Client) -> None:
        """/api/operations gives {name, spanKind}; spanKind filters."""
        body = ok(client, jaeger_url + "/api/operations", service="app")
        assert body["data"] == [
            {"name": "chat", "spanKind": "server"},
            {"name": "llm", "spanKind": "client"},
        ]
        body = ok(client, jaeger_url + "/api/operations", service="app", spanKind="client")
        assert body["data"] == [{"name": "llm", "spanKind": "client"}]

    def test_operations_needs_service(self, jaeger_url: str, client: httpx.Client) -> None:
        """A missing service is a 400 naming the parameter."""
        assert "'service'" in error(client, jaeger_url + "/api/operations", 400)


class TestTraceById:
    """GET /api/traces/{traceID}: Jaeger's JSON model of stored OTLP spans."""

    def test_model(self, jaeger_url: str, client: httpx.Client) -> None:
        """Ids, references, times, tags with types, logs and the process table."""
        body = ok(client, jaeger_url + f"/api/traces/{hex_id(TRACE_A)}")
        (trace,) = body["data"]
        assert trace["traceID"] == "000000000000000a"  # Jaeger drops a zero high half
        assert set(trace) == {"traceID", "spans", "processes", "warnings"}
        spans = {s["operationName"]: s for s in trace["spans"]}
        assert list(spans) == ["chat", "llm", "db.query"]  # by start time
        chat, llm, query = spans["chat"], spans["llm"], spans["db.query"]
        assert chat["spanID"] == "0000000000000001" and chat["references"] == []
        assert chat["startTime"] == T0 // 1000 and chat["duration"] == 1000
        assert llm["startTime"] == T0 // 1000 + 1 and llm["duration"] == 500
        assert llm["references"] == [
            {"refType": "CHILD_OF", "traceID": "000000000000000a", "spanID": "0000000000000001"},
            {
                "refType": "FOLLOWS_FROM",
                "traceID": hex_id(TRACE_B),
                "spanID": "0000000000000001",
            },
        ]
        tags = tags_of(chat)
        assert tags["session.id"] == ("string", "s1")
        assert tags["big"] == ("int64", str(2**60))  # beyond JavaScript's safe range
        assert tags["small"] == ("int64", -42)
        assert tags["ok"] == ("bool", True)
        assert tags["ratio"] == ("float64", 0.25)
        assert tags["raw"] == ("binary", "AP8=")  # base64
        assert tags["list"] == ("string", '["a","b"]')
        assert tags["span.kind"] == ("string", "server")
        assert tags["otel.scope.name"] == ("string", "tests.jaeger")
        assert "error" not in tags
        llm_tags = tags_of(llm)
        assert llm_tags["error"] == ("bool", True)
        assert llm_tags["otel.status_code"] == ("string", "ERROR")
        assert llm_tags["otel.status_description"] == ("string", "rate limited")
        assert llm_tags["span.kind"] == ("string", "client")
        assert llm["logs"] == [
            {
                "timestamp": (T0 + 2_000) // 1000,
                "fields": [
                    {"key": "event", "type": "string", "value": "retry"},
                    {"key": "attempt", "type": "int64", "value": 2},
                ],
            }
        ]
        assert chat["processID"] == llm["processID"] == "p1"
        assert query["processID"] == "p2"
        app, db = trace["processes"]["p1"], trace["processes"]["p2"]
        assert app["serviceName"] == "app" and db["serviceName"] == "db"
        assert tags_of(app) == {"host.name": ("string", "h1"), "pid": ("int64", 7)}
        assert tags_of(db) == {"db.system": ("string", "sqlite")}
        for span in trace["spans"]:
            assert span["warnings"] is None and span["traceID"] == "000000000000000a"

    def test_full_width_and_short_ids(self, jaeger_url: str, client: httpx.Client) -> None:
        """A 128-bit id keeps 32 digits; a short id is read as zero-padded."""
        body = ok(client, jaeger_url + f"/api/traces/{hex_id(TRACE_B)}")
        assert body["data"][0]["traceID"] == hex_id(TRACE_B)
        body = ok(client, jaeger_url + "/api/traces/a")
        assert body["data"][0]["traceID"] == "000000000000000a"

    def test_unknown_trace_is_404(self, jaeger_url: str, client: httpx.Client) -> None:
        """An id with no stored span: 404 in the envelope's errors."""
        msg = error(client, jaeger_url + f"/api/traces/{'f' * 32}", 404)
        assert msg == "trace not found"

    def test_malformed_trace_id_is_400(self, jaeger_url: str, client: httpx.Client) -> None:
        """Not hex, or longer than 32 digits: 400."""
        assert "trace id" in error(client, jaeger_url + "/api/traces/xyz", 400)
        assert "trace id" in error(client, jaeger_url + f"/api/traces/{'1' * 33}", 400)


class TestSearch:
    """GET /api/traces: Grafana's search parameters."""

    def test_by_session_tag(self, jaeger_url: str, client: httpx.Client) -> None:
        """tags={"session.id": ...} finds the session's traces, newest first."""
        body = ok(
            client, jaeger_url + "/api/traces", tags=json.dumps({"session.id": "s1"}), **WINDOW
        )
        assert [t["traceID"] for t in body["data"]] == [hex_id(TRACE_B), "000000000000000a"]
        assert body["total"] == 2
        full = next(t for t in body["data"] if t["traceID"] == "000000000000000a")
        assert len(full["spans"]) == 3  # the whole trace, not only the matching spans

    def test_by_user_tag(self, jaeger_url: str, client: httpx.Client) -> None:
        """tag=user.id:u1 (key:value form) finds every trace of the user."""
        body = ok(client, jaeger_url + "/api/traces", tag="user.id:u1", **WINDOW)
        assert trace_ids(body) == {"000000000000000a", hex_id(TRACE_B), "000000000000000c"}

    def test_session_and_user_together(self, jaeger_url: str, client: httpx.Client) -> None:
        """Both tags must hold on one span."""
        tags = json.dumps({"session.id": "s2", "user.id": "u1"})
        body = ok(client, jaeger_url + "/api/traces", tags=tags, **WINDOW)
        assert trace_ids(body) == {"000000000000000c"}
        tags = json.dumps({"session.id": "s2", "user.id": "u2"})
        assert ok(client, jaeger_url + "/api/traces", tags=tags, **WINDOW)["data"] == []

    def test_by_service_and_operation(self, jaeger_url: str, client: httpx.Client) -> None:
        """service and operation narrow the search."""
        body = ok(client, jaeger_url + "/api/traces", service="worker", **WINDOW)
        assert trace_ids(body) == {"000000000000000d"}
        body = ok(client, jaeger_url + "/api/traces", service="app", operation="llm", **WINDOW)
        assert trace_ids(body) == {"000000000000000a"}

    def test_other_tags(self, jaeger_url: str, client: httpx.Client) -> None:
        """Tags without an index match span, resource and derived tags."""
        url = jaeger_url + "/api/traces"
        for tags, expected in [
            ({"llm.model": "gpt-x"}, {"000000000000000a"}),
            ({"error": "true"}, {"000000000000000a"}),
            ({"host.name": "h1", "span.kind": "server"}, {hex_id(TRACE_B), "000000000000000c"}),
            ({"big": str(2**60)}, {"000000000000000a"}),
            ({"ok": "true"}, {"000000000000000a"}),
            ({"llm.model": "nope"}, set()),
        ]:
            body = ok(client, url, service="app", tags=json.dumps(tags), **WINDOW, limit=2)
            assert trace_ids(body) == expected, tags  # the newest two at most

    def test_durations(self, jaeger_url: str, client: httpx.Client) -> None:
        """minDuration / maxDuration are Go durations; a span must fit both."""
        url = jaeger_url + "/api/traces"
        body = ok(client, url, service="app", minDuration="2.5s", **WINDOW)
        assert trace_ids(body) == {hex_id(TRACE_B)}
        body = ok(client, url, service="app", maxDuration="600us", **WINDOW)
        assert trace_ids(body) == {"000000000000000a"}  # its llm span: 500 us
        body = ok(client, url, service="app", minDuration="1ms", maxDuration="1ms", **WINDOW)
        assert trace_ids(body) == {"000000000000000a", "000000000000000c"}

    def test_time_window_and_limit(self, jaeger_url: str, client: httpx.Client) -> None:
        """start/end (microseconds) bound span start times; limit counts traces."""
        url = jaeger_url + "/api/traces"
        body = ok(client, url, tag="user.id:u1", end=str(T0 // 1000 + 60_000_000))
        assert len(body["data"]) == 3  # no start: two days before end
        body = ok(client, url, tag="user.id:u1", start=str(T0 // 1000 + 60_000_000))
        assert body["data"] == []  # no end: now
        body = ok(
            client,
            url,
            tag="user.id:u1",
            start=str(T0 // 1000 + 3_000_000),
            end=str(T0 // 1000 + 5_000_000),
        )
        assert trace_ids(body) == {"000000000000000c"}
        body = ok(client, url, tag="user.id:u1", limit="1", **WINDOW)
        assert trace_ids(body) == {"000000000000000c"}  # the newest

    def test_trace_ids(self, jaeger_url: str, client: httpx.Client) -> None:
        """Repeated traceID fetches those traces; missing ones are listed in errors."""
        r = client.get(
            jaeger_url + "/api/traces",
            params=[("traceID", "a"), ("traceID", hex_id(TRACE_D)), ("traceID", "beef")],
        )
        assert r.status_code == 200
        body = r.json()
        assert trace_ids(body) == {"000000000000000a", "000000000000000d"}
        assert body["errors"] == [{"msg": "trace not found", "traceID": "000000000000beef"}]

    @pytest.mark.parametrize(
        ("params", "needle"),
        [
            ({}, "'service'"),
            ({"tags": "{not json"}, "'tags'"),
            ({"service": "app", "tags": "[1]"}, "'tags'"),
            ({"service": "app", "tags": '{"a": null}'}, "'tags'"),
            ({"service": "app", "tag": "no-colon"}, "'tag'"),
            ({"service": "app", "minDuration": "5 parsecs"}, "minDuration"),
            ({"service": "app", "maxDuration": "1x"}, "maxDuration"),
            ({"service": "app", "minDuration": "2s", "maxDuration": "1s"}, "'maxDuration'"),
            ({"service": "app", "start": "yesterday"}, "'start'"),
            ({"service": "app", "end": "1.5"}, "'end'"),
            ({"service": "app", "limit": "ten"}, "'limit'"),
            ({"service": "app", "limit": "-1"}, "'limit'"),
            ({"traceID": "zz"}, "'traceID'"),
        ],
    )
    def test_bad_parameters(
        self, jaeger_url: str, client: httpx.Client, params: dict[str, str], needle: str
    ) -> None:
        """Each malformed parameter is a 400 whose message names it."""
        assert needle in error(client, jaeger_url + "/api/traces", 400, **params)


class TestLimitCap:
    """No unbounded result sets."""

    def test_limit_is_capped(self, store: Store, client: httpx.Client,
                             serve_jaeger: Callable[..., AbstractContextManager[str]]) -> None:
        """A limit above MAX_LIMIT returns MAX_LIMIT traces."""
        n = jaeger_v1.MAX_LIMIT + 5
        spans = [
            make_span(1000 + i, 1, "op", start_ns=T0 + i, attributes={"session.id": "big"})
            for i in range(n)
        ]
        (result,) = write(store, request_of([Batch("svc", spans)]))
        assert result.spans_stored == n
        with serve_jaeger(store) as url:
            body = ok(client, url + "/api/traces", tag="session.id:big", limit="100000", **WINDOW)
        assert len(body["data"]) == jaeger_v1.MAX_LIMIT


class TestDependencies:
    """GET /api/dependencies?endTs=&lookback= (milliseconds)."""

    def test_cross_service_edges(self, jaeger_url: str, client: httpx.Client) -> None:
        """Parent/child spans of different services make an edge with a call count."""
        end_ms = T0 // 1_000_000 + 60_000
        body = ok(client, jaeger_url + "/api/dependencies", endTs=end_ms, lookback=120_000)
        assert body["data"] == [{"parent": "app", "child": "db", "callCount": 1}]
        body = ok(client, jaeger_url + "/api/dependencies", endTs=end_ms - 120_000, lookback=1)
        assert body["data"] == []

    def test_bad_parameters(self, jaeger_url: str, client: httpx.Client) -> None:
        """Non-integer endTs or lookback: 400 naming it."""
        assert "'endTs'" in error(client, jaeger_url + "/api/dependencies", 400, endTs="x")
        assert "'lookback'" in error(client, jaeger_url + "/api/dependencies", 400, lookback="1h")


class TestParsing:
    """The parameter parsers."""

    @pytest.mark.parametrize(
        ("text", "ns"),
        [
            ("0", 0),
            ("1.5s", 1_500_000_000),
            ("300ms", 300_000_000),
            ("1h2m3s", 3_723_000_000_000),
            ("10us", 10_000),
            ("10\u00b5s", 10_000),
            ("7ns", 7),
            ("-2m", -120_000_000_000),
            (".5h", 1_800_000_000_000),
        ],
    )
    def test_go_durations(self, text: str, ns: int) -> None:
        """Go's time.ParseDuration syntax."""
        assert jaeger_v1.parse_go_duration(text) == ns

    @pytest.mark.parametrize("text", ["", "5", "1d", "s", "1.5", "1s 2s", "+"])
    def test_bad_go_durations(self, text: str) -> None:
        """Anything else is a ValueError."""
        with pytest.raises(ValueError):
            jaeger_v1.parse_go_duration(text)


def test_trace_c_and_d_exist(jaeger_url: str, client: httpx.Client) -> None:
    """Every trace of the data set is served by id."""
    for trace in (TRACE_A, TRACE_B, TRACE_C, TRACE_D):
        assert ok(client, jaeger_url + f"/api/traces/{hex_id(trace)}")["data"][0]["spans"]
