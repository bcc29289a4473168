"""Jaeger api_v3 over HTTP (/api/v3/...), as the current Jaeger UI calls it."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from phospho_otel.api.jaeger import v3 as jaeger_v3
from tests.support.traces import T0, TRACE_A, TRACE_B, TRACE_C, hex_id

WINDOW = {
    "query.startTimeMin": "2025-11-24T00:00:00Z",
    "query.startTimeMax": "2025-11-26T00:00:00.000000001Z",
}
"""query.startTimeMin/Max (RFC 3339) around the data set."""


def ok(client: httpx.Client, url: str, **params: Any) -> dict[str, Any]:
    """GET, assert 200, return the body."""
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def error(client: httpx.Client, url: str, status: int, **params: Any) -> str:
    """GET, assert ``status`` with {"error": {httpCode, message}}, return the message."""
    r = client.get(url, params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["httpCode"] == status
    return str(body["error"]["message"])


def all_spans(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every span of an OTLP JSON TracesData."""
    return [
        span for rs in result["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]
    ]


class TestServicesAndOperations:
    """GET /api/v3/services and /api/v3/operations."""

    def test_services(self, jaeger_url: str, client: httpx.Client) -> None:
        """{"services": [...]}, sorted."""
        assert ok(client, jaeger_url + "/api/v3/services") == {"services": ["app", "db", "worker"]}

    def test_operations(self, jaeger_url: str, client: httpx.Client) -> None:
        """{"operations": [{name, spanKind}]}; spanKind (or span_kind) filters."""
        body = ok(client, jaeger_url + "/api/v3/operations", service="app")
        assert body == {
            "operations": [
                {"name": "chat", "spanKind": "server"},
                {"name": "llm", "spanKind": "client"},
            ]
        }
        body = ok(client, jaeger_url + "/api/v3/operations", service="db", span_kind="internal")
        assert body == {"operations": [{"name": "db.query", "spanKind": "internal"}]}
        body = ok(client, jaeger_url + "/api/v3/operations", service="app", spanKind="producer")
        assert body == {"operations": []}

    def test_operations_need_service(self, jaeger_url: str, client: httpx.Client) -> None:
        """A missing service: 400 naming it."""
        assert "service" in error(client, jaeger_url + "/api/v3/operations", 400)


class TestTraceById:
    """GET /api/v3/traces/{trace_id}: OTLP JSON under "result"."""

    def test_otlp_json(self, jaeger_url: str, client: httpx.Client) -> None:
        """camelCase, hex ids, enum numbers, 64-bit integers as strings, per resource."""
        body = ok(client, jaeger_url + f"/api/v3/traces/{hex_id(TRACE_A)}")
        result = body["result"]
        services = [
            next(
                a["value"]["stringValue"]
                for a in rs["resource"]["attributes"]
                if a["key"] == "service.name"
            )
            for rs in result["resourceSpans"]
        ]
        assert services == ["app", "db"]
        assert result["resourceSpans"][0]["scopeSpans"][0]["scope"] == {
            "name": "tests.jaeger",
            "version": "1.0",
        }
        spans = {s["name"]: s for s in all_spans(result)}
        chat, llm, query = spans["chat"], spans["llm"], spans["db.query"]
        assert chat["traceId"] == hex_id(TRACE_A) and chat["spanId"] == "0000000000000001"
        assert "parentSpanId" not in chat
        assert llm["parentSpanId"] == "0000000000000001"
        assert query["parentSpanId"] == "0000000000000002"
        assert chat["kind"] == 2 and llm["kind"] == 3
        assert chat["startTimeUnixNano"] == str(T0)
        assert chat["endTimeUnixNano"] == str(T0 + 1_000_000)
        assert llm["status"] == {"code": 2, "message": "rate limited"}
        attributes = {a["key"]: a["value"] for a in chat["attributes"]}
        assert attributes["big"] == {"intValue": str(2**60)}
        assert attributes["ok"] == {"boolValue": True}
        assert attributes["ratio"] == {"doubleValue": 0.25}
        assert attributes["raw"] == {"bytesValue": "AP8="}
        assert attributes["list"] == {
            "arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}
        }
        assert llm["events"] == [
            {
                "timeUnixNano": str(T0 + 2_000),
                "name": "retry",
                "attributes": [{"key": "attempt", "value": {"intValue": "2"}}],
            }
        ]
        assert llm["links"] == [{"traceId": hex_id(TRACE_B), "spanId": "0000000000000001"}]

    def test_base64_id(self, jaeger_url: str, client: httpx.Client) -> None:
        """A base64 trace id (as the gRPC-gateway encodes bytes) is accepted."""
        raw = TRACE_B.to_bytes(16, "big")
        for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
            body = ok(client, jaeger_url + f"/api/v3/traces/{encoded.rstrip('=')}")
            assert all_spans(body["result"])[0]["traceId"] == hex_id(TRACE_B)

    def test_time_hints_are_validated(self, jaeger_url: str, client: httpx.Client) -> None:
        """startTime/endTime must be RFC 3339; rawTraces a boolean."""
        url = jaeger_url + f"/api/v3/traces/{hex_id(TRACE_A)}"
        ok(client, url, startTime="2025-11-24T00:00:00Z", endTime="2025-11-26T00:00:00+01:00")
        assert "startTime" in error(client, url, 400, startTime="yesterday")
        assert "end_time" in error(client, url, 400, end_time="2025-13-01T00:00:00Z")
        assert "rawTraces" in error(client, url, 400, rawTraces="maybe")

    def test_unknown_and_malformed(self, jaeger_url: str, client: httpx.Client) -> None:
        """Unknown: 404 "No traces found"; malformed: 400 naming trace_id."""
        url = jaeger_url + "/api/v3/traces/"
        assert error(client, url + "f" * 32, 404) == "No traces found"
        assert "trace_id" in error(client, url + "not-an-id!", 400)


class TestSearch:
    """GET /api/v3/traces and /api/v3/trace-summaries with query.* parameters."""

    def test_by_session_attribute(self, jaeger_url: str, client: httpx.Client) -> None:
        """query.attributes session.id: every span of the session's traces."""
        attributes = json.dumps({"session.id": "s1"})
        body = ok(
            client, jaeger_url + "/api/v3/traces", **WINDOW, **{"query.attributes": attributes}
        )
        ids = {s["traceId"] for s in all_spans(body["result"])}
        assert ids == {hex_id(TRACE_A), hex_id(TRACE_B)}
        assert len(all_spans(body["result"])) == 4

    def test_by_user_and_resource_attribute(self, jaeger_url: str, client: httpx.Client) -> None:
        """user.id is indexed; resource attributes match too."""
        params = {
            "query.serviceName": "app",
            "query.attributes": json.dumps({"user.id": "u1", "host.name": "h1"}),
        }
        body = ok(client, jaeger_url + "/api/v3/traces", **WINDOW, **params)
        ids = {s["traceId"] for s in all_spans(body["result"])}
        assert ids == {hex_id(TRACE_A), hex_id(TRACE_B), hex_id(TRACE_C)}

    def test_snake_case_aliases(self, jaeger_url: str, client: httpx.Client) -> None:
        """Jaeger's deprecated snake_case names work; search depth limits traces."""
        params = {
            "query.service_name": "app",
            "query.operation_name": "chat",
            "query.start_time_min": WINDOW["query.startTimeMin"],
            "query.start_time_max": WINDOW["query.startTimeMax"],
            "query.search_depth": "1",
        }
        body = ok(client, jaeger_url + "/api/v3/traces", **params)
        assert {s["traceId"] for s in all_spans(body["result"])} == {hex_id(TRACE_C)}

    def test_durations(self, jaeger_url: str, client: httpx.Client) -> None:
        """query.durationMin/Max are Go durations."""
        params = {"query.serviceName": "app", "query.durationMin": "2s"}
        body = ok(client, jaeger_url + "/api/v3/traces", **WINDOW, **params)
        assert {s["traceId"] for s in all_spans(body["result"])} == {hex_id(TRACE_B)}

    def test_no_match_is_404(self, jaeger_url: str, client: httpx.Client) -> None:
        """A search that finds nothing: 404 "No traces found" (Jaeger's gateway)."""
        params = {"query.serviceName": "nope"}
        msg = error(client, jaeger_url + "/api/v3/traces", 404, **WINDOW, **params)
        assert msg == "No traces found"

    def test_summaries(self, jaeger_url: str, client: httpx.Client) -> None:
        """trace-summaries: root, times, span/error/orphan counts, per-service counts."""
        params = {"query.attributes": json.dumps({"session.id": "s1"})}
        body = ok(client, jaeger_url + "/api/v3/trace-summaries", **WINDOW, **params)
        summaries = {s["traceId"]: s for s in body["summaries"]}
        assert list(summaries) == [hex_id(TRACE_B), hex_id(TRACE_A)]
        assert summaries[hex_id(TRACE_A)] == {
            "traceId": hex_id(TRACE_A),
            "rootServiceName": "app",
            "rootOperationName": "chat",
            "minStartTimeUnixNano": str(T0),
            "maxEndTimeUnixNano": str(T0 + 1_000_000),
            "spanCount": 3,
            "errorSpanCount": 1,
            "orphanSpanCount": 0,
            "services": [
                {"name": "app", "spanCount": 2, "errorSpanCount": 1},
                {"name": "db", "spanCount": 1, "errorSpanCount": 0},
            ],
        }
        params = {"query.serviceName": "nope"}
        assert ok(client, jaeger_url + "/api/v3/trace-summaries", **WINDOW, **params) == {
            "summaries": []
        }

    @pytest.mark.parametrize("route", ["/api/v3/traces", "/api/v3/trace-summaries"])
    @pytest.mark.parametrize(
        ("params", "needle"),
        [
            ({"query.serviceName": "app"}, "query.startTimeMin"),
            ({**WINDOW}, "query.serviceName"),
            ({**WINDOW, "query.startTimeMin": "2025-11-24"}, "query.startTimeMin"),
            ({**WINDOW, "query.start_time_max": "x", "query.startTimeMax": ""}, "start_time_max"),
            (
                {
                    "query.startTimeMin": WINDOW["query.startTimeMax"],
                    "query.startTimeMax": WINDOW["query.startTimeMin"],
                },
                "query.startTimeMin",
            ),
            ({**WINDOW, "query.serviceName": "app", "query.durationMin": "1 s"}, "durationMin"),
            (
                {
                    **WINDOW,
                    "query.serviceName": "app",
                    "query.durationMin": "2s",
                    "query.durationMax": "1s",
                },
                "query.durationMax",
            ),
            ({**WINDOW, "query.serviceName": "app", "query.attributes": "{x"}, "query.attributes"),
            ({**WINDOW, "query.serviceName": "app", "query.attributes": '{"a": 1}'}, "attributes"),
            ({**WINDOW, "query.serviceName": "app", "query.searchDepth": "ten"}, "searchDepth"),
            ({**WINDOW, "query.serviceName": "app", "query.rawTraces": "maybe"}, "rawTraces"),
        ],
    )
    def test_bad_parameters(
        self,
        jaeger_url: str,
        client: httpx.Client,
        route: str,
        params: dict[str, str],
        needle: str,
    ) -> None:
        """Each malformed or missing parameter is a 400 whose message names it."""
        assert needle in error(client, jaeger_url + route, 400, **params)


class TestRfc3339:
    """The RFC 3339 (nanosecond) time parser."""

    @pytest.mark.parametrize(
        ("text", "ns"),
        [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01T00:00:01.5Z", 1_500_000_000),
            ("1970-01-01T00:00:00.000000001Z", 1),
            ("1970-01-01T01:00:00+01:00", 0),
            ("2025-11-24T16:00:00.123456789-08:00", 1_764_028_800_123_456_789),
        ],
    )
    def test_parse(self, text: str, ns: int) -> None:
        """Offsets and up to nine fraction digits."""
        assert jaeger_v3.parse_rfc3339_nano(text) == ns

    @pytest.mark.parametrize("text", ["", "2025-11-24", "2025-11-24T00:00:00", "tomorrow"])
    def test_reject(self, text: str) -> None:
        """No zone, no time, or no date: ValueError."""
        with pytest.raises(ValueError):
            jaeger_v3.parse_rfc3339_nano(text)
