"""The phospho-otel semantic convention: the span attributes the SDK writes and the
aggregator reads. Defined once, here; documented in ``docs/semantic-conventions.md``.

Standard names are reused where they exist (``session.id``, ``user.id`` from
OpenTelemetry; ``input.value`` / ``output.value`` from OpenInference, also read by
Phoenix and Langfuse). Our own names live under ``phospho.``.

This module is dependency-free: the SDK, the aggregator and third parties may import it.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "SEMCONV_VERSION",
    "FeedbackFlagValues",
    "FeedbackSourceValues",
    "ForeignAttributes",
    "IOAttributes",
    "MimeTypeValues",
    "PhosphoAttributes",
    "SessionAttributes",
    "SpanTypeValues",
    "UserAttributes",
]

SEMCONV_VERSION = "1.0.0"
"""Version of this convention, written on every task and feedback span as
``phospho.semconv.version``. Bumped on any change to a key or a value set."""


class SessionAttributes:
    """Session scope (OpenTelemetry ``session.*``, also OpenInference's and Langfuse's)."""

    SESSION_ID = "session.id"
    """The session the span belongs to. Stamped on every span started in a session scope."""


class UserAttributes:
    """End-user scope (OpenTelemetry ``user.*``, also OpenInference's and Langfuse's)."""

    USER_ID = "user.id"
    """Who uses the app. Stamped on every span started in a user scope."""


class IOAttributes:
    """Human-readable input and output of a task (OpenInference names)."""

    INPUT_VALUE = "input.value"
    """Readable text of the task's input (required on a task span)."""
    INPUT_MIME_TYPE = "input.mime_type"
    """``text/plain`` or ``application/json``."""
    OUTPUT_VALUE = "output.value"
    """Readable text of the task's output (optional)."""
    OUTPUT_MIME_TYPE = "output.mime_type"
    """``text/plain`` or ``application/json``."""


class PhosphoAttributes:
    """phospho's own keys."""

    SPAN_TYPE = "phospho.span.type"
    """Marks a span as one of ours: a ``SpanTypeValues`` value. Spans without it are
    plain spans (still stored and traced, never counted as tasks)."""
    SEMCONV_VERSION = "phospho.semconv.version"
    """The ``SEMCONV_VERSION`` the span was written with."""
    TASK_ID = "phospho.task.id"
    """On a task span: the task's id (generated, or the caller's own, kept exactly).
    On a feedback span: the id of the task the feedback is about."""
    RAW_INPUT = "phospho.raw_input"
    """The raw input payload, as JSON text."""
    RAW_OUTPUT = "phospho.raw_output"
    """The raw output payload, as JSON text."""
    METADATA_PREFIX = "phospho.metadata."
    """Each metadata key ``k`` is flattened to ``phospho.metadata.<k>``. Strings, bools,
    ints and floats keep their type; anything else (lists, dicts, None, objects) is
    stored as JSON text."""
    FEEDBACK_FLAG = "phospho.feedback.flag"
    """A ``FeedbackFlagValues`` value."""
    FEEDBACK_NOTES = "phospho.feedback.notes"
    """Free text that comes with the feedback."""
    FEEDBACK_SOURCE = "phospho.feedback.source"
    """Who gave the feedback: ``user``, ``owner``, an evaluator's name..."""
    TRUNCATED = "phospho.truncated"
    """Array of the attribute keys whose values the SDK truncated to its size limit."""


class ForeignAttributes:
    """Other conventions' session, user and I/O keys, read by the aggregator so that apps
    instrumented with other tools get sessions and users too. Never written by the SDK."""

    GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
    GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
    GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
    ENDUSER_ID = "enduser.id"
    TRACELOOP_SESSION_ID = "traceloop.association.properties.session_id"
    TRACELOOP_USER_ID = "traceloop.association.properties.user_id"
    TRACELOOP_ENTITY_INPUT = "traceloop.entity.input"
    TRACELOOP_ENTITY_OUTPUT = "traceloop.entity.output"
    LANGFUSE_SESSION_ID = "langfuse.session.id"
    LANGFUSE_USER_ID = "langfuse.user.id"
    LANGFUSE_OBSERVATION_INPUT = "langfuse.observation.input"
    LANGFUSE_OBSERVATION_OUTPUT = "langfuse.observation.output"


class SpanTypeValues(str, Enum):
    """Values of ``phospho.span.type``."""

    TASK = "task"
    FEEDBACK = "feedback"


class FeedbackFlagValues(str, Enum):
    """Values of ``phospho.feedback.flag``."""

    SUCCESS = "success"
    FAILURE = "failure"


class FeedbackSourceValues(str, Enum):
    """Well-known values of ``phospho.feedback.source`` (any string is allowed)."""

    USER = "user"
    OWNER = "owner"


class MimeTypeValues(str, Enum):
    """Values of ``input.mime_type`` / ``output.mime_type``."""

    TEXT = "text/plain"
    JSON = "application/json"
