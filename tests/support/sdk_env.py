"""The SDK tests' clean slate: no ``OTEL_*`` / ``PHOSPHO_*`` variables from the outside,
and the SDK's global state reset after the test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from phospho_otel.sdk import testing

__all__ = ["clean_sdk"]


@pytest.fixture
def clean_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* / PHOSPHO_* variables from the outside; SDK shut down after the test."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "PHOSPHO_")):
            monkeypatch.delenv(name)
    yield
    testing.reset()
