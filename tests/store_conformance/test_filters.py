"""The list filters on tasks' metadata, text and flag (``TaskFilter.metadata`` / ``text``
/ ``flag``, ``SessionFilter.metadata``, ``UserFilter.metadata``), on every backend: the
scripted data set (``tests/support/dataset``) plus tasks whose metadata values have every
JSON type."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from phospho_otel.errors import BadRequest
from phospho_otel.store.api import Page, SessionFilter, Store, TaskFilter, UserFilter
from tests.support.dataset import SERVICE, write_scripted
from tests.support.oracle import write
from tests.support.otlp import iso_ns, make_request, task_span

EXTRA = [
    # (task id, session, user, input, output, metadata)
    ("m1", "s9", "erin", "Where is my ORDER?", "on its way",
     {"version_id": "1.0.0", "tokens": 3, "beta": True, "ratio": 1.5, "a.b": "dotted",
      "tags": ["x", "y"]}),
    ("m2", "s9", "erin", "thanks", "you're welcome 100%",
     {"version_id": "1.1.0", "tokens": "3", "beta": False, "café": "crème"}),
    ("m3", None, "frank", "50%_off?", None, {"version_id": "1.0.0", "beta": True}),
]


@pytest.fixture
def filled(store: Store) -> Store:
    write_scripted(store)
    spans = [task_span(task_id, session_id=session, user_id=user, input=text,
                       output=answer, metadata=meta, key=task_id,
                       start_ns=iso_ns(f"2026-01-13T10:0{i}:00Z"),
                       end_ns=iso_ns(f"2026-01-13T10:0{i}:01Z"))
             for i, (task_id, session, user, text, answer, meta) in enumerate(EXTRA)]
    write(store, make_request(spans, service=SERVICE))
    return store


def tasks(store: Store, **where: object) -> tuple[list[str], int | None]:
    with store.read() as r:
        found = r.list_tasks(TaskFilter(**where), Page("start_time", descending=False))  # type: ignore[arg-type]
    return [t.task.task_id for t in found.items], found.total


def meta(*pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(pairs)


class TestTaskMetadata:
    @pytest.mark.parametrize(("pairs", "expected"), [
        (meta(("version_id", "1.0.0")), ["m1", "m3"]),
        (meta(("version_id", "1.1.0")), ["m2"]),
        (meta(("tokens", "3")), ["m1", "m2"]),  # the number 3 and the string "3"
        (meta(("tokens", "12")), ["a1"]),  # the scripted a1's metadata
        (meta(("model", "gpt-x")), ["a1"]),
        (meta(("beta", "true")), ["m1", "m3"]),
        (meta(("beta", "false")), ["m2"]),
        (meta(("ratio", "1.5")), ["m1"]),
        (meta(("a.b", "dotted")), ["m1"]),  # a key with a dot is one key
        (meta(("café", "crème")), ["m2"]),
        (meta(("tags", '["x","y"]')), ["m1"]),  # a list is kept as its JSON text
        (meta(("version_id", "1.0.0"), ("beta", "true")), ["m1", "m3"]),
        (meta(("version_id", "1.0.0"), ("tokens", "3")), ["m1"]),  # ANDed
        (meta(("version_id", "2")), []),
        (meta(("nope", "1.0.0")), []),
        (meta(("version", "1.0.0")), []),  # a prefix of a key is not the key
    ])
    def test_match(self, filled: Store, pairs: tuple[tuple[str, str], ...],
                   expected: list[str]) -> None:
        """A task matches when every key is in its metadata with that text; the total
        counts the same tasks."""
        assert tasks(filled, metadata=pairs) == (expected, len(expected))

    def test_with_other_filters(self, filled: Store) -> None:
        """Metadata combines with the user, session and time filters."""
        pairs = meta(("version_id", "1.0.0"))
        assert tasks(filled, metadata=pairs, user_id="frank") == (["m3"], 1)
        assert tasks(filled, metadata=pairs, session_id="s9") == (["m1"], 1)
        assert tasks(filled, metadata=pairs, from_ns=iso_ns("2026-01-13T10:01:00Z")) == (
            ["m3"], 1)

    @pytest.mark.parametrize("key", ['a"b', "a\\b", "a\nb", ""])
    def test_bad_key(self, filled: Store, key: str) -> None:
        """A key that cannot be named in a JSON path is a BadRequest, never SQL."""
        with pytest.raises(BadRequest, match="metadata"):
            tasks(filled, metadata=meta((key, "x")))

    def test_quote_in_value(self, filled: Store) -> None:
        """Values are parameters: quotes in them match nothing and break nothing."""
        assert tasks(filled, metadata=meta(("version_id", "1.0.0' OR '1'='1"))) == ([], 0)


class TestTaskText:
    @pytest.mark.parametrize(("text", "expected"), [
        ("order", ["m1"]),  # in the input, any ASCII case
        ("WAY", ["m1"]),  # in the output
        ("hello", ["a1", "b1", "b2"]),
        ("100%", ["m2"]),  # % and _ are plain characters
        ("%_", ["m3"]),
        ("0%_o", ["m3"]),
        ("_", ["m3"]),
        ("nothing like it", []),
    ])
    def test_substring(self, filled: Store, text: str, expected: list[str]) -> None:
        assert tasks(filled, text=text) == (expected, len(expected))

    def test_with_user(self, filled: Store) -> None:
        assert tasks(filled, text="hello", user_id="bob") == (["b1", "b2"], 2)


class TestTaskFlag:
    def test_flags(self, filled: Store) -> None:
        """The latest feedback: a2 and a3 success (a3's failure came first), a4 failure,
        the rest none."""
        assert tasks(filled, flag="success") == (["a2", "a3"], 2)
        assert tasks(filled, flag="failure") == (["a4"], 1)
        unflagged = ["a1", "b1", "b2", "c1", "m1", "m2", "m3"]
        assert tasks(filled, flag="none") == (unflagged, len(unflagged))

    def test_combined(self, filled: Store) -> None:
        assert tasks(filled, flag="none", text="hello") == (["a1", "b1", "b2"], 3)
        assert tasks(filled, flag="success", metadata=meta(("model", "gpt-x"))) == ([], 0)

    def test_paging(self, filled: Store) -> None:
        """A filtered list pages by cursor like any other."""
        seen: list[str] = []
        cursor = None
        with filled.read() as r:
            while True:
                found = r.list_tasks(TaskFilter(flag="none"), Page(
                    "start_time", descending=True, limit=2, cursor=cursor))
                assert found.total == 7
                seen += [t.task.task_id for t in found.items]
                if found.next_cursor is None:
                    break
                cursor = found.next_cursor
        assert seen == ["m3", "m2", "m1", "c1", "b2", "b1", "a1"]


def ids(items: Sequence[object], attribute: str) -> list[str]:
    return sorted(getattr(getattr(i, "rollup", i), attribute) for i in items)


class TestOwners:
    @pytest.mark.parametrize(("pairs", "sessions", "users"), [
        (meta(("version_id", "1.0.0")), ["s9"], ["erin", "frank"]),
        (meta(("version_id", "1.1.0")), ["s9"], ["erin"]),
        (meta(("model", "gpt-x")), ["s1"], ["alice"]),
        (meta(("version_id", "1.1.0"), ("beta", "true")), [], []),  # no one task has both
        (meta(("nope", "x")), [], []),
    ])
    def test_any_task(self, filled: Store, pairs: tuple[tuple[str, str], ...],
                      sessions: list[str], users: list[str]) -> None:
        """A session (a user) matches when one of its tasks matches every pair."""
        with filled.read() as r:
            found_sessions = r.list_sessions(SessionFilter(metadata=pairs), Page("start_time"))
            found_users = r.list_users(UserFilter(metadata=pairs), Page("last_seen"))
        assert ids(found_sessions.items, "session_id") == sessions
        assert found_sessions.total == len(sessions)
        assert ids(found_users.items, "user_id") == users
        assert found_users.total == len(users)

    def test_with_other_filters(self, filled: Store) -> None:
        pairs = meta(("version_id", "1.0.0"))
        with filled.read() as r:
            assert r.list_users(UserFilter(user_id="frank", metadata=pairs),
                                Page("last_seen")).total == 1
            assert r.list_sessions(SessionFilter(user_id="alice", metadata=pairs),
                                   Page("start_time")).total == 0
            found = r.list_sessions(SessionFilter(from_ns=iso_ns("2026-01-13T00:00:00Z"),
                                                  metadata=pairs), Page("start_time"))
        assert ids(found.items, "session_id") == ["s9"]
