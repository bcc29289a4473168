"""HTTP errors of the API, and the one place where exceptions become JSON error bodies.

Handlers raise an ``ApiError`` subclass (it carries its ``status``); ``exception_handlers``
turns it, Starlette's own ``HTTPException`` and any unexpected exception into::

    {"error": {"status": 400, "message": "limit: must be an integer between 1 and 1000"}}
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from phospho_otel.errors import PhosphoError

__all__ = [
    "ApiError",
    "BadRequest",
    "NotFound",
    "Unauthorized",
    "error_response",
    "exception_handlers",
]

logger = logging.getLogger(__name__)


class ApiError(PhosphoError):
    """An error answered with ``status`` and ``message``."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    """A malformed or out-of-range request parameter (400)."""

    status = 400


class Unauthorized(ApiError):
    """Missing or wrong bearer token (401)."""

    status = 401


class NotFound(ApiError):
    """An unknown session, user or task id (404)."""

    status = 404


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The JSON error body every part of the API answers with."""
    return JSONResponse(
        {"error": {"status": status, "message": message}}, status_code=status, headers=headers
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.status, exc.message, headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}) or None)


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("error answering %s %s", request.method, request.url.path)
    return error_response(500, "internal error")


exception_handlers = {
    ApiError: _api_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
