"""ServerSettings: one table of settings, read from flags, environment and defaults."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from phospho_otel.cli import main
from phospho_otel.errors import ConfigurationError
from phospho_otel.server.settings import ServerSettings, setting_of, settings_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "server.md"


class TestTable:
    """Every field carries its environment variables, flags and help."""

    def test_every_field_is_a_setting(self) -> None:
        """Each field has a Setting with PHOSPHO_* variables and -- flags, all distinct."""
        envs: list[str] = []
        flags: list[str] = []
        for f in dataclasses.fields(ServerSettings):
            s = setting_of(f)
            assert s.help and all(e.startswith("PHOSPHO_") for e in s.env), f.name
            assert all(x.startswith("--") for x in s.flags), f.name
            envs += s.env
            flags += s.flags
        assert len(envs) == len(set(envs)) and len(flags) == len(set(flags))

    def test_docs_table_is_generated(self) -> None:
        """docs/server.md holds exactly settings_markdown()."""
        text = DOCS.read_text()
        start = text.index("<!-- settings:begin -->\n") + len("<!-- settings:begin -->\n")
        end = text.index("<!-- settings:end -->")
        assert text[start:end].strip() == settings_markdown()

    def test_serve_has_an_option_per_setting(self) -> None:
        """phospho-otel serve --help lists every flag of the table."""
        result = CliRunner().invoke(main, ["serve", "--help"])
        assert result.exit_code == 0, result.output
        for f in dataclasses.fields(ServerSettings):
            for flag in setting_of(f).flags:
                assert flag in result.output, flag


class TestFromEnv:
    """Argument, then environment variable, then default."""

    def test_precedence(self) -> None:
        """An argument wins over the variable, the variable over the default."""
        env = {"PHOSPHO_HTTP_PORT": "9000", "PHOSPHO_GRPC_PORT": "9001"}
        s = ServerSettings.from_env(env, http_port=1234)
        assert (s.http_port, s.grpc_port, s.host) == (1234, 9001, "127.0.0.1")

    def test_store_aliases(self) -> None:
        """PHOSPHO_STORE wins over PHOSPHO_DB; either sets the store."""
        assert ServerSettings.from_env({"PHOSPHO_DB": "a.db"}).store == "a.db"
        assert ServerSettings.from_env(
            {"PHOSPHO_DB": "a.db", "PHOSPHO_STORE": "sqlite:///b.db"}).store == "sqlite:///b.db"

    @pytest.mark.parametrize(("name", "raw"), [
        ("PHOSPHO_HTTP_PORT", "70000"), ("PHOSPHO_HTTP_PORT", "http"),
        ("PHOSPHO_INSIGHTS_MAX_AGE_S", "-1"), ("PHOSPHO_INSIGHTS_MAX_AGE_S", "nan"),
        ("PHOSPHO_SQLITE_SYNCHRONOUS", "OFF"), ("PHOSPHO_MAX_PENDING_SPANS", "0"),
    ])
    def test_bad_variable_warns_and_defaults(self, caplog: pytest.LogCaptureFixture,
                                             name: str, raw: str) -> None:
        """A bad value logs one warning naming the variable; the default is used."""
        with caplog.at_level(logging.WARNING):
            s = ServerSettings.from_env({name: raw})
        assert s == ServerSettings()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and name in warnings[0].getMessage()

    def test_lower_case_level_accepted(self) -> None:
        """The SQLite level is read case-insensitively, and EXTRA is one."""
        s = ServerSettings.from_env({"PHOSPHO_SQLITE_SYNCHRONOUS": "extra"})
        assert s.sqlite_synchronous == "EXTRA"

    @pytest.mark.parametrize("kwargs", [
        {"http_port": 70000}, {"insights_max_age_s": 4000.0}, {"sqlite_synchronous": "OFF"},
        {"store": ""}, {"max_body_bytes": 0}, {"http_port": "80"},
    ])
    def test_bad_argument_raises(self, kwargs: dict[str, object]) -> None:
        """A bad argument raises ConfigurationError naming the setting."""
        with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
            ServerSettings(**kwargs)  # type: ignore[arg-type]

    def test_unknown_override(self) -> None:
        """A keyword that is no setting is a TypeError."""
        with pytest.raises(TypeError, match="colour"):
            ServerSettings.from_env({}, colour="red")

    def test_describe_masks_the_token(self) -> None:
        """describe() never shows the token."""
        assert ServerSettings(token="s3cret").describe()["token"] == "***"
