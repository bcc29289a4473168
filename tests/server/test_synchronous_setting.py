"""The SQLite synchronous level: env PHOSPHO_SQLITE_SYNCHRONOUS, ``serve
--sqlite-synchronous``, passed by the server to its store."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from phospho_otel.cli import main
from phospho_otel.server import AggregatorServer, ServerSettings
from phospho_otel.store.api import Store
from phospho_otel.store.sqlite import SQLiteStore

PHOSPHO_SQLITE_SYNCHRONOUS = "PHOSPHO_SQLITE_SYNCHRONOUS"
"""The documented variable (docs/server.md)."""
_LEVELS = {1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _level(store: Store | None) -> str:
    """The synchronous level of the store's writer connection."""
    assert isinstance(store, SQLiteStore)
    assert store._conn is not None
    return _LEVELS[store._conn.execute("PRAGMA synchronous").fetchone()[0]]


class TestSetting:
    """FULL by default; NORMAL from the environment or an argument."""

    def test_default_is_full(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Nothing set: FULL (an acknowledged span survives a power loss)."""
        monkeypatch.delenv(PHOSPHO_SQLITE_SYNCHRONOUS, raising=False)
        assert ServerSettings.from_env().sqlite_synchronous == "FULL"

    def test_environment_any_case(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The variable is read case-insensitively; an argument wins over it."""
        monkeypatch.setenv(PHOSPHO_SQLITE_SYNCHRONOUS, "normal")
        assert ServerSettings.from_env().sqlite_synchronous == "NORMAL"
        assert ServerSettings.from_env(sqlite_synchronous="FULL").sqlite_synchronous == "FULL"

    def test_bad_environment_value_warns(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A value that is not a level is ignored with a warning naming the variable."""
        monkeypatch.setenv(PHOSPHO_SQLITE_SYNCHRONOUS, "OFF")
        with caplog.at_level(logging.WARNING):
            assert ServerSettings.from_env().sqlite_synchronous == "FULL"
        assert PHOSPHO_SQLITE_SYNCHRONOUS in caplog.text

    def test_cli_refuses_other_levels(self) -> None:
        """``serve --sqlite-synchronous OFF`` is a usage error, before anything starts."""
        result = CliRunner().invoke(main, ["serve", "--sqlite-synchronous", "OFF"])
        assert result.exit_code == 2
        assert "sqlite-synchronous" in result.output


class TestServer:
    """The server opens its store at the configured level."""

    @pytest.mark.parametrize("level", ["FULL", "NORMAL", "EXTRA"])
    def test_store_level(self, tmp_path: Path, level: str) -> None:
        """The store's writer connection runs at the level of the settings."""
        settings = ServerSettings(
            store=str(tmp_path / "p.db"), http_port=0, grpc_port=0, sqlite_synchronous=level
        )
        server = AggregatorServer(settings).start()
        try:
            assert _level(server.store) == level
        finally:
            server.stop()
