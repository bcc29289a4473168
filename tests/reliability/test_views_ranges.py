"""Out-of-range query values (issue 9, defect 13): times the store's 64-bit integers
cannot hold, cursors holding huge numbers, Jaeger times and durations past 2^63 ns (or
negative where that means nothing) are each a 400 naming the parameter, never a 500;
the limits themselves still work."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.support.scripted import client, db_path, server

__all__ = ["client", "db_path", "server"]

BIG = str(2**63)
HUGE = str(10**30)


def _cursor(value: object, row_id: str = "x") -> str:
    raw = json.dumps([value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


API = [
    ("/api/sessions", {"from": "0001-01-01T00:00:00Z"}, "from"),
    ("/api/sessions", {"to": "9999-12-31T23:59:59.999999Z"}, "to"),
    ("/api/tasks", {"from": "0001-01-01T00:00:00Z"}, "from"),
    ("/api/tasks", {"to": "9999-12-31T23:59:59.999999Z"}, "to"),
    ("/api/users", {"from": "0001-01-01T00:00:00+14:00"}, "from"),
    ("/api/insights/sessions", {"to": "9999-12-31T23:59:59.999999Z"}, "to"),
    ("/api/insights/users", {"from": "0001-01-01"}, "from"),
    ("/api/sessions", {"cursor": _cursor(10**30)}, "cursor"),
    ("/api/sessions", {"cursor": _cursor(-(10**30))}, "cursor"),
    ("/api/users", {"cursor": _cursor(2**63)}, "cursor"),
    ("/api/tasks", {"cursor": _cursor(10**30)}, "cursor"),
]
JAEGER_V1 = [
    ({"service": "shop", "start": BIG}, "start"),
    ({"service": "shop", "end": BIG}, "end"),
    ({"service": "shop", "start": HUGE, "end": HUGE}, "start"),
    ({"service": "shop", "start": "-1"}, "start"),
    ({"service": "shop", "end": "-5"}, "end"),
    ({"service": "shop", "minDuration": "9999999999999h"}, "minDuration"),
    ({"service": "shop", "maxDuration": "9999999999999h"}, "maxDuration"),
    ({"service": "shop", "minDuration": "-1s"}, "minDuration"),
]
JAEGER_V1_DEPENDENCIES = [
    ({"endTs": BIG}, "endTs"),
    ({"endTs": "-1"}, "endTs"),
    ({"lookback": BIG}, "lookback"),
    ({"endTs": "1000", "lookback": HUGE}, "lookback"),
]
_WINDOW = {"query.serviceName": "shop", "query.startTimeMin": "2025-01-01T00:00:00Z",
           "query.startTimeMax": "2027-01-01T00:00:00Z"}
JAEGER_V3 = [
    ({**_WINDOW, "query.startTimeMax": "9999-12-31T23:59:59Z"}, "query.startTimeMax"),
    ({**_WINDOW, "query.startTimeMin": "0001-01-01T00:00:00Z"}, "query.startTimeMin"),
    ({**_WINDOW, "query.durationMin": "9999999999999h"}, "query.durationMin"),
    ({**_WINDOW, "query.durationMax": "9999999999999h"}, "query.durationMax"),
    ({**_WINDOW, "query.durationMin": "-1s"}, "query.durationMin"),
]


class TestApi:
    """``/api``: every out-of-range value is a 400 naming its parameter."""

    @pytest.mark.parametrize(("path", "params", "name"), API,
                             ids=[f"{p} {n}" for p, _, n in API])
    def test_out_of_range(self, client: httpx.Client, path: str, params: dict[str, str],
                          name: str) -> None:
        r = client.get(path, params=params)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["message"].startswith(f"{name}: "), r.text

    def test_edges_still_answer(self, client: httpx.Client) -> None:
        """The widest times the store holds, and cursors at the int64 bounds, work."""
        for params in ({"from": "1970-01-01T00:00:00Z", "to": "2262-04-11T23:47:16Z"},
                       {"from": "1677-09-22T00:00:00Z"},
                       {"cursor": _cursor(2**63 - 1)}, {"cursor": _cursor(-(2**63))}):
            for path in ("/api/sessions", "/api/tasks", "/api/users"):
                assert client.get(path, params=params).status_code == 200, (path, params)


class TestJaegerV1:
    """Jaeger v1 (``/api/traces``, ``/api/dependencies``): 400 in Jaeger's envelope."""

    @pytest.mark.parametrize(("params", "name"), JAEGER_V1, ids=[n for _, n in JAEGER_V1])
    def test_search(self, client: httpx.Client, params: dict[str, str], name: str) -> None:
        r = client.get("/jaeger/api/traces", params=params)
        assert r.status_code == 400, r.text
        assert name in r.json()["errors"][0]["msg"], r.text

    @pytest.mark.parametrize(("params", "name"), JAEGER_V1_DEPENDENCIES,
                             ids=[n for _, n in JAEGER_V1_DEPENDENCIES])
    def test_dependencies(self, client: httpx.Client, params: dict[str, str],
                          name: str) -> None:
        r = client.get("/jaeger/api/dependencies", params=params)
        assert r.status_code == 400, r.text
        assert name in r.json()["errors"][0]["msg"], r.text

    def test_edges_still_answer(self, client: httpx.Client) -> None:
        top_us = str((2**63 - 1) // 1000)
        assert client.get("/jaeger/api/traces", params={"service": "shop", "start": "0",
                                                 "end": top_us}).status_code == 200
        top_ms = str((2**63 - 1) // 1_000_000)
        assert client.get("/jaeger/api/dependencies", params={"endTs": top_ms, "lookback": top_ms}
                          ).status_code == 200


class TestJaegerV3:
    """Jaeger api_v3 (``/api/v3/traces``): 400 in its error shape."""

    @pytest.mark.parametrize(("params", "name"), JAEGER_V3, ids=[n for _, n in JAEGER_V3])
    def test_search(self, client: httpx.Client, params: dict[str, str], name: str) -> None:
        for path in ("/jaeger/api/v3/traces", "/jaeger/api/v3/trace-summaries"):
            r = client.get(path, params=params)
            assert r.status_code == 400, r.text
            assert name in r.json()["error"]["message"], r.text
