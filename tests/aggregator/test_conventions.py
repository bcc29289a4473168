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
    MARKER_KEYS,
    NAME_KEYS,
    NOT_TASK,
    OUTPUT_KEYS,
    SESSION_KEYS,
    SYSTEM_KEYS,
    USER_KEYS,
    WANTED_KEYS,
    Convention,
    convention_of_scope,
)
from phospho_otel.aggregator.extract import extract
from phospho_otel.model.records import CONVENTION_PHOSPHO, SpanRecord, TaskRecord
from phospho_otel.semconv import IOAttributes, SessionAttributes, UserAttributes
from tests.support.otlp import make_request, make_span, task_span

CHILD = b"\x01" * 8
"""A parent span id: a span with it is not the root of its local subtree."""
USER_MESSAGES = json.dumps([{"role": "system", "content": "be brief"},
                            {"role": "user", "content": "hi"}])
"""An input message array, as the text it is sent as: its user text is ``"hi"``."""
ASSISTANT_MESSAGES = json.dumps([{"role": "assistant", "content": "hello"}])
"""An output message array: its reply text is ``"hello"``."""
ANY_INPUT = {IOAttributes.INPUT_VALUE: "some input"}
"""An input, so that a span with an id is a task."""

WITH_IDS = [c for c in CONVENTIONS if c.session_keys]
WITH_MARKERS = [c for c in CONVENTIONS if c.marker_keys]


def extracted(attributes: Mapping[str, object], parent: bytes = b"",
              scope: str = "app") -> tuple[SpanRecord, list[TaskRecord]]:
    """The span row and the tasks of one span with these attributes."""
    x = extract(make_request([make_span(attributes, parent_span_id=parent)], scope=scope))
    ((_, (row,)),) = x.groups
    return row, x.tasks


def only_task(attributes: Mapping[str, object], scope: str = "app") -> TaskRecord:
    _, tasks = extracted(attributes, scope=scope)
    assert len(tasks) == 1, tasks
    return tasks[0]


def keys(*kinds: str) -> list[object]:
    """``(convention, key)`` for every key of these kinds, in precedence order."""
    return [pytest.param(c, key, id=f"{c.name}:{key}")
            for kind in kinds for c in CONVENTIONS for key in getattr(c, kind)]


def ordered_pairs(items: tuple[str, ...]) -> list[object]:
    """``(earlier, later)`` for every pair of items."""
    return [pytest.param(a, b, id=f"{a}>{b}") for a, b in itertools.combinations(items, 2)]


def convention_pairs(conventions: list[Convention], distinct_order: bool = False) -> list[object]:
    pairs = (itertools.permutations(conventions, 2) if distinct_order
             else itertools.combinations(conventions, 2))
    return [pytest.param(a, b, id=f"{a.name}>{b.name}") for a, b in pairs]


