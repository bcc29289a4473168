"""OpenLLMetry (``traceloop-sdk``): each turn a ``@workflow``, its LLM span a step."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.harness import ROUTES, check_views, interop_env, run_app


@pytest.mark.parametrize("route", ROUTES)
def test_traceloop_views(tmp_path: Path, route: str) -> None:
    with interop_env(tmp_path, route) as (aggregator, env):
        run_app("traceloop", env=env)
        check_views(aggregator.store, "traceloop")
