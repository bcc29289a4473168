"""The ``phospho-otel`` command line (needs the ``server`` extra; ``__main__`` says so).

::

    phospho-otel serve     [--store URL | --db PATH] [--host H] [--http-port N] ... (every setting)
    phospho-otel sessions  [SESSION_ID] [--store URL | --db PATH | --url URL] [--json | --format F]
                           [filters...]
    phospho-otel users     [USER_ID]    [--store URL | --db PATH | --url URL] [--json | --format F]
                           [filters...]
    phospho-otel tasks     [TASK_ID]    [--store URL | --db PATH | --url URL] [--json | --format F]
                           [filters...]
    phospho-otel insights  [--store URL | --db PATH | --url URL] [--json] [--from T] [--to T]
    phospho-otel retention [--store URL | --db PATH | --url URL] [--json] [--period day|week]
    phospho-otel events    [--store URL | --db PATH | --url URL] [--json]
    phospho-otel reevaluate [--store URL | --db PATH] [--from T] [--to T] [--insights PATH]

The view commands run the API's own view functions (``api.views``), either on the store
directly (``--store``/``--db``, default ``$PHOSPHO_STORE``, ``$PHOSPHO_DB`` or
``./phospho.db``, opened read-only) or on a running server over HTTP (``--url``, or
``$PHOSPHO_URL``): the same checks, the same answers. They print tables for people and,
with ``--json``, the API's JSON for scripts; a list with ``--format csv|jsonl`` writes the
whole filtered list to stdout, byte for byte the API's export (``api.export``; ``--limit``
and ``--offset`` do not apply). ``--metadata KEY=VALUE`` (repeatable) filters a list by
its tasks' metadata. ``serve``'s options are generated from the settings table
(``server.settings``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import Any, BinaryIO

import click

from phospho_otel.api.export import export_chunks
from phospho_otel.api.views import EXPORT_FORMATS, ViewContext, run_view, view_args, view_named
from phospho_otel.errors import ConfigurationError, ServerError, StoreError
from phospho_otel.insights import InsightsCache
from phospho_otel.model.analysis import (
    END_REASONS,
    EVALUATION_LABELS,
    SESSION_STATES,
    USER_CLASSES,
)
from phospho_otel.server.settings import (
    PHOSPHO_DB,
    PHOSPHO_STORE,
    PHOSPHO_TOKEN,
    PHOSPHO_URL,
    ServerSettings,
    setting_of,
)
from phospho_otel.store import open_store
from phospho_otel.store.api import TASK_FLAGS, Store

__all__ = ["ViewSource", "main"]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- sources


class ViewSource:
    """Where the view commands read from: a running server's API (``url``) or a store.

    ``get(view_name, ids, params)`` answers the JSON of ``api.views``'s view for those
    path ids and query parameters, computed here or by the server; a missing item or a bad
    parameter raises ``click.ClickException`` with the same ``<status>: <message>``.
    """

    def __init__(self, *, url: str | None, store: str | None, token: str | None) -> None:
        self.url = url.rstrip("/") if url else None
        self.token = token
        self.store_url = store
        self._context: ViewContext | None = None

    def get(self, view_name: str, ids: dict[str, str],
            params: dict[str, Any], extra: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
        """The view's JSON; ``extra``: more query parameters (``metadata.<key>``)."""
        view = view_named(view_name)
        query = [(k, str(v)) for k, v in params.items() if v is not None] + list(extra)
        if self.url:
            path = view.path.format(**{k: urllib.parse.quote(v, safe="") for k, v in ids.items()})
            return self._http(path, query)
        try:
            return run_view(view, self._local(), ids, query)
        except ServerError as exc:
            raise click.ClickException(f"{exc.status}: {exc.message}") from None
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None

    def export(self, view_name: str, params: dict[str, Any],
               extra: Iterable[tuple[str, str]], out: BinaryIO) -> None:
        """Write the list view's export (``params`` holding ``format``) to ``out``."""
        view = view_named(view_name)
        query = [(k, str(v)) for k, v in params.items() if v is not None] + list(extra)
        if self.url:
            with self._open(view.path, query) as response:
                while chunk := response.read(65536):
                    out.write(chunk)
            return
        try:
            for chunk in export_chunks(view, self._local(), view_args(view, {}, query)):
                out.write(chunk)
        except ServerError as exc:
            raise click.ClickException(f"{exc.status}: {exc.message}") from None
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None

    def _local(self) -> ViewContext:
        if self._context is None:
            assert self.store_url is not None
            try:
                store: Store = open_store(self.store_url, read_only=True)
            except (StoreError, ConfigurationError) as exc:
                raise click.ClickException(
                    f"cannot open the store: {exc} (use --db, --store or --url)") from None
            self._context = ViewContext(store, InsightsCache(store, max_age_s=0.0))
        return self._context

    def _http(self, path: str, query: list[tuple[str, str]]) -> dict[str, Any]:
        with self._open(path, query) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def _open(self, path: str, query: list[tuple[str, str]]) -> Any:
        """The server's response to ``GET path?query`` (a ``ClickException`` for an error
        answer, with its status and message, or no answer)."""
        encoded = urllib.parse.urlencode(query)
        request = urllib.request.Request(f"{self.url}{path}" + (f"?{encoded}" if encoded else ""))
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = exc.reason
            raise click.ClickException(f"{exc.code}: {message}") from None
        except urllib.error.URLError as exc:
            raise click.ClickException(f"cannot reach {self.url}: {exc.reason}") from None

    def close(self) -> None:
        if self._context is not None:
            self._context.store.close()


