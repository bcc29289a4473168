"""The ClickHouse backend's write path for the analyzer (``write_analysis``).

``write_analysis`` appends one row per task, session and user result with a new analysis
batch id, then the batch's ``analysis_commits`` row, listing the ingest batches whose work
it completes (``PendingTokens``: what a ``pending_analysis`` handed out): reads see
results only once that row is in, so a write that fails half-way is invisible and its
work stays pending (all or nothing). Writing results again (a retry, another replica's
analyzer on the same task) adds rows that the reads' ``argMax`` by batch merges: nothing
is counted twice.

Each session result is stored with its ``last_activity_ns`` (its last task's end or its
last event, as the store holds them now), as on SQLite; a session that no longer has any
task (its last task moved away) gets no result.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, NamedTuple

from clickhouse_driver import Client

from phospho_otel.errors import StoreError
from phospho_otel.model.analysis import SessionAnalysis, TaskAnalysis, Usage, UserAnalysis
from phospho_otel.store.api import AnalysisUpdate
from phospho_otel.store.clickhouse.analysis_schema import (
    ANALYSIS_COLUMNS,
    USAGE_COLUMNS,
)
from phospho_otel.store.clickhouse.rollups import sessions_sql
from phospho_otel.store.clickhouse.writer import LOOKUP_CHUNK, BatchIds, committed

__all__ = ["ClickHouseAnalysisWriter", "PendingTokens", "Work"]

MAX_TOKENS = 256
"""Pending-work tokens kept for their ``write_analysis`` (older ones are forgotten: their
work then stays pending, and is analysed again)."""
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class Work(NamedTuple):
    """What a ``pending_analysis`` handed out: whole ingest batches, and at most one
    batch up to an item (``partial``: batch, kind, key; 0 for none)."""

    batches: list[int]
    partial: tuple[int, str, str] = (0, "", "")


class PendingTokens:
    """The work each ``pending_analysis`` token stands for, until its ``write_analysis``
    (``store.api.PendingAnalysis.token`` is a pair of integers: the first a serial
    number here, the second the number of whole batches). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._serial = 0
        self._work: OrderedDict[int, Work] = OrderedDict()

    def issue(self, work: Work) -> tuple[int, int]:
        with self._lock:
            self._serial += 1
            self._work[self._serial] = work
            while len(self._work) > MAX_TOKENS:
                self._work.popitem(last=False)
            return self._serial, len(work.batches)

    def work(self, token: tuple[int, int] | None) -> Work:
        """The work of ``token`` (none for None or a token not issued here)."""
        if token is None:
            return Work([])
        with self._lock:
            return self._work.get(token[0], Work([]))

    def forget(self, token: tuple[int, int] | None) -> None:
        if token is not None:
            with self._lock:
                self._work.pop(token[0], None)


def _insert_sql(db: str, table: str, columns: Iterable[tuple[str, str]]) -> str:
    return f"INSERT INTO {db}.{table} ({', '.join(n for n, _ in columns)}) VALUES"


def _usage(usage: Usage | None) -> list[Any]:
    if usage is None:
        return [None] * len(USAGE_COLUMNS)
    return [getattr(usage, name) if kind != "Nullable(Float64)" or getattr(usage, name) is None
            else float(getattr(usage, name)) for name, kind in USAGE_COLUMNS]


def _task_row(t: TaskAnalysis, batch: int) -> list[Any]:
    e, mood = t.evaluation, t.sentiment
    return [t.task_id, t.session_id, t.user_id, t.start_ns, t.position, e.label,
            float(e.score), e.source, e.reason, _dumps([list(ev) for ev in t.events]),
            list(dict.fromkeys(ev.name for ev in t.events)),
            None if mood is None else float(mood.score), None if mood is None else mood.label,
            t.language, t.analyzed_ns, int(t.judge_pending), *_usage(t.usage), batch]


def _session_row(s: SessionAnalysis, last_activity_ns: int, batch: int) -> list[Any]:
    ev = s.evaluation
    return [s.session_id, s.user_id, s.state, last_activity_ns, s.ended_ns, s.end_reason,
            list(s.end_evidence), s.active_duration_ns, None if ev is None else ev.label,
            None if ev is None else float(ev.score), None if ev is None else ev.source,
            None if ev is None else ev.reason, list(s.event_counts),
            [int(n) for n in s.event_counts.values()], s.analyzed_ns, *_usage(s.usage), batch]


def _user_row(u: UserAnalysis, now_ns: int, batch: int) -> list[Any]:
    classes = _dumps([[c.label, list(c.reasons)] for c in u.classes])
    return [u.user_id, classes, list(dict.fromkeys(c.label for c in u.classes)), now_ns,
            *_usage(u.usage), batch]


class ClickHouseAnalysisWriter:
    """Writes the analyzer's results (``write_analysis``) on a client given per call."""

    def __init__(self, database: str, tokens: PendingTokens) -> None:
        self.db = database
        self.tokens = tokens
        self.replica = f"{os.uname().nodename}:{os.getpid()}:{id(self):x}"
        self._ids = BatchIds()
        self._inserts = {table: _insert_sql(database, table, columns)
                         for table, columns in ANALYSIS_COLUMNS.items()}

    def _last_activity(self, client: Client, session_ids: list[str]) -> dict[str, int]:
        """Each existing session's last activity: its last task's end or its last
        event, whichever is later (sessions without a task are left out)."""
        out: dict[str, int] = {}
        visible = committed(self.db)
        for start in range(0, len(session_ids), LOOKUP_CHUNK):
            ids = {"ids": tuple(session_ids[start:start + LOOKUP_CHUNK])}
            of_sessions = (f"task_id IN (SELECT task_id FROM {self.db}.task_keys"
                           " WHERE key = 'session' AND value IN %(ids)s)")
            ends = dict(client.execute(
                f"SELECT session_id, end_ns FROM ({sessions_sql(self.db, visible, of_sessions)})"
                " WHERE session_id IN %(ids)s", ids))
            events = dict(client.execute(
                f"SELECT session_id, max(time_ns) FROM {self.db}.session_events"
                f" WHERE session_id IN %(ids)s AND {visible} GROUP BY session_id", ids))
            for session_id, end_ns in ends.items():
                out[session_id] = max(int(end_ns), int(events.get(session_id, 0)))
        return out

    def write(self, client: Client, update: AnalysisUpdate) -> None:
        """Write ``update``; visible (and its work done) once all of it is in."""
        batch = self._ids.next()
        now_ns = time.time_ns()
        rows: dict[str, list[list[Any]]] = {
            "task_analysis": [_task_row(t, batch) for t in update.tasks]}
        session_ids = list(dict.fromkeys(s.session_id for s in update.sessions))
        activity = self._last_activity(client, session_ids) if session_ids else {}
        rows["session_analysis"] = [_session_row(s, activity[s.session_id], batch)
                                    for s in update.sessions if s.session_id in activity]
        rows["user_analysis"] = [_user_row(u, now_ns, batch) for u in update.users or ()]
        done = self.tokens.work(update.token)
        if not any(rows.values()) and not done.batches and not done.partial[0] \
                and update.users is None:
            return
        for table in ("task_analysis", "session_analysis", "user_analysis"):
            if rows[table]:
                try:
                    client.execute(self._inserts[table], rows[table])
                except (TypeError, ValueError, OverflowError) as exc:  # a value out of type
                    raise StoreError(f"{table}: {exc}; nothing written") from exc
        client.execute(self._inserts["analysis_commits"], [[
            batch, done.batches, *done.partial, int(update.users is not None), self.replica,
            time.time_ns()]])
        self.tokens.forget(update.token)
