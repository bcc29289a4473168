"""The opentelemetry-sdk range the tests run under (see ``conftest.py``).

With ``PHOSPHO_TEST_ANY_OTEL_SDK=1`` in the environment, the tests treat the installed
opentelemetry-sdk as checked whatever its version, so that the fast path runs (and its
parity with the SDK is tested) on a release newer than ``_otel_compat`` was checked
against: the CI job that tries the newest release uses it to tell whether the range can
be raised. Without it, on such a release the fast path stays off and the tests check the
ordinary path.
"""

from __future__ import annotations

import os

import pytest

from phospho_otel.sdk import _otel_compat

__all__ = ["ANY_OTEL_SDK", "ANY_RANGE", "SHIPPED_RANGE", "any_sdk", "fast_path_expected",
           "needs_fast_path"]

ANY_OTEL_SDK = "PHOSPHO_TEST_ANY_OTEL_SDK"
"""Set to 1: treat any installed opentelemetry-sdk as checked."""
SHIPPED_RANGE = _otel_compat.CHECKED_SDK_VERSIONS
"""The range as shipped (before any test changes it)."""
ANY_RANGE = ((0, 0), (999, 0))
_ANY = os.environ.get(ANY_OTEL_SDK, "").strip() == "1"  # read before clean_env runs


def any_sdk() -> bool:
    """True when the tests run with ``PHOSPHO_TEST_ANY_OTEL_SDK=1``."""
    return _ANY


def fast_path_expected() -> bool:
    """Whether the fast path is expected on: the installed SDK is in the range."""
    return _otel_compat.sdk_version_checked()


needs_fast_path = pytest.mark.skipif(
    not (_ANY or _otel_compat.sdk_version_checked()),
    reason="the installed opentelemetry-sdk is outside the checked range, so the fast path "
           "is off by design (PHOSPHO_TEST_ANY_OTEL_SDK=1 runs these tests)",
)
"""For tests of the fast path itself (they need it on)."""
