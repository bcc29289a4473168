"""Fixtures of the insights tests: a real store holding the scripted data set
(``tests/support/dataset``), and a real server on such a file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from phospho_otel.server import AggregatorServer, ServerSettings
from phospho_otel.store import open_store
from phospho_otel.store.api import Store
from tests.support.dataset import write_scripted
from tests.support.scripted import db_path

__all__ = ["client", "db_path", "store"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A real store holding the scripted data set (3 sessions)."""
    s = open_store(str(tmp_path / "cache.db"))
    write_scripted(s)
    yield s
    s.close()


@pytest.fixture
def client(db_path: Path) -> Iterator[httpx.Client]:
    """An HTTP client on a real aggregator (free ports) serving ``db_path``."""
    # the file is analysed already (``write_scripted_file``): no analyzer, so that the
    # server answers exactly what the file holds
    settings = ServerSettings(store=str(db_path), http_port=0, grpc_port=0,
                              analyzer_interval_s=0)
    with AggregatorServer(settings) as srv, httpx.Client(
            base_url=srv.http_url, timeout=10, trust_env=False) as c:
        yield c