# ----------------------------------------------------------------------------- tables

_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def _cell(value: Any, width: int) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, str) and _ISO_TIME.fullmatch(value):
        text = value[:19].replace("T", " ")  # seconds are enough in a table
    elif isinstance(value, float):
        text = f"{value:.2f}"
    else:
        text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, int]]) -> str:
    """Left-aligned text table of ``rows``; columns are (key, header, max width)."""
    cells = [[_cell(r.get(key), width) for key, _, width in columns] for r in rows]
    widths = [
        max([len(header)] + [len(c[i]) for c in cells]) for i, (_, header, _) in
        enumerate(columns)
    ]
    lines = ["  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _fields(item: dict[str, Any], keys: Sequence[str]) -> str:
    width = max(len(k) for k in keys)
    return "\n".join(f"{k.ljust(width)}  {_cell(item.get(k), 200)}" for k in keys)


SESSION_COLUMNS = [
    ("session_id", "SESSION", 36), ("user_id", "USER", 20), ("task_count", "TASKS", 5),
    ("start_time", "START (UTC)", 19), ("duration_s", "DURATION_S", 10),
    ("state", "STATE", 6), ("end_reason", "END REASON", 23),
    ("success_count", "OK", 4), ("failure_count", "FAIL", 4), ("last_input", "LAST INPUT", 40),
]
USER_COLUMNS = [
    ("user_id", "USER", 24), ("task_count", "TASKS", 6), ("session_count", "SESSIONS", 8),
    ("first_seen", "FIRST SEEN (UTC)", 19), ("last_seen", "LAST SEEN (UTC)", 19),
    ("avg_session_duration_s", "AVG_SESSION_S", 13), ("avg_tasks_per_session", "TASKS/SESSION", 13),
    ("success_rate", "SUCCESS", 7), ("class_labels", "CLASSES", 30),
]
TASK_COLUMNS = [
    ("task_id", "TASK", 38), ("session_id", "SESSION", 24), ("position", "POS", 3),
    ("user_id", "USER", 16), ("start_time", "START (UTC)", 19), ("status", "STATUS", 6),
    ("flag", "FLAG", 7), ("evaluation_label", "EVAL", 7), ("event_names", "EVENTS", 24),
    ("input", "INPUT", 40),
]


def _flat(item: dict[str, Any]) -> dict[str, Any]:
    """A view item with the table's derived cells: class labels, evaluation label, event
    names."""
    out = dict(item)
    if "classes" in item:
        out["class_labels"] = ",".join(c["label"] for c in item["classes"]) or None
    if "evaluation" in item and "events" in item:
        out["evaluation_label"] = (item["evaluation"] or {}).get("label")
        out["event_names"] = ",".join(e["name"] for e in item["events"]) or None
    return out


def _rows(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_flat(i) for i in items]


# ----------------------------------------------------------------------------- commands


def _source_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")(fn)
    fn = click.option("--token", envvar=PHOSPHO_TOKEN, default=None,
                      help="bearer token for --url [env PHOSPHO_TOKEN]")(fn)
    fn = click.option("--url", envvar=PHOSPHO_URL, default=None,
                      help="read a running server, e.g. http://127.0.0.1:8318 "
                      "[env PHOSPHO_URL]")(fn)
    fn = click.option("--store", "--db", "store", envvar=[PHOSPHO_STORE, PHOSPHO_DB],
                      default="phospho.db", show_default=True,
                      help="read this store directly: a SQLite file, sqlite:///PATH or "
                      "clickhouse://HOST:9000/DB "
                      "[env PHOSPHO_STORE, PHOSPHO_DB]")(fn)
    return fn


def _list_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--cursor", default=None,
                      help="go on from a previous page's next_cursor")(fn)
    fn = click.option("--offset", type=click.IntRange(min=0), default=None)(fn)
    fn = click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)(fn)
    fn = click.option("--order", type=click.Choice(["asc", "desc"]), default=None)(fn)
    fn = click.option("--sort", default=None, help="sort key (see the API)")(fn)
    fn = click.option("--to", "to_", default=None, help="ISO-8601 end (exclusive)")(fn)
    fn = click.option("--from", "from_", default=None, help="ISO-8601 start")(fn)
    return fn


