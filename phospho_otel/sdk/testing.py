"""Helpers for tests of apps (and of this package) that use the SDK.

``reset()`` undoes ``init()`` completely: it shuts the SDK down and forgets the global
tracer provider, which OpenTelemetry otherwise lets a process set only once, so the next
``init()`` starts from scratch (a new provider, the new ``service_name``).
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.util._once import Once

from phospho_otel.sdk._client import shutdown

__all__ = ["reset"]


def reset(timeout_s: float = 2.0) -> None:
    """Shut the SDK down (flushing up to ``timeout_s``) and clear the global tracer
    provider. For tests only: it touches OpenTelemetry's private globals."""
    shutdown(timeout_s)
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
