"""``phospho_otel.init()`` on a provider the app's library set up (Logfire's
``logfire.configure``, Langfuse's client, ``Traceloop.init``) removes or replaces none of
the library's processors: the library's own exporter still gets every span, and our
aggregator gets them too (Phoenix's ``register``: ``test_phoenix``).

The library's backend is played by one aggregator, ours by another; both count spans."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.interop.harness import check_views, interop_env, run_app, running_aggregator


def _logfire(env: dict[str, str]) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": env["OTLP_TRACES_URL"]}


def _langfuse(env: dict[str, str]) -> dict[str, str]:
    return {"LANGFUSE_PUBLIC_KEY": "pk-lf-interop", "LANGFUSE_SECRET_KEY": "sk-lf-interop",
            "LANGFUSE_BASE_URL": env["OTLP_BASE_URL"],
            "LANGFUSE_OTEL_TRACES_EXPORT_PATH": "/v1/traces",
            "LANGFUSE_TRACING_ENVIRONMENT": "test"}


def _traceloop(env: dict[str, str]) -> dict[str, str]:
    return {}


LIBRARIES: dict[str, Callable[[dict[str, str]], dict[str, str]]] = {
    "logfire": _logfire, "langfuse": _langfuse, "traceloop": _traceloop}
"""The apps of ``tests/interop/apps`` and what each needs besides ``interop_env``'s."""


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_init_keeps_the_library_exporter(tmp_path: Path, library: str) -> None:
    with interop_env(tmp_path) as (theirs, env), \
            running_aggregator(tmp_path / "ours.db") as ours:
        run_app(library, "phospho", env={**env, **LIBRARIES[library](env),
                                         "PHOSPHO_ENDPOINT": ours.base_url})
        received = theirs.store.counters().get("spans_received", 0)
        assert received >= 12  # a span per turn at least
        assert ours.store.counters().get("spans_received") == received
        check_views(theirs.store, library)
        check_views(ours.store, library)
