"""The Jaeger-compatible query API, served by the aggregator from its own store.

``jaeger_routes`` gives the routes, relative to the mount prefix (``--jaeger-prefix``, default
``/jaeger``), so that a Grafana Jaeger data source or a Jaeger UI can point at
``http://HOST:8318/jaeger``::

    GET /api/services                          v1 (Grafana's Jaeger data source)
    GET /api/services/{service}/operations
    GET /api/operations?service=&spanKind=
    GET /api/traces?service=&operation=&tags=&tag=&start=&end=&minDuration=&maxDuration=&limit=
    GET /api/traces?traceID=...
    GET /api/traces/{trace_id}
    GET /api/dependencies?endTs=&lookback=
    GET /api/v3/services                       api_v3 (the current Jaeger UI)
    GET /api/v3/operations?service=&spanKind=
    GET /api/v3/traces?query.serviceName=&query.startTimeMin=&query.startTimeMax=...
    GET /api/v3/traces/{trace_id}
    GET /api/v3/trace-summaries?query.*        (the UI's search)
    POST /api/transform                        an uploaded OTLP/JSON file -> v1 traces

The shapes are Jaeger's: see ``v1`` and ``v3`` (protocol mapping only: they read
``store.api.TraceReader``). ``trace_links`` builds Jaeger UI search URLs for a session's
or a user's traces, for the views' ``links``.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from starlette.routing import BaseRoute, Route

from phospho_otel.api.jaeger.transform import (
    MAX_TRANSFORM_BYTES,
    OTLPJSONParser,
    transform_endpoint,
)
from phospho_otel.api.jaeger.v1 import JaegerV1
from phospho_otel.api.jaeger.v3 import JaegerV3
from phospho_otel.store.api import SESSION_TAG, USER_TAG, Store

__all__ = ["jaeger_routes", "trace_links"]

LINK_MARGIN_US = 60_000_000
"""Widening of a link's time window on each side (one minute), for clock skew."""


def jaeger_routes(store: Store, *, parse_otlp_json: OTLPJSONParser,
                  max_body_bytes: int = MAX_TRANSFORM_BYTES) -> list[BaseRoute]:
    """The Jaeger API routes over ``store``, to mount under a prefix (``/jaeger``).

    Handlers are synchronous (Starlette runs them in its thread pool); each request
    reads one snapshot (``store.read()``). ``parse_otlp_json`` (the receiver's
    ``decode.parse_json``) and ``max_body_bytes``: how ``/api/transform`` reads the file
    it is given.
    """
    v1 = JaegerV1(store)
    v3 = JaegerV3(store)
    get = ["GET"]
    return [
        Route("/api/services", v1.services, methods=get),
        Route("/api/services/{service:path}/operations", v1.service_operations, methods=get),
        Route("/api/operations", v1.operations, methods=get),
        Route("/api/traces", v1.search, methods=get),
        Route("/api/traces/{trace_id}", v1.trace, methods=get),
        Route("/api/dependencies", v1.dependencies, methods=get),
        Route("/api/v3/services", v3.services, methods=get),
        Route("/api/v3/operations", v3.operations, methods=get),
        Route("/api/v3/traces", v3.search, methods=get),
        Route("/api/v3/traces/{trace_id}", v3.trace, methods=get),
        Route("/api/v3/trace-summaries", v3.summaries, methods=get),
        Route("/api/transform", transform_endpoint(parse_otlp_json, max_body_bytes),
              methods=["POST"]),
    ]


def _search_url(
    base: str,
    tag: str,
    value: str,
    service: str | None,
    start_ns: int | None,
    end_ns: int | None,
) -> str:
    params: dict[str, str] = {}
    if service:
        params["service"] = service
    params["tags"] = json.dumps({tag: value}, separators=(",", ":"))
    params["limit"] = "20"
    if start_ns is not None and end_ns is not None:
        params["lookback"] = "custom"
        params["start"] = str(start_ns // 1000 - LINK_MARGIN_US)
        params["end"] = str(end_ns // 1000 + LINK_MARGIN_US)
    else:
        params["lookback"] = "2d"
    return f"{base.rstrip('/')}/search?{urlencode(params)}"


def trace_links(
    jaeger_ui_url: str | None,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    service: str | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> dict[str, str] | None:
    """Jaeger UI search URLs for the traces of a session and/or a user.

    Returns ``{"jaeger_session_traces": url}`` and/or ``{"jaeger_user_traces": url}``
    (searching the tag ``session.id`` / ``user.id``), or None when ``jaeger_ui_url`` is
    None or neither id is given. ``service`` preselects
    the service in the search form; ``start_ns``/``end_ns`` (the session's or user's
    first and last times) set the search window, else the last two days.
    """
    base = jaeger_ui_url
    if not base or (session_id is None and user_id is None):
        return None
    links: dict[str, str] = {}
    if session_id is not None:
        links["jaeger_session_traces"] = _search_url(
            base, SESSION_TAG, session_id, service, start_ns, end_ns
        )
    if user_id is not None:
        links["jaeger_user_traces"] = _search_url(
            base, USER_TAG, user_id, service, start_ns, end_ns
        )
    return links
