"""Fixtures for the Jaeger API tests: a real store, the trace data set
(``tests/support/traces``), and the Jaeger routes served by a real uvicorn on a free
127.0.0.1 port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from phospho_otel.api.jaeger import jaeger_routes
from phospho_otel.receiver.decode import parse_json
from phospho_otel.store import open_store
from phospho_otel.store.api import Store
from tests.support.oracle import write
from tests.support.servers import serve_asgi
from tests.support.traces import dataset


@contextmanager
def _serve_jaeger(store: Store, prefix: str = "/jaeger") -> Iterator[str]:
    """The Jaeger routes under ``prefix`` on a real uvicorn in a thread; yields the base
    URL (``http://127.0.0.1:PORT/jaeger``)."""
    app = Starlette(routes=[Mount(prefix, routes=jaeger_routes(store, parse_otlp_json=parse_json))])
    with serve_asgi(app) as port:
        yield f"http://127.0.0.1:{port}{prefix}"


@pytest.fixture
def serve_jaeger() -> Callable[..., AbstractContextManager[str]]:
    """``serve_jaeger(store, prefix="/jaeger")``: serve a store's Jaeger routes (a context
    manager yielding the base URL)."""
    return _serve_jaeger


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store in a temporary directory."""
    s = open_store(str(tmp_path / "phospho.db"), synchronous="NORMAL")
    yield s
    s.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """An httpx client that ignores proxy settings."""
    with httpx.Client(timeout=10, trust_env=False) as c:
        yield c


@pytest.fixture(scope="module")
def jaeger_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The data set in a store, served under /jaeger (one server per test module)."""
    s = open_store(str(tmp_path_factory.mktemp("jaeger") / "phospho.db"), synchronous="NORMAL")
    (result,) = write(s, dataset())
    assert result.spans_stored == 6, result
    with _serve_jaeger(s) as url:
        yield url
    s.close()