class TestTable:
    """The table itself."""

    def test_names_are_unique_and_not_ours(self) -> None:
        """Each convention names its tasks differently, and none takes our name."""
        names = [c.name for c in CONVENTIONS]
        assert len(set(names)) == len(names)
        assert CONVENTION_PHOSPHO not in names
        assert set(names) == {"openinference", "gen_ai", "traceloop", "langfuse", "logfire"}

    @pytest.mark.parametrize("convention", CONVENTIONS, ids=lambda c: c.name)
    def test_every_convention_is_recognisable(self, convention: Convention) -> None:
        """A convention names tasks by its ids, its marker attributes or its scopes."""
        assert convention.session_keys or convention.marker_keys or convention.scope_prefixes

    def test_wanted_keys_cover_every_key(self) -> None:
        """WANTED_KEYS is exactly the set of every convention's single keys (extract
        reads no other attribute but ``phospho.*`` and the message prefixes)."""
        every = {key for c in CONVENTIONS
                 for kind in ("session_keys", "user_keys", "input_keys", "output_keys",
                              "system_keys", "marker_keys")
                 for key in getattr(c, kind)}
        every |= {key for c in CONVENTIONS for key, _ in c.not_task}
        every |= {c.name_key for c in CONVENTIONS if c.name_key}
        assert WANTED_KEYS == every

    def test_key_lists_follow_the_documented_order(self) -> None:
        """The flattened key lists are in the documented precedence order."""
        assert SESSION_KEYS == tuple((k, c.name) for c in CONVENTIONS for k in c.session_keys)
        assert USER_KEYS == tuple((k, c.name) for c in CONVENTIONS for k in c.user_keys)
        assert INPUT_KEYS == tuple(k for c in CONVENTIONS for k in c.input_keys)
        assert OUTPUT_KEYS == tuple(k for c in CONVENTIONS for k in c.output_keys)
        assert MARKER_KEYS == tuple((k, c.name) for c in CONVENTIONS for k in c.marker_keys)
        assert SYSTEM_KEYS == tuple(k for c in CONVENTIONS for k in c.system_keys)
        assert NAME_KEYS == tuple(c.name_key for c in CONVENTIONS if c.name_key)
        assert NOT_TASK == tuple(p for c in CONVENTIONS for p in c.not_task)


class TestEachKey:
    """Every key of every convention, on a span of an unknown scope."""

    @pytest.mark.parametrize(("convention", "key"), keys("session_keys"))
    def test_session_key(self, convention: Convention, key: str) -> None:
        """A root span with this session key and an input is a task of this convention
        with that session id; without an input or output it is none."""
        row, tasks = extracted({key: "the-session", **ANY_INPUT})
        (task,) = tasks
        assert (task.session_id, task.user_id, task.convention) == (
            "the-session", None, convention.name)
        assert (row.session_id, row.user_id) == ("the-session", None)
        assert extracted({key: "the-session"})[1] == []

    @pytest.mark.parametrize(("convention", "key"), keys("user_keys"))
    def test_user_key(self, convention: Convention, key: str) -> None:
        """Likewise a user key."""
        row, tasks = extracted({key: "the-user", **ANY_INPUT})
        (task,) = tasks
        assert (task.session_id, task.user_id, task.convention) == (
            None, "the-user", convention.name)
        assert (row.session_id, row.user_id) == (None, "the-user")

    @pytest.mark.parametrize(("convention", "key"), keys("session_keys", "user_keys"))
    def test_id_on_a_child_span(self, convention: Convention, key: str) -> None:
        """A child span (parent not in the request) with this id is not a task, even with
        an input, but its span row carries the id."""
        row, tasks = extracted({key: "the-id", **ANY_INPUT}, parent=CHILD)
        assert tasks == []
        assert "the-id" in (row.session_id, row.user_id)

    @pytest.mark.parametrize(("convention", "key"), keys("input_keys"))
    def test_input_key(self, convention: Convention, key: str) -> None:
        """This input key makes a root span with an id a task: plain text is the input as
        is; a message array gives its last user message's text, the array kept as
        ``raw_input`` and its system prompt in the metadata."""
        task = only_task({SessionAttributes.SESSION_ID: "s", key: "plain words"})
        assert (task.input, task.raw_input, task.output) == ("plain words", None, None)
        task = only_task({SessionAttributes.SESSION_ID: "s", key: USER_MESSAGES})
        assert (task.input, task.raw_input) == ("hi", USER_MESSAGES)
        assert json.loads(task.metadata) == {"system_prompt": "be brief"}

    @pytest.mark.parametrize(("convention", "key"), keys("output_keys"))
    def test_output_key(self, convention: Convention, key: str) -> None:
        """This output key: plain text as is, a message array's assistant text."""
        task = only_task({SessionAttributes.SESSION_ID: "s", key: "plain reply"})
        assert (task.input, task.output, task.raw_output) == (None, "plain reply", None)
        task = only_task({SessionAttributes.SESSION_ID: "s", key: ASSISTANT_MESSAGES})
        assert (task.output, task.raw_output) == ("hello", ASSISTANT_MESSAGES)

    @pytest.mark.parametrize(("convention", "key"), keys("input_keys", "output_keys"))
    def test_io_alone_is_not_a_task(self, convention: Convention, key: str) -> None:
        """An input or output without any session or user id makes no task."""
        row, tasks = extracted({key: "words"})
        assert tasks == []
        assert (row.session_id, row.user_id) == (None, None)

    @pytest.mark.parametrize(("convention", "key"), keys("session_keys", "user_keys"))
    def test_non_string_id_ignored(self, convention: Convention, key: str) -> None:
        """Only string values count: an id key holding a number is no id."""
        row, tasks = extracted({key: 42, **ANY_INPUT})
        assert tasks == []
        assert (row.session_id, row.user_id) == (None, None)

    @pytest.mark.parametrize(("convention", "key"), keys("marker_keys"))
    def test_marker_names_the_convention(self, convention: Convention, key: str) -> None:
        """A span carrying this marker is of this convention, whichever convention's
        key gave its session id."""
        for id_convention in WITH_IDS:
            task = only_task({id_convention.session_keys[0]: "s", key: "x", **ANY_INPUT})
            assert task.convention == convention.name

    @pytest.mark.parametrize("convention", [c for c in CONVENTIONS if c.scope_prefixes],
                             ids=lambda c: c.name)
    def test_scope_names_the_convention(self, convention: Convention) -> None:
        """A span of this convention's instrumentation scope and without markers is of
        this convention, whichever key gave its session id."""
        scope = convention.scope_prefixes[0] + "x"
        assert convention_of_scope(scope) == convention.name
        for id_convention in WITH_IDS:
            task = only_task({id_convention.session_keys[0]: "s", **ANY_INPUT}, scope=scope)
            assert task.convention == convention.name

    @pytest.mark.parametrize(("key", "value"), list(NOT_TASK))
    def test_not_task(self, key: str, value: str) -> None:
        """A span marked as a log record is never a task."""
        assert extracted({SessionAttributes.SESSION_ID: "s", key: value, **ANY_INPUT})[1] == []

    @pytest.mark.parametrize("key", list(NAME_KEYS))
    def test_name_key(self, key: str) -> None:
        """The name attribute names the task instead of the span name."""
        task = only_task({SessionAttributes.SESSION_ID: "s", key: "rendered", **ANY_INPUT})
        assert task.name == "rendered"


