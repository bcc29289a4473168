"""Logs through the shipped collector configurations: every otelcol-contrib file has a
logs pipeline to the aggregator, ``rotel.env`` forwards logs, and a real rotel started
from ``rotel.env`` carries an OTel GenAI app's ``event_only`` content and evaluation
events to ``/v1/logs``: the views are those of the content on the spans."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tests.collector.collector_support import (
    CONFIG_DIR,
    ROTEL_ENV,
    RotelFromEnvFile,
    parse_env_file,
)
from tests.interop.harness import check_views, run_app
from tests.interop.logs_env import logs_interop_env

OTELCOL_CONFIGS = sorted(CONFIG_DIR.glob("otelcol-contrib*.yaml"))
TO_AGGREGATOR = {"otlp_http/phospho", "load_balancing"}
"""Exporters that reach the aggregator (tier 1 through its tier-2 collectors)."""


@pytest.mark.parametrize("path", OTELCOL_CONFIGS, ids=lambda p: p.name)
def test_otelcol_logs_pipeline(path: Path) -> None:
    """A logs pipeline from the OTLP receiver through memory_limiter and batch to the
    aggregator's exporter, and to nothing else (Jaeger takes no logs)."""
    config = yaml.safe_load(path.read_text())
    logs = config["service"]["pipelines"]["logs"]
    traces = config["service"]["pipelines"]["traces"]
    assert logs["receivers"] == traces["receivers"] == ["otlp"]
    assert logs["processors"] == ["memory_limiter", "batch"]
    assert set(logs["exporters"]) == set(traces["exporters"]) & TO_AGGREGATOR != set()


def test_rotel_env_forwards_logs() -> None:
    settings = parse_env_file(ROTEL_ENV)
    assert settings["ROTEL_OTLP_RECEIVER_LOGS_DISABLED"] == "false"
    assert "ROTEL_OTLP_EXPORTER_LOGS_ENDPOINT" not in settings, "logs go where traces go"
    assert int(settings["ROTEL_LOGS_BATCH_MAX_SIZE"]) <= 512


def test_genai_events_through_rotel(tmp_path: Path) -> None:
    """The GenAI app (content as events, an evaluator) sends to rotel's OTLP/HTTP
    receiver; rotel, configured by ``rotel.env``, forwards traces and logs."""
    with logs_interop_env(tmp_path) as (aggregator, env):
        rotel = RotelFromEnvFile(ROTEL_ENV, aggregator.base_url,
                                 log_path=tmp_path / "rotel.log")
        with rotel:
            run_app("genai", "event_only", "evaluate", env={
                **env, "OTLP_TRACES_URL": f"{rotel.http_endpoint}/v1/traces",
                "OTLP_LOGS_URL": f"{rotel.http_endpoint}/v1/logs"})
            deadline = time.monotonic() + 10  # rotel forwards within its 20 ms batches
            while time.monotonic() < deadline:
                counters = aggregator.store.counters()
                if counters.get("tasks_new", 0) >= 12 and counters.get("feedback_stored", 0) >= 2:
                    break
                time.sleep(0.05)
            check_views(aggregator.store, "gen_ai")
        with aggregator.store.read() as reader:
            alice = reader.get_session("alice-session-0")
        assert alice is not None and alice.success_count == 1
