"""The stored rollups (``store.clickhouse.rollup_store``) on a real ClickHouse server: reads
from stored rows plus the live delta equal the reads computed live from every task
version, whenever folds happen; a reader keeps its snapshot across a fold; a fold is
idempotent; the stored columns have the live SQL's types."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest

from phospho_otel.store.api import Page, SessionFilter, UserFilter
from phospho_otel.store.clickhouse import ClickHouseStore, rollup_store
from phospho_otel.store.clickhouse.rollup_schema import ROLLUP_COLUMNS
from phospho_otel.store.clickhouse.rollups import sessions_sql, users_sql
from phospho_otel.store.clickhouse.writer import committed
from tests.store_conformance.test_writes import workload
from tests.support.clickhouse import open_clickhouse_store
from tests.support.oracle import read_state, write
from tests.support.otlp import BASE_NS, SEC, feedback_span, make_request, task_span


@pytest.fixture
def stores() -> Iterator[tuple[ClickHouseStore, ClickHouseStore]]:
    """A store whose rollups fold only when asked, and a reader of the same database
    computing every rollup live (the reference)."""
    store = open_clickhouse_store("rollups", fold_interval_s=3600)
    live = ClickHouseStore("127.0.0.1", store.endpoint.port, store.endpoint.database,
                           read_only=True, rollups=False)
    yield store, live
    store.close()
    live.close()


def _rollups(store: ClickHouseStore) -> tuple[object, ...]:
    """Every session and user rollup (lists), and the insights over them."""
    every, everyone = SessionFilter(), UserFilter()
    page = Page("session_id", limit=500)
    with store.read() as r:
        return (r.list_sessions(every, page).items,
                r.list_users(everyone, Page("user_id", limit=500)).items,
                r.session_totals(every), r.session_lengths(every),
                sorted(r.session_endings(every), key=repr),
                r.session_durations_at(every, [0, 3, 7]), r.user_totals(everyone),
                r.top_users(everyone, 5), r.get_session("s0-0"), r.get_user("user1"),
                r.user_sessions("user9", 10),
                r.list_sessions(SessionFilter(user_id="user1"), Page("task_count")))


def _same(store: ClickHouseStore, live: ClickHouseStore) -> None:
    assert _rollups(store) == _rollups(live)


class TestExact:
    @pytest.mark.parametrize("seed", [2])
    def test_folds_at_any_point(self, stores: tuple[ClickHouseStore, ClickHouseStore],
                                seed: int) -> None:
        """The conformance workload (tasks logged again in other sessions and users,
        feedback before its task, retries) delivered in batches, folding after some:
        after every write, the stored-plus-delta reads equal the live ones."""
        store, live = stores
        rng = random.Random(seed)
        spans = workload(seed)
        rng.shuffle(spans)
        folded = 0
        for start in range(0, len(spans), 16):
            batch = spans[start:start + 16] + spans[max(0, start - 3):start]
            write(store, make_request(batch))
            if rng.random() < 0.5:
                folded += store.refresh_rollups().batches
            _same(store, live)
        assert folded > 0
        store.refresh_rollups()
        with store.read() as reader:
            assert reader.unfolded == () and reader.dirty == rollup_store.Touched()
        _same(store, live)

    def test_moved_task_leaves_its_session(
            self, stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
        """A session whose only task is logged again in another session disappears from
        the stored rollups; its old user loses the task and the session."""
        store, live = stores
        write(store, make_request([task_span("t", session_id="a", user_id="ua",
                                             end_ns=BASE_NS + SEC)]))
        store.refresh_rollups()
        write(store, make_request([task_span("t", session_id="b", user_id="ub",
                                             end_ns=BASE_NS + 2 * SEC)]))
        store.refresh_rollups()
        with store.read() as reader:
            assert reader.get_session("a") is None
            assert reader.get_user("ua") is None
            assert [s.session_id for s in
                    reader.list_sessions(SessionFilter(), Page("session_id")).items] == ["b"]
        _same(store, live)

    def test_latest_flag_wins(self, stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
        """A later flag replaces the folded one, also back to a task without feedback
        being the session's last (NULL flags are values, not skipped)."""
        store, live = stores
        write(store, make_request([task_span("t1", session_id="s", user_id="u",
                                             start_ns=BASE_NS),
                                   feedback_span("t1", "success", time_ns=BASE_NS + SEC)]))
        store.refresh_rollups()
        write(store, make_request([feedback_span("t1", "failure", time_ns=BASE_NS + 2 * SEC)]))
        store.refresh_rollups()
        with store.read() as reader:
            rollup = reader.get_session("s")
            assert rollup is not None and (rollup.success_count, rollup.failure_count,
                                           rollup.last_flag) == (0, 1, "failure")
        write(store, make_request([task_span("t2", session_id="s", user_id="u",
                                             start_ns=BASE_NS + 10 * SEC)]))
        store.refresh_rollups()
        with store.read() as reader:
            rollup = reader.get_session("s")
            assert rollup is not None and (rollup.last_task_id, rollup.last_flag) == ("t2", None)
        _same(store, live)


