"""``POST /api/transform`` (the Jaeger UI's upload of an OTLP/JSON file), over a real
socket: the traces of the file in Jaeger's v1 model, equal to what ``/api/traces/{id}``
answers once the same spans are stored; nothing stored by the upload; a body that is not
OTLP/JSON a 400 with the reason in the v1 envelope, an empty body a 400, a body over the
limit a 413. And a service-less search: answered when a ``session.id`` / ``user.id`` tag
narrows it, else a 400 that says so (v1 and v3)."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from phospho_otel.api.jaeger import jaeger_routes
from phospho_otel.receiver.decode import parse_json
from phospho_otel.store.api import Store
from tests.receiver.test_decode import otlp_json
from tests.support.oracle import write
from tests.support.servers import serve_asgi
from tests.support.traces import dataset

Serve = Callable[..., AbstractContextManager[str]]


def _upload(client: httpx.Client, url: str, body: bytes) -> httpx.Response:
    return client.post(f"{url}/api/transform", content=body,
                       headers={"content-type": "application/json"})


def test_file_becomes_the_traces_the_store_would_show(
        store: Store, serve_jaeger: Serve, client: httpx.Client) -> None:
    request = dataset()
    body = json.dumps(otlp_json(request)).encode()
    with serve_jaeger(store) as url:
        uploaded = _upload(client, url, body)
        assert uploaded.status_code == 200, uploaded.text
        data = uploaded.json()["data"]
        assert uploaded.json()["errors"] is None
        assert store.counters().get("spans_received", 0) == 0  # nothing stored
        assert sum(len(t["spans"]) for t in data) == 6
        (result,) = write(store, request)
        assert result.spans_stored == 6
        for trace in data:
            stored = client.get(f"{url}/api/traces/{trace['traceID']}").json()["data"]
            assert [trace] == stored
        services = {p["serviceName"] for t in data for p in t["processes"].values()}
        assert services == {"app", "db", "worker"}


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", "malformed JSON"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "not hex"),
    (b"[1, 2]", "request"),
    (b"", "empty body"),
])
def test_bad_file_is_a_400_with_the_reason(store: Store, serve_jaeger: Serve,
                                          client: httpx.Client, body: bytes,
                                          message: str) -> None:
    with serve_jaeger(store) as url:
        reply = _upload(client, url, body)
    assert reply.status_code == 400, reply.text
    (error,) = reply.json()["errors"]
    assert error["code"] == 400 and message in error["msg"], error
    assert reply.json()["data"] is None


def test_file_over_the_limit_is_a_413(store: Store, client: httpx.Client) -> None:
    app = Starlette(routes=[Mount("/jaeger", routes=jaeger_routes(store, parse_otlp_json=parse_json,
                                                                 max_body_bytes=100))])
    body = json.dumps(otlp_json(dataset())).encode()
    assert len(body) > 100
    with serve_asgi(app) as port:
        reply = _upload(client, f"http://127.0.0.1:{port}/jaeger", body)
        assert reply.status_code == 413
        assert "over 100 bytes" in reply.json()["errors"][0]["msg"]
        small = _upload(client, f"http://127.0.0.1:{port}/jaeger",
                        b'{"resourceSpans": []}')
        assert small.status_code == 200 and small.json()["data"] == []


def test_service_less_search(jaeger_url: str, client: httpx.Client) -> None:
    """Without a service: a tag on session.id or user.id narrows it (the UI's
    ``searchWithoutServiceName``); any other search is a 400 naming the way out."""
    key, value = "session.id", "s1"  # on spans of tests/support/traces
    v1 = client.get(f"{jaeger_url}/api/traces",
                    params={"tags": json.dumps({key: value}), "lookback": "custom",
                            "start": "0", "end": str(4 * 10**15)})  # µs: year 2096
    assert v1.status_code == 200 and v1.json()["data"], v1.text
    v3 = client.get(f"{jaeger_url}/api/v3/trace-summaries",
                    params={"query.attributes": json.dumps({key: value}),
                            "query.startTimeMin": "1970-01-01T00:00:00Z",
                            "query.startTimeMax": "2100-01-01T00:00:00Z"})
    assert v3.status_code == 200, v3.text
    bare = client.get(f"{jaeger_url}/api/traces")
    assert bare.status_code == 400
    assert "session.id" in bare.json()["errors"][0]["msg"]
    bare3 = client.get(f"{jaeger_url}/api/v3/trace-summaries",
                       params={"query.startTimeMin": "1970-01-01T00:00:00Z",
                               "query.startTimeMax": "2100-01-01T00:00:00Z"})
    assert bare3.status_code == 400 and "session.id" in bare3.text
