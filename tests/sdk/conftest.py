"""Fixtures for the SDK tests: a capture receiver, a clean environment, and an SDK
initialised against a fresh TracerProvider (global state reset after each test), and
the opentelemetry-sdk range the fast path accepts (``otel_range.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import phospho_otel
from phospho_otel.sdk import _otel_compat
from tests.support.sdk_env import clean_sdk  # noqa: F401  (a fixture)

from .otel_range import ANY_RANGE, any_sdk
from .otlp_sink import OtlpSink


@pytest.fixture(autouse=True)
def otel_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``PHOSPHO_TEST_ANY_OTEL_SDK=1``, any opentelemetry-sdk version is checked."""
    if any_sdk():
        monkeypatch.setattr(_otel_compat, "CHECKED_SDK_VERSIONS", ANY_RANGE)


@pytest.fixture(autouse=True)
def clean_env(request: pytest.FixtureRequest) -> None:
    """Every SDK test starts clean (``clean_sdk``, ``tests/support/sdk_env.py``)."""
    request.getfixturevalue("clean_sdk")


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with OtlpSink() as s:
        yield s


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider(resource=Resource.create({"service.name": "sdk-tests"}))


@pytest.fixture
def start_sdk(sink: OtlpSink, provider: TracerProvider) -> Callable[..., TracerProvider]:
    """Initialise the SDK towards the sink, on a fresh provider."""

    def start(protocol: str = "http/protobuf", **kwargs: object) -> TracerProvider:
        kwargs.setdefault("schedule_delay_s", 0.02)
        phospho_otel.init(endpoint=sink.endpoint(protocol), protocol=protocol,
                          tracer_provider=provider, **kwargs)  # type: ignore[arg-type]
        return provider

    return start