class TestFold:
    def test_reader_keeps_its_snapshot(
            self, stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
        """A reader opened before a write and its fold answers from before both."""
        store, _ = stores
        write(store, make_request([task_span("t1", session_id="s")]))
        store.refresh_rollups()
        with store.read() as reader:
            first = reader.get_session("s")
            write(store, make_request([task_span("t2", session_id="s")]))
            assert store.refresh_rollups().sessions == 1
            assert reader.get_session("s") == first
            assert reader.list_sessions(SessionFilter(), Page("start_time")).items == [first]
        with store.read() as reader:
            later = reader.get_session("s")
            assert later is not None and later.task_count == 2

    def test_fold_is_idempotent(self, stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
        """Folding again (another replica's refresher, a retry) changes no read."""
        store, _ = stores
        write(store, make_request([task_span(f"t{i}", session_id=f"s{i % 3}",
                                             user_id=f"u{i % 2}") for i in range(12)]))
        assert store.refresh_rollups().batches == 1
        before = read_state(store)
        rollup_store.fold(store._refresher.client, store.endpoint.database)  # type: ignore[union-attr]
        assert store.refresh_rollups().batches == 0
        assert read_state(store) == before

    def test_background_refresher_folds(self) -> None:
        """Without being asked, the refresher folds a write soon after it."""
        store = open_clickhouse_store("refresher", fold_interval_s=0.05)
        try:
            write(store, make_request([task_span("t1", session_id="s", user_id="u")]))
            for _ in range(200):
                with store.read() as reader:
                    if not reader.unfolded:
                        break
                time.sleep(0.05)
            with store.read() as reader:
                assert reader.unfolded == ()
                rollup = reader.get_session("s")
                assert rollup is not None and rollup.task_count == 1
        finally:
            store.close()

    def test_many_dirty_ids_read_live(self, stores: tuple[ClickHouseStore, ClickHouseStore],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
        """Beyond ``DIRTY_LIMIT`` unfolded ids, a reader computes everything live."""
        store, live = stores
        write(store, make_request([task_span(f"t{i}", session_id=f"s{i}") for i in range(5)]))
        monkeypatch.setattr("phospho_otel.store.clickhouse.views.DIRTY_LIMIT", 3)
        with store.read() as reader:
            assert reader.dirty is None
        assert read_state(store) == read_state(live)


def test_stored_columns_have_the_live_types(
        stores: tuple[ClickHouseStore, ClickHouseStore]) -> None:
    """The stored value columns have the types of the live SQL (one UNION ALL)."""
    store, _ = stores
    db = store.endpoint.database
    write(store, make_request([task_span("t1", session_id="s", user_id="u")]))
    client = store._writer_client
    for table, sql in (("session_rollups", sessions_sql(db, committed(db))),
                       ("user_rollups", users_sql(db, committed(db)))):
        _, types = client.execute(f"{sql} LIMIT 1", with_column_types=True)
        assert list(types) == list(ROLLUP_COLUMNS[table][:-4])

