"""The Starlette routes of ``/api``: one thin endpoint per ``api.views.View``, plus the
OpenAPI document. Endpoints are plain functions: Starlette runs them in its thread pool,
so store reads never block the event loop that ingest runs on. A list view given a
``format`` answers its export (``api.export``, streamed; its pages are read in the thread
pool too).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from phospho_otel.api.export import export_response
from phospho_otel.api.openapi import openapi_document
from phospho_otel.api.views import VIEWS, View, ViewContext, view_args

__all__ = ["api_routes"]


def _endpoint(view: View, ctx: ViewContext) -> Callable[[Request], Response]:
    def endpoint(request: Request) -> Response:
        args = view_args(view, request.path_params, request.query_params.multi_items())
        if args.get("format") is not None:
            return export_response(view, ctx, args)
        return JSONResponse(view.function(ctx, args))

    endpoint.__name__ = view.name
    endpoint.__doc__ = view.summary
    return endpoint


def _starlette_path(path: str) -> str:
    """``/api/sessions/{session_id}`` -> ``/api/sessions/{session_id:path}`` (ids may hold
    slashes)."""
    return path.replace("}", ":path}")


def api_routes(ctx: ViewContext) -> list[BaseRoute]:
    """``GET /api/...`` for every view, and ``GET /api/openapi.json``."""
    document = openapi_document()

    def openapi(request: Request) -> Response:
        return JSONResponse(document)

    routes: list[BaseRoute] = [Route("/api/openapi.json", openapi, methods=["GET"])]
    routes += [Route(_starlette_path(v.path), _endpoint(v, ctx), methods=["GET"])
               for v in VIEWS]
    return routes
