"""The aggregator's HTTP application: OTLP/HTTP ingest, the views API, OpenAPI, Jaeger API.

Routes::

    POST /v1/traces                 OTLP/HTTP ingest (phospho_otel.receiver.http)
    GET  /healthz                   liveness, always open
    GET  /api/...                   session, user, task and insight views (views.py)
    GET  /api/openapi.json          the OpenAPI description of /api
    GET  <jaeger_prefix>/api/...    Jaeger-compatible query API (jaeger.py)

With ``settings.token`` set, everything but ``/healthz`` requires
``Authorization: Bearer <token>`` and answers 401 (JSON) otherwise.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from phospho_otel.api import views
from phospho_otel.api.errors import error_response, exception_handlers
from phospho_otel.api.jaeger import jaeger_routes
from phospho_otel.api.openapi import openapi_document
from phospho_otel.receiver.http import otlp_traces_endpoint
from phospho_otel.server_settings import ServerSettings

if TYPE_CHECKING:
    from phospho_otel.receiver.ingest import Ingestor
    from phospho_otel.store.sqlite import SQLiteStore

__all__ = ["BearerAuthMiddleware", "create_app"]

OPEN_PATHS = frozenset({"/healthz"})
"""Paths answered without a token."""


class BearerAuthMiddleware:
    """Answers 401 unless ``Authorization: Bearer <token>`` matches (constant-time)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        if not given:
            message = "missing Authorization: Bearer <token> header"
        elif not hmac.compare_digest(given, self.expected):
            message = "invalid bearer token"
        else:
            await self.app(scope, receive, send)
            return
        response = error_response(401, message, {"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


def _jaeger_mount(store: SQLiteStore, settings: ServerSettings) -> list[BaseRoute]:
    return [Mount(settings.jaeger_prefix, routes=jaeger_routes(store, settings))]


def create_app(store: SQLiteStore, ingestor: Ingestor, settings: ServerSettings) -> Starlette:
    """The Starlette app serving ``store`` and feeding ``ingestor``; see the module doc."""
    routes: list[BaseRoute] = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route(
            "/v1/traces",
            otlp_traces_endpoint(ingestor, settings.max_body_bytes),
            methods=["POST"],
        ),
        Route("/api/openapi.json", _openapi, methods=["GET"]),
        *views.view_routes(store, settings),
        *_jaeger_mount(store, settings),
    ]
    middleware = []
    if settings.token:
        middleware.append(Middleware(BearerAuthMiddleware, token=settings.token))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
    )
