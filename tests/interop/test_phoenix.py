"""``phospho_otel.init()`` after ``phoenix.otel.register(...)`` (arize-phoenix-otel): the
app's Phoenix exporter keeps getting every span, and our aggregator gets them too.

Phoenix's collector is played by a second aggregator (it only has to count spans)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.harness import ROUTES, check_views, interop_env, run_app, running_aggregator

SPANS = 24
"""12 turns, each a CHAIN span and its LLM span."""


@pytest.mark.parametrize("route", ROUTES)
def test_init_after_phoenix_register_keeps_phoenix_exporter(tmp_path: Path,
                                                            route: str) -> None:
    """Our aggregator direct or behind rotel; Phoenix's always direct."""
    with interop_env(tmp_path, route) as (ours, env), \
            running_aggregator(tmp_path / "phoenix.db") as phoenix:
        run_app("openinference", "phoenix",
                env={**env, "PHOENIX_TRACES_URL": phoenix.traces_url})
        assert phoenix.store.counters().get("spans_received") == SPANS
        assert ours.store.counters().get("spans_received") == SPANS
        check_views(ours.store, "openinference")
