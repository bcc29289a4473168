"""Fixtures over the scripted data set (``tests/support/dataset``: figures known in
advance): a SQLite file holding it, a real aggregator on free ports serving it, and an HTTP
client on that server. A test folder's ``conftest.py`` imports the ones it uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from phospho_otel.server import AggregatorServer, ServerSettings
from tests.support.dataset import write_scripted_file

__all__ = ["client", "db_path", "server"]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A SQLite file holding the scripted data set."""
    return write_scripted_file(tmp_path / "views.db")


@pytest.fixture
def server(db_path: Path) -> Iterator[AggregatorServer]:
    """A real aggregator on free ports serving the scripted data set."""
    # the file is analysed already (``write_scripted_file``): no analyzer, so that the
    # server answers exactly what the file holds
    settings = ServerSettings(store=str(db_path), http_port=0, grpc_port=0,
                              analyzer_interval_s=0)
    with AggregatorServer(settings) as srv:
        yield srv


@pytest.fixture
def client(server: AggregatorServer) -> Iterator[httpx.Client]:
    """An HTTP client on the server."""
    with httpx.Client(base_url=server.http_url, timeout=10, trust_env=False) as c:
        yield c
