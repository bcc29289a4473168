"""Handlers of ``GET /api/...``: parse and check the query string, run a ``store.queries``
function on a reader connection, answer JSON.

Handlers are plain functions: Starlette runs them in its thread pool, so SQLite reads never
block the event loop that ingest runs on. Bad parameters raise ``BadRequest`` (400), unknown
ids ``NotFound`` (404); ``errors.py`` turns both into JSON.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
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

__all__ = [
    "DEFAULT_INSIGHTS_MAX_AGE_S",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "InsightsCache",
    "view_routes",
]

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_OFFSET = 10_000
"""Deeper pages go by ``cursor``: an offset costs a scan of the rows it skips."""
DEFAULT_INSIGHTS_MAX_AGE_S = 2.0
"""How old (seconds) a served insight result may be when the data has changed since it
was computed; ``view_routes(insights_max_age_s=...)``, or per request ``?max_age_s=``."""
MAX_INSIGHTS_MAX_AGE_S = 3600.0

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

    def number(self, name: str, default: float | None, lo: float, hi: float) -> float | None:
        raw = self.values.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise BadRequest(f"{name}: not a number: {raw!r}") from None
        if not lo <= value <= hi:  # also refuses nan
            raise BadRequest(f"{name}: must be between {lo:g} and {hi:g}, got {raw}")
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


@dataclass
class _Entry:
    result: dict[str, Any]
    version: float  # queries.data_version in the snapshot the result was computed in
    started: float  # time.monotonic() when that snapshot was taken
    computed_at: str  # the same instant, ISO-8601 UTC


@dataclass
class _Flight:
    """One computation under way; requests wanting its key wait for it."""

    done: threading.Event = field(default_factory=threading.Event)
    entry: _Entry | None = None
    error: BaseException | None = None


class InsightsCache:
    """Insight results by (query, parameters), served with bounded staleness.

    Insights aggregate every session in range (~100 ms at 100,000 sessions), and under
    steady ingest the data changes many times a second, so a result is reused while it
    is younger than ``max_age_s`` (age counted from the snapshot it was computed on):

    * data unchanged since the result was computed (``queries.data_version``): served,
      whatever its age: an idle store answers fresh figures from the cache;
    * younger than ``max_age_s / 2``: served, without even looking at the store;
    * between ``max_age_s / 2`` and ``max_age_s``, data changed: served, and one
      background thread recomputes it (stale-while-revalidate), so that under steady
      requests the result is renewed before it expires;
    * older than ``max_age_s`` (or none yet), data changed: recomputed in the request.

    So a served result is never older than ``max_age_s`` unless the data has not changed
    since. At most one computation per key runs at a time (a request needing a key being
    computed waits for that computation), and at most one background refresh at a time
    in all. The least recently used of more than ``max_entries`` keys is dropped.
    Thread-safe.
    """

    def __init__(self, store: SQLiteStore, *, max_age_s: float = DEFAULT_INSIGHTS_MAX_AGE_S,
                 max_entries: int = 64) -> None:
        if max_age_s < 0:
            raise ValueError(f"max_age_s must be >= 0, got {max_age_s}")
        self.store = store
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self._flights: dict[tuple[Any, ...], _Flight] = {}
        self._refreshing = False  # a background refresh is running

    def __len__(self) -> int:
        """Number of results held."""
        with self._lock:
            return len(self._entries)

    def get(self, fn: Callable[..., dict[str, Any]], *, max_age_s: float | None = None,
            **kwargs: Any) -> dict[str, Any]:
        """``fn(conn, **kwargs)``, or a cached copy of it no older than ``max_age_s``
        (default: the cache's), with ``computed_at`` and ``max_age_s`` added."""
        max_age = self.max_age_s if max_age_s is None else max_age_s
        key = (fn.__name__, *sorted(kwargs.items()))
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry.started >= max_age / 2:
            with self.store.reader() as conn:
                version = queries.data_version(conn)
            age = time.monotonic() - entry.started
            if version != entry.version:
                if age >= max_age:
                    entry = None
                else:
                    self._refresh_in_background(key, fn, kwargs)
        if entry is None:
            entry = self._compute(key, fn, kwargs)
        else:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
        result = copy.deepcopy(entry.result)
        result["computed_at"] = entry.computed_at
        result["max_age_s"] = max_age
        return result

    def _compute(self, key: tuple[Any, ...], fn: Callable[..., dict[str, Any]],
                 kwargs: dict[str, Any]) -> _Entry:
        """Compute ``key`` now, or wait for the computation of it already under way."""
        with self._lock:
            flight = self._flights.get(key)
            owner = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if owner:
            self._run(key, flight, fn, kwargs)
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        assert flight.entry is not None
        return flight.entry

    def _run(self, key: tuple[Any, ...], flight: _Flight,
             fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any]) -> None:
        try:
            with self.store.reader() as conn, queries.snapshot(conn):
                started = time.monotonic()
                computed_at = queries.ns_to_iso(time.time_ns())
                version = queries.data_version(conn)
                result = fn(conn, **kwargs)
            flight.entry = _Entry(result, version, started, computed_at or "")
            with self._lock:
                self._entries[key] = flight.entry
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        except BaseException as exc:
            flight.error = exc
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def _refresh_in_background(self, key: tuple[Any, ...], fn: Callable[..., dict[str, Any]],
                               kwargs: dict[str, Any]) -> None:
        with self._lock:
            if self._refreshing or key in self._flights:
                return
            self._refreshing = True
            flight = self._flights[key] = _Flight()

        def refresh() -> None:
            try:
                self._run(key, flight, fn, kwargs)
                if flight.error is not None:
                    logger.warning("insights refresh of %s failed: %s", key[0], flight.error)
            finally:
                with self._lock:
                    self._refreshing = False

        threading.Thread(target=refresh, name="insights-refresh", daemon=True).start()


def view_routes(store: SQLiteStore, settings: ServerSettings, *,
                insights_max_age_s: float | None = None) -> list[BaseRoute]:
    """The ``/api/...`` view routes over ``store``. Insights are served from an
    ``InsightsCache`` with ``insights_max_age_s`` (default: the settings')."""
    if insights_max_age_s is None:
        insights_max_age_s = settings.insights_max_age_s
    cache = InsightsCache(store, max_age_s=insights_max_age_s)

    def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with store.reader() as conn, queries.snapshot(conn):
            try:
                return fn(conn, *args, **kwargs)
            except InvalidQuery as exc:
                raise BadRequest(str(exc)) from None

    def run_cached(fn: Callable[..., dict[str, Any]], p: _Params,
                   **kwargs: Any) -> dict[str, Any]:
        max_age = p.number("max_age_s", None, 0.0, MAX_INSIGHTS_MAX_AGE_S)
        try:
            return cache.get(fn, max_age_s=max_age, **kwargs)
        except InvalidQuery as exc:
            raise BadRequest(str(exc)) from None

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
        p = _Params(request, (*_RANGE_PARAMS, "user_id", "top", "max_age_s"))
        start, end = p.time_range()
        return JSONResponse(run_cached(queries.session_insights, p, from_ns=start, to_ns=end,
                                       user_id=p.text("user_id"),
                                       top_inputs=p.integer("top", 5, 1, 100)))

    def user_insights(request: Request) -> Response:
        p = _Params(request, (*_RANGE_PARAMS, "top", "max_age_s"))
        start, end = p.time_range()
        result = run_cached(queries.user_insights, p, from_ns=start, to_ns=end,
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
