"""The backends the conformance suite runs against: each test taking ``store`` (or
``new_store``) runs once per entry of ``BACKENDS``. A new backend is one entry: a
function that opens an empty store in a fresh directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phospho_otel.store import open_store
from phospho_otel.store.api import Store
from tests.support.clickhouse import open_clickhouse_store


def _sqlite(directory: Path, name: str) -> Store:
    return open_store(f"sqlite:///{directory / name}.db", synchronous="NORMAL")


def _clickhouse(directory: Path, name: str) -> Store:
    """A database of its own on the test run's ClickHouse server
    (``tests/support/clickhouse``: fails under CI when no server can start)."""
    return open_clickhouse_store(f"{directory.name}_{name}")


BACKENDS: dict[str, Callable[[Path, str], Store]] = {
    "sqlite": _sqlite,
    "clickhouse": _clickhouse,
}
"""Backend name -> opener of an empty store (in ``directory``, under ``name``)."""


@pytest.fixture(params=sorted(BACKENDS))
def new_store(request: pytest.FixtureRequest,
              tmp_path: Path) -> Iterator[Callable[[str], Store]]:
    """Opens empty stores of the backend under test (closed after the test)."""
    opened: list[Store] = []

    def make(name: str = "store") -> Store:
        store = BACKENDS[request.param](tmp_path, name)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(new_store: Callable[[str], Store]) -> Store:
    """An empty store of the backend under test."""
    return new_store("store")
