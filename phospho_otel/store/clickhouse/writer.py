"""The ClickHouse backend's write path: one batch of extracted requests, a few large
INSERTs, then one ``commits`` row.

How a batch is written (``ClickHouseWriter.write``), keeping ``store.api``'s contracts:

1. The batch's span keys and task ids are looked up among committed rows (two queries):
   which spans are stored already, and each known task's latest version.
2. Requests are then taken in order, as the SQLite backend does: a span already stored
   (or earlier in the batch) is a duplicate and goes no further; tasks and feedback of
   new spans are kept; a task id is new, a later version (``tasks_updated``), or an older
   one (counted in ``tasks_superseded``). This only shapes the ``WriteResult`` and
   counters: the rows themselves are all appended, and reads merge them (``rollups``),
   so that two replicas writing the same span at once, or a retried write, change no
   view.
3. Rows go in with one INSERT per table (``origins``, ``spans``, ``tasks``,
   ``feedback``, ``counters``); the materialized views fill the lookup tables.
   Span annotations are appended to ``span_annotations`` (deduplicated at read). A
   derived extraction (``Extraction.derived``) has no spans: its tasks and feedback are
   all kept, and its tasks count as a later version of a stored one with an equal
   ``(end_ns, span_id)`` (reads take, among equal versions, the later batch).
4. Last, the batch's row in ``commits``. Reads see only committed batches: a write that
   fails half-way leaves nothing visible, and its retry (a new batch) writes it all
   again.

Every row is checked against its column types before the first INSERT, so that a bad
record fails the batch before anything is sent.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from clickhouse_driver import Client

from phospho_otel.errors import StoreError
from phospho_otel.model.records import (
    Extraction,
    FeedbackRecord,
    Origin,
    SpanAnnotationRecord,
    SpanRecord,
    TaskRecord,
)
from phospho_otel.store.api import WriteResult
from phospho_otel.store.clickhouse.schema import HEX_FIELDS, TABLE_COLUMNS
from phospho_otel.store.clickhouse.session_events import insert_session_events
from phospho_otel.store.writing import only_new, write_result

__all__ = ["LOOKUP_CHUNK", "BatchIds", "ClickHouseWriter", "committed"]

LOOKUP_CHUNK = 2000
"""Ids per lookup query (a query's text stays far below ``max_query_size``)."""


def committed(db: str, upto: int | None = None) -> str:
    """The condition selecting rows of committed batches (up to batch ``upto``)."""
    bound = "" if upto is None else f" WHERE batch <= {int(upto)}"
    return f"written IN (SELECT batch FROM {db}.commits{bound})"


class BatchIds:
    """Batch ids: nanoseconds since the epoch with random low bits, increasing within a
    process, distinct across replicas (a snapshot is "every batch up to an id")."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            candidate = (time.time_ns() & ~0xFFF) | random.getrandbits(12)
            self._last = max(candidate, self._last + 1)
            return self._last




def _hex_row(fields: tuple[str, ...]) -> Callable[[Sequence[Any]], list[Any]]:
    """Converts a record to its row: raw ids to hex text."""
    hexed = [i for i, f in enumerate(fields) if f in HEX_FIELDS]

    def convert(record: Sequence[Any]) -> list[Any]:
        row = list(record)
        for i in hexed:
            value = row[i]
            if value is not None:
                row[i] = value.hex()
        return row

    return convert


_span_row = _hex_row(SpanRecord._fields)
_task_row = _hex_row(TaskRecord._fields)
_feedback_row = _hex_row(FeedbackRecord._fields)
_origin_row = _hex_row(Origin._fields)
_annotation_row = _hex_row(SpanAnnotationRecord._fields)

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {"String": (str, bytes), "Int32": (int,),
                                              "Int64": (int,), "UInt64": (int,)}


def _check(table: str, rows: Iterable[Sequence[Any]]) -> None:
    """Raise ``StoreError`` for a row that its table's columns cannot hold."""
    checks = []
    for name, kind in TABLE_COLUMNS[table]:
        nullable = kind.startswith("Nullable(")
        base = kind[9:-1] if nullable else kind
        checks.append((name, nullable, _PYTHON_TYPES[base]))
    for row in rows:
        for value, (name, nullable, types) in zip(row, checks, strict=True):
            if value is None:
                if not nullable:
                    raise StoreError(f"{table}.{name}: no value (NULL); nothing written")
            elif not isinstance(value, types) or isinstance(value, bool):
                raise StoreError(f"{table}.{name}: {type(value).__name__} value {value!r:.60}"
                                 " does not fit; nothing written")


def _insert_sql(db: str, table: str) -> str:
    return (f"INSERT INTO {db}.{table} ({', '.join(n for n, _ in TABLE_COLUMNS[table])})"
            " VALUES")


class ClickHouseWriter:
    """Writes batches on one client; one thread at a time (the store's write lock)."""

    def __init__(self, client: Client, database: str, *, replica: str | None = None) -> None:
        self.client = client
        self.db = database
        self.replica = replica or f"{os.uname().nodename}:{os.getpid()}:{id(self):x}"
        self._ids = BatchIds()
        self._origins_written: set[bytes] = set()
        self._inserts = {t: _insert_sql(database, t) for t in TABLE_COLUMNS}

    # -- lookups -------------------------------------------------------------------------

    def _stored_keys(self, trace_ids: list[str]) -> set[tuple[str, str]]:
        """(trace id, span id) of committed spans of these traces (hex)."""
        found: set[tuple[str, str]] = set()
        for start in range(0, len(trace_ids), LOOKUP_CHUNK):
            rows = self.client.execute(
                f"SELECT DISTINCT trace_id, span_id FROM {self.db}.spans"
                f" WHERE trace_id IN %(ids)s AND {committed(self.db)}",
                {"ids": tuple(trace_ids[start : start + LOOKUP_CHUNK])})
            found.update((t, s) for t, s in rows)
        return found

    def _known_tasks(self, task_ids: list[str]) -> dict[str, tuple[int, str]]:
        """task id -> (end_ns, span id hex) of its latest committed version."""
        known: dict[str, tuple[int, str]] = {}
        for start in range(0, len(task_ids), LOOKUP_CHUNK):
            rows = self.client.execute(
                f"SELECT task_id, argMax(tuple(end_ns, span_id), tuple(end_ns, span_id))"
                f" FROM {self.db}.tasks WHERE task_id IN %(ids)s AND {committed(self.db)}"
                " GROUP BY task_id",
                {"ids": tuple(task_ids[start : start + LOOKUP_CHUNK])})
            for task_id, (end_ns, span_id) in rows:
                known[task_id] = (end_ns, span_id)
        return known

    # -- the batch -------------------------------------------------------------------------

    def write(self, batch: Sequence[Extraction]) -> list[WriteResult]:
        """Write the batch; visible to readers (committed) only once all of it is in."""
        trace_ids = sorted({r.trace_id.hex() for x in batch for _, group in x.groups
                            for r in group})
        task_ids = sorted({t.task_id for x in batch for t in x.tasks})
        seen = self._stored_keys(trace_ids) if trace_ids else set()
        known = self._known_tasks(task_ids) if task_ids else {}
        batch_id = self._ids.next()
        rows: dict[str, list[list[Any]]] = {t: [] for t in TABLE_COLUMNS}
        counters: dict[str, int] = {}
        results = [self._one(x, seen, known, rows, counters, batch_id) for x in batch]
        rows["counters"] = [[k, v, batch_id] for k, v in counters.items() if v]
        for table in ("origins", "tasks", "feedback", "span_annotations"):
            _check(table, rows[table])
        for table in ("origins", "spans", "tasks", "feedback", "span_annotations", "counters"):
            if rows[table]:
                self.client.execute(self._inserts[table], rows[table])
        insert_session_events(self.client, self.db, batch, rows["spans"], batch_id)
        self.client.execute(self._inserts["commits"], [[batch_id, self.replica, time.time_ns()]])
        self._origins_written.update(bytes.fromhex(r[0]) for r in rows["origins"])
        if len(self._origins_written) > 100_000:
            self._origins_written.clear()
        return results

    def _one(self, x: Extraction, seen: set[tuple[str, str]], known: dict[str, tuple[int, str]],
             rows: dict[str, list[list[Any]]], counters: dict[str, int],
             batch_id: int) -> WriteResult:
        for name, value in x.counters.items():
            counters[name] = counters.get(name, 0) + value
        new_keys: set[tuple[bytes, bytes]] = set()
        for origin, group in x.groups:
            origin_hex = origin.hash.hex()
            added = False
            for record in group:
                row = _span_row(record)
                key = (row[0], row[1])
                if key in seen:
                    continue
                seen.add(key)
                new_keys.add((record.trace_id, record.span_id))
                row += (origin_hex, batch_id)
                rows["spans"].append(row)
                added = True
            if added and origin.hash not in self._origins_written:
                rows["origins"].append(_origin_row(origin))
        stored = len(new_keys)
        tasks = x.tasks if x.derived else only_new(x.tasks, new_keys)
        feedback = x.feedback if x.derived else only_new(x.feedback, new_keys)
        rows["span_annotations"].extend([*_annotation_row(a), batch_id] for a in x.annotations)
        tasks_new = replaced = superseded = 0
        latest: dict[str, TaskRecord] = {}
        for task in tasks:
            rows["tasks"].append([*_task_row(task), batch_id])
            seen_task = latest.get(task.task_id)
            if seen_task is None:
                latest[task.task_id] = task
            else:
                superseded += 1
                if (task.end_ns, task.span_id) > (seen_task.end_ns, seen_task.span_id):
                    latest[task.task_id] = task
        for task_id, task in latest.items():
            version = (task.end_ns, task.span_id.hex())
            old = known.get(task_id)
            if old is None:
                tasks_new += 1
            else:
                superseded += 1
                if version < old or (version == old and not x.derived):
                    continue
                replaced += 1
            known[task_id] = version
        if superseded:
            counters["tasks_superseded"] = counters.get("tasks_superseded", 0) + superseded
        rows["feedback"].extend([*_feedback_row(f), batch_id] for f in feedback)
        return write_result(x, counters, stored=stored, tasks_new=tasks_new,
                            tasks_updated=replaced, feedback_new=len(feedback))


