"""Every dashboard page renders in Chromium without console errors (a screenshot of each
is saved), and what it shows is the API's: the rows and cells of each list and its total
for the same filters, detail pages' lists, sorting by a column link, paging, the export
links, the charts' data; clicking a user row opens that user's page."""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import Page

from tests.dashboard import workload
from tests.dashboard.conftest import Api, LiveServer, Screenshot
from tests.dashboard.pages import (
    assert_fields_match,
    assert_rows_match,
    chart_configs,
    list_rows,
    list_total,
    open_page,
    page_query,
    wait_ready,
)

ID_FIELD = {"sessions": "session_id", "users": "user_id", "tasks": "task_id"}
NOW_TASK = "t-ben-2-5"
"""The errored task of the live session, with child spans."""

PAGES = [
    ("insights", "/insights"),
    ("sessions", "/sessions"),
    ("session", "/sessions/s-ben-1"),
    ("session-live", f"/sessions/{workload.LIVE_SESSION}"),
    ("users", "/users"),
    ("user", "/users/" + quote("ana@example.com", safe="")),
    ("tasks", "/tasks"),
    ("task", f"/tasks/{NOW_TASK}"),
    ("task-feedback", "/tasks/t-ben-1-3"),
]


def test_root_redirects_to_insights(server: LiveServer) -> None:
    response = httpx.get(server.url + "/", follow_redirects=False, trust_env=False)
    assert response.status_code == 303
    assert urlsplit(response.headers["location"]).path == "/insights"


@pytest.mark.parametrize(("name", "path"), PAGES, ids=[n for n, _ in PAGES])
def test_page_renders(page: Page, screenshot: Screenshot, name: str, path: str) -> None:
    """The page answers 200, becomes ready with no console error, uncaught exception or
    failed request (the ``page`` fixture), and is saved as a screenshot."""
    open_page(page, path)
    assert page.title().strip(), f"{path}: no <title>"
    text = page.locator("body").inner_text()
    if path.count("/") == 2:  # a detail page names what it shows
        assert unquote(path.rsplit("/", 1)[1]) in text, f"{path}: its id is not on the page"
    screenshot(page, name)


def test_static_files_are_served_locally(page: Page) -> None:
    """Scripts and styles come from this server (nothing fetched from a CDN)."""
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    open_page(page, "/insights")
    base = page.url.split("/insights")[0]
    foreign = [u for u in requested if not u.startswith((base, "data:", "blob:"))]
    assert not foreign, f"requests to other hosts: {foreign}"


LIST_CASES: list[tuple[str, dict[str, str]]] = [
    ("sessions", {}),
    ("sessions", {"state": "ended"}),
    ("sessions", {"user_id": "ana@example.com"}),
    ("sessions", {"metadata.version_id": "1.1.0"}),
    ("sessions", {"sort": "task_count", "order": "asc"}),
    ("users", {}),
    ("users", {"metadata.version_id": "1.1.0"}),
    ("users", {"sort": "task_count"}),
    ("tasks", {}),
    ("tasks", {"user_id": "ben"}),
    ("tasks", {"q": "refund"}),
    ("tasks", {"metadata.version_id": "1.1.0"}),
    ("tasks", {"evaluation": "failure"}),
    ("tasks", {"session_id": "s-ana-1"}),
]
"""(list, query); every filtered case selects some but not all of its list."""


@pytest.mark.parametrize(("name", "query"), LIST_CASES,
                         ids=[f"{n}?{urlencode(q)}" for n, q in LIST_CASES])
def test_list_equals_api(page: Page, api: Api, name: str, query: dict[str, str]) -> None:
    """The page's rows, cells and total are the API's for the same query."""
    expected = api(f"/api/{name}", **query)
    everything = api(f"/api/{name}", limit=1000)["total"]
    if any(k not in ("sort", "order") for k in query):
        assert 0 < expected["total"] < everything, f"the filter {query} selects nothing " \
            "or everything: the data set cannot tell"
    path = f"/{name}" + (f"?{urlencode(query)}" if query else "")
    open_page(page, path)
    rows = list_rows(page, name)
    assert_rows_match(rows, expected["items"], ID_FIELD[name], path)
    assert list_total(page) == expected["total"], f"{path}: data-total"


def test_time_range_filters_the_list(page: Page, api: Api) -> None:
    """``from``/``to`` in the page's URL select what the API selects."""
    tasks = api("/api/tasks", limit=1000, sort="start_time", order="asc")["items"]
    query = {"from": tasks[5]["start_time"], "to": tasks[15]["start_time"]}
    expected = api("/api/sessions", **query)
    assert 0 < expected["total"] < len(workload.SESSIONS)
    open_page(page, "/sessions?" + urlencode(query))
    assert_rows_match(list_rows(page, "sessions"), expected["items"], "session_id", "from/to")
    assert list_total(page) == expected["total"]


