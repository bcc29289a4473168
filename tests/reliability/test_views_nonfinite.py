"""NaN and +-Infinity doubles (valid OTLP; what the SDK sends for ``metadata={"score":
float("nan")}``) (issue 9, defect 2): extraction stores them as the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``, and every view answers strict JSON, also over rows an
older version stored with bare ``NaN`` in their JSON text (and numbers too large for a
double, which Python reads as infinity)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from phospho_otel.aggregator.extract import extract
from phospho_otel.server import AggregatorServer, ServerSettings
from phospho_otel.store.sqlite import SQLiteStore
from tests.support.otlp import BASE_NS, SEC, make_request, task_span

METADATA = {"score": math.nan, "x": math.inf, "y": -math.inf, "list": [1.5, math.nan],
            "ok": 0.25}
SHOWN = {"score": "NaN", "x": "Infinity", "y": "-Infinity", "list": [1.5, "NaN"], "ok": 0.25}


def strict(text: str) -> Any:
    """JSON as RFC 8259 has it: no NaN, no Infinity."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AggregatorServer]:
    path = tmp_path / "nan.db"
    old = SQLiteStore(path)  # rows as an older version stored them: bare NaN in the JSON text
    try:
        x = extract(make_request([task_span("old", session_id="s-old", user_id="u",
                                            start_ns=BASE_NS - SEC)]))
        x.tasks[0] = x.tasks[0]._replace(metadata='{"score":NaN,"big":1e999,"neg":-Infinity}',
                                         raw_input="[NaN, Infinity, 2]")
        old.write([x._replace(rollup=None)])
    finally:
        old.close()
    with AggregatorServer(ServerSettings(store=str(path), http_port=0, grpc_port=0)) as srv:
        request = make_request([task_span("new", session_id="s-new", user_id="u",
                                          metadata=METADATA, start_ns=BASE_NS)])
        r = httpx.post(f"{srv.http_url}/v1/traces", content=request.SerializeToString(),
                       headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 200
        yield srv


class TestNonFiniteNumbers:
    """Every view answers 200 and strict JSON; metadata shows the strings."""

    def test_views(self, server: AggregatorServer) -> None:
        with httpx.Client(base_url=server.http_url, timeout=10) as client:
            def get(path: str, **params: str) -> Any:
                r = client.get(path, params=params)
                assert r.status_code == 200, (path, r.text)
                return strict(r.text)

            tasks = {t["task_id"]: t for t in get("/api/tasks")["items"]}
            assert tasks["new"]["metadata"] == SHOWN
            assert tasks["old"]["metadata"] == {"score": "NaN", "big": "Infinity",
                                                "neg": "-Infinity"}
            assert tasks["old"]["raw_input"] == ["NaN", "Infinity", 2]
            assert get("/api/tasks/new")["metadata"] == SHOWN
            assert get("/api/sessions/s-new")["tasks"][0]["metadata"] == SHOWN
            assert get("/api/sessions/s-old")["tasks"][0]["metadata"]["score"] == "NaN"
            assert len(get("/api/users/u")["tasks"]) == 2
            get("/api/sessions")
            get("/api/users")
            get("/api/insights/sessions")
            get("/api/insights/users")
            for task in tasks.values():
                trace = task["trace_id"]
                v1 = get(f"/jaeger/api/traces/{trace}")
                assert v1["data"][0]["traceID"].lstrip("0") == trace.lstrip("0")
                get(f"/jaeger/api/v3/traces/{trace}")
            tags = {t["key"]: t["value"]
                    for t in get(f"/jaeger/api/traces/{tasks['new']['trace_id']}")
                    ["data"][0]["spans"][0]["tags"]}
            assert tags["phospho.metadata.score"] in ("nan", "NaN")
            get("/jaeger/api/traces", service="test-app")
            get("/jaeger/api/v3/traces", **{"query.serviceName": "test-app",
                                     "query.startTimeMin": "2025-01-01T00:00:00Z",
                                     "query.startTimeMax": "2027-01-01T00:00:00Z"})

    def test_stored_text_is_strict(self, server: AggregatorServer) -> None:
        """The metadata extraction writes is strict JSON itself."""
        assert server.store is not None
        with server.store.read() as reader:
            row = reader.get_task("new")
        assert row is not None
        assert strict(row.task.metadata) == SHOWN
