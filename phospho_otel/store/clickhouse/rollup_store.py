"""Stored session and user rollups: exact reads from rows computed once, plus a small live
delta for what they do not cover yet.

The rollups of ``rollups`` (computed from every task version at read) cost a scan of all
tasks per list or insight. Here they are computed once per change and stored:

* ``session_rollups`` / ``user_rollups`` (``MergeTree`` by id): one row per id and fold,
  the ``SessionRollup`` columns (``UserRollup``'s, then ``USER_EXTRA_COLUMNS``), then
  ``gone`` (1: the id has no task left, e.g. its only task was logged again in another
  session), and the fold's version ``(fold, seen, run)``. A read keeps, per id, the row
  of the largest version among folds at or before the snapshot (``argMax``, never
  assuming merged parts).
* ``rollup_marks``: one row per ingest batch folded, with the version of the fold that
  folded it.

**The fold** (``fold``; a background thread in every replica, ``RollupRefresher``; any
number of them at once is harmless): it reads ``(F, seen)`` = the largest committed batch
and the number of commits, takes the committed batches ``<= F`` not marked yet, finds the
sessions and users they touch (``touched``), recomputes exactly those from their tasks
with ``rollups``' SQL at snapshot ``F``, inserts the rows, then marks the batches.

The ids a set of batches touches: the sessions any version of their tasks (or the tasks
of their feedback) ever had, and the users of those tasks and of every task of those
sessions, so that a session whose owner changes updates both users.

**Why a read is exact.** A reader at snapshot ``S`` (the committed batches ``<= S``)
takes as *dirty* the ids touched by its batches that no fold ``<= S`` marked, and reads
those live (``rollups``' SQL narrowed to them); every other id from its stored row of the
latest version ``<= S``. Such a row was computed after every batch of the id was
committed (the fold that marked the id's last batch ran at or before it: commits only
grow, so a larger ``(F, seen)`` is a later read), and from batches ``<= F <= S`` only.
When the dirty set is large (the refresher behind), the whole read is live.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver.util.escape import escape_param

from phospho_otel.store.clickhouse.rollup_schema import KEYS, ROLLUP_COLUMNS
from phospho_otel.store.clickhouse.rollups import sessions_sql, users_sql
from phospho_otel.store.clickhouse.writer import committed

__all__ = ["DIRTY_LIMIT", "FoldResult", "RollupRefresher", "Touched", "fold", "literal",
           "stored_sessions_sql", "stored_users_sql", "touched"]

log = logging.getLogger(__name__)

DIRTY_LIMIT = 2000
"""Dirty ids of one kind beyond which a read computes everything live (its SQL would carry
too many ids)."""
FOLD_CHUNK = 2000
"""Ids recomputed per query by a fold."""

def literal(values: Sequence[str]) -> str:
    """A tuple of SQL string literals (never empty: ``('')`` for no value)."""
    return "(" + ", ".join(escape_param(v, {}) for v in values or ("",)) + ")"


def _stored_sql(db: str, table: str, snapshot: int, narrow: str) -> str:
    """Each id's row of the latest version at or before ``snapshot`` (its value columns).

    ``LIMIT 1 BY`` the id over the rows sorted by version, not a ``GROUP BY`` with an
    ``argMax`` per column: ClickHouse then reads only the columns a query uses (on 18.16,
    a tenth of the time at 25,000 sessions), and two equal rows (a fold retried) are
    one."""
    key = KEYS[table]
    values = ", ".join(n for n, _ in ROLLUP_COLUMNS[table][:-4])
    also = f" AND {narrow}" if narrow else ""
    latest = (f"SELECT {values}, gone FROM {db}.{table} WHERE fold <= {int(snapshot)}{also}"
              f" ORDER BY fold DESC, seen DESC, run DESC LIMIT 1 BY {key}")
    return f"SELECT {values} FROM ({latest}) WHERE gone = 0"


def stored_sessions_sql(db: str, snapshot: int, narrow: str = "") -> str:
    """The stored session rollups at ``snapshot`` (``SessionRollup`` columns), ``narrow``
    a condition on ``session_id`` (e.g. the dirty ones left out)."""
    return _stored_sql(db, "session_rollups", snapshot, narrow)


def stored_users_sql(db: str, snapshot: int, narrow: str = "") -> str:
    """The stored user rollups at ``snapshot`` (``users_sql``'s columns)."""
    return _stored_sql(db, "user_rollups", snapshot, narrow)


# -- what batches touch -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Touched:
    """The sessions and users whose rollups a set of batches changes."""

    sessions: tuple[str, ...] = ()
    users: tuple[str, ...] = ()


def _in_sessions(db: str, sessions: str) -> str:
    return (f"task_id IN (SELECT task_id FROM {db}.task_keys WHERE key = 'session'"
            f" AND value IN {sessions})")


def _in_users(db: str, users: str) -> str:
    return (f"task_id IN (SELECT task_id FROM {db}.task_keys WHERE key = 'user'"
            f" AND value IN {users})")


def touched(client: Client, db: str, batches: Sequence[int]) -> Touched:
    """The ids whose rollups ``batches`` change (see the module docstring)."""
    if not batches:
        return Touched()
    written = "(" + ", ".join(str(int(b)) for b in batches) + ")"
    tasks = (f"(SELECT task_id FROM {db}.tasks WHERE written IN {written} UNION ALL"
             f" SELECT task_id FROM {db}.feedback WHERE written IN {written})")
    sessions = (f"SELECT assumeNotNull(session_id) AS s FROM {db}.tasks"
                f" WHERE task_id IN {tasks} AND isNotNull(session_id)")
    users = (f"SELECT assumeNotNull(user_id) AS u FROM {db}.tasks"
             f" WHERE (task_id IN {tasks} OR {_in_sessions(db, f'({sessions})')})"
             " AND isNotNull(user_id)")
    ((session_ids, user_ids),) = client.execute(
        f"SELECT (SELECT groupUniqArray(s) FROM ({sessions})),"
        f" (SELECT groupUniqArray(u) FROM ({users}))")
    return Touched(tuple(sorted(session_ids)), tuple(sorted(user_ids)))


# -- the fold ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FoldResult:
    """What one fold did."""

    batches: int = 0
    sessions: int = 0
    users: int = 0


def _insert(client: Client, db: str, table: str, rows: list[list[Any]]) -> None:
    if rows:
        names = ", ".join(n for n, _ in ROLLUP_COLUMNS[table])
        client.execute(f"INSERT INTO {db}.{table} ({names}) VALUES", rows)


def _recompute(client: Client, db: str, table: str, ids: Sequence[str], visible: str,
               version: list[int]) -> None:
    """Insert the rollup rows of ``ids`` computed now (a ``gone`` row for an id without
    tasks)."""
    width = len(ROLLUP_COLUMNS[table]) - 4
    for start in range(0, len(ids), FOLD_CHUNK):
        chunk = ids[start:start + FOLD_CHUNK]
        these = literal(chunk)
        if table == "session_rollups":
            sql = sessions_sql(db, visible, _in_sessions(db, these))
            key = "session_id"
        else:
            owned = _in_sessions(db, f"(SELECT value FROM {db}.task_keys WHERE key = 'session'"
                                     f" AND {_in_users(db, these)})")
            sql = users_sql(db, visible, _in_users(db, these), owned)
            key = "user_id"
        rows = [[*r, 0, *version] for r in client.execute(
            f"SELECT * FROM ({sql}) WHERE {key} IN {these}")]
        found = {r[0] for r in rows}
        for gone in (i for i in chunk if i not in found):
            rows.append(_gone_row(table, gone, width, version))
        _insert(client, db, table, rows)


def _gone_row(table: str, key: str, width: int, version: list[int]) -> list[Any]:
    row: list[Any] = [key]
    for _, kind in ROLLUP_COLUMNS[table][1:width]:
        row.append(None if kind.startswith("Nullable") else ("" if kind == "String" else 0))
    return [*row, 1, *version]


def fold(client: Client, db: str) -> FoldResult:
    """Fold the committed batches not folded yet into stored rollups (idempotent: a
    batch folded twice, by two replicas at once, writes equal rows twice)."""
    ((snapshot, seen),) = client.execute(f"SELECT max(batch), count() FROM {db}.commits")
    snapshot, seen = int(snapshot), int(seen)
    batches = [int(b) for (b,) in client.execute(
        f"SELECT batch FROM {db}.commits WHERE batch <= {snapshot} AND batch NOT IN"
        f" (SELECT batch FROM {db}.rollup_marks)")]
    if not batches:
        return FoldResult()
    version = [snapshot, seen, random.getrandbits(63)]
    changed = touched(client, db, batches)
    visible = committed(db, snapshot)
    _recompute(client, db, "session_rollups", changed.sessions, visible, version)
    _recompute(client, db, "user_rollups", changed.users, visible, version)
    _insert(client, db, "rollup_marks", [[b, *version] for b in batches])
    return FoldResult(len(batches), len(changed.sessions), len(changed.users))


# -- the refresher ----------------------------------------------------------------------


@dataclass
class RollupRefresher:
    """A daemon thread folding batches (``fold``) soon after each write (``poke``) and
    every ``interval_s``; a failed fold is logged and tried again later."""

    client: Client
    db: str
    interval_s: float = 1.0
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"rollups-{self.db}",
                                        daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """A batch was committed: fold soon."""
        self._wake.set()

    def fold_now(self) -> FoldResult:
        """Fold now, in the calling thread (one fold at a time per refresher)."""
        with self._lock:
            return fold(self.client, self.db)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.fold_now()
            except Exception as exc:  # ClickHouse away: the next fold catches up
                log.warning("rollup fold failed (will retry): %s", str(exc).splitlines()[0])
                try:
                    self.client.disconnect()
                except Exception:  # already failing
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            self.client.disconnect()
