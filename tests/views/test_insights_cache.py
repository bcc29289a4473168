"""Insights served with bounded staleness (``api.views.InsightsCache``) over a real store,
and the exact figures of the cached HTTP answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from phospho_otel.api.views import InsightsCache
from phospho_otel.store import queries
from phospho_otel.store.sqlite import SQLiteStore

from .dataset import write_scripted
from .otlp import request, task_span

_SLACK_S = 2.0
"""Time allowed beyond max_age_s for a recompute on a loaded 2-core machine."""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A real store holding the scripted data set (3 sessions)."""
    s = SQLiteStore(tmp_path / "cache.db")
    write_scripted(s)
    yield s
    s.close()


def _new_session(store: SQLiteStore, n: int) -> None:
    store.write(request(task_span(
        f"new{n}", "2026-01-13T00:00:00Z", "2026-01-13T00:00:01Z", input="x",
        session_id=f"new-s{n}", user_id="dave")))


def _sessions(cache: InsightsCache, **kwargs: Any) -> dict[str, Any]:
    return cache.get(queries.session_insights, **kwargs)


def _wait_until_age(result: dict[str, Any], age_s: float) -> None:
    """Poll the clock until ``result`` is ``age_s`` old (computed_at is wall time)."""
    born = queries.iso_to_ns(result["computed_at"]) / 1e9
    while time.time() - born < age_s:
        time.sleep(0.01)


class TestFreshness:
    def test_idle_store_is_served_from_cache(self, store: SQLiteStore) -> None:
        """Without writes, a result is reused whatever its age, and it is exact."""
        cache = InsightsCache(store, max_age_s=0.05)
        first = _sessions(cache)
        _wait_until_age(first, 0.1)
        again = _sessions(cache)
        assert again["computed_at"] == first["computed_at"]
        assert again["max_age_s"] == 0.05
        with store.reader() as conn:
            exact = queries.session_insights(conn)
        assert {k: v for k, v in again.items() if k not in ("computed_at", "max_age_s")} == exact

    def test_expired_result_is_recomputed_in_the_request(self, store: SQLiteStore) -> None:
        """Data changed and the result is older than max_age_s: the request gets fresh
        figures, not the stale ones."""
        cache = InsightsCache(store, max_age_s=0.2)
        first = _sessions(cache)
        assert first["session_count"] == 3
        _new_session(store, 1)
        _wait_until_age(first, 0.2)
        assert _sessions(cache)["session_count"] == 4

    def test_stale_while_revalidate(self, store: SQLiteStore) -> None:
        """Past half of max_age_s, a changed result is served once more while one
        background refresh recomputes it; the new figures arrive before max_age_s."""
        max_age = 2.0
        cache = InsightsCache(store, max_age_s=max_age)
        first = _sessions(cache)
        _new_session(store, 1)
        assert _sessions(cache)["session_count"] == 3  # young: served as is
        _wait_until_age(first, max_age / 2)
        stale = _sessions(cache)
        deadline = time.monotonic() + max_age / 2 + _SLACK_S
        assert stale["computed_at"] == first["computed_at"]
        while (r := _sessions(cache))["session_count"] != 4:
            assert r["computed_at"] == first["computed_at"]
            assert time.monotonic() < deadline, "background refresh did not land"
            time.sleep(0.01)
        assert r["computed_at"] > first["computed_at"]

    def test_max_age_zero_per_call(self, store: SQLiteStore) -> None:
        """max_age_s=0 for one call gives the figures of the data as it is now."""
        cache = InsightsCache(store)
        assert _sessions(cache)["session_count"] == 3
        _new_session(store, 1)
        assert _sessions(cache, max_age_s=0)["session_count"] == 4

    def test_write_visible_within_max_age_under_steady_requests(
            self, store: SQLiteStore) -> None:
        """Requests and writes interleaved: every write shows within max_age_s."""
        max_age = 0.5
        cache = InsightsCache(store, max_age_s=max_age)
        _sessions(cache)
        for n in range(1, 4):
            _new_session(store, n)
            written = time.monotonic()
            while _sessions(cache)["session_count"] != 3 + n:
                assert time.monotonic() - written < max_age + _SLACK_S
                time.sleep(0.01)


