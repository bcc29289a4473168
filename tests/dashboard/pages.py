"""Reading the dashboard's pages the way the tests compare them with the API, by the page
conventions (the issue 12 brief): lists are ``<table data-list="sessions|users|tasks">``
with rows ``<tr data-id>`` and cells ``<td data-field data-value>``, the total in an
element with ``data-total``, charts ``<canvas data-chart>`` with their config in a
``<script type="application/json" data-chart-config>``, and a page is ready when
``document.body.dataset.ready === "1"``.

Also ``PageProblems``: what a page did wrong while a test used it (console errors,
uncaught exceptions, failed or 4xx/5xx requests), which the ``page`` fixtures fail on.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from playwright.sync_api import ConsoleMessage, Page, Request, Response

__all__ = [
    "READY",
    "ListRow",
    "PageProblems",
    "assert_fields_match",
    "assert_rows_match",
    "chart_configs",
    "list_rows",
    "list_total",
    "open_page",
    "page_query",
    "value_matches",
    "wait_ready",
]

READY = "() => document.body !== null && document.body.dataset.ready === '1'"
"""The page-ready condition of the conventions, as a Playwright function."""

_ROWS_JS = """(name) => {
  const list = document.querySelector(`[data-list="${name}"]`);
  if (list === null) return null;
  const rows = [...list.querySelectorAll('[data-id]')].filter(
    (row) => row.closest('[data-list]') === list);
  return rows.map((row) => ({
    id: row.dataset.id,
    cells: [...row.querySelectorAll('[data-field]')].filter(
      (cell) => cell.closest('[data-id]') === row).map((cell) => [
        cell.dataset.field,
        cell.hasAttribute('data-value') ? cell.getAttribute('data-value') : null,
      ]),
  }));
}"""

_FIELDS_JS = """() => [...document.querySelectorAll('[data-field]')]
  .filter((el) => el.closest('[data-list]') === null)
  .map((el) => [el.dataset.field,
                el.hasAttribute('data-value') ? el.getAttribute('data-value') : null,
                el.textContent])"""

_CHARTS_JS = """() => [...document.querySelectorAll('script[data-chart-config]')].map((s) => [
  s.dataset.chartConfig, s.textContent,
  document.querySelector(`canvas[data-chart="${s.dataset.chartConfig}"]`) !== null,
])"""


@dataclass
class PageProblems:
    """What went wrong on a page: console errors, uncaught exceptions (``pageerror``),
    requests that failed or answered 4xx/5xx. ``allowed_statuses`` are expected answers
    (a wrong token's 401), not problems, nor the console line Chromium logs for them."""

    allowed_statuses: tuple[int, ...] = ()
    problems: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught exception: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = message.text
        if any(f"status of {s} " in text for s in self.allowed_statuses):
            return
        self.problems.append(f"console error: {text} (at {message.location.get('url')})")

    def _failed(self, request: Request) -> None:
        reason = request.failure or "?"
        if "ERR_ABORTED" in reason:  # a navigation superseded by the next one
            return
        self.problems.append(f"request failed: {request.method} {request.url}: {reason}")

    def _response(self, response: Response) -> None:
        if response.status >= 400 and response.status not in self.allowed_statuses:
            self.problems.append(
                f"HTTP {response.status}: {response.request.method} {response.url}")


def wait_ready(page: Page, timeout_ms: float = 10_000) -> None:
    """Wait until the page says it is ready (``document.body.dataset.ready === "1"``)."""
    page.wait_for_function(READY, timeout=timeout_ms)


def open_page(page: Page, path: str) -> Response:
    """Navigate to ``path`` (relative to the context's base URL), check that the answer is
    a 2xx page and wait until it is ready."""
    response = page.goto(path)
    assert response is not None, f"no response for {path}"
    assert response.ok, f"{path}: HTTP {response.status}"
    wait_ready(page)
    return response


def page_query(page: Page) -> list[tuple[str, str]]:
    """The query parameters of the page's current URL, in order."""
    return parse_qsl(urlsplit(page.url).query, keep_blank_values=True)


@dataclass(frozen=True)
class ListRow:
    """A ``<tr data-id>`` of a list, with its cells' ``data-field`` -> ``data-value``
    (None when a cell has no ``data-value``)."""

    id: str
    cells: tuple[tuple[str, str | None], ...]


def list_rows(page: Page, name: str) -> list[ListRow]:
    """The rows (``[data-id]``) of the page's ``data-list=name`` element (a table, or
    another list such as a session's conversation) with their own ``data-field`` cells;
    fails if there is no such list."""
    raw = page.evaluate(_ROWS_JS, name)
    assert raw is not None, f"{page.url}: no data-list={name!r}"
    return [ListRow(r["id"], tuple((f, v) for f, v in r["cells"])) for r in raw]


def list_total(page: Page) -> int:
    """The list's total: the ``data-total`` attribute's value, or (when empty) the integer
    in its element's text."""
    element = page.locator("[data-total]").first
    assert element.count() == 1, f"{page.url}: no element with data-total"
    value = element.get_attribute("data-total") or ""
    if not value.strip():
        digits = re.sub(r"[^\d]", "", element.inner_text())
        assert digits, f"{page.url}: data-total holds no number"
        value = digits
    return int(value.replace(",", "").strip())


def _field(item: dict[str, Any], path: str) -> tuple[bool, Any]:
    """(found, value) of a possibly dotted field (``evaluation.label``) of an API item; a
    field under a null object (no evaluation yet) is null."""
    value: Any = item
    for part in path.split("."):
        if value is None:
            return True, None
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def value_matches(api_value: Any, cell_value: str | None) -> bool:
    """Whether a cell's ``data-value`` is the API's value: strings exactly, None as a
    missing, empty or ``null`` value, anything else as JSON (numbers to 1e-9)."""
    if isinstance(api_value, str):
        return cell_value == api_value
    if api_value is None:
        return cell_value in (None, "", "null")
    if cell_value is None:
        return False
    try:
        parsed = json.loads(cell_value)
    except ValueError:
        return False
    if isinstance(api_value, bool) or isinstance(parsed, bool):
        return parsed is api_value
    if isinstance(api_value, (int, float)) and isinstance(parsed, (int, float)):
        return math.isclose(parsed, api_value, rel_tol=1e-9, abs_tol=1e-12)
    return bool(parsed == api_value)


def assert_rows_match(rows: list[ListRow], items: list[dict[str, Any]], id_field: str,
                      where: str, *, cells: bool = True) -> None:
    """The page's rows are the API's items, in order, and every cell holds its item's
    field (``cells``: each row must have some)."""
    assert [r.id for r in rows] == [str(i[id_field]) for i in items], (
        f"{where}: the page's rows are not the API's items (page, API)")
    for row, item in zip(rows, items, strict=True):
        assert row.cells or not cells, f"{where}: row {row.id} has no data-field cell"
        for name, cell in row.cells:
            found, api_value = _field(item, name)
            assert found, f"{where}: row {row.id}: data-field={name!r} is no field of the API"
            assert value_matches(api_value, cell), (
                f"{where}: row {row.id}: {name} is {cell!r} on the page, {api_value!r} in "
                "the API")


def assert_fields_match(page: Page, item: dict[str, Any]) -> int:
    """Every ``data-field`` outside the page's lists holds the API item's field: its
    ``data-value``, else (a text field) its text; answers how many were compared."""
    compared = 0
    for name, value, text in page.evaluate(_FIELDS_JS):
        found, api_value = _field(item, name)
        assert found, f"{page.url}: data-field={name!r} is no field of the API"
        if value is None:
            assert isinstance(api_value, str | None), (
                f"{page.url}: {name} has no data-value and is not text")
            assert (text or "").strip() == (api_value or "").strip(), (
                f"{page.url}: {name} shows {text!r}, the API has {api_value!r}")
        else:
            assert value_matches(api_value, value), (
                f"{page.url}: {name} is {value!r} on the page, {api_value!r} in the API")
        compared += 1
    return compared


def chart_configs(page: Page) -> dict[str, dict[str, Any]]:
    """Each chart's Chart.js config (parsed), by name; fails if a config is not JSON or
    has no ``<canvas data-chart>`` of its name."""
    out: dict[str, dict[str, Any]] = {}
    for name, text, has_canvas in page.evaluate(_CHARTS_JS):
        assert has_canvas, f"{page.url}: chart config {name!r} has no <canvas data-chart>"
        try:
            out[name] = json.loads(text)
        except ValueError as exc:
            raise AssertionError(f"{page.url}: chart config {name!r} is not JSON: {exc}") \
                from None
    return out
