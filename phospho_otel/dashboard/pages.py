"""The dashboard's pages: each one runs ``api.views`` view functions (the same ones, with
the same parameters, as ``/api``) and renders their JSON with a template.

A page's query string is its view's query string, so every page is a shareable URL and
the numbers on it are the API's for the same filters. Two conveniences of HTML forms are
folded in first (``view_query``): empty fields are dropped, and a ``meta`` field
``key=value`` becomes ``metadata.key=value``; a query that needed either is redirected
to its clean form. The time range (``from``, ``to``) follows every link between pages.

Bad parameters render the page's error (400), unknown ids a 404 page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from phospho_otel.api.params import DEFAULT_LIMIT, MAX_OFFSET
from phospho_otel.api.views import ViewContext, run_view, view_named
from phospho_otel.dashboard import charts
from phospho_otel.dashboard.auth import CSRF_COOKIE, CsrfGuard
from phospho_otel.dashboard.cells import Column, badge, render_cell
from phospho_otel.dashboard.rendering import render
from phospho_otel.errors import ServerError
from phospho_otel.model.analysis import (
    END_REASONS,
    EVALUATION_LABELS,
    SESSION_STATES,
    USER_CLASSES,
)
from phospho_otel.store.api import TASK_FLAGS

__all__ = ["Dashboard", "view_query"]

SESSION_PAGE_TURNS = 100
"""Tasks a session's page shows at once (``offset`` pages through longer sessions)."""
USER_PAGE_ROWS = 50
"""Latest sessions and tasks a user's page lists (the lists link to the rest)."""
RANGE_KEYS = ("from", "to")
"""Parameters every page keeps in its links."""
Filter = tuple[str, str, Sequence[str] | None]
"""A list filter: parameter, label, and its choices (None: free text)."""
PRESETS = (("24 h", timedelta(hours=24)), ("7 days", timedelta(days=7)),
           ("30 days", timedelta(days=30)), ("90 days", timedelta(days=90)))


SESSION_COLUMNS = (
    Column("session_id", "Session", "session_id", "session_link"),
    Column("user_id", "User", None, "user_link"),
    Column("start_time", "Started", "start_time", "when"),
    Column("task_count", "Tasks", "task_count", "number"),
    Column("duration_s", "Duration", "duration_s", "duration"),
    Column("state", "State", None, "badge"),
    Column("end_reason", "End reason", None, "badge"),
    Column("evaluation.label", "Evaluation", None, "badge"),
    Column("usage", "Tokens in / out", "tokens", "tokens"),
    Column("usage.cost", "Cost", "cost", "cost"),
    Column("last_input", "Last input", None, "clip"),
)
USER_COLUMNS = (
    Column("user_id", "User", "user_id", "user_link"),
    Column("task_count", "Tasks", "task_count", "number"),
    Column("session_count", "Sessions", "session_count", "number"),
    Column("avg_session_duration_s", "Avg session", None, "duration"),
    Column("success_rate", "Success rate", "success_rate", "percent"),
    Column("usage", "Tokens in / out", "tokens", "tokens"),
    Column("usage.cost", "Cost", "cost", "cost"),
    Column("first_seen", "First seen", "first_seen", "when"),
    Column("last_seen", "Last seen", "last_seen", "when"),
    Column("classes", "Classes", None, "classes"),
)
TASK_COLUMNS = (
    Column("task_id", "Task", None, "task_link"),
    Column("start_time", "Started", "start_time", "when"),
    Column("input", "Input", None, "clip"),
    Column("output", "Output", None, "clip"),
    Column("user_id", "User", None, "user_link"),
    Column("session_id", "Session", None, "session_link"),
    Column("evaluation.label", "Evaluation", None, "badge"),
    Column("flag", "Feedback", None, "badge"),
    Column("events", "Events", None, "events"),
    Column("usage", "Tokens in / out", "tokens", "tokens"),
    Column("usage.cost", "Cost", "cost", "cost"),
    Column("duration_s", "Duration", None, "duration"),
)


def view_query(items: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], bool]:
    """The query for the view (see the module doc), and whether it differs from
    ``items``."""
    out: list[tuple[str, str]] = []
    changed = False
    for name, value in items:
        value = value.strip()
        if value == "":
            changed = True
        elif name == "meta":
            changed = True
            key, sep, wanted = value.partition("=")
            if sep and key.strip():
                out.append((f"metadata.{key.strip()}", wanted.strip()))
            else:  # left for the view to refuse, naming the parameter
                out.append(("metadata.", value))
        else:
            out.append((name, value))
    return out, changed