class TestConcurrency:
    def test_one_computation_per_key(self, store: SQLiteStore) -> None:
        """Many requests for a key not cached yet run its computation once."""
        cache = InsightsCache(store)
        calls = 0
        lock = threading.Lock()

        def counted(conn: Any, **kwargs: Any) -> dict[str, Any]:
            nonlocal calls
            with lock:
                calls += 1
            time.sleep(0.2)  # long enough for every thread to ask meanwhile
            return queries.session_insights(conn, **kwargs)

        counted.__name__ = "counted_session_insights"
        results: list[dict[str, Any]] = []
        threads = [threading.Thread(target=lambda: results.append(cache.get(counted)))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert calls == 1
        assert len(results) == 8
        assert all(r == results[0] for r in results)

    def test_one_background_refresh(self, store: SQLiteStore) -> None:
        """Concurrent requests finding a stale result start a single refresh."""
        cache = InsightsCache(store, max_age_s=2.0)
        calls = 0
        lock = threading.Lock()

        def counted(conn: Any, **kwargs: Any) -> dict[str, Any]:
            nonlocal calls
            with lock:
                calls += 1
            time.sleep(0.1)
            return queries.session_insights(conn, **kwargs)

        counted.__name__ = "counted_session_insights"
        first = cache.get(counted)
        _new_session(store, 1)
        _wait_until_age(first, 1.0)
        threads = [threading.Thread(target=lambda: cache.get(counted)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        deadline = time.monotonic() + _SLACK_S
        while cache.get(counted)["session_count"] != 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert calls == 2

    def test_filters_keyed_separately_and_bounded(self, store: SQLiteStore) -> None:
        """Each filter has its own entry; the cache keeps at most max_entries."""
        cache = InsightsCache(store, max_entries=2)
        assert _sessions(cache, user_id="bob")["session_count"] == 1
        assert _sessions(cache, user_id="alice")["session_count"] == 2
        assert _sessions(cache)["session_count"] == 3
        assert _sessions(cache, from_ns=queries.iso_to_ns("2026-01-11"))["session_count"] == 2
        assert len(cache) == 2

    def test_bad_max_age(self, store: SQLiteStore) -> None:
        """A negative max age is refused at construction."""
        with pytest.raises(ValueError, match="max_age_s"):
            InsightsCache(store, max_age_s=-1)


class TestOverHttp:
    def test_cached_figures_are_exact(self, client: httpx.Client, db_path: Path) -> None:
        """The served insights equal the queries' figures, plus computed_at/max_age_s."""
        import sqlite3

        served = client.get("/api/insights/sessions", params={"user_id": "alice"}).json()
        users = client.get("/api/insights/users").json()
        conn = sqlite3.connect(db_path)
        try:
            exact = queries.session_insights(conn, user_id="alice")
            exact_users = queries.user_insights(conn)
        finally:
            conn.close()
        assert served.pop("max_age_s") == 2.0
        served.pop("computed_at")
        assert served == exact
        for u in users["top_users"]:
            u.pop("links")
        assert {k: v for k, v in users.items() if k not in ("computed_at", "max_age_s")} == (
            exact_users)

    def test_max_age_setting(self, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """PHOSPHO_INSIGHTS_MAX_AGE_S sets the server's max age; a bad value falls back to
        the default."""
        from phospho_otel.server import AggregatorServer
        from phospho_otel.server_settings import ServerSettings

        for raw, expected in (("0.5", 0.5), ("soon", 2.0)):
            monkeypatch.setenv("PHOSPHO_INSIGHTS_MAX_AGE_S", raw)
            settings = ServerSettings.from_env(db=str(db_path), http_port=0, grpc_port=0)
            with AggregatorServer(settings) as srv:
                body = httpx.get(f"{srv.http_url}/api/insights/sessions", timeout=10).json()
            assert body["max_age_s"] == expected
