"""The input conventions the aggregator reads, besides our own: which attribute keys
carry a span's session id, user id, input and output, and what names the convention a
span comes from. One ``Convention`` per peer, in ``CONVENTIONS``; a new convention is one
more entry.

Precedence: a span's session id is the first string found going through the conventions
in order, looking at each one's ``session_keys`` (likewise its user id). Its input is
read from the first of, in this order: a flattened message list (any convention's
``input_message_prefixes``: the last user message's text), then the conventions'
``input_keys`` in order (a string value; the end user's words are taken out of it by
``messages.user_text``); its output likewise (``messages.reply_text``). The system
prompt is the first system message found, else the first of ``system_keys``.

The ``convention`` of a task names the library that produced the span: the first
convention (in order) one of whose ``marker_keys`` the span carries, else the one whose
``scope_prefixes`` its instrumentation scope name starts with, else the one its session
(else user) id came from. Markers come first because a span's attribute families say
who wrote it even when another library's tracer started it (Traceloop's and Logfire's
LLM spans also carry ``gen_ai.*``: their own markers are checked before GenAI's).

Our own convention (``phospho_otel.semconv``, ``phospho.span.type`` set on the span)
always wins and is read separately by ``extract``; which foreign spans become tasks is
``extract``'s rule (documented there).
"""

from __future__ import annotations

from dataclasses import dataclass

from phospho_otel.semconv import (
    ForeignAttributes,
    IOAttributes,
    SessionAttributes,
    UserAttributes,
)

__all__ = [
    "CONVENTIONS",
    "INPUT_KEYS",
    "INPUT_MESSAGE_PREFIXES",
    "MARKER_KEYS",
    "NAME_KEYS",
    "NOT_TASK",
    "OUTPUT_KEYS",
    "OUTPUT_MESSAGE_PREFIXES",
    "READ_PREFIXES",
    "SCOPE_PREFIXES",
    "SESSION_KEYS",
    "STREAMED_CALL",
    "STREAM_COMPLETION",
    "SYSTEM_KEYS",
    "USER_KEYS",
    "WANTED_KEYS",
    "Convention",
    "convention_of_scope",
]


@dataclass(frozen=True, slots=True)
class Convention:
    """Where one convention puts a span's session, user, input and output, and how its
    spans are recognised."""

    name: str
    """The ``TaskRecord.convention`` of tasks it produced."""
    session_keys: tuple[str, ...] = ()
    user_keys: tuple[str, ...] = ()
    input_keys: tuple[str, ...] = ()
    """String attributes holding the input: text, or JSON (message arrays, call records,
    requests), read by ``messages.user_text``."""
    output_keys: tuple[str, ...] = ()
    """String attributes holding the output, read by ``messages.reply_text``."""
    input_message_prefixes: tuple[str, ...] = ()
    """Flattened message lists (``<prefix><i>.message.role`` ...), read before the keys."""
    output_message_prefixes: tuple[str, ...] = ()
    system_keys: tuple[str, ...] = ()
    """String attributes holding system instructions (text or parts JSON)."""
    marker_keys: tuple[str, ...] = ()
    """Attributes only this convention writes: a span carrying one is of this convention."""
    scope_prefixes: tuple[str, ...] = ()
    """Instrumentation scope names of this convention's tracers (prefixes)."""
    not_task: tuple[tuple[str, str], ...] = ()
    """``(key, value)`` pairs marking spans that are never tasks (log records sent as
    zero-duration spans)."""
    name_key: str | None = None
    """A string attribute that names the task better than the span name (the rendered
    message of a message-template span name)."""


_LLM_INPUT_MESSAGES = "llm.input_messages."
_LLM_OUTPUT_MESSAGES = "llm.output_messages."

CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "openinference",  # also OpenTelemetry's session.id / user.id
        session_keys=(SessionAttributes.SESSION_ID,),
        user_keys=(UserAttributes.USER_ID,),
        input_keys=(IOAttributes.INPUT_VALUE,),
        output_keys=(IOAttributes.OUTPUT_VALUE,),
        input_message_prefixes=(_LLM_INPUT_MESSAGES,),
        output_message_prefixes=(_LLM_OUTPUT_MESSAGES,),
        marker_keys=("openinference.span.kind",),
        scope_prefixes=("openinference.",),
    ),
    Convention(
        "logfire",  # its ids come as session.id / user.id (logfire.set_baggage)
        marker_keys=("logfire.span_type", "logfire.msg_template"),
        scope_prefixes=("logfire",),
        not_task=(("logfire.span_type", "log"), ("logfire.span_type", "annotation")),
        name_key="logfire.msg",
    ),
    Convention(
        "traceloop",  # OpenLLMetry
        session_keys=(ForeignAttributes.TRACELOOP_SESSION_ID,),
        user_keys=(ForeignAttributes.TRACELOOP_USER_ID,),
        input_keys=(ForeignAttributes.TRACELOOP_ENTITY_INPUT,),
        output_keys=(ForeignAttributes.TRACELOOP_ENTITY_OUTPUT,),
        marker_keys=("traceloop.span.kind", "traceloop.workflow.name",
                     "traceloop.entity.name"),
        scope_prefixes=("traceloop.",),
    ),
    Convention(
        "langfuse",
        session_keys=(ForeignAttributes.LANGFUSE_SESSION_ID,),
        user_keys=(ForeignAttributes.LANGFUSE_USER_ID,),
        input_keys=(ForeignAttributes.LANGFUSE_OBSERVATION_INPUT, "langfuse.trace.input"),
        output_keys=(ForeignAttributes.LANGFUSE_OBSERVATION_OUTPUT,
                     "langfuse.trace.output"),
        marker_keys=("langfuse.observation.type",),
        scope_prefixes=("langfuse",),
    ),
    Convention(
        "gen_ai",  # OpenTelemetry GenAI (also written by Traceloop and Logfire)
        session_keys=(ForeignAttributes.GEN_AI_CONVERSATION_ID,),
        user_keys=(ForeignAttributes.ENDUSER_ID,),
        input_keys=(ForeignAttributes.GEN_AI_INPUT_MESSAGES,),
        output_keys=(ForeignAttributes.GEN_AI_OUTPUT_MESSAGES,),
        input_message_prefixes=("gen_ai.prompt.",),  # the older flattened form
        output_message_prefixes=("gen_ai.completion.",),
        system_keys=("gen_ai.system_instructions",),
        marker_keys=("gen_ai.operation.name",),
        scope_prefixes=("opentelemetry.instrumentation.openai_v2",
                        "opentelemetry.util.genai"),
    ),
)
"""The conventions, in precedence order."""

SESSION_KEYS: tuple[tuple[str, str], ...] = tuple(
    (key, c.name) for c in CONVENTIONS for key in c.session_keys
)
"""``(key, convention name)`` in precedence order."""
USER_KEYS: tuple[tuple[str, str], ...] = tuple(
    (key, c.name) for c in CONVENTIONS for key in c.user_keys
)
INPUT_KEYS: tuple[str, ...] = tuple(k for c in CONVENTIONS for k in c.input_keys)
OUTPUT_KEYS: tuple[str, ...] = tuple(k for c in CONVENTIONS for k in c.output_keys)
INPUT_MESSAGE_PREFIXES: tuple[str, ...] = tuple(
    p for c in CONVENTIONS for p in c.input_message_prefixes)
OUTPUT_MESSAGE_PREFIXES: tuple[str, ...] = tuple(
    p for c in CONVENTIONS for p in c.output_message_prefixes)
SYSTEM_KEYS: tuple[str, ...] = tuple(k for c in CONVENTIONS for k in c.system_keys)
MARKER_KEYS: tuple[tuple[str, str], ...] = tuple(
    (key, c.name) for c in CONVENTIONS for key in c.marker_keys)
"""``(key, convention name)`` in precedence order."""
SCOPE_PREFIXES: tuple[tuple[str, str], ...] = tuple(
    (prefix, c.name) for c in CONVENTIONS for prefix in c.scope_prefixes)
NOT_TASK: tuple[tuple[str, str], ...] = tuple(pair for c in CONVENTIONS for pair in c.not_task)
STREAM_COMPLETION = ("logfire.msg_template", "streaming response from ")
"""Logfire's record of a streamed LLM call's end: a log span (``NOT_TASK`` otherwise)
whose template starts so, carrying the whole turn (the input messages, the reply, the
usage); it is the streamed turn's task."""
STREAMED_CALL = (("logfire.span_type", "span"), "gen_ai.operation.name")
"""Logfire's span of a streamed LLM call: this pair and this key, an input but no output
(it ends when the stream is handed to the app) and no error status. Not a task: its
``STREAM_COMPLETION`` record is (a failed call, with its error status, stays the task)."""
NAME_KEYS: tuple[str, ...] = tuple(c.name_key for c in CONVENTIONS if c.name_key)
READ_PREFIXES: tuple[str, ...] = ("phospho.", *INPUT_MESSAGE_PREFIXES,
                                  *OUTPUT_MESSAGE_PREFIXES)
"""Key prefixes read from a span besides ``WANTED_KEYS``."""
WANTED_KEYS: frozenset[str] = frozenset(
    [k for k, _ in SESSION_KEYS] + [k for k, _ in USER_KEYS] + list(INPUT_KEYS)
    + list(OUTPUT_KEYS) + list(SYSTEM_KEYS) + [k for k, _ in MARKER_KEYS]
    + [k for k, _ in NOT_TASK] + list(NAME_KEYS)
)
"""Every attribute key read from a span besides those under ``READ_PREFIXES``."""


def convention_of_scope(scope_name: str) -> str | None:
    """The convention whose tracers use this instrumentation scope name, if any."""
    for prefix, name in SCOPE_PREFIXES:
        if scope_name.startswith(prefix):
            return name
    return None
