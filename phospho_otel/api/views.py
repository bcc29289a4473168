"""The ``/api`` views as functions, and their route table (``VIEWS``).

A view takes a ``ViewContext`` (the store, the insights cache, the Jaeger UI for links)
and the parsed arguments of its ``View.params``, reads one snapshot of the store, and
answers the documented JSON (``api.serialize``). The HTTP API (``api.routes``) and the
CLI (``phospho-otel sessions --db`` *and* ``--url``) call the same functions through
``run_view``, so they validate and answer identically; ``api.openapi`` documents the same
table. Bad parameters raise ``errors.BadRequest``, unknown ids ``errors.NotFound``.

A new view is one function and one ``View`` entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from phospho_otel.api import serialize
from phospho_otel.api.jaeger import trace_links
from phospho_otel.api.params import (
    MAX_LIMIT,
    MAX_OFFSET,
    Param,
    page_from,
    page_params,
    parse,
    range_params,
    time_range,
)
from phospho_otel.api.steps import task_steps
from phospho_otel.errors import BadRequest, NotFound
from phospho_otel.insights import InsightsCache, session_insights, user_insights
from phospho_otel.insights.cache import MAX_MAX_AGE_S
from phospho_otel.insights.config import InsightsConfig
from phospho_otel.insights.events import EventDefinition
from phospho_otel.insights.sessions import session_outcomes
from phospho_otel.insights.users import user_class_counts, user_retention
from phospho_otel.model.analysis import (
    END_REASONS,
    EVALUATION_LABELS,
    SESSION_STATES,
    USER_CLASSES,
)
from phospho_otel.model.rollup import SessionRollup
from phospho_otel.store.api import (
    METADATA_KEY_FORBIDDEN,
    METADATA_TEXT,
    SESSION_SORTS,
    TASK_FLAGS,
    TASK_SORTS,
    USER_SORTS,
    Page,
    SessionFilter,
    Store,
    StoreReader,
    TaskFilter,
    TaskRow,
    UserFilter,
    UserRow,
)

__all__ = ["EXPORT_FORMATS", "VIEWS", "ListPage", "PageFunction", "View", "ViewContext",
           "run_view", "view_args", "view_named"]


@dataclass(frozen=True)
class ViewContext:
    """What every view reads from: the store, the insights cache over it, and the Jaeger
    UI its links point to (None: no links)."""

    store: Store
    insights: InsightsCache
    jaeger_ui_url: str | None = None
    insights_config: InsightsConfig | None = None
    """The event definitions ``/api/events`` lists (None: the shipped defaults)."""

    def links(self, **ids: Any) -> dict[str, str] | None:
        """Jaeger UI links of a session's or user's traces (``trace_links``)."""
        return trace_links(self.jaeger_ui_url, **ids)


ViewFunction = Callable[[ViewContext, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class View:
    """One endpoint: ``GET <path>`` answered by ``function``."""

    name: str
    path: str
    """With ``{id}`` placeholders for path parameters (``/api/sessions/{session_id}``)."""
    summary: str
    params: tuple[Param, ...]
    response: str
    """The name of its response schema in the OpenAPI document."""
    function: ViewFunction
    not_found: bool = False
    """True when it may answer 404 (an unknown id)."""
    pages: PageFunction | None = None
    """A list view's pages (``function`` answers one of them): the exports walk them."""
    export_name: str | None = None
    """A list view's name in export file names (``tasks`` -> ``tasks.csv``)."""


