"""Exports of the lists over HTTP (``format=csv|jsonl``, ``api.export``): the whole
filtered list, in the query's order, with the declared CSV header; JSON Lines items equal
to the JSON answer's. On the scripted data set, and on a server fed more tasks than one
export page holds."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from phospho_otel.api.export import EXPORT_COLUMNS, EXPORT_PAGE_SIZE, csv_cell
from phospho_otel.server import AggregatorServer, ServerSettings
from tests.support.otlp import BASE_NS, SEC, make_request, task_span

LISTS = {"tasks": "task_id", "sessions": "session_id", "users": "user_id"}


def walk(client: httpx.Client, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every item of a list, through its JSON pages."""
    items: list[dict[str, Any]] = []
    query = dict(params, limit="2")
    while True:
        body = client.get(path, params=query).json()
        items += body["items"]
        if body["next_cursor"] is None:
            return items
        query = dict(params, limit="2", cursor=body["next_cursor"])


def flat(item: dict[str, Any], column: str) -> Any:
    value: Any = item
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class TestExport:
    @pytest.mark.parametrize("name", list(LISTS))
    @pytest.mark.parametrize("params", [{}, {"order": "asc"}, {"user_id": "alice"},
                                        {"metadata.model": "gpt-x"}])
    def test_jsonl_is_the_json_items(self, client: httpx.Client, name: str,
                                     params: dict[str, str]) -> None:
        """One line per item, each exactly an item of the JSON answer, in its order."""
        r = client.get(f"/api/{name}", params={**params, "format": "jsonl"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-ndjson"
        assert r.headers["content-disposition"] == f'attachment; filename="{name}.jsonl"'
        lines = r.text.splitlines()
        assert [json.loads(line) for line in lines] == walk(client, f"/api/{name}", params)
        assert r.text == "".join(line + "\n" for line in lines)

    @pytest.mark.parametrize("name", list(LISTS))
    def test_csv(self, client: httpx.Client, name: str) -> None:
        """The declared header, then one row per item with its flattened cells."""
        r = client.get(f"/api/{name}", params={"format": "csv", "limit": "1", "offset": "1"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.headers["content-disposition"] == f'attachment; filename="{name}.csv"'
        assert r.content.count(b"\r\n") >= 2  # RFC 4180 line ends
        rows = list(csv.reader(io.StringIO(r.text, newline="")))
        columns = EXPORT_COLUMNS[name]
        assert rows[0] == columns
        items = walk(client, f"/api/{name}", {})
        assert len(rows) == 1 + len(items)  # limit and offset do not apply
        for row, item in zip(rows[1:], items, strict=True):
            assert row == [csv_cell(flat(item, c)) for c in columns]

    def test_csv_cells(self, client: httpx.Client) -> None:
        """Nested objects by dots, lists and maps as JSON text, null empty."""
        r = client.get("/api/tasks", params={"format": "csv", "session_id": "s1",
                                             "order": "asc"})
        rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
        a1 = rows[0]
        assert (a1["task_id"], a1["position"], a1["is_last"]) == ("a1", "1", "false")
        assert json.loads(a1["metadata"]) == {"model": "gpt-x", "tokens": 12}
        assert a1["flag"] == "" and a1["notes"] == ""
        assert a1["evaluation.label"] in ("success", "failure", "unknown")
        assert "evaluation" not in a1 and "sentiment.label" in a1
        assert json.loads(a1["events"]) == []
        assert rows[2]["notes"] == "great"

    def test_header_without_items(self, client: httpx.Client) -> None:
        r = client.get("/api/users", params={"format": "csv", "user_id": "nobody"})
        assert r.status_code == 200
        assert r.text == ",".join(EXPORT_COLUMNS["users"]) + "\r\n"
        assert client.get("/api/users", params={"format": "jsonl",
                                                "user_id": "nobody"}).text == ""

    @pytest.mark.parametrize(("params", "fragment"), [
        ({"format": "xml"}, "format"), ({"format": ""}, "format"),
        ({"format": "csv", "sort": "nope"}, "sort"),
        ({"format": "csv", "from": "2026-01-02", "to": "2026-01-01"}, "to")])
    def test_bad(self, client: httpx.Client, params: dict[str, str], fragment: str) -> None:
        """A bad format or filter is a JSON 400 before anything is streamed."""
        r = client.get("/api/sessions", params=params)
        assert r.status_code == 400
        assert r.json()["error"]["message"].startswith(fragment)

    def test_not_on_detail_views(self, client: httpx.Client) -> None:
        r = client.get("/api/tasks/a1", params={"format": "csv"})
        assert r.status_code == 400 and "format" in r.json()["error"]["message"]


TASKS = EXPORT_PAGE_SIZE * 2 + 7


@pytest.fixture
def big(tmp_path: Path) -> Iterator[httpx.Client]:
    """A server holding TASKS tasks (more than two export pages), in 30 sessions."""
    settings = ServerSettings(store=str(tmp_path / "big.db"), http_port=0, grpc_port=0,
                              analyzer_interval_s=0)
    with AggregatorServer(settings) as srv, httpx.Client(
            base_url=srv.http_url, timeout=30, trust_env=False) as c:
        spans = [task_span(f"t{i:05d}", session_id=f"s{i % 30}", user_id=f"u{i % 7}",
                           input=f"question {i}", metadata={"parity": i % 2},
                           start_ns=BASE_NS + (i // 3) * SEC, key=f"t{i}")
                 for i in range(TASKS)]
        r = c.post("/v1/traces", content=make_request(spans).SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 200
        yield c


def test_whole_list_across_pages(big: httpx.Client) -> None:
    """An export walks every page: all the tasks, in order (ties by id), each once."""
    for order in ("desc", "asc"):
        r = big.get("/api/tasks", params={"format": "jsonl", "order": order})
        got = [json.loads(line)["task_id"] for line in r.text.splitlines()]
        expected = sorted((f"t{i:05d}" for i in range(TASKS)),
                          key=lambda t: (int(t[1:]) // 3, t), reverse=order == "desc")
        assert got == expected
    r = big.get("/api/tasks", params={"format": "csv", "metadata.parity": "1"})
    rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert len(rows) == TASKS // 2 == big.get(
        "/api/tasks", params={"metadata.parity": "1"}).json()["total"]
    sessions = big.get("/api/sessions", params={"format": "jsonl", "sort": "session_id",
                                                "order": "asc"}).text.splitlines()
    assert [json.loads(s)["session_id"] for s in sessions] == sorted(f"s{i}" for i in range(30))
