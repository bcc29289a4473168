"""Who may use the dashboard, and proof that a form was sent from it.

**Login** (only with ``--token``): ``/login`` exchanges the token for a cookie
(``LOGIN_COOKIE``: HttpOnly, SameSite=Strict, Path=/), an expiry signed with the token
(HMAC-SHA256), so any replica that knows the token accepts it and changing the token logs
everyone out. ``TokenAuthMiddleware`` then lets in a request that has either the
``Authorization: Bearer`` header (programs: OTLP, the API, the CLI) or a valid cookie
(browsers); a page asked for without either is redirected to ``/login?next=<path>``, any
other request answered 401 as before.

**CSRF** (always, with or without a token): every form the dashboard renders carries
``csrf_token``, an HMAC of the browser's ``CSRF_COOKIE`` (a random value set on its first
page, HttpOnly, SameSite=Strict) under the server's secret (the token, else a random
secret of this process). ``CsrfGuard.check`` refuses a form whose token does not match its
cookie, or whose ``Origin`` is not the page's own host: another site can neither read the
cookie nor compute its HMAC. The JSON API's POSTs need no such token: they take only
``application/json``, which a cross-site form cannot send.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from urllib.parse import quote, urlsplit

from starlette.requests import Request, cookie_parser
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from phospho_otel.errors import Forbidden, Unauthorized
from phospho_otel.receiver.auth import OPEN_PATHS, BearerToken

__all__ = [
    "CSRF_COOKIE",
    "LOGIN_COOKIE",
    "LOGIN_MAX_AGE_S",
    "CsrfGuard",
    "LoginCookie",
    "TokenAuthMiddleware",
    "safe_next",
]

LOGIN_COOKIE = "phospho_login"
CSRF_COOKIE = "phospho_csrf"
LOGIN_MAX_AGE_S = 7 * 24 * 3600
"""How long a login lasts."""

PAGE_PREFIXES = ("/sessions", "/users", "/tasks", "/insights")
"""Paths of the dashboard's pages (a refused browser is sent to the login page)."""
OPEN_PREFIXES = ("/login", "/static/")
"""Dashboard paths open without a login: the login page and the style sheets and scripts
it needs."""


def _mac(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


class LoginCookie:
    """Issues and checks the login cookie's value: ``v1.<expiry>.<hmac>``."""

    __slots__ = ("_secret", "_token")

    def __init__(self, token: str) -> None:
        self._token = BearerToken(token)
        self._secret = b"phospho-login\0" + token.encode()

    def matches_token(self, given: str) -> bool:
        """Whether ``given`` (what was typed on the login page) is the token."""
        try:
            self._token.check(f"Bearer {given.strip()}")
        except Unauthorized:
            return False
        return True

    def issue(self, now: float | None = None) -> str:
        expiry = int((time.time() if now is None else now) + LOGIN_MAX_AGE_S)
        return f"v1.{expiry}.{_mac(self._secret, f'v1.{expiry}')}"

    def valid(self, value: str | None, now: float | None = None) -> bool:
        if not value:
            return False
        version, _, rest = value.partition(".")
        expiry_text, _, mac = rest.partition(".")
        if version != "v1" or not expiry_text.isdigit():
            return False
        if not hmac.compare_digest(mac, _mac(self._secret, f"v1.{expiry_text}")):
            return False
        return int(expiry_text) > (time.time() if now is None else now)


def _cookie(scope: Scope, name: str) -> str | None:
    """The request's cookie ``name`` (``Request.cookies``' parser, on the raw scope)."""
    for key, value in scope["headers"]:
        if key == b"cookie":
            return cookie_parser(value.decode("latin-1")).get(name)
    return None


def _is_page(path: str) -> bool:
    return path == "/" or any(path == p or path.startswith(p + "/") for p in PAGE_PREFIXES)


def safe_next(target: str | None) -> str:
    """``target`` if it is a path of this site (``/...``, not ``//host``), else ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or urlsplit(target).netloc:
        return "/"
    return target


class TokenAuthMiddleware:
    """With a token: lets in requests with the bearer header or the login cookie (see the
    module doc); the rest of ``OPEN_PATHS`` and ``OPEN_PREFIXES`` always."""

    def __init__(self, app: ASGIApp, token: str,
                 render: Callable[[Unauthorized], Response]) -> None:
        self.app = app
        self.token = BearerToken(token)
        self.login = LoginCookie(token)
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if header is None and self.login.valid(_cookie(scope, LOGIN_COOKIE)):
            await self.app(scope, receive, send)
            return
        try:
            self.token.check(header)
        except Unauthorized as exc:
            if header is None and scope["method"] in ("GET", "HEAD") and _is_page(path):
                query = scope.get("query_string", b"").decode("latin-1")
                target = path + ("?" + query if query else "")
                response: Response = RedirectResponse(
                    f"/login?next={quote(target, safe='')}", status_code=303)
            else:
                response = self.render(exc)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class CsrfGuard:
    """The CSRF cookie and the form tokens derived from it (see the module doc)."""

    __slots__ = ("_secret",)

    def __init__(self, token: str | None) -> None:
        self._secret = (b"phospho-csrf\0" + token.encode()) if token \
            else secrets.token_bytes(32)

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(24)

    def form_token(self, cookie: str) -> str:
        return _mac(self._secret, cookie)

    def check(self, request: Request, form: Mapping[str, object]) -> None:
        """Raise ``Forbidden`` unless the form's ``csrf_token`` matches the request's
        cookie and its ``Origin`` (when sent) is the request's own host."""
        origin = request.headers.get("origin")
        host = request.headers.get("host")
        if origin is not None and (origin == "null" or urlsplit(origin).netloc != host):
            raise Forbidden(f"a form from another origin ({origin}) is refused")
        cookie = request.cookies.get(CSRF_COOKIE)
        given = form.get("csrf_token")
        if not cookie or not isinstance(given, str) \
                or not hmac.compare_digest(given, self.form_token(cookie)):
            raise Forbidden("missing or invalid CSRF token: reload the page and try again")
