"""Errors of ``/api`` as JSON: the one place where exceptions become ``/api`` error bodies.

Views raise ``errors.ServerError`` subclasses (they carry their ``status``);
``exception_handlers`` turns them, Starlette's own ``HTTPException`` (an unknown route)
and any unexpected exception (a bug: logged, answered 500) into::

    {"error": {"status": 400, "message": "limit: must be between 1 and 1000, got 0"}}
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from phospho_otel.errors import ServerError, Unauthorized, Unavailable

__all__ = ["error_response", "exception_handlers", "guarded", "render_error"]

logger = logging.getLogger(__name__)


def error_response(status: int, message: str,
                   headers: Mapping[str, str] | None = None) -> Response:
    """The JSON error body every part of ``/api`` answers with."""
    return JSONResponse(
        {"error": {"status": status, "message": message}}, status_code=status, headers=headers
    )


def render_error(exc: ServerError) -> Response:
    """A ``ServerError`` as ``/api`` answers it (with ``WWW-Authenticate`` on 401 and
    ``Retry-After`` on 503)."""
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, Unavailable):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    return error_response(exc.status, exc.message, headers or None)


async def _server_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServerError)
    return render_error(exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}) or None)


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("error answering %s %s", request.method, request.url.path)
    return error_response(500, "internal error")


exception_handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    ServerError: _server_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}


def guarded(render: Callable[[ServerError], Response]) -> Callable[
        [Callable[[Request], Response]], Callable[[Request], Response]]:
    """Decorate a (sync) endpoint of another protocol (Jaeger's) so that a
    ``ServerError`` it raises is answered by ``render`` in that protocol's shape."""

    def decorate(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                return handler(request)
            except ServerError as exc:
                return render(exc)

        endpoint.__name__ = getattr(handler, "__name__", "endpoint")
        endpoint.__doc__ = handler.__doc__
        return endpoint

    return decorate
