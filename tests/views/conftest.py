"""Fixtures of the view tests: a store holding a small scripted data set whose figures are
known in advance (written through the real ``SQLiteStore.write``), and a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from phospho_otel.server import AggregatorServer
from phospho_otel.server_settings import ServerSettings
from phospho_otel.store.sqlite import SQLiteStore

from .dataset import write_scripted


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A SQLite file holding the scripted data set."""
    path = tmp_path / "views.db"
    store = SQLiteStore(path)
    try:
        write_scripted(store)
    finally:
        store.close()
    return path


@pytest.fixture
def server(db_path: Path) -> Iterator[AggregatorServer]:
    """A real aggregator on free ports serving the scripted data set."""
    settings = ServerSettings(db=str(db_path), http_port=0, grpc_port=0)
    with AggregatorServer(settings) as srv:
        yield srv


@pytest.fixture
def client(server: AggregatorServer) -> Iterator[httpx.Client]:
    """An HTTP client on the server."""
    with httpx.Client(base_url=server.http_url, timeout=10) as c:
        yield c
