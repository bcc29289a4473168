"""aggregator.conventions: every key of every convention in ``CONVENTIONS`` is read by
``extract``, and the precedence between conventions is the one the module documents.

The tables below are generated from ``CONVENTIONS``, so a new convention is tested as soon
as it is added; ``test_extract.py`` names the conventions and their keys literally."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping

import pytest

from phospho_otel.aggregator.conventions import (
    CONVENTIONS,
    INPUT_KEYS,
    OUTPUT_KEYS,
    SESSION_KEYS,
    USER_KEYS,
    WANTED_KEYS,
    Convention,
)
from phospho_otel.aggregator.extract import extract
from phospho_otel.model.records import CONVENTION_PHOSPHO, SpanRecord, TaskRecord
from phospho_otel.semconv import IOAttributes, SessionAttributes, UserAttributes
from tests.support.otlp import make_request, make_span, task_span

CHILD = b"\x01" * 8
"""A parent span id: a span with it is not the root of its local subtree."""
MESSAGES = json.dumps([{"role": "user", "content": "hi"}])
"""A structured (JSON message array) value, as the text it is sent as."""


def extracted(attributes: Mapping[str, object],
              parent: bytes = b"") -> tuple[SpanRecord, list[TaskRecord]]:
    """The span row and the tasks of one span with these attributes."""
    x = extract(make_request([make_span(attributes, parent_span_id=parent)]))
    ((_, (row,)),) = x.groups
    return row, x.tasks


def only_task(attributes: Mapping[str, object], parent: bytes = b"") -> TaskRecord:
    _, tasks = extracted(attributes, parent)
    assert len(tasks) == 1, tasks
    return tasks[0]


def id_key(convention: Convention) -> str:
    """A key that gives a span of this convention a session (else a user) id."""
    return (convention.session_keys + convention.user_keys)[0]


def keys(*kinds: str) -> list[object]:
    """``(convention, key)`` for every key of these kinds, in precedence order."""
    return [pytest.param(c, key, id=f"{c.name}:{key}")
            for kind in kinds for c in CONVENTIONS for key in getattr(c, kind)]


def in_order(kinds: tuple[str, str]) -> list[str]:
    """The documented precedence of inputs (or outputs): every convention's text keys in
    convention order, then every convention's structured keys in convention order."""
    return [key for kind in kinds for c in CONVENTIONS for key in getattr(c, kind)]


INPUT_ORDER = in_order(("input_keys", "structured_input_keys"))
OUTPUT_ORDER = in_order(("output_keys", "structured_output_keys"))


def value_of(key: str) -> str:
    """A value for an input or output key: message JSON for structured keys."""
    structured = {k for c in CONVENTIONS
                  for k in c.structured_input_keys + c.structured_output_keys}
    return MESSAGES if key in structured else f"text of {key}"


def ordered_pairs(items: list[str]) -> list[object]:
    """``(earlier, later)`` for every pair of items."""
    return [pytest.param(a, b, id=f"{a}>{b}") for a, b in itertools.combinations(items, 2)]


def convention_pairs(distinct_order: bool = False) -> list[object]:
    pairs = (itertools.permutations(CONVENTIONS, 2) if distinct_order
             else itertools.combinations(CONVENTIONS, 2))
    return [pytest.param(a, b, id=f"{a.name}>{b.name}") for a, b in pairs]


