"""The dashboard over the ClickHouse store (a real ClickHouse server): every page renders
in the browser without problems, the insights' filters and sorts too."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from phospho_otel.server import AggregatorServer, ServerSettings
from tests.dashboard.conftest import NewPage
from tests.dashboard.pages import wait_ready
from tests.support.clickhouse import new_database, shared_server
from tests.support.otlp import make_request, task_span

S = 1_000_000_000
T0 = 1_780_000_000 * S


@pytest.fixture(scope="module")
def clickhouse_url() -> Iterator[str]:
    server = shared_server()
    settings = ServerSettings(
        store=f"clickhouse://127.0.0.1:{server.port}/{new_database('dashboard')}",
        http_port=0, grpc_port=0, analyzer_interval_s=0)
    with AggregatorServer(settings) as srv:
        spans = [task_span(f"t{i}", session_id=f"s{i // 3}", user_id=f"u{i % 2}",
                           input=f"question {i}", output=f"answer {i}",
                           metadata={"version_id": "1.0.0"}, start_ns=T0 + i * S,
                           end_ns=T0 + i * S + S // 2) for i in range(9)]
        r = httpx.post(f"{srv.http_url}/v1/traces",
                       content=make_request(spans).SerializeToString(),
                       headers={"Content-Type": "application/x-protobuf"}, timeout=30,
                       trust_env=False)
        assert r.status_code == 200, r.text
        yield srv.http_url


@pytest.mark.parametrize("path", ["/insights", "/sessions", "/sessions/s1", "/users",
                                  "/users/u0", "/tasks", "/tasks/t4",
                                  "/tasks?metadata.version_id=1.0.0&q=question"])
def test_pages_render(new_page: NewPage, clickhouse_url: str, path: str) -> None:
    page = new_page(clickhouse_url)
    response = page.goto(path)
    assert response is not None and response.status == 200
    wait_ready(page)
    assert page.locator("[data-error]").count() == 0


def test_tasks_listed_as_the_api(new_page: NewPage, clickhouse_url: str) -> None:
    page = new_page(clickhouse_url)
    page.goto("/tasks?q=question")
    wait_ready(page)
    api = httpx.get(f"{clickhouse_url}/api/tasks", params={"q": "question"},
                    trust_env=False).json()
    ids = page.locator('table[data-list="tasks"] tr[data-id]').evaluate_all(
        "rows => rows.map(r => r.dataset.id)")
    assert ids == [t["task_id"] for t in api["items"]] and len(ids) == 9


@pytest.mark.parametrize("path", ["/sessions?state=active", "/users?sort=cost",
                                  "/tasks?evaluation=unknown", "/users?class=power"])
def test_the_insights_filters_answer(new_page: NewPage, clickhouse_url: str,
                                     path: str) -> None:
    """The store keeps the analyzer's results: its filters and sorts answer."""
    page = new_page(clickhouse_url)
    response = page.goto(path)
    assert response is not None and response.status == 200
    wait_ready(page)
    assert page.locator("[data-error]").count() == 0
