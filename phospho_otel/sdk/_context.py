"""Session scope kept in the OpenTelemetry context (a contextvar underneath), so it
follows threads' and asyncio tasks' contexts exactly as the active span does.

``session(...)`` attaches a ``Scope``; the span processor reads it in ``on_start`` and
stamps its attributes on every span, whatever tracer made it. With ``baggage=True`` the
session and user also go into W3C baggage, so propagators carry them to other services,
where our processor picks them up from the incoming baggage.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextvars import Token
from types import TracebackType
from typing import Any

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.context import Context

from phospho_otel.sdk._serialize import flatten_metadata
from phospho_otel.semconv import SessionAttributes, UserAttributes

__all__ = ["SCOPE_KEY", "Scope", "check_id", "current_scope", "new_session", "session"]

SCOPE_KEY = otel_context.create_key("phospho-session-scope")
"""The OpenTelemetry context key holding the innermost ``Scope`` (read by the span
processor and the fast path)."""

SESSION_ID = SessionAttributes.SESSION_ID
USER_ID = UserAttributes.USER_ID


class Scope:
    """An immutable session scope: the ids, and the attributes to stamp on spans."""

    __slots__ = ("attributes", "metadata", "session_id", "user_id")

    def __init__(
        self, session_id: str | None, user_id: str | None, metadata: Mapping[str, Any]
    ) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.metadata = dict(metadata)
        attributes: dict[str, Any] = flatten_metadata(self.metadata)
        if session_id is not None:
            attributes[SESSION_ID] = session_id
        if user_id is not None:
            attributes[USER_ID] = user_id
        self.attributes = attributes


def current_scope(context: Context | None = None) -> Scope | None:
    """The innermost session scope of ``context`` (the current one by default)."""
    scope = otel_context.get_value(SCOPE_KEY, context)
    return scope if isinstance(scope, Scope) else None


def scope_from_baggage(context: Context | None = None) -> dict[str, str] | None:
    """``session.id`` / ``user.id`` carried in W3C baggage, if any."""
    entries = baggage.get_all(context)
    if not entries:
        return None
    found = {k: v for k in (SESSION_ID, USER_ID) if isinstance(v := entries.get(k), str)}
    return found or None


def new_session() -> str:
    """A fresh unique session id (32 hex digits)."""
    return uuid.uuid4().hex


def check_id(name: str, value: object) -> None:
    """Raise ``TypeError`` unless ``value`` (the argument ``name``) is None or a
    non-empty str."""
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{name} must be a non-empty str or None, got {value!r}")


def push_scope(
    session_id: str | None,
    user_id: str | None,
    metadata: Mapping[str, Any] | None,
    *,
    new_id: bool,
    use_baggage: bool = False,
) -> tuple[Scope, Context]:
    """A scope nested in the current one (user and metadata inherited unless given) and
    the context holding it. ``new_id``: make a session id when none is given."""
    outer = current_scope()
    if session_id is None:
        session_id = new_session() if new_id else (outer.session_id if outer else None)
    if user_id is None and outer is not None:
        user_id = outer.user_id
    merged = dict(outer.metadata) if outer is not None else {}
    if metadata:
        merged.update(metadata)
    scope = Scope(session_id, user_id, merged)
    ctx = otel_context.set_value(SCOPE_KEY, scope)
    if use_baggage:
        if session_id is not None:
            ctx = baggage.set_baggage(SESSION_ID, session_id, ctx)
        if user_id is not None:
            ctx = baggage.set_baggage(USER_ID, user_id, ctx)
    return scope, ctx


class session:  # lower case: used like a function, ``with phospho.session(...)``
    """Group tasks into a session (and a user) for the duration of a ``with`` block.

    Every span started inside, by any tracer, carries ``session.id``, ``user.id`` and
    ``phospho.metadata.<k>`` of this scope. Works with ``with`` and ``async with``;
    nests (an inner scope inherits the outer user and metadata unless it gives its own).

    Args:
        session_id: the session's id; a new one (``new_session()``) when not given.
        user_id: the end user's id.
        metadata: stamped on every span as ``phospho.metadata.<key>``.
        baggage: also put ``session.id`` / ``user.id`` in W3C baggage so that they
            cross service boundaries with the trace context.
    """

    def __init__(
        self,
        session_id: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        baggage: bool = False,
    ) -> None:
        check_id("session_id", session_id)
        check_id("user_id", user_id)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
        flatten_metadata(metadata)  # bad keys raise here, at the call site
        self._session_id = session_id
        self._user_id = user_id
        self._metadata = dict(metadata) if metadata else {}
        self._baggage = baggage
        self._tokens: list[Token[Context]] = []
        self.scope: Scope | None = None
        # Known before entering when given; generated on entry otherwise.
        self.session_id: str | None = session_id
        self.user_id: str | None = user_id

    def __enter__(self) -> session:
        scope, ctx = push_scope(
            self._session_id, self._user_id, self._metadata, new_id=True,
            use_baggage=self._baggage,
        )
        self.scope = scope
        self.session_id = scope.session_id
        self.user_id = scope.user_id
        self._tokens.append(otel_context.attach(ctx))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self._tokens.pop())

    async def __aenter__(self) -> session:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
