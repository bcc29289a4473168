"""Langfuse 5: the ``langfuse.openai`` drop-in client inside ``@observe`` turns, ids from
``propagate_attributes``, exported to ``LANGFUSE_BASE_URL`` with
``LANGFUSE_OTEL_TRACES_EXPORT_PATH=/v1/traces`` (which Langfuse posts to ``//v1/traces``,
which the aggregator takes); through rotel, whose receiver takes ``/v1/traces`` only, with
``v1/traces``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from phospho_otel.receiver.http import canonical_path
from tests.interop.harness import ROUTES, check_views, interop_env, run_app


@pytest.mark.parametrize("route", ROUTES)
def test_langfuse_views(tmp_path: Path, route: str) -> None:
    with interop_env(tmp_path, route) as (aggregator, env):
        run_app("langfuse", env={
            **env,
            "LANGFUSE_PUBLIC_KEY": "pk-lf-interop", "LANGFUSE_SECRET_KEY": "sk-lf-interop",
            "LANGFUSE_BASE_URL": env["OTLP_BASE_URL"],
            "LANGFUSE_OTEL_TRACES_EXPORT_PATH": "/v1/traces" if route == "direct"
                                                else "v1/traces",
            "LANGFUSE_TRACING_ENVIRONMENT": "test",
        })
        check_views(aggregator.store, "langfuse")


def test_otlp_paths_with_extra_slashes(tmp_path: Path) -> None:
    """``//v1/traces`` and ``/v1/traces/`` reach the receiver (an empty JSON export is
    answered 200); another path with extra slashes is still a 404."""
    assert canonical_path("//v1//traces/") == "/v1/traces"
    with interop_env(tmp_path) as (aggregator, _):
        for path in ("//v1/traces", "/v1/traces/", "///v1//traces"):
            reply = httpx.post(aggregator.base_url + path, content=b"{}",
                               headers={"content-type": "application/json"})
            assert reply.status_code == 200, (path, reply.text)
        assert httpx.post(aggregator.base_url + "//v1/other", content=b"{}").status_code == 404
