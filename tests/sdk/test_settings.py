"""SDK settings: one table (``Settings`` fields), argument then environment variable then
default, bad arguments raise, bad variables warn and fall back; init(), its docstring and
docs/sdk.md list the same settings."""

from __future__ import annotations

import inspect
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

import phospho_otel as phospho
from phospho_otel.errors import ConfigurationError
from phospho_otel.sdk import _settings
from phospho_otel.sdk._settings import Settings, resolve_settings, setting_of

NAMES = [f.name for f in fields(Settings)]
DOC = (Path(__file__).parents[2] / "docs" / "sdk.md").read_text()

# name: (argument, expected from it, [(variable text, expected)] one per variable)
GOOD: dict[str, tuple[Any, Any, list[tuple[str, Any]]]] = {
    "protocol": ("grpc", "grpc", [("grpc", "grpc"), ("http/protobuf", "http/protobuf")]),
    "endpoint": ("http://arg:1", "http://arg:1/v1/traces",
                 [("http://traces:2/custom", "http://traces:2/custom"),
                  ("http://base:3", "http://base:3/v1/traces")]),
    "headers": ({"A": "1"}, {"a": "1"}, [("b=2", {"b": "2"}), ("c=3%20x", {"c": "3 x"})]),
    "compression": ("gzip", "gzip", [("gzip", "gzip"), ("none", "none")]),
    "service_name": ("svc", "svc", [("from-env", "from-env")]),
    "timeout_s": (3, 3.0, []),
    "max_queue_size": (1000, 1000, [("2000", 2000)]),
    "max_export_batch_size": (7, 7, []),
    "schedule_delay_s": (0.5, 0.5, []),
    "max_attribute_bytes": (10, 10, [("20", 20)]),
    "max_request_bytes": (4096, 4096, []),
}
BAD_ARGUMENTS: dict[str, Any] = {
    "protocol": "http/json", "endpoint": "ftp://x:1", "headers": {"a": 1},
    "compression": "br", "service_name": "", "timeout_s": 0, "max_queue_size": 1.5,
    "max_export_batch_size": -1, "schedule_delay_s": "1", "max_attribute_bytes": True,
    "max_request_bytes": 0,
}
BAD_VARIABLES = {"protocol": "carrier-pigeon", "headers": "no-equals-sign",
                 "compression": "zstd", "max_queue_size": "lots", "max_attribute_bytes": "0"}


class TestTable:
    """The Settings fields are the one list: init(), its docstring and the docs follow."""

    def test_every_table_entry_is_covered_here(self) -> None:
        """This file has good and bad values for every setting (a new one must add its own)."""
        assert set(GOOD) == set(BAD_ARGUMENTS) == set(NAMES)

    def test_init_takes_exactly_the_settings(self) -> None:
        """init()'s keyword arguments are the Settings fields plus tracer_provider."""
        parameters = inspect.signature(phospho.init).parameters
        assert set(parameters) == {*NAMES, "tracer_provider"}
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is None
                   for p in parameters.values())

    @pytest.mark.parametrize("name", NAMES)
    def test_documented(self, name: str) -> None:
        """Each setting and its variables appear in init()'s docstring and docs/sdk.md;
        each variable is a constant of _settings named as it is."""
        assert f"``{name}``" in (phospho.init.__doc__ or "")
        assert f"`{name}`" in DOC
        for variable in setting_of(name).env:
            assert getattr(_settings, variable) == variable
            assert variable in DOC, variable
            mentioned = variable in (phospho.init.__doc__ or "") or (
                variable.replace("TRACES_", "(TRACES_)") in (phospho.init.__doc__ or "")
                or variable.replace("OTLP_", "OTLP_(TRACES_)") in (phospho.init.__doc__ or ""))
            assert mentioned, variable


class TestPrecedence:
    """Argument, then the first variable set (traces-specific first), then the default."""

    @pytest.mark.parametrize("name", NAMES)
    def test_argument_then_variables_then_default(self, name: str) -> None:
        """Each step of the order, for every setting."""
        argument, from_argument, from_variables = GOOD[name]
        variables = setting_of(name).env
        assert len(variables) == len(from_variables)
        env = {v: text for v, (text, _) in zip(variables, from_variables, strict=True)}
        assert getattr(resolve_settings({name: argument}, env=env), name) == from_argument
        for i, (_, expected) in enumerate(from_variables):
            later = {v: env[v] for v in variables[i:]}
            assert getattr(resolve_settings({}, env=later), name) == expected
        default = getattr(Settings(), name)
        assert getattr(resolve_settings({name: None}, env={}), name) == default

    def test_defaults(self) -> None:
        """Without arguments or variables: the documented defaults."""
        assert resolve_settings(env={}) == Settings(
            protocol="http/protobuf", endpoint="http://localhost:4318/v1/traces",
            headers={}, compression="none", service_name=None, timeout_s=10.0,
            max_queue_size=100_000, max_export_batch_size=512, schedule_delay_s=0.2,
            max_attribute_bytes=65_536, max_request_bytes=3 * 1024 * 1024,
        )
        grpc = resolve_settings({"protocol": "grpc"}, env={})
        assert grpc.endpoint == "http://localhost:4317"


class TestErrors:
    """Bad arguments raise naming them; bad variables warn once and fall back."""

    @pytest.mark.parametrize("name", NAMES)
    def test_bad_argument_raises(self, name: str) -> None:
        """ConfigurationError (a ValueError) naming the argument or the endpoint."""
        with pytest.raises(ConfigurationError) as raised:
            resolve_settings({name: BAD_ARGUMENTS[name]}, env={})
        assert name in str(raised.value) or repr(BAD_ARGUMENTS[name]) in str(raised.value)

    @pytest.mark.parametrize("name", sorted(BAD_VARIABLES))
    def test_bad_variable_warns_and_uses_the_default(
        self, name: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One warning naming the variable; the default is used."""
        variable = setting_of(name).env[-1]
        caplog.set_level(logging.WARNING)
        settings = resolve_settings(env={variable: BAD_VARIABLES[name]})
        assert getattr(settings, name) == getattr(Settings(), name)
        (record,) = caplog.records
        assert variable in record.getMessage()

    @pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                                          "OTEL_EXPORTER_OTLP_ENDPOINT"])
    def test_unusable_endpoint_variable_raises(self, variable: str) -> None:
        """An unusable endpoint fails wherever it comes from."""
        with pytest.raises(ConfigurationError, match="'localhost:4318'"):
            resolve_settings(env={variable: "localhost:4318"})

    def test_batch_larger_than_queue_and_unknown_names(self) -> None:
        """max_export_batch_size must fit the queue (from a variable too); an unknown
        setting is a TypeError."""
        with pytest.raises(ConfigurationError, match="must not exceed"):
            resolve_settings(env={"PHOSPHO_MAX_QUEUE_SIZE": "100"})
        with pytest.raises(TypeError, match="unknown settings: colour"):
            resolve_settings({"colour": "blue"}, env={})
