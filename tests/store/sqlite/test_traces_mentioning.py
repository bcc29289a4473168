"""``traces_mentioning``: the traces holding a span whose stored bytes carry one of the
keys (the analyzer decodes only those for their usage), in batches of trace ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from phospho_otel.store import open_store
from phospho_otel.store.sqlite import analysis
from tests.support.oracle import write
from tests.support.otlp import make_request, make_span, task_span


def test_only_traces_with_the_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analysis, "TRACE_IDS_PER_QUERY", 2)  # several batches
    store = open_store(str(tmp_path / "m.db"))
    try:
        tasks = [task_span(f"t{i}") for i in range(5)]
        llm = make_span({"gen_ai.usage.input_tokens": 3}, trace_id=tasks[1].trace_id,
                        parent_span_id=tasks[1].span_id)
        langfuse = make_span({"langfuse.observation.cost_details": '{"total": 1}'},
                             trace_id=tasks[3].trace_id, parent_span_id=tasks[3].span_id)
        write(store, make_request([*tasks, llm, langfuse]))
        ids = [t.trace_id for t in tasks] + [b"\x07" * 16]  # one unknown
        keys = ["gen_ai.usage.input_tokens", "langfuse.observation.cost_details"]
        with store.read() as r:
            assert r.traces_mentioning(ids, keys) == {tasks[1].trace_id, tasks[3].trace_id}
            assert r.traces_mentioning(ids, ["llm.token_count.prompt"]) == set()
            assert r.traces_mentioning([], keys) == set()
    finally:
        store.close()