def view_args(view: View, path_params: Mapping[str, str],
              query: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The query checked against the view's parameters, with the path ids: the parsed
    arguments of ``view.function`` (``BadRequest`` on any problem)."""
    args = parse(view.params, query)
    for p in view.params:
        if p.location == "path":
            args[p.name] = path_params[p.name]
    return args


def run_view(view: View, ctx: ViewContext, path_params: Mapping[str, str],
             query: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Check the query against the view's parameters, then run it (a ``format`` asks for
    an export: ``api.export``, not this)."""
    args = view_args(view, path_params, query)
    if args.get("format") is not None:
        raise BadRequest("format: an export is answered by api.export, not as JSON")
    return view.function(ctx, args)


# ----------------------------------------------------------------------------- views


def _tasks_json(reader: StoreReader, rows: list[TaskRow]) -> list[dict[str, Any]]:
    """Tasks with their analyses."""
    analyses = reader.task_analyses(r.task.task_id for r in rows)
    return [serialize.task_json(r, analyses.get(r.task.task_id)) for r in rows]


def _sessions_json(ctx: ViewContext, reader: StoreReader,
                   sessions: list[SessionRollup]) -> list[dict[str, Any]]:
    analyses = reader.session_analyses(s.session_id for s in sessions)
    return [serialize.session_json(s, ctx.links, analyses.get(s.session_id)) for s in sessions]


def _users_json(ctx: ViewContext, reader: StoreReader,
                users: list[UserRow]) -> list[dict[str, Any]]:
    analyses = reader.user_analyses(u.rollup.user_id for u in users)
    return [serialize.user_json(u, ctx.links, analyses.get(u.rollup.user_id)) for u in users]


class ListPage(NamedTuple):
    """One page of a list view, its items as JSON; ``total`` None when not counted."""

    items: list[dict[str, Any]]
    total: int | None
    next_cursor: tuple[Any, str] | None
    searched_to: Any = None
    """``store.api.Listing.searched_to``."""


PageFunction = Callable[[ViewContext, dict[str, Any], Page, bool], ListPage]
"""``(ctx, parsed args, page, with_total)`` -> one page of a list view (``View.pages``):
what the JSON answer and the exports (``api.export``) are both made of."""


def _metadata(args: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(args["metadata"].items())


def _listed(pages: PageFunction) -> ViewFunction:
    """The view function answering one page (``page_params``) of ``pages`` as JSON."""
    def function(ctx: ViewContext, args: dict[str, Any]) -> dict[str, Any]:
        found = pages(ctx, args, page_from(args), True)
        return {"items": found.items, "total": found.total,
                "next_cursor": serialize.encode_cursor(found.next_cursor),
                "searched_to": serialize.sort_value_json(args["sort"], found.searched_to)}

    function.__name__ = pages.__name__.removesuffix("_page")
    function.__doc__ = pages.__doc__
    return function


def sessions_page(ctx: ViewContext, args: dict[str, Any], page: Page,
                  with_total: bool) -> ListPage:
    """Sessions of the filter (the total is counted unless a metadata filter stopped the
    search early: ``store.api.Listing.searched_to``)."""
    start, end = time_range(args)
    where = SessionFilter(start, end, args["user_id"], args["state"], args["end_reason"],
                          _metadata(args), args["evaluation"], args["event"])
    with ctx.store.read() as reader:
        found = reader.list_sessions(where, page)
        return ListPage(_sessions_json(ctx, reader, found.items), found.total,
                        found.next_cursor, found.searched_to)


def get_session(ctx: ViewContext, args: dict[str, Any]) -> dict[str, Any]:
    session_id = args["session_id"]
    with ctx.store.read() as reader:
        session = reader.get_session(session_id)
        if session is None:
            raise NotFound(f"no session with id {session_id!r}")
        out = _sessions_json(ctx, reader, [session])[0]
        out["feedback"] = serialize.session_feedback_json(reader.session_events(session_id))
        tasks = reader.session_tasks(session_id, args["limit"], args["offset"])
        out["tasks"] = _tasks_json(reader, tasks)
        if args["steps"] == "true":
            _add_steps(ctx, reader, tasks, out["tasks"])
    return out


MAX_STEP_SPANS = 20_000
"""Spans read at most for the steps of one answer (a session's tasks' traces)."""


def _add_steps(ctx: ViewContext, reader: StoreReader, rows: list[TaskRow],
               out: list[dict[str, Any]]) -> None:
    """``steps`` (``api.steps.task_steps``) on each task's JSON, from one read of their
    traces."""
    traces = {t.trace_id: t for t in reader.get_traces(
        dict.fromkeys(r.task.trace_id for r in rows), max_total_spans=MAX_STEP_SPANS)}
    prices = (ctx.insights_config or InsightsConfig()).prices
    for row, task in zip(rows, out, strict=True):
        task["steps"] = task_steps(traces.get(row.task.trace_id), row.task.span_id,
                                   row.task.start_ns, ctx.jaeger_ui_url, prices)


def users_page(ctx: ViewContext, args: dict[str, Any], page: Page,
               with_total: bool) -> ListPage:
    """Users of the filter (the total is counted unless a metadata filter stopped the
    search early: ``store.api.Listing.searched_to``)."""
    start, end = time_range(args)
    where = UserFilter(start, end, args["user_id"], args["class"], _metadata(args))
    with ctx.store.read() as reader:
        found = reader.list_users(where, page)
        return ListPage(_users_json(ctx, reader, found.items), found.total,
                        found.next_cursor, found.searched_to)


def get_user(ctx: ViewContext, args: dict[str, Any]) -> dict[str, Any]:
    user_id = args["user_id"]
    with ctx.store.read() as reader:
        user = reader.get_user(user_id)
        if user is None:
            raise NotFound(f"no user with id {user_id!r}")
        out = _users_json(ctx, reader, [user])[0]
        out["sessions"] = _sessions_json(ctx, reader, reader.user_sessions(user_id, args["limit"]))
        out["tasks"] = _tasks_json(reader, reader.user_tasks(user_id, args["limit"]))
        out["tasks_per_day"] = [{"date": serialize.day_iso(day), "tasks": n}
                                for day, n in reader.user_activity(user_id)]
    return out


def tasks_page(ctx: ViewContext, args: dict[str, Any], page: Page,
               with_total: bool) -> ListPage:
    """Tasks of the filter."""
    start, end = time_range(args)
    where = TaskFilter(start, end, args["user_id"], args["session_id"], args["event"],
                       args["evaluation"], _metadata(args), args["q"], args["flag"])
    with ctx.store.read() as reader:
        found = reader.list_tasks(where, page, with_total=with_total)
        return ListPage(_tasks_json(reader, found.items), found.total, found.next_cursor,
                        found.searched_to)


list_sessions = _listed(sessions_page)
list_users = _listed(users_page)
list_tasks = _listed(tasks_page)


def get_task(ctx: ViewContext, args: dict[str, Any]) -> dict[str, Any]:
    task_id = args["task_id"]
    with ctx.store.read() as reader:
        task = reader.get_task(task_id)
        if task is None:
            raise NotFound(f"no task with id {task_id!r}")
        out = _tasks_json(reader, [task])
        if args["steps"] == "true":
            _add_steps(ctx, reader, [task], out)
        return out[0]


def sessions_insights(ctx: ViewContext, args: dict[str, Any]) -> dict[str, Any]:
    start, end = time_range(args)
    where = SessionFilter(start, end, args["user_id"])
    result = ctx.insights.get(session_insights, max_age_s=args["max_age_s"], where=where,
                              top_inputs=args["top"])
    outcomes = ctx.insights.get(session_outcomes, max_age_s=args["max_age_s"], where=where,
                                examples=args["top"])
    return serialize.session_insights_json(result.value, result.computed_at_ns,
                                           result.max_age_s, outcomes.value)


def users_insights(ctx: ViewContext, args: dict[str, Any]) -> dict[str, Any]:
    start, end = time_range(args)
    result = ctx.insights.get(user_insights, max_age_s=args["max_age_s"],
                              where=UserFilter(start, end), top=args["top"])
    counts = ctx.insights.get(user_class_counts, max_age_s=args["max_age_s"])
    with ctx.store.read() as reader:
        analyses = reader.user_analyses(u.rollup.user_id for u in result.value.top_users)
    return serialize.user_insights_json(result.value, result.computed_at_ns, result.max_age_s,
                                        ctx.links, counts.value, analyses)


def retention(ctx: ViewContext, args: dict[str, Any]) -> dict[str, Any]:
    result = ctx.insights.get(user_retention, max_age_s=args["max_age_s"],
                              period=args["period"])
    return serialize.retention_json(result.value, result.computed_at_ns, result.max_age_s)


def _event_days(reader: StoreReader) -> dict[str, list[tuple[int, int]]]:
    """``(UTC day, tasks)`` of each event, by name."""
    days: dict[str, list[tuple[int, int]]] = {}
    for name, day, n in reader.event_days():
        days.setdefault(name, []).append((day, n))
    return days


def _detector(d: EventDefinition) -> str:
    return ("keywords" if d.keywords else "regex" if d.regex else
            "llm" if d.llm_question else "python")


def list_events(ctx: ViewContext, args: dict[str, Any]) -> dict[str, Any]:
    config = ctx.insights_config or InsightsConfig()
    result = ctx.insights.get(_event_days, max_age_s=args["max_age_s"])
    days = result.value

    def figures(name: str) -> dict[str, Any]:
        per_day = days.get(name, [])
        return {"tasks": sum(n for _, n in per_day),
                "per_day": [{"date": serialize.day_iso(day), "tasks": n}
                            for day, n in per_day]}

    names = [d.name for d in config.events]
    out = [{"name": d.name, "scope": d.scope, "detector": _detector(d),
            "description": d.description, "webhook": d.webhook is not None,
            **figures(d.name)} for d in config.events]
    out += [{"name": name, "scope": "task", "detector": "python", "description":
             "no longer defined", "webhook": False, **figures(name)}
            for name in sorted(days) if name not in names]
    return {"events": out, "computed_at": serialize.ns_to_iso(result.computed_at_ns),
            "max_age_s": result.max_age_s}


# ----------------------------------------------------------------------------- the table


def _id(name: str, what: str) -> Param:
    return Param(name, "text", what, location="path")


_USER = Param("user_id", "text", "only this user's items")
_STEPS = Param("steps", "choice", "true: each task with its steps (the spans under it: LLM "
               "calls, retrievals...; their tokens and cost), read from its trace",
               "false", choices=("true", "false"))
_MAX_AGE = Param("max_age_s", "number",
                 "serve a cached result at most this old while data changes (0: compute now)",
                 None, 0.0, MAX_MAX_AGE_S)

_STATE = Param("state", "choice", "only sessions in this state", choices=SESSION_STATES)
_END_REASON = Param("end_reason", "choice", "only sessions that ended this way",
                    choices=END_REASONS)
_CLASS = Param("class", "choice", "only users in this class", choices=USER_CLASSES)
_EVENT = Param("event", "text", "only tasks with this detected event")
_EVALUATION = Param("evaluation", "choice", "only tasks with this evaluation label",
                    choices=EVALUATION_LABELS)


def _metadata_key_problem(key: str) -> str | None:
    if any(c in METADATA_KEY_FORBIDDEN for c in key):
        return "a metadata key cannot hold a double quote, a backslash or a control character"
    return None


def _metadata_param(what: str) -> Param:
    return Param("metadata", "text",
                 f"only {what}: metadata.<key>=<value>, repeatable over keys (all must"
                 f" match); {METADATA_TEXT}", prefix=True, key_check=_metadata_key_problem)


EXPORT_FORMATS = ("csv", "jsonl")
"""``format`` values of the list views: the whole filtered list as a file (``api.export``)."""
_FORMAT = Param("format", "choice",
                "answer the whole filtered list (every page, in order; limit, offset and"
                " cursor are ignored) as a CSV or JSON Lines download", choices=EXPORT_FORMATS)
_TEXT = Param("q", "text", "only tasks whose input or output holds this text (ASCII letters"
              " in any case)")
_FLAG = Param("flag", "choice", "only tasks whose latest feedback is this flag (none: no"
              " feedback)", choices=TASK_FLAGS)

VIEWS: tuple[View, ...] = (
    View("list_sessions", "/api/sessions", "Sessions started in the time range",
         (*range_params("sessions starting in [from, to)"), _USER, _STATE, _END_REASON,
          Param("evaluation", "choice", "only sessions with this session evaluation label",
                choices=EVALUATION_LABELS),
          Param("event", "text", "only sessions where this event was detected"),
          _metadata_param("sessions with a task matching"),
          *page_params(SESSION_SORTS, "start_time"), _FORMAT),
         "SessionList", list_sessions, pages=sessions_page, export_name="sessions"),
    View("get_session", "/api/sessions/{session_id}", "One session with its tasks in order",
         (_id("session_id", "session id"),
          Param("limit", "int", "tasks to list", MAX_LIMIT, 1, MAX_LIMIT),
          Param("offset", "int", "tasks to skip", 0, 0, MAX_OFFSET), _STEPS),
         "SessionDetail", get_session, not_found=True),
    View("list_users", "/api/users", "Users active in the time range",
         (*range_params("users active in [from, to)"), _USER, _CLASS,
          _metadata_param("users with a task matching"),
          *page_params(USER_SORTS, "last_seen"), _FORMAT),
         "UserList", list_users, pages=users_page, export_name="users"),
    View("get_user", "/api/users/{user_id}", "One user with their latest sessions and tasks",
         (_id("user_id", "user id"),
          Param("limit", "int", "sessions and tasks to list", 100, 1, MAX_LIMIT)),
         "UserDetail", get_user, not_found=True),
    View("list_tasks", "/api/tasks", "Tasks started in the time range",
         (*range_params("tasks starting in [from, to)"), _USER,
          Param("session_id", "text", "only this session's tasks"), _EVENT, _EVALUATION,
          _TEXT, _FLAG, _metadata_param("tasks"),
          *page_params(TASK_SORTS, "start_time"), _FORMAT),
         "TaskList", list_tasks, pages=tasks_page, export_name="tasks"),
    View("get_task", "/api/tasks/{task_id}", "One task",
         (_id("task_id", "task id"), _STEPS), "Task", get_task, not_found=True),
    View("sessions_insights", "/api/insights/sessions", "Session figures over the time range",
         (*range_params("sessions starting in [from, to)"), _USER,
          Param("top", "int", "how many last inputs to list per ending", 5, 1, 100), _MAX_AGE),
         "SessionInsights", sessions_insights),
    View("users_insights", "/api/insights/users", "User figures over the time range",
         (*range_params("users active in [from, to)"),
          Param("top", "int", "how many top users to list", 10, 1, 100), _MAX_AGE),
         "UserInsights", users_insights),
    View("retention", "/api/insights/retention",
         "Retention cohorts by first-seen period, and new vs returning users per day",
         (Param("period", "choice", "cohort period (default: day under two weeks of data,"
                " else week)", choices=("day", "week")), _MAX_AGE),
         "Retention", retention),
    View("list_events", "/api/events", "Event definitions and how many tasks have each",
         (_MAX_AGE,), "Events", list_events),
)
"""Every ``/api`` view."""

_BY_NAME = {v.name: v for v in VIEWS}


def view_named(name: str) -> View:
    """The view called ``name`` (``KeyError`` if none)."""
    return _BY_NAME[name]
