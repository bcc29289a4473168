"""The bearer-token check, shared by every way in (OTLP/HTTP, OTLP/gRPC, the HTTP API).

``BearerToken(token).check(header_value)`` raises ``errors.Unauthorized`` unless the
value is ``Bearer <token>``, compared in constant time. ``BearerAuthMiddleware`` applies
it to an ASGI app (every path but ``OPEN_PATHS``); the gRPC receiver applies it to the
``authorization`` metadata.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from phospho_otel.errors import Unauthorized

__all__ = ["OPEN_PATHS", "BearerAuthMiddleware", "BearerToken"]

OPEN_PATHS = frozenset({"/healthz"})
"""Paths answered without a token."""


class BearerToken:
    """One expected bearer token."""

    __slots__ = ("_expected",)

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("token must not be empty")
        self._expected = f"Bearer {token}".encode()

    def check(self, given: str | bytes | None) -> None:
        """Raise ``Unauthorized`` unless ``given`` (an ``Authorization`` value) matches."""
        if not given:
            raise Unauthorized("missing Authorization: Bearer <token> header")
        if isinstance(given, str):
            given = given.encode("latin-1", "replace")
        if not hmac.compare_digest(given, self._expected):
            raise Unauthorized("invalid bearer token")


class BearerAuthMiddleware:
    """ASGI middleware: ``token.check`` on every HTTP request but ``OPEN_PATHS``; a
    refusal is answered by ``render(Unauthorized)`` (the app's JSON error body)."""

    def __init__(self, app: ASGIApp, token: BearerToken,
                 render: Callable[[Unauthorized], Response]) -> None:
        self.app = app
        self.token = token
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        try:
            self.token.check(given)
        except Unauthorized as exc:
            response = self.render(exc)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
