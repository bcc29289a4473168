"""OpenLLMetry (``traceloop-sdk``): each turn a ``@workflow``, its LLM span a step."""

from __future__ import annotations

from pathlib import Path

from tests.interop.harness import check_views, interop_env, run_app


def test_traceloop_views(tmp_path: Path) -> None:
    with interop_env(tmp_path) as (aggregator, env):
        run_app("traceloop", env=env)
        check_views(aggregator.store, "traceloop")
