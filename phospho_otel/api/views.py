"""Handlers of ``GET /api/...``: parse and check the query string, run a ``store.queries``
function on a reader connection, answer JSON.

Handlers are plain functions: Starlette runs them in its thread pool, so SQLite reads never
block the event loop that ingest runs on. Bad parameters raise ``BadRequest`` (400), unknown
ids ``NotFound`` (404); ``errors.py`` turns both into JSON.
"""

from __future__ import annotations

import copy
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from phospho_otel.api.errors import BadRequest, NotFound
from phospho_otel.api.jaeger import trace_links
from phospho_otel.server_settings import ServerSettings
from phospho_otel.store import queries
from phospho_otel.store.queries import InvalidQuery, Page

if TYPE_CHECKING:
    from phospho_otel.store.sqlite import SQLiteStore

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "MAX_OFFSET", "view_routes"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_OFFSET = 10_000
"""Deeper pages go by ``cursor``: an offset costs a scan of the rows it skips."""

_PAGE_PARAMS = ("sort", "order", "limit", "offset", "cursor")
_RANGE_PARAMS = ("from", "to")


class _Params:
    """The query string of one request, checked against the names the endpoint accepts."""

    def __init__(self, request: Request, allowed: Collection[str]) -> None:
        self.values = request.query_params
        for name in self.values:
            if name not in allowed:
                raise BadRequest(
                    f"unknown parameter {name!r}; accepted: {', '.join(sorted(allowed)) or 'none'}"
                )

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is not None and value == "":
            raise BadRequest(f"{name}: must not be empty")
        return value

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.values.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"{name}: not an integer: {raw!r}") from None
        if not lo <= value <= hi:
            hint = "; page further with cursor" if name == "offset" and value > hi else ""
            raise BadRequest(f"{name}: must be between {lo} and {hi}, got {value}{hint}")
        return value

    def time_ns(self, name: str) -> int | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return queries.iso_to_ns(raw)
        except InvalidQuery:
            raise BadRequest(f"{name}: not an ISO-8601 time: {raw!r}") from None

    def time_range(self) -> tuple[int | None, int | None]:
        start, end = self.time_ns("from"), self.time_ns("to")
        if start is not None and end is not None and end <= start:
            raise BadRequest("to: must be later than from")
        return start, end

    def page(self, sorts: Collection[str], default_sort: str) -> Page:
        sort = self.text("sort") or default_sort
        if sort not in sorts:
            raise BadRequest(f"sort: must be one of {', '.join(sorts)}, got {sort!r}")
        order = self.text("order") or "desc"
        if order not in ("asc", "desc"):
            raise BadRequest(f"order: must be asc or desc, got {order!r}")
        limit = self.integer("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = self.integer("offset", 0, 0, MAX_OFFSET)
        raw_cursor = self.text("cursor")
        cursor = None
        if raw_cursor is not None:
            if "offset" in self.values:
                raise BadRequest("cursor: give either cursor or offset, not both")
            try:
                cursor = queries.decode_cursor(raw_cursor)
            except InvalidQuery as exc:
                raise BadRequest(str(exc)) from None
        return Page(sort=sort, descending=order == "desc", limit=limit, offset=offset,
                    cursor=cursor)


class _InsightsCache:
    """Insight results by (query, parameters), valid while ``queries.data_version`` is
    unchanged: insights aggregate every session in range, so on a large store they are
    computed once per change of the data, not once per request. Thread-safe."""

    MAX_ENTRIES = 128

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, dict[str, Any]]] = (
            OrderedDict()
        )

    def get(self, conn: sqlite3.Connection, fn: Callable[..., dict[str, Any]],
            **kwargs: Any) -> dict[str, Any]:
        key = (fn.__name__, *sorted(kwargs.items()))
        version = queries.data_version(conn)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == version:
                self._entries.move_to_end(key)
                return copy.deepcopy(hit[1])
        result = fn(conn, **kwargs)
        with self._lock:
            self._entries[key] = (version, copy.deepcopy(result))
            while len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)
        return result


