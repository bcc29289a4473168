"""Helpers for tests of apps (and of this package) that use the SDK.

``reset()`` undoes ``init()`` completely: it shuts the SDK down and forgets it (spans
logged afterwards are not counted as logged after shutdown), forgets the global tracer
provider, which OpenTelemetry otherwise lets a process set only once, so the next
``init()`` starts from scratch (a new provider, the new ``service_name``), and forgets
which once-per-process warnings were given.
"""

from __future__ import annotations

from phospho_otel.sdk import _client, _once
from phospho_otel.sdk._otel_compat import reset_global_tracer_provider

__all__ = ["reset"]


def reset(timeout_s: float = 2.0) -> None:
    """Shut the SDK down (flushing up to ``timeout_s``) and clear the global tracer
    provider and the once-per-process warnings. For tests only: it resets
    OpenTelemetry's private globals (through ``phospho_otel.sdk._otel_compat``)."""
    _client.shutdown(timeout_s)
    _client.forget()
    reset_global_tracer_provider()
    _once.forget()
