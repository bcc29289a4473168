"""The aggregator's HTTP application: OTLP/HTTP ingest, the views API, OpenAPI, Jaeger API.

Routes::

    POST /v1/traces                 OTLP/HTTP trace ingest (receiver.http)
    POST /v1/logs                   OTLP/HTTP logs ingest: GenAI events (receiver.http)
    GET  /healthz                   liveness, always open
    GET  /api/...                   session, user, task and insight views (api.routes)
    GET  /api/openapi.json          the OpenAPI description of /api
    GET  <jaeger_prefix>/api/...    Jaeger-compatible query API (api.jaeger)
    GET  /, /insights, /sessions... the web dashboard (dashboard.routes)

With ``settings.token`` set, everything but ``/healthz``, ``/login`` and ``/static``
requires ``Authorization: Bearer <token>`` or the dashboard's login cookie, and answers
401 (JSON) otherwise, or for a page a redirect to ``/login`` (``dashboard.auth``).
Without a token on a loopback address, everything but ``/healthz`` answers only requests
whose ``Host`` is a loopback name, and 421 (JSON) to others (DNS rebinding).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from phospho_otel.aggregator.ingest import Ingestor
from phospho_otel.api.errors import exception_handlers, render_error
from phospho_otel.api.feedback import feedback_routes
from phospho_otel.api.jaeger import jaeger_routes
from phospho_otel.api.routes import api_routes
from phospho_otel.api.views import ViewContext
from phospho_otel.dashboard import TokenAuthMiddleware, dashboard_routes
from phospho_otel.insights import InsightsCache
from phospho_otel.insights.config import InsightsConfig
from phospho_otel.receiver.auth import LoopbackHostMiddleware, is_loopback
from phospho_otel.receiver.budget import ByteBudget
from phospho_otel.receiver.decode import parse_json
from phospho_otel.receiver.http import (
    OTLPPathMiddleware,
    otlp_logs_endpoint,
    otlp_traces_endpoint,
)
from phospho_otel.server.settings import ServerSettings
from phospho_otel.store.api import Store

__all__ = ["create_app"]


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(store: Store, ingestor: Ingestor, settings: ServerSettings, *,
               budget: ByteBudget | None = None,
               insights_config: InsightsConfig | None = None) -> Starlette:
    """The Starlette app serving ``store`` and feeding ``ingestor``; see the module doc.
    ``budget`` bounds the bytes of ingest requests in progress (one of
    ``settings.max_buffered_bytes`` if not given; the server shares its with gRPC)."""
    views = ViewContext(store, InsightsCache(store, max_age_s=settings.insights_max_age_s),
                        settings.jaeger_ui_url, insights_config)
    if budget is None:
        budget = ByteBudget(settings.max_buffered_bytes)
    routes: list[BaseRoute] = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/v1/traces", otlp_traces_endpoint(ingestor, settings.max_body_bytes,
                                                 budget=budget),
              methods=["POST"]),
        Route("/v1/logs", otlp_logs_endpoint(ingestor, settings.max_body_bytes,
                                             budget=budget),
              methods=["POST"]),
        *feedback_routes(ingestor, store),  # POST /api/{tasks,sessions}/{id}/feedback
        *api_routes(views),
        Mount(settings.jaeger_prefix, routes=jaeger_routes(
            store, parse_otlp_json=parse_json, max_body_bytes=settings.max_body_bytes)),
        *dashboard_routes(views, ingestor, settings.token),
    ]
    middleware = [Middleware(OTLPPathMiddleware)]  # //v1/traces is /v1/traces
    if settings.token:
        middleware.append(Middleware(TokenAuthMiddleware, token=settings.token,
                                     render=render_error))
    elif is_loopback(settings.host):
        middleware.append(Middleware(LoopbackHostMiddleware, bound=settings.host,
                                     render=render_error))
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers=exception_handlers)
