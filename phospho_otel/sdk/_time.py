"""Times given to the SDK (``log(start_time=, end_time=)``, ``end_session(at=)``,
``user_feedback(at=)``), as OpenTelemetry span times: integer nanoseconds since the Unix
epoch.

A time is either

- a ``datetime``: an aware one is converted exactly (to the microsecond, a datetime's
  resolution); a **naive one is taken as UTC** (not as local time: backfilled history
  usually comes from UTC logs, and the same call then means the same instant on every
  machine);
- an ``int``: nanoseconds since the epoch, used as is.

Anything else raises ``TypeError`` at the call site: a ``bool`` (an ``int`` in Python,
never a time), a ``float`` (seconds or nanoseconds? ``int(t * 1e9)`` says which), a
``date`` without a time, a string. A time before the epoch or after 2262-04-11 (2^63 - 1
ns, the latest a store holds) raises ``ValueError``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from time import time_ns

__all__ = ["MAX_TIME_NS", "SpanTime", "span_times", "to_epoch_ns"]

SpanTime = datetime | int
"""What the SDK accepts as a time (see the module doc)."""

MAX_TIME_NS = 2**63 - 1
"""The latest time accepted (the aggregator rejects spans past it)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def to_epoch_ns(name: str, value: object) -> int:
    """``value`` (the argument ``name``) in ns since the epoch; raises ``TypeError`` /
    ``ValueError`` as the module doc says."""
    if type(value) is int:
        ns = value
    elif isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=timezone.utc)
        ns = (value - _EPOCH) // _MICROSECOND * 1000  # exact: no float on the way
    elif isinstance(value, bool):
        raise TypeError(f"{name} must be a datetime or an int (ns since the epoch), "
                        f"got {value!r}")
    elif isinstance(value, int):  # an int subclass (IntEnum...): its integer value
        ns = int(value)
    else:
        hint = (" (for seconds since the epoch, pass int(t * 1e9))"
                if isinstance(value, float) else "")
        raise TypeError(f"{name} must be a datetime or an int (ns since the epoch), got "
                        f"{type(value).__name__}{hint}")
    if ns < 0 or ns > MAX_TIME_NS:
        raise ValueError(f"{name}={value!r} is outside 1970-01-01 .. 2262-04-11 "
                         "(0 .. 2^63-1 ns since the epoch)")
    return ns


def span_times(start_time: object, end_time: object) -> tuple[int, int]:
    """The (start, end) ns of a span given optional start and end times: both given,
    they are used (``ValueError`` if the end is before the start); one given, the span
    starts and ends then (zero duration); neither, now."""
    if start_time is None:
        if end_time is None:
            now = time_ns()
            return now, now
        end = to_epoch_ns("end_time", end_time)
        return end, end
    start = to_epoch_ns("start_time", start_time)
    if end_time is None:
        return start, start
    end = to_epoch_ns("end_time", end_time)
    if end < start:
        raise ValueError(f"end_time ({end_time!r}) is before start_time ({start_time!r})")
    return start, end