def view_routes(store: SQLiteStore, settings: ServerSettings) -> list[BaseRoute]:
    """The ``/api/...`` view routes over ``store``."""

    cache = _InsightsCache()

    def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with store.reader() as conn, queries.snapshot(conn):
            try:
                return fn(conn, *args, **kwargs)
            except InvalidQuery as exc:
                raise BadRequest(str(exc)) from None

    def run_cached(fn: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        with store.reader() as conn, queries.snapshot(conn):
            return cache.get(conn, fn, **kwargs)

    def window(start: str | None, end: str | None) -> dict[str, int | None]:
        if start is None or end is None:
            return {}
        return {"start_ns": queries.iso_to_ns(start), "end_ns": queries.iso_to_ns(end)}

    def with_session_links(session: dict[str, Any]) -> dict[str, Any]:
        session["links"] = trace_links(
            settings, session_id=session["session_id"],
            **window(session["start_time"], session["end_time"]),
        )
        return session

    def with_user_links(user: dict[str, Any]) -> dict[str, Any]:
        user["links"] = trace_links(
            settings, user_id=user["user_id"], **window(user["first_seen"], user["last_seen"])
        )
        return user

    def list_sessions(request: Request) -> Response:
        p = _Params(request, (*_PAGE_PARAMS, *_RANGE_PARAMS, "user_id"))
        start, end = p.time_range()
        result = run(queries.list_sessions, page=p.page(queries.SESSION_SORTS, "start_time"),
                     from_ns=start, to_ns=end, user_id=p.text("user_id"))
        result["items"] = [with_session_links(s) for s in result["items"]]
        return JSONResponse(result)

    def get_session(request: Request) -> Response:
        p = _Params(request, ("limit", "offset"))
        session_id = request.path_params["session_id"]
        session = run(queries.get_session, session_id,
                      task_limit=p.integer("limit", MAX_LIMIT, 1, MAX_LIMIT),
                      task_offset=p.integer("offset", 0, 0, MAX_OFFSET))
        if session is None:
            raise NotFound(f"no session with id {session_id!r}")
        return JSONResponse(with_session_links(session))

    def list_users(request: Request) -> Response:
        p = _Params(request, (*_PAGE_PARAMS, *_RANGE_PARAMS, "user_id"))
        start, end = p.time_range()
        result = run(queries.list_users, page=p.page(queries.USER_SORTS, "last_seen"),
                     from_ns=start, to_ns=end, user_id=p.text("user_id"))
        result["items"] = [with_user_links(u) for u in result["items"]]
        return JSONResponse(result)

    def get_user(request: Request) -> Response:
        p = _Params(request, ("limit",))
        user_id = request.path_params["user_id"]
        user = run(queries.get_user, user_id, limit=p.integer("limit", 100, 1, MAX_LIMIT))
        if user is None:
            raise NotFound(f"no user with id {user_id!r}")
        user["sessions"] = [with_session_links(s) for s in user["sessions"]]
        return JSONResponse(with_user_links(user))

    def list_tasks(request: Request) -> Response:
        p = _Params(request, (*_PAGE_PARAMS, *_RANGE_PARAMS, "user_id", "session_id"))
        start, end = p.time_range()
        result = run(queries.list_tasks, page=p.page(queries.TASK_SORTS, "start_time"),
                     from_ns=start, to_ns=end, user_id=p.text("user_id"),
                     session_id=p.text("session_id"))
        return JSONResponse(result)

    def get_task(request: Request) -> Response:
        _Params(request, ())
        task_id = request.path_params["task_id"]
        task = run(queries.get_task, task_id)
        if task is None:
            raise NotFound(f"no task with id {task_id!r}")
        return JSONResponse(task)

    def session_insights(request: Request) -> Response:
        p = _Params(request, (*_RANGE_PARAMS, "user_id", "top"))
        start, end = p.time_range()
        return JSONResponse(run_cached(queries.session_insights, from_ns=start, to_ns=end,
                                       user_id=p.text("user_id"),
                                       top_inputs=p.integer("top", 5, 1, 100)))

    def user_insights(request: Request) -> Response:
        p = _Params(request, (*_RANGE_PARAMS, "top"))
        start, end = p.time_range()
        result = run_cached(queries.user_insights, from_ns=start, to_ns=end,
                            top=p.integer("top", 10, 1, 100))
        result["top_users"] = [with_user_links(u) for u in result["top_users"]]
        return JSONResponse(result)

    return [
        Route("/api/sessions", list_sessions, methods=["GET"]),
        Route("/api/sessions/{session_id:path}", get_session, methods=["GET"]),
        Route("/api/users", list_users, methods=["GET"]),
        Route("/api/users/{user_id:path}", get_user, methods=["GET"]),
        Route("/api/tasks", list_tasks, methods=["GET"]),
        Route("/api/tasks/{task_id:path}", get_task, methods=["GET"]),
        Route("/api/insights/sessions", session_insights, methods=["GET"]),
        Route("/api/insights/users", user_insights, methods=["GET"]),
    ]