class TestPrecedence:
    """Which convention wins when a span carries several."""

    @pytest.mark.parametrize(("first", "later"), convention_pairs(WITH_IDS))
    def test_session_id(self, first: Convention, later: Convention) -> None:
        """Two conventions' session keys: the earlier convention's id wins, and names the
        task, whatever the attributes' order; a non-string value there does not count."""
        for attributes in ({first.session_keys[0]: "early", later.session_keys[0]: "late"},
                           {later.session_keys[0]: "late", first.session_keys[0]: "early"}):
            task = only_task({**attributes, **ANY_INPUT})
            assert (task.session_id, task.convention) == ("early", first.name)
        task = only_task({first.session_keys[0]: 7, later.session_keys[0]: "late",
                          **ANY_INPUT})
        assert (task.session_id, task.convention) == ("late", later.name)

    @pytest.mark.parametrize(("first", "later"), convention_pairs(WITH_IDS))
    def test_user_id(self, first: Convention, later: Convention) -> None:
        """Two conventions' user keys: the earlier convention's id wins."""
        for attributes in ({first.user_keys[0]: "early", later.user_keys[0]: "late"},
                           {later.user_keys[0]: "late", first.user_keys[0]: "early"}):
            assert only_task({**attributes, **ANY_INPUT}).user_id == "early"

    @pytest.mark.parametrize(("of_session", "of_user"),
                             convention_pairs(WITH_IDS, distinct_order=True))
    def test_session_names_the_convention(self, of_session: Convention,
                                          of_user: Convention) -> None:
        """Without markers or a known scope, the convention that supplied the session id
        names the task, even when another one supplied the user id."""
        task = only_task({of_user.user_keys[0]: "u", of_session.session_keys[0]: "s",
                          **ANY_INPUT})
        assert (task.session_id, task.user_id, task.convention) == ("s", "u", of_session.name)

    @pytest.mark.parametrize(("first", "later"), convention_pairs(WITH_MARKERS))
    def test_markers(self, first: Convention, later: Convention) -> None:
        """Two conventions' markers: the earlier one names the task; markers win over the
        scope."""
        attributes = {SessionAttributes.SESSION_ID: "s", later.marker_keys[0]: "x",
                      first.marker_keys[0]: "x", **ANY_INPUT}
        assert only_task(attributes).convention == first.name
        scope = later.scope_prefixes[0] + "x"
        task = only_task({SessionAttributes.SESSION_ID: "s", first.marker_keys[0]: "x",
                          **ANY_INPUT}, scope=scope)
        assert task.convention == first.name

    @pytest.mark.parametrize(("earlier", "later"), ordered_pairs(INPUT_KEYS))
    def test_input(self, earlier: str, later: str) -> None:
        """Inputs: keys in convention order; the first string wins, whatever the
        attributes' order."""
        for attributes in ({"session.id": "s", earlier: "early", later: "late"},
                           {"session.id": "s", later: "late", earlier: "early"}):
            assert only_task(attributes).input == "early"
        assert only_task({"session.id": "s", earlier: 1.5, later: "late"}).input == "late"

    @pytest.mark.parametrize(("earlier", "later"), ordered_pairs(OUTPUT_KEYS))
    def test_output(self, earlier: str, later: str) -> None:
        """Outputs: as inputs."""
        for attributes in ({"session.id": "s", earlier: "early", later: "late"},
                           {"session.id": "s", later: "late", earlier: "early"}):
            assert only_task(attributes).output == "early"
        assert only_task({"session.id": "s", earlier: True, later: "late"}).output == "late"

    @pytest.mark.parametrize("prefix", [p for c in CONVENTIONS
                                        for p in c.input_message_prefixes])
    def test_flattened_messages_before_keys(self, prefix: str) -> None:
        """A flattened message list wins over the input keys (it is the turn's messages;
        a key may hold a whole request), the key's value kept as ``raw_input``."""
        role, content = (("message.role", "message.content") if prefix.startswith("llm.")
                         else ("role", "content"))
        attributes = {"session.id": "s", INPUT_KEYS[0]: '{"messages": "whole request"}',
                      f"{prefix}0.{role}": "system", f"{prefix}0.{content}": "be brief",
                      f"{prefix}1.{role}": "user", f"{prefix}1.{content}": "old words",
                      f"{prefix}2.{role}": "assistant", f"{prefix}2.{content}": "reply",
                      f"{prefix}10.{role}": "user", f"{prefix}10.{content}": "new words"}
        task = only_task(attributes)
        assert (task.input, task.raw_input) == ("new words", '{"messages": "whole request"}')
        assert json.loads(task.metadata) == {"system_prompt": "be brief"}

    def test_our_convention_always_wins(self) -> None:
        """A span of our convention (``phospho.span.type``) is read by our rules alone,
        whatever other conventions' keys it carries too."""
        span = task_span("ours", session_id="our-session", input="our input",
                         output="our output")
        ours = {SessionAttributes.SESSION_ID, UserAttributes.USER_ID, IOAttributes.INPUT_VALUE,
                IOAttributes.OUTPUT_VALUE}  # our convention reads these keys too
        for key in sorted(WANTED_KEYS - ours):
            span.attributes.add(key=key).value.string_value = USER_MESSAGES
        (task,) = extract(make_request([span])).tasks
        assert (task.task_id, task.convention) == ("ours", CONVENTION_PHOSPHO)
        assert (task.session_id, task.user_id) == ("our-session", None)
        assert (task.input, task.output) == ("our input", "our output")
