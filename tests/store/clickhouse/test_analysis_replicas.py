"""Two replicas' analyzers on one ClickHouse database, working at once: each takes the
store's queue (one may analyse what the other does too), and the results they both write
merge at read: every analysis figure is what one analyzer alone concludes (on SQLite)."""

from __future__ import annotations

import threading
from pathlib import Path

from phospho_otel.insights.analyzer import Analyzer
from phospho_otel.insights.config import InsightsConfig
from phospho_otel.store import open_store
from phospho_otel.store.api import Store
from phospho_otel.store.clickhouse import ClickHouseStore
from tests.insights.test_analyzer import MINUTE, T0, Clock
from tests.store_conformance.test_analysis import _conversation, _figures
from tests.support.clickhouse import open_clickhouse_store, shared_server
from tests.support.oracle import write
from tests.support.otlp import make_request

NOW = T0 + 40 * MINUTE
IDS = ["a1", "a2", "b1", "b2", "c1", "d1"]


def _analyzer(store: Store) -> Analyzer:
    return Analyzer(store, InsightsConfig(), batch=2, clock=Clock(NOW), classify_every_s=0)


def test_two_analyzers_at_once_conclude_as_one(tmp_path: Path) -> None:
    request = make_request(_conversation())  # type: ignore[arg-type]
    alone = open_store(str(tmp_path / "alone.db"))
    first = open_clickhouse_store("replicas")
    second = ClickHouseStore("127.0.0.1", shared_server().port, first.endpoint.database)
    try:
        write(alone, request)
        analyzer = _analyzer(alone)
        while analyzer.run_once():
            pass
        analyzer._classify_if_due(NOW, force=True)
        write(first, request)
        analyzers = [_analyzer(first), _analyzer(second)]
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def drain(a: Analyzer) -> None:
            try:
                start.wait()
                while a.run_once():
                    pass
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=drain, args=(a,)) for a in analyzers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors
        for a in analyzers:  # both classify (the later classification stands)
            a._classify_if_due(NOW, force=True)
        with alone.read() as want, first.read() as got, second.read() as also:
            assert got.pending_analysis(100)[:2] == ([], [])
            expected = _figures(want, IDS)
            assert _figures(got, IDS) == expected
            assert _figures(also, IDS) == expected
        assert sum(a.stats.tasks_analyzed for a in analyzers) >= len(IDS)
    finally:
        alone.close()
        second.close()
        first.close()
