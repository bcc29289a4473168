"""Insights served with bounded staleness (``insights.InsightsCache``) over a real store,
and the exact figures of the cached HTTP answers."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from phospho_otel.api.serialize import session_insights_json, user_insights_json
from phospho_otel.insights import (
    CachedResult,
    InsightsCache,
    SessionInsights,
    session_insights,
    user_insights,
)
from phospho_otel.insights.sessions import session_outcomes
from phospho_otel.insights.users import user_class_counts
from phospho_otel.server import AggregatorServer, ServerSettings
from phospho_otel.store import open_store
from phospho_otel.store.api import SessionFilter, Store, StoreReader, UserFilter
from tests.support.dataset import SERVICE
from tests.support.oracle import write
from tests.support.otlp import iso_ns, make_request, task_span

_SLACK_S = 2.0
"""Time allowed beyond max_age_s for a recompute on a loaded 2-core machine."""


def _new_session(store: Store, n: int) -> None:
    write(store, make_request([task_span(
        f"new{n}", start_ns=iso_ns("2026-01-13T00:00:00Z"),
        end_ns=iso_ns("2026-01-13T00:00:01Z"), input="x", session_id=f"new-s{n}",
        user_id="dave", key=f"new{n}")], service=SERVICE))


def _sessions(cache: InsightsCache, **kwargs: Any) -> CachedResult[SessionInsights]:
    return cache.get(session_insights, **kwargs)


def _wait_until_age(result: CachedResult[Any], age_s: float) -> None:
    """Poll the clock until ``result`` is ``age_s`` old (computed_at is wall time)."""
    born = result.computed_at_ns / 1e9
    while time.time() - born < age_s:
        time.sleep(0.01)


class TestFreshness:
    def test_idle_store_is_served_from_cache(self, store: Store) -> None:
        """Without writes, a result is reused whatever its age, and it is exact."""
        cache = InsightsCache(store, max_age_s=0.05)
        first = _sessions(cache)
        _wait_until_age(first, 0.1)
        again = _sessions(cache)
        assert again.computed_at_ns == first.computed_at_ns
        assert again.max_age_s == 0.05
        with store.read() as reader:
            exact = session_insights(reader)
        assert again.value == exact

    def test_expired_result_is_recomputed_in_the_request(self, store: Store) -> None:
        """Data changed and the result is older than max_age_s: the request gets fresh
        figures, not the stale ones."""
        cache = InsightsCache(store, max_age_s=0.2)
        first = _sessions(cache)
        assert first.value.session_count == 3
        _new_session(store, 1)
        _wait_until_age(first, 0.2)
        assert _sessions(cache).value.session_count == 4

    def test_stale_while_revalidate(self, store: Store) -> None:
        """Past half of max_age_s, a changed result is served once more while one
        background refresh recomputes it; the new figures arrive before max_age_s."""
        max_age = 2.0
        cache = InsightsCache(store, max_age_s=max_age)
        first = _sessions(cache)
        _new_session(store, 1)
        assert _sessions(cache).value.session_count == 3  # young: served as is
        _wait_until_age(first, max_age / 2)
        stale = _sessions(cache)
        deadline = time.monotonic() + max_age / 2 + _SLACK_S
        assert stale.computed_at_ns == first.computed_at_ns
        while (r := _sessions(cache)).value.session_count != 4:
            assert r.computed_at_ns == first.computed_at_ns
            assert time.monotonic() < deadline, "background refresh did not land"
            time.sleep(0.01)
        assert r.computed_at_ns > first.computed_at_ns

    def test_max_age_zero_per_call(self, store: Store) -> None:
        """max_age_s=0 for one call gives the figures of the data as it is now."""
        cache = InsightsCache(store)
        assert _sessions(cache).value.session_count == 3
        _new_session(store, 1)
        fresh = _sessions(cache, max_age_s=0)
        assert (fresh.value.session_count, fresh.max_age_s) == (4, 0)

    def test_write_visible_within_max_age_under_steady_requests(self, store: Store) -> None:
        """Requests and writes interleaved: every write shows within max_age_s."""
        max_age = 0.5
        cache = InsightsCache(store, max_age_s=max_age)
        _sessions(cache)
        for n in range(1, 4):
            _new_session(store, n)
            written = time.monotonic()
            while _sessions(cache).value.session_count != 3 + n:
                assert time.monotonic() - written < max_age + _SLACK_S
                time.sleep(0.01)


class TestConcurrency:
    def test_one_computation_per_key(self, store: Store) -> None:
        """Many requests for a key not cached yet run its computation once."""
        cache = InsightsCache(store)
        calls = 0
        lock = threading.Lock()

        def counted(reader: StoreReader, **kwargs: Any) -> SessionInsights:
            nonlocal calls
            with lock:
                calls += 1
            time.sleep(0.2)  # long enough for every thread to ask meanwhile
            return session_insights(reader, **kwargs)

        results: list[CachedResult[SessionInsights]] = []
        threads = [threading.Thread(target=lambda: results.append(cache.get(counted)))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert calls == 1
        assert len(results) == 8
        assert all(r == results[0] for r in results)

    def test_one_background_refresh(self, store: Store) -> None:
        """Concurrent requests finding a stale result start a single refresh."""
        cache = InsightsCache(store, max_age_s=2.0)
        calls = 0
        lock = threading.Lock()

        def counted(reader: StoreReader, **kwargs: Any) -> SessionInsights:
            nonlocal calls
            with lock:
                calls += 1
            time.sleep(0.1)
            return session_insights(reader, **kwargs)

        first = cache.get(counted)
        _new_session(store, 1)
        _wait_until_age(first, 1.0)
        threads = [threading.Thread(target=lambda: cache.get(counted)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        deadline = time.monotonic() + _SLACK_S
        while cache.get(counted).value.session_count != 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert calls == 2

    def test_filters_keyed_separately_and_bounded(self, store: Store) -> None:
        """Each filter has its own entry; the cache keeps at most max_entries."""
        cache = InsightsCache(store, max_entries=2)
        assert _sessions(cache, where=SessionFilter(user_id="bob")).value.session_count == 1
        assert _sessions(cache, where=SessionFilter(user_id="alice")).value.session_count == 2
        assert _sessions(cache).value.session_count == 3
        day11 = SessionFilter(from_ns=iso_ns("2026-01-11"))
        assert _sessions(cache, where=day11).value.session_count == 2
        assert len(cache) == 2
        assert cache.get(user_insights).value.user_count == 3  # another function
        assert len(cache) == 2

    def test_bad_max_age(self, store: Store) -> None:
        """A negative max age is refused at construction."""
        with pytest.raises(ValueError, match="max_age_s"):
            InsightsCache(store, max_age_s=-1)


class TestOverHttp:
    def test_cached_figures_are_exact(self, client: httpx.Client, db_path: Path) -> None:
        """The served insights equal the insights' figures, plus computed_at/max_age_s."""
        served = client.get("/api/insights/sessions", params={"user_id": "alice"}).json()
        users = client.get("/api/insights/users").json()
        store = open_store(str(db_path), read_only=True)
        try:
            with store.read() as reader:
                alice = SessionFilter(user_id="alice")
                exact = session_insights_json(
                    session_insights(reader, where=alice), 0, 0,
                    session_outcomes(reader, where=alice))
                figures = user_insights(reader, where=UserFilter())
                exact_users = user_insights_json(
                    figures, 0, 0, class_counts=user_class_counts(reader),
                    analyses=reader.user_analyses(u.rollup.user_id for u in figures.top_users))
        finally:
            store.close()
        assert served.pop("max_age_s") == 2.0
        served.pop("computed_at")
        for volatile in ("computed_at", "max_age_s"):
            exact.pop(volatile)
            exact_users.pop(volatile)
        assert served == exact
        assert {k: v for k, v in users.items() if k not in ("computed_at", "max_age_s")} == (
            exact_users)

    def test_max_age_setting(self, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """PHOSPHO_INSIGHTS_MAX_AGE_S sets the server's max age; a bad value falls back to
        the default."""
        for raw, expected in (("0.5", 0.5), ("soon", 2.0)):
            monkeypatch.setenv("PHOSPHO_INSIGHTS_MAX_AGE_S", raw)
            settings = ServerSettings.from_env(store=str(db_path), http_port=0, grpc_port=0)
            with AggregatorServer(settings) as srv:
                body = httpx.get(f"{srv.http_url}/api/insights/sessions", timeout=10).json()
            assert body["max_age_s"] == expected
