"""Ids with characters URLs reserve (``/``, ``#``, ``?``, spaces, non-ASCII) work on every
page: links to them are percent-encoded, the pages open, and feedback given on such a
page comes back to the same page (over real HTTP, a real server in this process)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from phospho_otel.server import AggregatorServer, ServerSettings
from tests.support.otlp import make_request, task_span

S = 1_000_000_000
T0 = 1_780_000_000 * S
SESSION, USER, TASK = "chat/7#a?b", "zoë smith", "task 1/2"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    db: Path = tmp_path_factory.mktemp("odd") / "odd.db"
    settings = ServerSettings(store=str(db), http_port=0, grpc_port=0,
                              analyzer_interval_s=0)
    with AggregatorServer(settings) as srv, httpx.Client(
            base_url=srv.http_url, timeout=10, trust_env=False) as c:
        span = task_span(TASK, session_id=SESSION, user_id=USER, input="hi", output="hello",
                         start_ns=T0, end_ns=T0 + S)
        r = c.post("/v1/traces", content=make_request([span]).SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 200, r.text
        yield c


def _q(text: str) -> str:
    return quote(text, safe="")


def test_links_are_encoded_and_open(client: httpx.Client) -> None:
    listing = client.get("/sessions").text
    hrefs = {html.unescape(h) for h in re.findall(r'href="([^"]+)"', listing)}
    assert f"/sessions/{_q(SESSION)}" in hrefs and f"/users/{_q(USER)}" in hrefs
    for path in (f"/sessions/{_q(SESSION)}", f"/users/{_q(USER)}", f"/tasks/{_q(TASK)}"):
        page = client.get(path)
        assert page.status_code == 200, path
    assert SESSION in html.unescape(client.get(f"/sessions/{_q(SESSION)}").text)


def test_feedback_comes_back_to_the_same_page(client: httpx.Client) -> None:
    path = f"/tasks/{_q(TASK)}"
    page = client.get(path).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    back = re.search(r'name="next" value="([^"]+)"', page)
    assert token and back and html.unescape(back.group(1)) == path
    r = client.post(f"/tasks/{_q(TASK)}/feedback",
                    data={"csrf_token": html.unescape(token.group(1)), "flag": "failure",
                          "notes": "wrong answer", "next": html.unescape(back.group(1))})
    assert r.status_code == 303 and r.headers["location"] == path
    task = client.get(f"/api/tasks/{_q(TASK)}").json()
    assert (task["flag"], task["notes"], task["flag_source"]) == (
        "failure", "wrong answer", "owner")
