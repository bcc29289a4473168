"""The stored rollups' tables (``rollup_store`` reads and fills them): the same
ClickHouse 18.16 subset as ``schema``; every statement ``IF NOT EXISTS`` (``schema.ddl``
appends these, so that on a cluster they are replicated like every table).

* ``session_rollups`` / ``user_rollups``: one row per id and fold: the ``SessionRollup``
  columns (``UserRollup``'s then ``rollups.USER_EXTRA_COLUMNS``) with the types of
  ``rollups``' SQL, then ``gone`` and the fold's version ``(fold, seen, run)``;
* ``rollup_marks``: one row per ingest batch folded, with its fold's version.
"""

from __future__ import annotations

from phospho_otel.model.rollup import SessionRollup, UserRollup
from phospho_otel.store.clickhouse.rollups import USER_EXTRA_COLUMNS

__all__ = ["KEYS", "ROLLUP_COLUMNS", "VERSION_COLUMNS", "rollup_ddl"]

_SESSION_TYPES = ("String", "Nullable(String)", "Int64", "Int64", "Int64", "String", "Int64",
                  "Nullable(String)", "String", "Int64", "Nullable(String)",
                  "Nullable(String)", "String", "Int64", "Int64", "Int64", "Nullable(String)")
_USER_TYPES = ("String", *("Int64",) * 9)
VERSION_COLUMNS = (("gone", "UInt8"), ("fold", "UInt64"), ("seen", "UInt64"), ("run", "UInt64"))

ROLLUP_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "session_rollups": (*zip(SessionRollup._fields, _SESSION_TYPES, strict=True),
                        *VERSION_COLUMNS),
    "user_rollups": (*zip((*UserRollup._fields, *USER_EXTRA_COLUMNS), _USER_TYPES,
                          strict=True), *VERSION_COLUMNS),
    "rollup_marks": (("batch", "UInt64"), ("fold", "UInt64"), ("seen", "UInt64"),
                     ("run", "UInt64")),
}
"""The rollup tables' columns (name, type); a rollup table's value columns have the types
of ``rollups``' SQL (so that stored rows and live rows are one ``UNION ALL``)."""

_ENGINES = {
    "session_rollups": "MergeTree ORDER BY (session_id, fold)"
                       " SETTINGS index_granularity = 1024",
    "user_rollups": "MergeTree ORDER BY (user_id, fold) SETTINGS index_granularity = 1024",
    "rollup_marks": "MergeTree ORDER BY batch",
}
KEYS = {"session_rollups": "session_id", "user_rollups": "user_id"}
"""A rollup table's id column."""


def rollup_ddl(database: str) -> list[str]:
    """The statements creating the rollup tables (``IF NOT EXISTS``)."""
    return [f"CREATE TABLE IF NOT EXISTS {database}.{table}"
            f" ({', '.join(f'{n} {k}' for n, k in columns)}) ENGINE = {_ENGINES[table]}"
            for table, columns in ROLLUP_COLUMNS.items()]