def _export_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--metadata", "metadata", multiple=True, metavar="KEY=VALUE",
                      help="only items with a task whose metadata KEY has VALUE"
                      " (repeatable: all must match)")(fn)
    fn = click.option("--format", "export_format", type=click.Choice(EXPORT_FORMATS),
                      default=None, help="write the whole filtered list as CSV or JSON"
                      " Lines (the API's export)")(fn)
    return fn


def _metadata_query(pairs: Sequence[str]) -> list[tuple[str, str]]:
    """``KEY=VALUE`` options as ``metadata.<key>`` query parameters."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--metadata")
        out.append((f"metadata.{key}", value))
    return out


def _list(src: ViewSource, view_name: str, params: dict[str, Any], metadata: Sequence[str],
          export_format: str | None) -> dict[str, Any] | None:
    """The list's JSON page, or None once its export (``export_format``) is written to
    stdout."""
    extra = _metadata_query(metadata)
    if export_format is None:
        return src.get(view_name, {}, params, extra)
    params = {k: v for k, v in params.items() if k not in ("limit", "offset", "cursor")}
    sys.stdout.flush()
    src.export(view_name, {**params, "format": export_format}, extra, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return None


def _emit(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(render(data))


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log at INFO level")
def main(verbose: bool) -> None:
    """phospho-otel: OpenTelemetry-native logging and analytics for LLM applications."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _click_type(f: dataclasses.Field[Any]) -> Any:
    s = setting_of(f)
    if s.choices:
        return click.Choice(s.choices, case_sensitive=False)
    if s.kind is int:
        return click.IntRange(None if s.lo is None else int(s.lo),
                              None if s.hi is None else int(s.hi))
    if s.kind is float:
        return click.FloatRange(s.lo, s.hi)
    return str