class TestTable:
    """The table itself."""

    def test_names_are_unique_and_not_ours(self) -> None:
        """Each convention names its tasks differently, and none takes our name."""
        names = [c.name for c in CONVENTIONS]
        assert len(set(names)) == len(names)
        assert CONVENTION_PHOSPHO not in names

    @pytest.mark.parametrize("convention", CONVENTIONS, ids=lambda c: c.name)
    def test_every_convention_can_make_tasks(self, convention: Convention) -> None:
        """A convention has a session or a user key (without one it could never name a
        task), and an input or an output key."""
        assert convention.session_keys or convention.user_keys
        assert (convention.input_keys or convention.structured_input_keys
                or convention.output_keys or convention.structured_output_keys)

    def test_wanted_keys_cover_every_key(self) -> None:
        """WANTED_KEYS is exactly the set of every convention's keys (extract reads no
        other attribute but ``phospho.*``)."""
        every = {key for c in CONVENTIONS
                 for kind in ("session_keys", "user_keys", "input_keys", "output_keys",
                              "structured_input_keys", "structured_output_keys")
                 for key in getattr(c, kind)}
        assert every <= WANTED_KEYS
        assert WANTED_KEYS == every

    def test_key_lists_follow_the_documented_order(self) -> None:
        """The flattened key lists are in the documented precedence order."""
        assert SESSION_KEYS == tuple((k, c.name) for c in CONVENTIONS for k in c.session_keys)
        assert USER_KEYS == tuple((k, c.name) for c in CONVENTIONS for k in c.user_keys)
        assert list(INPUT_KEYS) == INPUT_ORDER
        assert list(OUTPUT_KEYS) == OUTPUT_ORDER


class TestEachKey:
    """Every key of every convention, alone on a span."""

    @pytest.mark.parametrize(("convention", "key"), keys("session_keys"))
    def test_session_key(self, convention: Convention, key: str) -> None:
        """A root span carrying only this session key is a task of this convention with
        that session id."""
        row, tasks = extracted({key: "the-session"})
        (task,) = tasks
        assert (task.session_id, task.user_id, task.convention) == (
            "the-session", None, convention.name)
        assert (task.input, task.output) == (None, None)
        assert (row.session_id, row.user_id) == ("the-session", None)

    @pytest.mark.parametrize(("convention", "key"), keys("user_keys"))
    def test_user_key(self, convention: Convention, key: str) -> None:
        """A root span carrying only this user key is a task of this convention with that
        user id."""
        row, tasks = extracted({key: "the-user"})
        (task,) = tasks
        assert (task.session_id, task.user_id, task.convention) == (
            None, "the-user", convention.name)
        assert (row.session_id, row.user_id) == (None, "the-user")

    @pytest.mark.parametrize(("convention", "key"), keys("session_keys", "user_keys"))
    def test_id_on_a_plain_child_span(self, convention: Convention, key: str) -> None:
        """A child span with only this id key and no input or output is not a task, but
        its span row carries the id (traces are found by session or user)."""
        row, tasks = extracted({key: "the-id"}, parent=CHILD)
        assert tasks == []
        assert "the-id" in (row.session_id, row.user_id)

    @pytest.mark.parametrize(("convention", "key"),
                             keys("input_keys", "structured_input_keys"))
    def test_input_key(self, convention: Convention, key: str) -> None:
        """A child span with this convention's id and this input key is a task (it has an
        input) of this convention, whose input is the value (structured inputs as their
        text)."""
        value = value_of(key)
        task = only_task({id_key(convention): "the-id", key: value}, parent=CHILD)
        assert (task.input, task.output, task.convention) == (value, None, convention.name)

    @pytest.mark.parametrize(("convention", "key"),
                             keys("output_keys", "structured_output_keys"))
    def test_output_key(self, convention: Convention, key: str) -> None:
        """A child span with this convention's id and this output key is a task (it has
        an output) of this convention, whose output is the value."""
        value = value_of(key)
        task = only_task({id_key(convention): "the-id", key: value}, parent=CHILD)
        assert (task.input, task.output, task.convention) == (None, value, convention.name)

    @pytest.mark.parametrize(("convention", "key"),
                             keys("input_keys", "structured_input_keys", "output_keys",
                                  "structured_output_keys"))
    def test_io_alone_is_not_a_task(self, convention: Convention, key: str) -> None:
        """An input or output without any session or user id makes no task."""
        row, tasks = extracted({key: value_of(key)})
        assert tasks == []
        assert (row.session_id, row.user_id) == (None, None)

    @pytest.mark.parametrize(("convention", "key"), keys("session_keys", "user_keys"))
    def test_non_string_id_ignored(self, convention: Convention, key: str) -> None:
        """Only string values count: an id key holding a number is no id."""
        row, tasks = extracted({key: 42})
        assert tasks == []
        assert (row.session_id, row.user_id) == (None, None)


