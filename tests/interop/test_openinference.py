"""OpenInference (``openinference-instrumentation-openai``): plain LLM spans, and each
turn an ``@tracer.chain`` function around the LLM call (one task per turn, not two);
sent direct, and (chain) once through rotel."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.harness import check_views, interop_env, run_app


@pytest.mark.parametrize(("mode", "route"),
                         [("plain", "direct"), ("chain", "direct"), ("chain", "rotel")])
def test_openinference_views(tmp_path: Path, mode: str, route: str) -> None:
    with interop_env(tmp_path, route) as (aggregator, env):
        run_app("openinference", mode, env=env)
        check_views(aggregator.store, "openinference")