SESSION_TURNS = "session-tasks"
"""The session page's conversation: ``<ol data-list="session-tasks">`` of ``<li data-id>``."""


def test_session_page_lists_its_tasks(page: Page, api: Api) -> None:
    """The conversation is the session's tasks in order, each turn with its words."""
    for session_id in ("s-ben-1", workload.LIVE_SESSION):
        expected = api(f"/api/sessions/{session_id}")["tasks"]
        open_page(page, f"/sessions/{session_id}")
        rows = list_rows(page, SESSION_TURNS)
        assert_rows_match(rows, expected, "task_id", f"/sessions/{session_id}", cells=False)
        text = page.locator("body").inner_text()
        for task in expected:
            assert task["input"] in text, f"{session_id}: {task['input']!r} not shown"


@pytest.mark.parametrize(("path", "api_path"), [
    ("/sessions/s-ben-1", "/api/sessions/s-ben-1"),
    (f"/sessions/{workload.LIVE_SESSION}", f"/api/sessions/{workload.LIVE_SESSION}"),
    ("/users/" + quote("ana@example.com", safe=""),
     "/api/users/" + quote("ana@example.com", safe="")),
    ("/tasks/t-ben-1-3", "/api/tasks/t-ben-1-3"),
    (f"/tasks/{NOW_TASK}", f"/api/tasks/{NOW_TASK}"),
])
def test_detail_fields_equal_api(page: Page, api: Api, path: str, api_path: str) -> None:
    """A detail page's figures (``data-field`` outside its lists) are the API's."""
    open_page(page, path)
    assert assert_fields_match(page, api(api_path)) >= 3, f"{path}: few data-field figures"


def test_live_session_shows_the_steps(page: Page) -> None:
    """A task page shows its child spans (the retrieval and the LLM call) and its error."""
    open_page(page, f"/tasks/{NOW_TASK}")
    text = page.locator("body").inner_text()
    assert "retrieve" in text and "gpt-4o" in text, "the task's steps are not shown"
    assert "model unavailable" in text or "error" in text.lower()


def test_user_page_lists_their_sessions(page: Page, api: Api) -> None:
    user = api("/api/users/" + quote("ana@example.com", safe=""))
    open_page(page, "/users/" + quote("ana@example.com", safe=""))
    rows = list_rows(page, "sessions")
    assert {r.id for r in rows} == set(workload.USERS["ana@example.com"])
    assert_rows_match(rows, user["sessions"], "session_id", "/users/ana@example.com")


@pytest.mark.parametrize("user_id", sorted(workload.USERS))
def test_clicking_a_user_row_opens_the_user(page: Page, api: Api, user_id: str) -> None:
    """Clicking a row of /users opens /users/<id> listing that user's sessions."""
    open_page(page, "/users")
    row = page.locator(f'table[data-list="users"] tr[data-id="{user_id}"]')
    assert row.count() == 1, f"no row for {user_id}"
    cell = row.locator('td[data-field="user_id"]')
    (cell if cell.count() else row).first.click()
    page.wait_for_url(lambda url: unquote(urlsplit(url).path) == f"/users/{user_id}")
    wait_ready(page)
    sessions = api("/api/users/" + quote(user_id, safe=""))["sessions"]
    assert {r.id for r in list_rows(page, "sessions")} == {s["session_id"] for s in sessions}
    assert {s["session_id"] for s in sessions} == set(workload.USERS[user_id])


def test_sorting_by_a_column_link(page: Page, api: Api) -> None:
    """A column's sort link reorders the list as the API's ``sort``."""
    open_page(page, "/sessions")
    default = [r.id for r in list_rows(page, "sessions")]
    link = page.locator('table[data-list="sessions"] a[href*="sort=task_count"]').first
    assert link.count() == 1, "no sort link for task_count in the sessions table"
    link.click()
    page.wait_for_url(lambda url: "sort=task_count" in url)
    wait_ready(page)
    query = dict(page_query(page))
    expected = api("/api/sessions", **query)
    rows = list_rows(page, "sessions")
    assert_rows_match(rows, expected["items"], "session_id", page.url)
    assert [r.id for r in rows] != default, "sorting by task_count changed nothing"
    counts = [s["task_count"] for s in expected["items"]]
    assert counts == sorted(counts, reverse=query.get("order", "desc") == "desc")


