"""The session events (``model.records.SessionEventRecord``: session ends and session
feedback) on ClickHouse: appended by the ingest writer with its batch
(``insert_session_events``), read deduplicated (``session_events_sql``): an event
delivered again is the same row again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clickhouse_driver import Client

from phospho_otel.model.records import Extraction, SessionEventRecord
from phospho_otel.store.clickhouse.analysis_schema import SESSION_EVENT_COLUMNS

__all__ = ["insert_session_events", "session_events_sql"]

_FIELDS = ", ".join(SessionEventRecord._fields)


def insert_session_events(client: Client, db: str, batch: Sequence[Extraction],
                          span_rows: Sequence[Sequence[Any]], batch_id: int) -> None:
    """Append the session events of the spans this batch stores (``span_rows``: its
    ``spans`` rows, hex ids first; every event of a derived extraction) to
    ``session_events``, before the batch's commit."""
    new = {(row[0], row[1]) for row in span_rows}
    rows: list[list[Any]] = []
    for x in batch:
        for event in x.session_events:
            key = (event.trace_id.hex(), event.span_id.hex())
            if x.derived or key in new:
                rows.append([*key, *event[2:], batch_id])
    if rows:
        client.execute(f"INSERT INTO {db}.session_events"
                       f" ({', '.join(n for n, _ in SESSION_EVENT_COLUMNS)}) VALUES", rows)


def session_events_sql(db: str, visible: str, where: str) -> str:
    """The distinct visible events matching ``where``, by ``(time_ns, trace_id,
    span_id)`` (the ``SessionEventRecord`` columns, ids as hex)."""
    return (f"SELECT DISTINCT {_FIELDS} FROM {db}.session_events WHERE {visible} AND {where}"
            " ORDER BY time_ns, trace_id, span_id")
