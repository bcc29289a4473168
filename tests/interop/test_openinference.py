"""OpenInference (``openinference-instrumentation-openai``): plain LLM spans, and each
turn an ``@tracer.chain`` function around the LLM call (one task per turn, not two)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.harness import check_views, interop_env, run_app


@pytest.mark.parametrize("mode", ["plain", "chain"])
def test_openinference_views(tmp_path: Path, mode: str) -> None:
    with interop_env(tmp_path) as (aggregator, env):
        run_app("openinference", mode, env=env)
        check_views(aggregator.store, "openinference")
