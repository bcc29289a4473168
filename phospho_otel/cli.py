"""The ``phospho-otel`` command line.

::

    phospho-otel serve     [--db PATH] [--host H] [--http-port N] [--grpc-port N] [--token T]
    phospho-otel sessions  [SESSION_ID] [--db PATH | --url URL] [--json] [filters...]
    phospho-otel users     [USER_ID]    [--db PATH | --url URL] [--json] [filters...]
    phospho-otel tasks     [TASK_ID]    [--db PATH | --url URL] [--json] [filters...]
    phospho-otel insights  [--db PATH | --url URL] [--json] [--from T] [--to T]
    phospho-otel demo      (the README's main job, see phospho_otel/demo.py)

The view commands read either the SQLite file directly (``--db``, default ``$PHOSPHO_DB``
or ``./phospho.db``) or a running server (``--url``, or ``$PHOSPHO_URL``). They print tables
for people and, with ``--json``, the API's JSON for scripts.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sqlite3
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from phospho_otel.server_settings import PHOSPHO_DB, PHOSPHO_TOKEN, ServerSettings
from phospho_otel.store import queries

__all__ = ["PHOSPHO_URL", "ViewSource", "main"]

PHOSPHO_URL = "PHOSPHO_URL"
"""Base URL of a running aggregator for the view commands (instead of ``--db``)."""

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- sources


class ViewSource:
    """Where the view commands read from: a running server's API or the SQLite file.

    Both answer ``get(path, params)`` with the JSON the HTTP API gives for
    ``GET <path>?<params>``; a missing item or a bad parameter raises ``click.ClickException``.
    """

    def __init__(self, *, url: str | None, db: str | None, token: str | None) -> None:
        self.url = url.rstrip("/") if url else None
        self.token = token
        self.db = db
        self._conn: sqlite3.Connection | None = None

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        params = {k: v for k, v in params.items() if v is not None}
        if self.url:
            return self._http(path, params)
        return self._local(path, params)

    def _http(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{self.url}{path}" + (f"?{query}" if query else ""))
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = exc.reason
            raise click.ClickException(f"{exc.code}: {message}") from None
        except urllib.error.URLError as exc:
            raise click.ClickException(f"cannot reach {self.url}: {exc.reason}") from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            assert self.db is not None
            path = Path(self.db)
            if not path.exists():
                raise click.ClickException(f"no database at {path} (use --db or --url)")
            self._conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True,
                                         check_same_thread=False)
        return self._conn

    def _local(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        conn = self._connection()
        start = queries.iso_to_ns(params["from"]) if "from" in params else None
        end = queries.iso_to_ns(params["to"]) if "to" in params else None
        parts = path.strip("/").split("/", 2)  # api, kind, id

        def page(default_sort: str) -> queries.Page:
            cursor = params.get("cursor")
            return queries.Page(
                sort=params.get("sort", default_sort),
                descending=params.get("order", "desc") == "desc",
                limit=int(params.get("limit", 50)),
                offset=int(params.get("offset", 0)),
                cursor=queries.decode_cursor(cursor) if cursor else None,
            )

        try:
            kind = parts[1]
            item = parts[2] if len(parts) > 2 else None
            result: dict[str, Any] | None
            if kind == "sessions" and item:
                result = queries.get_session(conn, item)
            elif kind == "sessions":
                result = queries.list_sessions(conn, page=page("start_time"), from_ns=start,
                                               to_ns=end, user_id=params.get("user_id"))
            elif kind == "users" and item:
                result = queries.get_user(conn, item, limit=int(params.get("limit", 100)))
            elif kind == "users":
                result = queries.list_users(conn, page=page("last_seen"), from_ns=start,
                                            to_ns=end, user_id=params.get("user_id"))
            elif kind == "tasks" and item:
                result = queries.get_task(conn, item)
            elif kind == "tasks":
                result = queries.list_tasks(conn, page=page("start_time"), from_ns=start,
                                            to_ns=end, user_id=params.get("user_id"),
                                            session_id=params.get("session_id"))
            elif kind == "insights" and item == "sessions":
                result = queries.session_insights(conn, from_ns=start, to_ns=end,
                                                  user_id=params.get("user_id"))
            elif kind == "insights" and item == "users":
                result = queries.user_insights(conn, from_ns=start, to_ns=end)
            else:  # pragma: no cover - only our own commands call this
                raise click.ClickException(f"unknown view {path}")
        except queries.InvalidQuery as exc:
            raise click.ClickException(str(exc)) from None
        except sqlite3.Error as exc:
            raise click.ClickException(f"cannot read {self.db}: {exc}") from None
        if result is None:
            raise click.ClickException(f"404: not found: {parts[-1]!r}")
        return result


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
    ("success_count", "OK", 4), ("failure_count", "FAIL", 4), ("last_input", "LAST INPUT", 40),
]
USER_COLUMNS = [
    ("user_id", "USER", 24), ("task_count", "TASKS", 6), ("session_count", "SESSIONS", 8),
    ("first_seen", "FIRST SEEN (UTC)", 19), ("last_seen", "LAST SEEN (UTC)", 19),
    ("avg_session_duration_s", "AVG_SESSION_S", 13), ("avg_tasks_per_session", "TASKS/SESSION", 13),
    ("success_rate", "SUCCESS", 7),
]
TASK_COLUMNS = [
    ("task_id", "TASK", 38), ("session_id", "SESSION", 24), ("position", "POS", 3),
    ("user_id", "USER", 16), ("start_time", "START (UTC)", 19), ("status", "STATUS", 6),
    ("flag", "FLAG", 7), ("input", "INPUT", 40),
]


# ----------------------------------------------------------------------------- commands


def _source_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")(fn)
    fn = click.option("--token", envvar=PHOSPHO_TOKEN, default=None,
                      help="bearer token for --url [env PHOSPHO_TOKEN]")(fn)
    fn = click.option("--url", envvar=PHOSPHO_URL, default=None,
                      help="read a running server, e.g. http://127.0.0.1:8318 "
                      "[env PHOSPHO_URL]")(fn)
    fn = click.option("--db", envvar=PHOSPHO_DB, default="phospho.db", show_default=True,
                      help="read this SQLite file directly [env PHOSPHO_DB]")(fn)
    return fn


def _list_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--offset", type=click.IntRange(min=0), default=None)(fn)
    fn = click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)(fn)
    fn = click.option("--order", type=click.Choice(["asc", "desc"]), default=None)(fn)
    fn = click.option("--sort", default=None, help="sort key (see the API)")(fn)
    fn = click.option("--to", "to_", default=None, help="ISO-8601 end (exclusive)")(fn)
    fn = click.option("--from", "from_", default=None, help="ISO-8601 start")(fn)
    return fn


def _emit(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(render(data))


def _source(db: str, url: str | None, token: str | None) -> ViewSource:
    return ViewSource(url=url, db=None if url else db, token=token)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log at INFO level")
def main(verbose: bool) -> None:
    """phospho-otel: OpenTelemetry-native logging and analytics for LLM applications."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@click.option("--db", default=None, help="SQLite file [env PHOSPHO_DB; default ./phospho.db]")