def test_paging(page: Page, api: Api) -> None:
    """``limit``/``offset`` pages, and the ``rel=next`` link walks the whole list."""
    open_page(page, "/tasks?limit=10&offset=10")
    expected = api("/api/tasks", limit=10, offset=10)
    assert_rows_match(list_rows(page, "tasks"), expected["items"], "task_id", "offset=10")
    open_page(page, "/tasks?limit=10")
    seen: list[str] = []
    for _ in range(5):
        rows = list_rows(page, "tasks")
        assert_rows_match(rows, api("/api/tasks", **dict(page_query(page)))["items"],
                          "task_id", page.url)
        seen += [r.id for r in rows]
        following = page.locator('a[rel="next"]')
        if following.count() == 0:
            break
        with page.expect_navigation():
            following.first.click()
        wait_ready(page)
    assert len(seen) == workload.TASKS == len(set(seen)), "the pages do not cover the list"


def _export_links(page: Page, name: str) -> dict[str, str]:
    out = {}
    for fmt in ("csv", "jsonl"):
        link = page.locator(f'a[href*="/api/{name}"][href*="format={fmt}"]')
        assert link.count() >= 1, f"{page.url}: no export link for {fmt}"
        href = link.first.get_attribute("href")
        assert href
        out[fmt] = href
    return out


@pytest.mark.parametrize(("name", "query"), [("tasks", {"user_id": "ben"}),
                                             ("sessions", {"metadata.version_id": "1.1.0"}),
                                             ("users", {})])
def test_export_links(page: Page, api: Api, server: LiveServer, name: str,
                      query: dict[str, str]) -> None:
    """The list's CSV and JSONL links carry its filters and answer the whole list."""
    open_page(page, f"/{name}" + (f"?{urlencode(query)}" if query else ""))
    expected = api(f"/api/{name}", limit=1000, **query)
    ids = {str(i[ID_FIELD[name]]) for i in expected["items"]}
    links = _export_links(page, name)
    for fmt, href in links.items():
        link_query = dict(parse_qsl(urlsplit(href).query))
        for k, v in query.items():
            assert link_query.get(k) == v, f"{fmt} link {href} lacks {k}={v}"
        response = page.request.get(href)
        assert response.ok, f"{href}: {response.status}"
        body = response.text()
        content_type = response.headers["content-type"]
        if fmt == "csv":
            assert content_type.startswith("text/csv"), content_type
            exported = list(csv.DictReader(io.StringIO(body)))
            got = {r[ID_FIELD[name]] for r in exported}
        else:
            assert content_type.startswith("application/x-ndjson"), content_type
            lines: list[dict[str, Any]] = [json.loads(x) for x in body.splitlines() if x]
            got = {str(x[ID_FIELD[name]]) for x in lines}
        assert got == ids, f"{fmt}: the export is not the filtered list"


def test_insights_charts(page: Page, api: Api, screenshot: Screenshot) -> None:
    """Each chart has its canvas and a JSON config; one draws the API's sessions per day."""
    open_page(page, "/insights")
    charts = chart_configs(page)
    assert len(charts) >= 5, f"only these charts: {sorted(charts)}"
    drawn = page.evaluate("""() => [...document.querySelectorAll('canvas[data-chart]')]
        .filter((c) => c.width > 0 && c.height > 0).length""")
    assert drawn == len(charts), "a chart's canvas was not drawn"
    per_day = {d["date"]: d["sessions"] for d in api("/api/insights/sessions")
               ["sessions_per_day"]}
    assert len(per_day) >= 5
    assert any(_shows(c, per_day) for c in charts.values()), (
        f"no chart shows the API's sessions per day {per_day}")


def _shows(config: dict[str, Any], per_day: dict[str, int]) -> bool:
    """Whether a chart's config has a dataset whose non-zero values by date label (its
    first 10 characters: days with no session may be drawn as 0) are ``per_day``."""
    data = config.get("data", {})
    labels = [str(x) for x in data.get("labels", [])]
    for dataset in data.get("datasets", []):
        values = dataset.get("data", [])
        if len(values) == len(labels) and {
                label[:10]: v for label, v in zip(labels, values, strict=True) if v} == per_day:
            return True
    return False


def test_time_range_applies_to_insights(page: Page, api: Api) -> None:
    """/insights?from=&to= charts the same range as the API."""
    tasks = api("/api/tasks", limit=1000, sort="start_time", order="asc")["items"]
    query = {"from": tasks[0]["start_time"], "to": tasks[12]["start_time"]}
    per_day = {d["date"]: d["sessions"] for d in api("/api/insights/sessions", **query)
               ["sessions_per_day"]}
    assert len(per_day) < len(api("/api/insights/sessions")["sessions_per_day"]), (
        "the range selects every day: the data set cannot tell")
    open_page(page, "/insights?" + urlencode(query))
    assert any(_shows(c, per_day) for c in chart_configs(page).values()), (
        f"no chart shows the range's sessions per day {per_day}")
