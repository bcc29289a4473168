"""The server answers OTLP/HTTP at ``/v1/traces`` however an exporter joined its base URL
and path (``//v1/traces``: Langfuse 5 with ``LANGFUSE_OTEL_TRACES_EXPORT_PATH=/v1/traces``;
a trailing slash), and leaves other paths alone."""

from __future__ import annotations

from pathlib import Path

import httpx

from phospho_otel.server import AggregatorServer, ServerSettings
from tests.support.otlp import make_request, task_span


class TestOtlpPaths:
    """Spellings of ``/v1/traces`` reach the receiver; the tasks are stored."""

    def test_spellings(self, tmp_path: Path) -> None:
        settings = ServerSettings(store=str(tmp_path / "p.db"), http_port=0, grpc_port=0)
        with AggregatorServer(settings) as server:
            for i, path in enumerate(("//v1/traces", "/v1/traces/", "/v1//traces")):
                body = make_request([task_span(f"t{i}", session_id="s")]).SerializeToString()
                r = httpx.post(f"{server.http_url}{path}", content=body,
                               headers={"Content-Type": "application/x-protobuf"})
                assert r.status_code == 200, (path, r.status_code, r.text)
            assert httpx.get(f"{server.http_url}/api/sessions/s").json()["task_count"] == 3
            assert httpx.get(f"{server.http_url}//api/sessions").status_code == 404