@click.option("--host", default=None, help="bind address [env PHOSPHO_HOST; default 127.0.0.1]")
@click.option("--http-port", type=click.IntRange(0, 65535), default=None,
              help="OTLP/HTTP + API port [env PHOSPHO_HTTP_PORT; default 8318; 0 = any free]")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=None,
              help="OTLP/gRPC port [env PHOSPHO_GRPC_PORT; default 8317; 0 = any free]")
@click.option("--token", default=None, help="require Authorization: Bearer <token> "
              "[env PHOSPHO_TOKEN]")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=None,
              help="largest request accepted [env PHOSPHO_MAX_BODY_BYTES]")
@click.option("--jaeger-ui-url", default=None,
              help="Jaeger UI for links [env PHOSPHO_JAEGER_UI_URL]")
@click.option("--sqlite-synchronous", type=click.Choice(["FULL", "NORMAL"], case_sensitive=False),
              default=None, help="FULL: acknowledged data survives power loss; NORMAL: a "
              "killed process, faster [env PHOSPHO_SQLITE_SYNCHRONOUS; default FULL]")
@click.option("--insights-max-age", type=click.FloatRange(0, 3600), default=None,
              help="seconds an insights result may be served while data changes "
              "[env PHOSPHO_INSIGHTS_MAX_AGE_S; default 2]")
def serve(db: str | None, host: str | None, http_port: int | None, grpc_port: int | None,
          token: str | None, max_body_bytes: int | None, jaeger_ui_url: str | None,
          sqlite_synchronous: str | None, insights_max_age: float | None) -> None:
    """Run the aggregator until SIGTERM or SIGINT."""
    from phospho_otel.server import AggregatorServer

    settings = ServerSettings.from_env(db=db, host=host, http_port=http_port,
                                       grpc_port=grpc_port, token=token,
                                       max_body_bytes=max_body_bytes,
                                       jaeger_ui_url=jaeger_ui_url,
                                       sqlite_synchronous=sqlite_synchronous
                                       and sqlite_synchronous.upper(),
                                       insights_max_age_s=insights_max_age)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = AggregatorServer(settings)
    try:
        server.start()
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
    try:
        if not settings.token:
            click.echo(
                f"phospho-otel: WARNING: no token set; ingest and the API on {settings.host} are "
                "open to anyone who can connect (set --token or PHOSPHO_TOKEN)",
                err=True,
            )
        click.echo(f"phospho-otel: database {settings.db}", err=True)
        click.echo(f"phospho-otel listening http={settings.host}:{server.http_port} "
                   f"grpc={settings.host}:{server.grpc_port}")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
        click.echo("phospho-otel: stopping", err=True)
    finally:
        server.stop()


