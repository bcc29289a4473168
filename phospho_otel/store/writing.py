"""What every backend's writer shares: the records of newly stored spans (``only_new``)
and the result and counters of one written request (``write_result``)."""

from __future__ import annotations

from typing import TypeVar

from phospho_otel.model.records import Extraction, FeedbackRecord, SessionEventRecord, TaskRecord
from phospho_otel.store.api import WriteResult

__all__ = ["only_new", "write_result"]

_R = TypeVar("_R", TaskRecord, FeedbackRecord, SessionEventRecord)


def only_new(records: list[_R], new_keys: set[tuple[bytes, bytes]]) -> list[_R]:
    """The records of newly stored spans (``new_keys``: their (trace id, span id)), each
    span once (a request may repeat one)."""
    left = set(new_keys)
    out = []
    for record in records:
        key = (record.trace_id, record.span_id)
        if key in left:
            left.discard(key)
            out.append(record)
    return out


def write_result(x: Extraction, counters: dict[str, int], *, stored: int, tasks_new: int,
                 tasks_updated: int, feedback_new: int) -> WriteResult:
    """The ``WriteResult`` of writing ``x``, of whose spans ``stored`` were new; adds the
    request's figures to ``counters`` (``requests``, ``spans_*``, ``tasks_new``,
    ``tasks_updated``, ``feedback_stored``). The extraction's problems become the error
    message, with how many more there were."""
    skipped = (x.counters.get("tasks_skipped_invalid", 0)
               + x.counters.get("feedback_skipped_invalid", 0))
    duplicates = x.span_count - x.rejected_spans - stored
    for name, value in (
        ("requests", 1),
        ("spans_received", x.span_count),
        ("spans_stored", stored),
        ("spans_duplicate", duplicates),
        ("spans_rejected", x.rejected_spans),
        ("tasks_new", tasks_new),
        ("tasks_updated", tasks_updated),
        ("feedback_stored", feedback_new),
    ):
        counters[name] = counters.get(name, 0) + value
    message = ""
    if x.problems:
        message = "; ".join(x.problems)
        more = x.rejected_spans + skipped - len(x.problems)
        if more > 0:
            message += f"; and {more} more"
    return WriteResult(
        spans_received=x.span_count,
        spans_stored=stored,
        spans_duplicate=duplicates,
        rejected_spans=x.rejected_spans,
        tasks_new=tasks_new,
        tasks_updated=tasks_updated,
        feedback_new=feedback_new,
        skipped_invalid=skipped,
        error_message=message,
    )
