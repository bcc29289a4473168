"""The input conventions the aggregator reads, besides our own: which attribute keys
carry a span's session id, user id, input and output. One ``Convention`` per peer, in
``CONVENTIONS``; a new convention is one more entry.

Precedence: a span's session id is the first string found going through the conventions
in order, looking at each one's ``session_keys`` (likewise its user id). Its input is the
first string among the conventions' text ``input_keys`` in order, then among their
structured keys (``structured_input_keys``: JSON message arrays, kept as their text);
its output likewise. The convention that supplied the session id (else the user id)
names the task's ``convention``.

Our own convention (``phospho_otel.semconv``, ``phospho.span.type`` set on the span)
always wins and is read separately by ``extract``.
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
    "OUTPUT_KEYS",
    "SESSION_KEYS",
    "USER_KEYS",
    "WANTED_KEYS",
    "Convention",
    "is_foreign_task",
]


@dataclass(frozen=True, slots=True)
class Convention:
    """Where one convention puts a span's session, user, input and output."""

    name: str
    """The ``TaskRecord.convention`` of tasks whose ids come from it."""
    session_keys: tuple[str, ...] = ()
    user_keys: tuple[str, ...] = ()
    input_keys: tuple[str, ...] = ()
    output_keys: tuple[str, ...] = ()
    structured_input_keys: tuple[str, ...] = ()
    """Inputs as structured values (message arrays): used when no text input is found."""
    structured_output_keys: tuple[str, ...] = ()


CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "openinference",  # also OpenTelemetry's session.id / user.id
        session_keys=(SessionAttributes.SESSION_ID,),
        user_keys=(UserAttributes.USER_ID,),
        input_keys=(IOAttributes.INPUT_VALUE,),
        output_keys=(IOAttributes.OUTPUT_VALUE,),
    ),
    Convention(
        "gen_ai",  # OpenTelemetry GenAI
        session_keys=(ForeignAttributes.GEN_AI_CONVERSATION_ID,),
        user_keys=(ForeignAttributes.ENDUSER_ID,),
        structured_input_keys=(ForeignAttributes.GEN_AI_INPUT_MESSAGES,),
        structured_output_keys=(ForeignAttributes.GEN_AI_OUTPUT_MESSAGES,),
    ),
    Convention(
        "traceloop",  # OpenLLMetry
        session_keys=(ForeignAttributes.TRACELOOP_SESSION_ID,),
        user_keys=(ForeignAttributes.TRACELOOP_USER_ID,),
        input_keys=(ForeignAttributes.TRACELOOP_ENTITY_INPUT,),
        output_keys=(ForeignAttributes.TRACELOOP_ENTITY_OUTPUT,),
    ),
    Convention(
        "langfuse",
        session_keys=(ForeignAttributes.LANGFUSE_SESSION_ID,),
        user_keys=(ForeignAttributes.LANGFUSE_USER_ID,),
        input_keys=(ForeignAttributes.LANGFUSE_OBSERVATION_INPUT,),
        output_keys=(ForeignAttributes.LANGFUSE_OBSERVATION_OUTPUT,),
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
INPUT_KEYS: tuple[str, ...] = tuple(
    [k for c in CONVENTIONS for k in c.input_keys]
    + [k for c in CONVENTIONS for k in c.structured_input_keys]
)
OUTPUT_KEYS: tuple[str, ...] = tuple(
    [k for c in CONVENTIONS for k in c.output_keys]
    + [k for c in CONVENTIONS for k in c.structured_output_keys]
)
WANTED_KEYS: frozenset[str] = frozenset(
    [k for k, _ in SESSION_KEYS] + [k for k, _ in USER_KEYS] + list(INPUT_KEYS)
    + list(OUTPUT_KEYS)
)
"""Every attribute key read from a span besides ``phospho.*``."""


def is_foreign_task(local_root: bool, has_io: bool) -> bool:
    """Whether a span of another convention that carries a session id or a user id is a
    task: when it is the root of its local subtree (no parent, or a remote parent) or it
    has an input or an output. (A span with neither id is never a task.)"""
    return local_root or has_io
