"""Pydantic Logfire (``logfire.instrument_openai``), ids from ``logfire.set_baggage``.

A streamed call is a span that ends when the stream is returned (with the input) and a
zero-duration log span when it is consumed (with the output, in a trace of its own): the
log span is not a task, so the streamed turn's task has no output."""

from __future__ import annotations

from pathlib import Path

from phospho_otel.store.api import Page, TaskFilter
from tests.interop.harness import check_views, interop_env, run_app


def test_logfire_views(tmp_path: Path) -> None:
    with interop_env(tmp_path) as (aggregator, env):
        run_app("logfire", env={**env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
                                env["OTLP_TRACES_URL"]})
        check_views(aggregator.store, "logfire", streamed_output=False)
        with aggregator.store.read() as reader:
            tasks = reader.list_tasks(TaskFilter(), Page("start_time", limit=100)).items
        # the rendered message, not the template "Chat Completion with {request_data...}"
        assert {row.task.name for row in tasks} == {"Chat Completion with 'fake-gpt'"}
