"""``api.serialize``: ISO-8601 times, keyset cursors, and the documented JSON shapes of
store rows (each exactly its field table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from phospho_otel.api import serialize
from phospho_otel.errors import BadRequest
from phospho_otel.insights import session_insights, user_insights
from phospho_otel.insights.sessions import session_outcomes
from phospho_otel.store import open_store
from tests.support.dataset import write_scripted


class TestTimes:
    def test_round_trip(self) -> None:
        """ISO-8601 UTC text and nanoseconds convert both ways, offsets honoured."""
        ns = serialize.iso_to_ns("2026-01-10T10:00:00.123456Z")
        assert serialize.ns_to_iso(ns) == "2026-01-10T10:00:00.123456Z"
        assert serialize.iso_to_ns("2026-01-10T11:00:00+01:00") == serialize.iso_to_ns(
            "2026-01-10T10:00:00Z")
        assert serialize.iso_to_ns("2026-01-10") == serialize.iso_to_ns("2026-01-10T00:00:00Z")
        assert serialize.iso_to_ns("1970-01-01T00:00:01Z") == 1_000_000_000
        assert serialize.ns_to_iso(1_764_082_980_123_456_789) == "2025-11-25T15:03:00.123456Z"
        assert serialize.ns_to_iso(None) is None

    def test_bad_time(self) -> None:
        """Text that is not a time raises BadRequest."""
        with pytest.raises(BadRequest):
            serialize.iso_to_ns("yesterday")


class TestCursors:
    def test_round_trip(self) -> None:
        """A cursor decodes to the (sort value, id) it was made of."""
        for cursor in ((123, "s1"), ("2026", "a/b"), (None, "x")):
            encoded = serialize.encode_cursor(cursor)
            assert encoded is not None
            assert serialize.decode_cursor(encoded) == cursor
        assert serialize.encode_cursor(None) is None

    @pytest.mark.parametrize("text", ["not-a-cursor", "garbage!", "", "WzEsMl0",
                                      "WzEuNSwieCJd"])
    def test_bad_cursor(self, text: str) -> None:
        """A forged cursor (not ours, or of the wrong types) raises BadRequest."""
        with pytest.raises(BadRequest):
            serialize.decode_cursor(text)


class TestShapes:
    def test_fields(self, tmp_path: Path) -> None:
        """Each shape answers exactly the fields of its table, in its order."""
        store = open_store(str(tmp_path / "shapes.db"))
        try:
            write_scripted(store)
            with store.read() as r:
                task, session, user = r.get_task("a1"), r.get_session("s1"), r.get_user("alice")
                si, ui, so = session_insights(r), user_insights(r), session_outcomes(r)
        finally:
            store.close()
        assert task is not None and session is not None and user is not None
        assert list(serialize.task_json(task)) == list(serialize.TASK_FIELDS)
        assert list(serialize.session_json(session)) == list(serialize.SESSION_FIELDS)
        assert list(serialize.user_json(user)) == list(serialize.USER_FIELDS)
        assert list(serialize.session_insights_json(si, 0, 1.0, so)) == list(
            serialize.SESSION_INSIGHTS_FIELDS)
        assert list(serialize.user_insights_json(ui, 0, 1.0)) == list(
            serialize.USER_INSIGHTS_FIELDS)
