"""OpenTelemetry GenAI (``opentelemetry-instrumentation-openai-v2``, content on spans),
ids from W3C baggage through the ``BaggageSpanProcessor``."""

from __future__ import annotations

from pathlib import Path

from tests.interop.harness import check_views, interop_env, run_app


def test_genai_views(tmp_path: Path) -> None:
    with interop_env(tmp_path) as (aggregator, env):
        run_app("genai", env=env)
        check_views(aggregator.store, "gen_ai")