class TestPrecedence:
    """Which convention wins when a span carries several."""

    @pytest.mark.parametrize(("first", "later"), convention_pairs())
    def test_session_id(self, first: Convention, later: Convention) -> None:
        """Two conventions' session keys: the earlier convention's id wins, and names the
        task, whatever the attributes' order; a non-string value there does not count."""
        for attributes in ({first.session_keys[0]: "early", later.session_keys[0]: "late"},
                           {later.session_keys[0]: "late", first.session_keys[0]: "early"}):
            task = only_task(attributes)
            assert (task.session_id, task.convention) == ("early", first.name)
        task = only_task({first.session_keys[0]: 7, later.session_keys[0]: "late"})
        assert (task.session_id, task.convention) == ("late", later.name)

    @pytest.mark.parametrize(("first", "later"), convention_pairs())
    def test_user_id(self, first: Convention, later: Convention) -> None:
        """Two conventions' user keys: the earlier convention's id wins, whatever the
        attributes' order; a non-string value there does not count."""
        for attributes in ({first.user_keys[0]: "early", later.user_keys[0]: "late"},
                           {later.user_keys[0]: "late", first.user_keys[0]: "early"}):
            task = only_task(attributes)
            assert (task.user_id, task.convention) == ("early", first.name)
        task = only_task({first.user_keys[0]: 7, later.user_keys[0]: "late"})
        assert (task.user_id, task.convention) == ("late", later.name)

    @pytest.mark.parametrize(("of_session", "of_user"), convention_pairs(distinct_order=True))
    def test_session_names_the_convention(self, of_session: Convention,
                                          of_user: Convention) -> None:
        """The convention that supplied the session id names the task, even when another
        one supplied the user id."""
        task = only_task({of_user.user_keys[0]: "u", of_session.session_keys[0]: "s"})
        assert (task.session_id, task.user_id, task.convention) == ("s", "u", of_session.name)

    @pytest.mark.parametrize(("earlier", "later"), ordered_pairs(INPUT_ORDER))
    def test_input(self, earlier: str, later: str) -> None:
        """Inputs: text keys in convention order, then structured keys in convention
        order; the first string wins, whatever the attributes' order."""
        session_key = CONVENTIONS[-1].session_keys[0]
        for attributes in ({session_key: "s", earlier: value_of(earlier), later: "late"},
                           {session_key: "s", later: "late", earlier: value_of(earlier)}):
            assert only_task(attributes).input == value_of(earlier)
        task = only_task({session_key: "s", earlier: 1.5, later: "late"})
        assert task.input == "late"

    @pytest.mark.parametrize(("earlier", "later"), ordered_pairs(OUTPUT_ORDER))
    def test_output(self, earlier: str, later: str) -> None:
        """Outputs: as inputs, text keys first, each group in convention order."""
        session_key = CONVENTIONS[-1].session_keys[0]
        for attributes in ({session_key: "s", earlier: value_of(earlier), later: "late"},
                           {session_key: "s", later: "late", earlier: value_of(earlier)}):
            assert only_task(attributes).output == value_of(earlier)
        task = only_task({session_key: "s", earlier: True, later: "late"})
        assert task.output == "late"

    def test_our_convention_always_wins(self) -> None:
        """A span of our convention (``phospho.span.type``) is read by our rules alone,
        whatever other conventions' keys it carries too."""
        span = task_span("ours", session_id="our-session", input="our input",
                         output="our output")
        ours = {SessionAttributes.SESSION_ID, UserAttributes.USER_ID, IOAttributes.INPUT_VALUE,
                IOAttributes.OUTPUT_VALUE}  # our convention reads these keys too
        for c in CONVENTIONS:
            for key in (*c.session_keys, *c.user_keys, *c.input_keys, *c.output_keys,
                        *c.structured_input_keys, *c.structured_output_keys):
                if key not in ours:
                    span.attributes.add(key=key).value.string_value = value_of(key)
        (task,) = extract(make_request([span])).tasks
        assert (task.task_id, task.convention) == ("ours", CONVENTION_PHOSPHO)
        assert (task.session_id, task.user_id) == ("our-session", None)
        assert (task.input, task.output) == ("our input", "our output")
