"""phospho-otel: OpenTelemetry-native logging and analytics for LLM applications."""

from __future__ import annotations

__all__: list[str] = []