def _settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One option per ``ServerSettings`` field, from its ``Setting``."""
    for f in reversed(dataclasses.fields(ServerSettings)):
        s = setting_of(f)
        default = "none" if f.default is None else f.default
        help_text = f"{s.help} [env {', '.join(s.env)}; default {default}]"
        fn = click.option(*s.flags, f.name, type=_click_type(f), default=None,
                          help=help_text)(fn)
    return fn


@main.command()
@_settings_options
def serve(**options: Any) -> None:
    """Run the aggregator until SIGTERM or SIGINT."""
    from phospho_otel.server import AggregatorServer

    if options.get("sqlite_synchronous"):
        options["sqlite_synchronous"] = options["sqlite_synchronous"].upper()
    try:
        settings = ServerSettings.from_env(**options)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = AggregatorServer(settings)
    try:
        server.start()
    except (OSError, StoreError, ConfigurationError) as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
    try:
        if not settings.token:
            click.echo(
                f"phospho-otel: WARNING: no token set; ingest and the API on {settings.host} are "
                "open to anyone who can connect (set --token or PHOSPHO_TOKEN)",
                err=True,
            )
        click.echo(f"phospho-otel: store {settings.store}", err=True)
        click.echo(f"phospho-otel listening http={settings.host}:{server.http_port} "
                   f"grpc={settings.host}:{server.grpc_port}")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
        click.echo("phospho-otel: stopping", err=True)
    finally:
        server.stop()


def _count_line(listing: dict[str, Any], what: str) -> str:
    """``(50 of 1,234 sessions)``, or, when a filter stopped the search early
    (``searched_to``), how far it searched and how to go on."""
    shown = len(listing["items"])
    if listing.get("searched_to") is None:
        return f"\n({shown} of {listing['total']} {what})"
    return (f"\n({shown} {what} found searching to {listing['searched_to']}; more with "
            f"--cursor {listing['next_cursor']})")


def _source(store: str, url: str | None, token: str | None) -> ViewSource:
    return ViewSource(url=url, store=None if url else store, token=token)


@main.command()
@click.argument("session_id", required=False)
@_source_options
@_list_options
@click.option("--user", "user_id", default=None, help="only this user's sessions")
@click.option("--state", type=click.Choice(SESSION_STATES), default=None,
              help="only sessions in this state")
@click.option("--end-reason", type=click.Choice(END_REASONS), default=None,
              help="only sessions that ended this way")
@click.option("--evaluation", type=click.Choice(EVALUATION_LABELS), default=None,
              help="only sessions with this session evaluation")
@click.option("--event", default=None, help="only sessions where this event was detected")
@_export_options
def sessions(session_id: str | None, store: str, url: str | None, token: str | None,
             as_json: bool, from_: str | None, to_: str | None, sort: str | None,
             order: str | None, limit: int, offset: int | None, cursor: str | None,
             user_id: str | None,
             state: str | None, end_reason: str | None, evaluation: str | None,
             event: str | None, export_format: str | None,
             metadata: tuple[str, ...]) -> None:
    """List sessions, or show one with its tasks."""
    src = _source(store, url, token)
    if session_id:
        data = src.get("get_session", {"session_id": session_id}, {})
        _emit(data, as_json, lambda d: _fields(d, [k for k, *_ in SESSION_COLUMNS] + [
            "end_time", "ended_at", "active_duration_s", "first_input", "last_output",
            "last_task_id"]) + "\n" + _evidence(d) + "\n\n" +
            _table(_rows(d["tasks"]), TASK_COLUMNS))
        return
    listing = _list(src, "list_sessions", {"from": from_, "to": to_, "sort": sort,
                                        "order": order, "limit": limit, "offset": offset,
                                        "cursor": cursor,
                                        "user_id": user_id, "state": state,
                                        "end_reason": end_reason, "evaluation": evaluation,
                                        "event": event}, metadata, export_format)
    if listing is None:
        return
    _emit(listing, as_json, lambda d: _table(d["items"], SESSION_COLUMNS) +
          _count_line(d, "sessions"))


def _evidence(d: dict[str, Any]) -> str:
    lines = [f"evaluation  {_evaluation(d.get('evaluation'))}"]
    lines += [f"  - {e}" for e in d.get("end_evidence", [])]
    return "\n".join(lines)


def _evaluation(e: dict[str, Any] | None) -> str:
    return "-" if not e else f"{e['label']} ({e['score']:.2f}, {e['source']}): {e['reason']}"


@main.command()
@click.argument("user_id", required=False)
@_source_options
@_list_options
@click.option("--class", "user_class", type=click.Choice(USER_CLASSES), default=None,
              help="only users in this class")
@_export_options
def users(user_id: str | None, store: str, url: str | None, token: str | None, as_json: bool,
          from_: str | None, to_: str | None, sort: str | None, order: str | None,
          limit: int, offset: int | None, cursor: str | None, user_class: str | None,
          export_format: str | None,
          metadata: tuple[str, ...]) -> None:
    """List users, or show one with their classes, sessions and tasks."""
    src = _source(store, url, token)
    if user_id:
        data = src.get("get_user", {"user_id": user_id}, {"limit": limit})
        _emit(data, as_json, lambda d: _fields(_flat(d), [k for k, *_ in USER_COLUMNS] + [
            "success_count", "failure_count"]) + "\n" + _classes(d) + "\n\nSessions\n" +
            _table(d["sessions"], SESSION_COLUMNS) + "\n\nTasks\n" +
            _table(_rows(d["tasks"]), TASK_COLUMNS))
        return
    listing = _list(src, "list_users", {"from": from_, "to": to_, "sort": sort, "order": order,
                                     "limit": limit, "offset": offset, "cursor": cursor,
                                     "class": user_class},
                 metadata, export_format)
    if listing is None:
        return
    _emit(listing, as_json, lambda d: _table(_rows(d["items"]), USER_COLUMNS) +
          _count_line(d, "users"))


def _classes(d: dict[str, Any]) -> str:
    lines = []
    for c in d.get("classes", []):
        lines.append(f"{c['label']}: " + "; ".join(c["reasons"]))
    events = ", ".join(f"{k} {v}" for k, v in sorted(d.get("event_counts", {}).items()))
    if events:
        lines.append(f"events: {events}")
    return "\n".join(lines)


@main.command()
@click.argument("task_id", required=False)
@_source_options
@_list_options
@click.option("--user", "user_id", default=None, help="only this user's tasks")
@click.option("--session", "session_id", default=None, help="only this session's tasks")
@click.option("--event", default=None, help="only tasks with this detected event")
@click.option("--evaluation", type=click.Choice(EVALUATION_LABELS), default=None,
              help="only tasks with this evaluation label")
@click.option("--text", "q", default=None, help="only tasks whose input or output holds this")
@click.option("--flag", type=click.Choice(TASK_FLAGS), default=None,
              help="only tasks whose latest feedback is this flag (none: no feedback)")
@_export_options
def tasks(task_id: str | None, store: str, url: str | None, token: str | None, as_json: bool,
          from_: str | None, to_: str | None, sort: str | None, order: str | None,
          limit: int, offset: int | None, cursor: str | None, user_id: str | None,
          session_id: str | None,
          event: str | None, evaluation: str | None, q: str | None, flag: str | None,
          export_format: str | None, metadata: tuple[str, ...]) -> None:
    """List tasks, or show one."""
    src = _source(store, url, token)
    if task_id:
        data = src.get("get_task", {"task_id": task_id}, {})
        _emit(data, as_json, lambda d: _fields(d, list(d)))
        return
    listing = _list(src, "list_tasks", {"from": from_, "to": to_, "sort": sort, "order": order,
                                     "limit": limit, "offset": offset, "cursor": cursor,
                                     "user_id": user_id,
                                     "session_id": session_id, "event": event,
                                     "evaluation": evaluation, "q": q, "flag": flag},
                 metadata, export_format)
    if listing is None:
        return
    _emit(listing, as_json, lambda d: _table(_rows(d["items"]), TASK_COLUMNS) +
          _count_line(d, "tasks"))


def _render_insights(d: dict[str, Any]) -> str:
    s, u = d["sessions"], d["users"]
    lines = [
        _fields(s, ["session_count", "task_count", "avg_duration_s", "median_duration_s",
                    "p90_duration_s", "avg_tasks_per_session", "success_count",
                    "failure_count", "error_count"]),
        "",
        "Session length (tasks)",
        _table(s["length_histogram"], [("task_count", "TASKS", 6), ("sessions", "SESSIONS", 9)]),
        "",
        "Sessions per day",
        _table(s["sessions_per_day"], [("date", "DATE", 10), ("sessions", "SESSIONS", 9)]),
        "",
        "What ends sessions (last task by feedback and status)",
    ]
    for g in s["endings"]:
        top = "; ".join(f"{_cell(i['input'], 40)} ({i['sessions']})" for i in g["top_inputs"])
        lines.append(f"  flag={g['flag'] or '-'} status={g['status']}: {g['sessions']} "
                     f"sessions; top last inputs: {top}")
    lines += ["", "How sessions end (end reason: sessions, latest examples)"]
    for g in s["end_reasons"]:
        lines.append(f"  {g['end_reason']}: {g['sessions']} sessions; e.g. "
                     + ", ".join(g["examples"]))
    lines += ["", "Success by task position",
              _table(s["success_by_position"], [
                  ("position", "POS", 4), ("success", "SUCCESS", 7), ("failure", "FAILURE", 7),
                  ("unknown", "UNKNOWN", 7), ("success_rate", "RATE", 6)])]
    a = s["active_duration"]
    lines += ["", f"Active duration of ended sessions: p50 {_cell(a['p50_s'], 12)} s, "
              f"p90 {_cell(a['p90_s'], 12)} s, max {_cell(a['max_s'], 12)} s"]
    lines += [
        "",
        "Users by class: " + ", ".join(f"{k} {v}" for k, v in u["class_counts"].items()),
        _fields(u, ["user_count", "avg_tasks_per_user", "median_tasks_per_user",
                    "p90_tasks_per_user", "avg_sessions_per_user", "success_rate"]),
        "",
        "Tasks per user",
        _table(u["tasks_per_user"], [("min_tasks", "MIN", 6), ("max_tasks", "MAX", 6),
                                     ("users", "USERS", 6)]),
        "",
        "Top users",
        _table(_rows(u["top_users"]), USER_COLUMNS),
    ]
    return "\n".join(lines)


@main.command()
@_source_options
@click.option("--from", "from_", default=None, help="ISO-8601 start")
@click.option("--to", "to_", default=None, help="ISO-8601 end (exclusive)")
@click.option("--user", "user_id", default=None, help="session figures of this user only")
def insights(store: str, url: str | None, token: str | None, as_json: bool, from_: str | None,
             to_: str | None, user_id: str | None) -> None:
    """Session and user figures: durations, lengths, what ends sessions, top users."""
    src = _source(store, url, token)
    data = {
        "sessions": src.get("sessions_insights", {},
                            {"from": from_, "to": to_, "user_id": user_id}),
        "users": src.get("users_insights", {}, {"from": from_, "to": to_}),
    }
    _emit(data, as_json, _render_insights)


def _render_retention(d: dict[str, Any]) -> str:
    width = max((len(c["active"]) for c in d["cohorts"]), default=0)
    columns = [("start", "COHORT", 10), ("users", "USERS", 6)] + [
        (f"p{k}", f"+{k}", 5) for k in range(width)]
    rows = [{"start": c["start"], "users": c["users"],
             **{f"p{k}": n for k, n in enumerate(c["active"])}} for c in d["cohorts"]]
    return (f"Cohorts by first {d['period']} (users active in each later {d['period']})\n"
            + _table(rows, columns) + "\n\nNew vs returning users per day\n"
            + _table(d["new_vs_returning"], [("date", "DATE", 10), ("new", "NEW", 6),
                                              ("returning", "RETURNING", 9)]))


@main.command()
@_source_options
@click.option("--period", type=click.Choice(["day", "week"]), default=None,
              help="cohort period (default: day under two weeks of data, else week)")
def retention(store: str, url: str | None, token: str | None, as_json: bool,
              period: str | None) -> None:
    """Retention cohorts by first-seen day or week, and new vs returning users."""
    data = _source(store, url, token).get("retention", {}, {"period": period})
    _emit(data, as_json, _render_retention)


@main.command()
@_source_options
def events(store: str, url: str | None, token: str | None, as_json: bool) -> None:
    """The event definitions, and how many tasks have each."""
    data = _source(store, url, token).get("list_events", {}, {})
    _emit(data, as_json, lambda d: _table(d["events"], [
        ("name", "EVENT", 20), ("scope", "SCOPE", 13), ("detector", "DETECTOR", 8),
        ("tasks", "TASKS", 8), ("description", "DESCRIPTION", 60)]))


@main.command()
@click.option("--store", "--db", "store", envvar=[PHOSPHO_STORE, PHOSPHO_DB],
              default="phospho.db", show_default=True,
              help="the store to analyse again [env PHOSPHO_STORE, PHOSPHO_DB]")
@click.option("--from", "from_", default=None, help="ISO-8601 start")
@click.option("--to", "to_", default=None, help="ISO-8601 end (exclusive)")
@click.option("--insights", "insights_path", envvar="PHOSPHO_INSIGHTS", default=None,
              help="insights configuration (TOML or YAML) [env PHOSPHO_INSIGHTS]")
def reevaluate(store: str, from_: str | None, to_: str | None,
               insights_path: str | None) -> None:
    """Analyse again the tasks started in [from, to) (all by default) after the rules or
    the configuration changed: evaluations, events, sentiment, language, their sessions
    and every user's classes. Safe while a server writes the same store."""
    from phospho_otel.api.serialize import iso_to_ns
    from phospho_otel.errors import BadRequest
    from phospho_otel.insights.analyzer import Analyzer
    from phospho_otel.insights.config import load_config

    try:
        from_ns = iso_to_ns(from_) if from_ else None
        to_ns = iso_to_ns(to_) if to_ else None
    except BadRequest as exc:
        raise click.ClickException(str(exc)) from None
    try:
        config = load_config(insights_path)
    except (ConfigurationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        opened = open_store(store)
    except (StoreError, ConfigurationError) as exc:
        raise click.ClickException(f"cannot open the store: {exc}") from None
    try:
        try:
            analyzer = Analyzer(opened, config)
        except TypeError as exc:
            raise click.ClickException(str(exc)) from None
        count = analyzer.reanalyze(from_ns, to_ns)
        analyzer.stop()
    finally:
        opened.close()
    click.echo(f"reevaluated {count} tasks")


if __name__ == "__main__":  # pragma: no cover
    main()