class Links:
    """URLs of the current page with some parameters changed (the templates' ``link``)."""

    def __init__(self, path: str, query: list[tuple[str, str]]) -> None:
        self.path = path
        self.query = query

    def __call__(self, path: str | None = None, **changes: Any) -> str:
        """This page (or ``path``, keeping only the time range), with ``changes``
        (None removes a parameter). Changing a filter starts again at the first page."""
        keep = self.query if path is None else [(k, v) for k, v in self.query
                                                 if k in RANGE_KEYS]
        changes = {k.rstrip("_"): v for k, v in changes.items()}
        if path is None and not ({"offset", "cursor"} & changes.keys()):
            changes.setdefault("offset", None)
            changes.setdefault("cursor", None)
        items = [(k, v) for k, v in keep if k not in changes]
        items += [(k, str(v)) for k, v in changes.items() if v is not None]
        query = urlencode(items)
        return (path or self.path) + ("?" + query if query else "")

    def value(self, name: str) -> str:
        """The current value of a parameter ("" when not given)."""
        for k, v in reversed(self.query):
            if k == name:
                return v
        return ""

    def metadata(self) -> list[tuple[str, str]]:
        return [(k.removeprefix("metadata."), v) for k, v in self.query
                if k.startswith("metadata.")]


def _raw_path(request: Request) -> str:
    """The request's path as sent (ids percent-encoded as in the link that led here)."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else request.url.path


def _presets(now: datetime) -> list[tuple[str, str]]:
    now = now.replace(second=0, microsecond=0)
    return [(label, (now - delta).strftime("%Y-%m-%dT%H:%M")) for label, delta in PRESETS]


class Dashboard:
    """The pages over one ``ViewContext`` (see the module doc); ``csrf`` signs the forms,
    ``login`` says whether pages show a log-out button."""

    def __init__(self, views: ViewContext, csrf: CsrfGuard, *, login: bool) -> None:
        self.views = views
        self.csrf = csrf
        self.login = login

    # ------------------------------------------------------------------ plumbing

    def _view(self, name: str, query: Iterable[tuple[str, str]],
              **path_params: str) -> dict[str, Any]:
        return run_view(view_named(name), self.views, path_params, query)

    def _page(self, request: Request, template: str, tab: str,
              query: list[tuple[str, str]], status: int = 200,
              **context: Any) -> Response:
        cookie = request.cookies.get(CSRF_COOKIE)
        new_cookie = None
        if not cookie:
            cookie = new_cookie = CsrfGuard.new_cookie()
        links = Links(_raw_path(request), query)
        html = render(
            template, tab=tab, link=links, csrf_token=self.csrf.form_token(cookie),
            login=self.login, presets=_presets(datetime.now(timezone.utc)),
            cell=render_cell, badge=badge,
            here=links.path + ("?" + urlencode(query) if query else ""), **context)
        response = HTMLResponse(html, status_code=status)
        if new_cookie:
            response.set_cookie(CSRF_COOKIE, new_cookie, httponly=True, samesite="strict",
                                path="/")
        return response

    def _guarded(self, request: Request, tab: str,
                 build: Callable[[list[tuple[str, str]]], tuple[str, dict[str, Any]]]
                 ) -> Response:
        query, changed = view_query(request.query_params.multi_items())
        if changed:
            clean = _raw_path(request) + ("?" + urlencode(query) if query else "")
            return RedirectResponse(clean, status_code=303)
        try:
            template, context = build(query)
        except ServerError as exc:
            return self._page(request, "error.html", tab, query, status=exc.status,
                              title=f"Error {exc.status}", message=exc.message)
        return self._page(request, template, tab, query, **context)

    @staticmethod
    def _paging(query: list[tuple[str, str]], result: Mapping[str, Any]) -> dict[str, Any]:
        given = dict(query)
        limit = int(given.get("limit", DEFAULT_LIMIT))
        offset = None if "cursor" in given else int(given.get("offset", 0))
        shown = len(result["items"])
        nxt: dict[str, Any] | None = None
        if result["next_cursor"]:
            if offset is not None and offset + limit <= MAX_OFFSET \
                    and result["searched_to"] is None:
                nxt = {"offset": offset + limit}
            else:
                nxt = {"cursor": result["next_cursor"], "offset": None}
        prev = {"offset": max(0, offset - limit) or None} if offset else None
        first = offset + 1 if offset is not None and shown else None
        return {"offset": offset, "limit": limit, "next": nxt, "prev": prev,
                "first_row": first, "last_row": (offset or 0) + shown if shown else None,
                "total": result["total"]}

    def _events(self) -> tuple[str, ...]:
        return tuple(e["name"] for e in self._view("list_events", [])["events"])

    # ------------------------------------------------------------------ lists

    def _list(self, request: Request, name: str, columns: Sequence[Column],
              filters: Callable[[], list[Filter]]) -> Response:
        """The tab listing ``name`` (``sessions``, ``users``, ``tasks``) through its view
        ``list_<name>``, whose path is the export link and whose ``sort`` default is the
        page's."""
        view = view_named(f"list_{name}")
        default_sort = next(p.default for p in view.params if p.name == "sort")

        def build(query: list[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
            result = run_view(view, self.views, {}, query)
            return "list.html", {
                "title": name.capitalize(), "list_name": name, "result": result,
                "columns": columns, "id_field": f"{name[:-1]}_id",
                "paging": self._paging(query, result), "default_sort": default_sort,
                "filters": filters(), "export": view.path}
        return self._guarded(request, name, build)

    def sessions(self, request: Request) -> Response:
        return self._list(request, "sessions", SESSION_COLUMNS, lambda: [
            ("user_id", "User", None), ("state", "State", SESSION_STATES),
            ("end_reason", "End reason", END_REASONS),
            ("evaluation", "Evaluation", EVALUATION_LABELS),
            ("event", "Event", self._events())])

    def users(self, request: Request) -> Response:
        return self._list(request, "users", USER_COLUMNS, lambda: [
            ("user_id", "User", None), ("class", "Class", USER_CLASSES)])

    def tasks(self, request: Request) -> Response:
        return self._list(request, "tasks", TASK_COLUMNS, lambda: [
            ("q", "Text", None), ("user_id", "User", None), ("session_id", "Session", None),
            ("event", "Event", self._events()),
            ("evaluation", "Evaluation", EVALUATION_LABELS),
            ("flag", "Feedback", TASK_FLAGS)])

    # ------------------------------------------------------------------ one item

    def session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]

        def build(query: list[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
            session = self._view("get_session", [
                ("steps", "true"), ("limit", str(SESSION_PAGE_TURNS)),
                *[(k, v) for k, v in query if k not in RANGE_KEYS]], session_id=session_id)
            given = dict(query)  # checked by the view: integers in range
            first, size = int(given.get("offset", 0)), int(given.get("limit",
                                                                      SESSION_PAGE_TURNS))
            last = first + len(session["tasks"])
            turns = {"first": first + 1, "last": last,
                     "prev": max(0, first - size) if first else None,
                     "next": first + size if last < session["task_count"] else None}
            return "session.html", {"title": f"Session {session_id}", "session": session,
                                    "turns": turns}
        return self._guarded(request, "sessions", build)

    def user(self, request: Request) -> Response:
        user_id = request.path_params["user_id"]

        def build(query: list[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
            user = self._view("get_user", [("limit", str(USER_PAGE_ROWS))], user_id=user_id)
            return "user.html", {
                "title": f"User {user_id}", "user": user,
                "session_columns": [c for c in SESSION_COLUMNS if c.field != "user_id"],
                "task_columns": [c for c in TASK_COLUMNS if c.field != "user_id"],
                "activity": charts.activity(user["tasks_per_day"])}
        return self._guarded(request, "users", build)

    def task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]

        def build(query: list[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
            task = self._view("get_task", [("steps", "true")], task_id=task_id)
            return "task.html", {"title": f"Task {task_id}", "task": task}
        return self._guarded(request, "tasks", build)

    # ------------------------------------------------------------------ insights

    def insights(self, request: Request) -> Response:
        def build(query: list[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
            given = dict(query)
            unknown = set(given) - set(RANGE_KEYS)
            ranged = [(k, v) for k, v in query if k in RANGE_KEYS]
            if unknown:  # refused by the views' own rules, naming the parameter
                self._view("sessions_insights", query)
            sessions = self._view("sessions_insights", ranged)
            users = self._view("users_insights", ranged)
            retention = self._view("retention", [])
            events = self._view("list_events", [])
            return "insights.html", {
                "title": "Insights", "sessions": sessions, "users": users,
                "retention": retention, "events": events,
                "charts": charts.insights_charts(sessions, users, retention, events),
                "heatmap": charts.retention_heatmap(retention)}
        return self._guarded(request, "insights", build)
