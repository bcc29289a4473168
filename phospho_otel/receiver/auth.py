"""Access checks shared by every way in (OTLP/HTTP, OTLP/gRPC, the HTTP API).

``BearerToken(token).check(header_value)`` raises ``errors.Unauthorized`` unless the
value is ``Bearer <token>`` (the scheme in any case, RFC 7235 §2.1; the token compared
exactly, in constant time). The HTTP app applies it to every path but ``OPEN_PATHS``
(``dashboard.auth.TokenAuthMiddleware``, which also takes the dashboard's login cookie);
the gRPC receiver applies it to the ``authorization`` metadata.

``LoopbackHostMiddleware`` is for a server open (no token) on a loopback address: it
answers only requests whose ``Host`` is a loopback name (``localhost``, ``127.0.0.1``,
``[::1]``, any port), and 421 to any other, so that a web page whose own DNS name an
attacker rebinds to 127.0.0.1 cannot read or feed the server from a browser. (The gRPC
port needs no such check: browsers do not speak cleartext HTTP/2, let alone gRPC.)
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from phospho_otel.errors import ServerError, Unauthorized

__all__ = [
    "OPEN_PATHS",
    "BearerToken",
    "LoopbackHostMiddleware",
    "MisdirectedRequest",
    "is_loopback",
]

OPEN_PATHS = frozenset({"/healthz"})
"""Paths answered without a token."""


class BearerToken:
    """One expected bearer token."""

    __slots__ = ("_expected",)

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("token must not be empty")
        self._expected = token.encode()

    def check(self, given: str | bytes | None) -> None:
        """Raise ``Unauthorized`` unless ``given`` (an ``Authorization`` value) is the
        ``Bearer`` scheme, in any case, then one or more spaces and the token."""
        if not given:
            raise Unauthorized("missing Authorization: Bearer <token> header")
        if isinstance(given, str):
            given = given.encode("latin-1", "replace")
        scheme, _, credentials = given.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            raise Unauthorized("the Authorization header must be Bearer <token>")
        if not hmac.compare_digest(credentials.lstrip(b" "), self._expected):
            raise Unauthorized("invalid bearer token")


class MisdirectedRequest(ServerError):
    """A request addressed (``Host``) to a name this server does not answer for (421)."""

    status = 421
    grpc_code = "PERMISSION_DENIED"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a ``Host`` name, without port or brackets)
    names this machine's loopback interface: ``localhost`` (any case, with or without a
    final dot), ``127.0.0.0/8`` or ``::1``."""
    name = host.rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    """The name of a ``Host`` header value: without its port and IPv6 brackets."""
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


class LoopbackHostMiddleware:
    """ASGI middleware: requests (but ``OPEN_PATHS``) whose ``Host`` is not a loopback
    name are answered ``render(MisdirectedRequest)``; requests without a ``Host`` (HTTP/1.0
    clients; browsers always send one) pass. ``bound`` is the address served, for the
    message."""

    def __init__(self, app: ASGIApp, bound: str,
                 render: Callable[[ServerError], Response]) -> None:
        self.app = app
        self.bound = bound
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value.decode("latin-1")
                    if not is_loopback(_host_name(host)):
                        response = self.render(self._refusal(host))
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)

    def _refusal(self, host: str) -> MisdirectedRequest:
        return MisdirectedRequest(
            f"Host {host!r} is not a loopback name: this server listens on {self.bound} "
            "without a token, so it answers only requests addressed to localhost, 127.0.0.1 "
            "or [::1] (another name may be a web page rebinding its DNS name to this "
            "machine); set --token (or --token-file) to serve requests for other names")
