"""The phospho-otel semantic convention: the span attributes the SDK writes and the
aggregator reads. Defined once, here; documented in ``docs/semantic-conventions.md``.

Standard names are reused where they exist (``session.id``, ``user.id`` from
OpenTelemetry; ``input.value`` / ``output.value`` from OpenInference, also read by
Phoenix and Langfuse). Our own names live under ``phospho.``.

This module is dependency-free: the SDK, the aggregator and third parties may import it.
"""

from __future__ import annotations

from enum import Enum
from types import MappingProxyType

__all__ = [
    "SEMCONV_VERSION",
    "FeedbackFlagValues",
    "FeedbackSourceValues",
    "ForeignAttributes",
    "IOAttributes",
    "MimeTypeValues",
    "PhosphoAttributes",
    "SessionAttributes",
    "SessionEventNames",
    "SpanTypeValues",
    "StepAttributes",
    "UsageAttributes",
    "UserAttributes",
]

SEMCONV_VERSION = "1.1.0"
"""Version of this convention, written on every span of ours (``SpanTypeValues``) as
``phospho.semconv.version``. Bumped on any change to a key or a value set: the minor
number when something is added (1.1.0: the ``session_end`` and ``session_feedback`` span
types and the ``session.end`` event), the major one when a key or value changes meaning
or goes away."""


class SessionAttributes:
    """Session scope (OpenTelemetry ``session.*``, also OpenInference's and Langfuse's)."""

    SESSION_ID = "session.id"
    """The session the span belongs to. Stamped on every span started in a session scope.
    Also the attribute of the ``session.end`` span event naming the session that ended."""
    SESSION_PREVIOUS_ID = "session.previous_id"
    """On a ``session.start`` span event: the session this one continues, which ended
    then (never written by the SDK)."""


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
    On a feedback span: the id of the task the feedback is about. Never on a
    ``session_end`` or ``session_feedback`` span."""
    RAW_INPUT = "phospho.raw_input"
    """The raw input payload, as JSON text."""
    RAW_OUTPUT = "phospho.raw_output"
    """The raw output payload, as JSON text."""
    METADATA_PREFIX = "phospho.metadata."
    """Each metadata key ``k`` is flattened to ``phospho.metadata.<k>``. Strings, bools,
    ints and floats keep their type; anything else (lists, dicts, None, objects) is
    stored as JSON text."""
    FEEDBACK_FLAG = "phospho.feedback.flag"
    """A ``FeedbackFlagValues`` value (on ``feedback`` and ``session_feedback`` spans)."""
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


class StepAttributes:
    """What a span under a task did (an LLM call, a retrieval, a tool...), by convention:
    read by the steps view (``api.steps``), never written by the SDK."""

    KINDS = ("llm", "retrieval", "embedding", "tool", "agent", "chain", "span")
    """The kinds a step can have: what the span did, ``span`` when no convention says."""
    KIND_KEYS = ("openinference.span.kind", "gen_ai.operation.name", "traceloop.span.kind",
                 "langfuse.observation.type")
    """Attributes naming what a span did (OpenInference, OpenTelemetry GenAI, Traceloop,
    Langfuse); the first one a span carries is read."""
    KIND_BY_VALUE = MappingProxyType({
        # OpenInference openinference.span.kind
        "llm": "llm", "retriever": "retrieval", "embedding": "embedding", "tool": "tool",
        "agent": "agent", "chain": "chain", "reranker": "retrieval",
        # OpenTelemetry GenAI gen_ai.operation.name
        "chat": "llm", "text_completion": "llm", "generate_content": "llm",
        "embeddings": "embedding", "execute_tool": "tool", "invoke_agent": "agent",
        "create_agent": "agent", "retrieval": "retrieval",
        # Traceloop traceloop.span.kind
        "workflow": "chain", "task": "chain",
        # Langfuse langfuse.observation.type
        "generation": "llm", "span": "span", "event": "span",
    })
    """A ``KIND_KEYS`` value, lower-cased -> one of ``KINDS`` (unknown values: ``span``)."""


class UsageAttributes:
    """What an LLM call used: its model, tokens and cost, by convention (OpenTelemetry
    GenAI, OpenInference, OpenLLMetry/Traceloop, Langfuse). Read by the analyzer
    (``insights.usage``: per task, session and user) and the steps view; never written by
    the SDK. For each figure the first key a span carries is read; Langfuse's JSON
    details are read when no plain key is there."""

    MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name",
                  "langfuse.observation.model.name")
    """The model's name (the one that answered before the one asked for)."""
    INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "llm.token_count.prompt",
                        "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
    """Tokens of the prompt (OpenTelemetry GenAI, OpenInference, older GenAI and
    Traceloop names)."""
    OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "llm.token_count.completion",
                         "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens")
    """Tokens of the completion."""
    COST_KEYS = ("llm.cost.total", "gen_ai.usage.cost")
    """The call's cost, in the app's currency (usually USD)."""
    LANGFUSE_USAGE_DETAILS = "langfuse.observation.usage_details"
    """JSON object text ``{"input": n, "output": n, ...}``: tokens, by Langfuse."""
    LANGFUSE_COST_DETAILS = "langfuse.observation.cost_details"
    """JSON object text ``{"total": x, ...}``: cost, by Langfuse."""


class SpanTypeValues(str, Enum):
    """Values of ``phospho.span.type``."""

    TASK = "task"
    """One task (``log()``, ``task()``)."""
    FEEDBACK = "feedback"
    """Feedback on the task ``phospho.task.id`` (``user_feedback(task_id, ...)``)."""
    SESSION_END = "session_end"
    """The explicit end of the session ``session.id`` (``end_session()``), at the span's
    end time; the span also carries a ``session.end`` event (``SessionEventNames.END``)."""
    SESSION_FEEDBACK = "session_feedback"
    """Feedback on the whole session ``session.id`` (``user_feedback(session_id=...)``),
    with the ``phospho.feedback.*`` attributes."""


class SessionEventNames:
    """Span event names of the OpenTelemetry session semantic conventions
    (``model/session/events.yaml``), read by the aggregator on any span."""

    END = "session.end"
    """A session ended, named by the event's ``session.id`` attribute (else by the span's
    own session id). Written by ``end_session()`` on its ``session_end`` span."""
    START = "session.start"
    """A session started; with ``session.previous_id`` it is, per the OpenTelemetry
    conventions, also the end of that previous session. Never written by the SDK."""


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