@main.command()
@click.argument("session_id", required=False)
@_source_options
@_list_options
@click.option("--user", "user_id", default=None, help="only this user's sessions")
def sessions(session_id: str | None, db: str, url: str | None, token: str | None,
             as_json: bool, from_: str | None, to_: str | None, sort: str | None,
             order: str | None, limit: int, offset: int | None, user_id: str | None) -> None:
    """List sessions, or show one with its tasks."""
    src = _source(db, url, token)
    if session_id:
        data = src.get(f"/api/sessions/{urllib.parse.quote(session_id, safe='')}", {})
        _emit(data, as_json, lambda d: _fields(d, [k for k, *_ in SESSION_COLUMNS] + [
            "end_time", "first_input", "last_output", "last_task_id"]) + "\n\n" +
            _table(d["tasks"], TASK_COLUMNS))
        return
    data = src.get("/api/sessions", {"from": from_, "to": to_, "sort": sort, "order": order,
                                     "limit": limit, "offset": offset, "user_id": user_id})
    _emit(data, as_json, lambda d: _table(d["items"], SESSION_COLUMNS) +
          f"\n({len(d['items'])} of {d['total']} sessions)")


@main.command()
@click.argument("user_id", required=False)
@_source_options
@_list_options
def users(user_id: str | None, db: str, url: str | None, token: str | None, as_json: bool,
          from_: str | None, to_: str | None, sort: str | None, order: str | None,
          limit: int, offset: int | None) -> None:
    """List users, or show one with their sessions and tasks."""
    src = _source(db, url, token)
    if user_id:
        data = src.get(f"/api/users/{urllib.parse.quote(user_id, safe='')}", {"limit": limit})
        _emit(data, as_json, lambda d: _fields(d, [k for k, *_ in USER_COLUMNS] + [
            "success_count", "failure_count"]) + "\n\nSessions\n" +
            _table(d["sessions"], SESSION_COLUMNS) + "\n\nTasks\n" +
            _table(d["tasks"], TASK_COLUMNS))
        return
    data = src.get("/api/users", {"from": from_, "to": to_, "sort": sort, "order": order,
                                  "limit": limit, "offset": offset})
    _emit(data, as_json, lambda d: _table(d["items"], USER_COLUMNS) +
          f"\n({len(d['items'])} of {d['total']} users)")


@main.command()
@click.argument("task_id", required=False)
@_source_options
@_list_options
@click.option("--user", "user_id", default=None, help="only this user's tasks")
@click.option("--session", "session_id", default=None, help="only this session's tasks")
def tasks(task_id: str | None, db: str, url: str | None, token: str | None, as_json: bool,
          from_: str | None, to_: str | None, sort: str | None, order: str | None,
          limit: int, offset: int | None, user_id: str | None, session_id: str | None) -> None:
    """List tasks, or show one."""
    src = _source(db, url, token)
    if task_id:
        data = src.get(f"/api/tasks/{urllib.parse.quote(task_id, safe='')}", {})
        _emit(data, as_json, lambda d: _fields(d, list(d)))
        return
    data = src.get("/api/tasks", {"from": from_, "to": to_, "sort": sort, "order": order,
                                  "limit": limit, "offset": offset, "user_id": user_id,
                                  "session_id": session_id})
    _emit(data, as_json, lambda d: _table(d["items"], TASK_COLUMNS) +
          f"\n({len(d['items'])} of {d['total']} tasks)")


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
    lines += [
        "",
        _fields(u, ["user_count", "avg_tasks_per_user", "median_tasks_per_user",
                    "p90_tasks_per_user", "avg_sessions_per_user", "success_rate"]),
        "",
        "Tasks per user",
        _table(u["tasks_per_user"], [("min_tasks", "MIN", 6), ("max_tasks", "MAX", 6),
                                     ("users", "USERS", 6)]),
        "",
        "Top users",
        _table(u["top_users"], USER_COLUMNS),
    ]
    return "\n".join(lines)


@main.command()
@_source_options
@click.option("--from", "from_", default=None, help="ISO-8601 start")
@click.option("--to", "to_", default=None, help="ISO-8601 end (exclusive)")
@click.option("--user", "user_id", default=None, help="session figures of this user only")
def insights(db: str, url: str | None, token: str | None, as_json: bool, from_: str | None,
             to_: str | None, user_id: str | None) -> None:
    """Session and user figures: durations, lengths, what ends sessions, top users."""
    src = _source(db, url, token)
    data = {
        "sessions": src.get("/api/insights/sessions",
                            {"from": from_, "to": to_, "user_id": user_id}),
        "users": src.get("/api/insights/users", {"from": from_, "to": to_}),
    }
    _emit(data, as_json, _render_insights)


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="where the database and logs go (default: a new temp dir)")
@click.option("--users", "n_users", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--sessions", "n_sessions", type=click.IntRange(min=1), default=60,
              show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
def demo(workdir: str | None, n_users: int, n_sessions: int, seed: int) -> None:
    """Aggregator on SQLite behind rotel, fed by the example chat app; print the views."""
    from phospho_otel.demo import run_demo

    code = run_demo(workdir=workdir, users=n_users, sessions=n_sessions, seed=seed)
    if code:
        raise SystemExit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
