"""The ClickHouse backend's own behaviour on a real server: its URLs, its errors when
ClickHouse is away (at open, and mid-ingest with a restart), the schema created by
several replicas at once, and ``phospho-otel serve`` on it over OTLP/HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from phospho_otel.errors import ConfigurationError, StoreError, StoreUnavailable
from phospho_otel.server import AggregatorServer
from phospho_otel.server.settings import ServerSettings
from phospho_otel.store import clickhouse_address, open_store
from phospho_otel.store.clickhouse import ClickHouseStore
from tests.support.clickhouse import ClickHouseServer, new_database, shared_server
from tests.support.oracle import check_store, write
from tests.support.otlp import BASE_NS, SEC, feedback_span, make_request, task_span
from tools.rotel import free_port


class TestURL:
    def test_address(self) -> None:
        """Host, native port (9000 by default), database, optional credentials."""
        assert clickhouse_address("clickhouse://ch.local/phospho") == {
            "host": "ch.local", "port": 9000, "database": "phospho"}
        assert clickhouse_address("clickhouse://u:p%40ss@10.0.0.1:9440/db_1") == {
            "host": "10.0.0.1", "port": 9440, "database": "db_1", "user": "u",
            "password": "p@ss"}

    @pytest.mark.parametrize("url", ["clickhouse://host", "clickhouse://host/",
                                     "clickhouse://host/a/b", "clickhouse://host/bad-name",
                                     "clickhouse:///db", "clickhouse://host:x/db"])
    def test_bad_urls(self, url: str) -> None:
        """An unusable URL is a ConfigurationError saying what to write."""
        with pytest.raises(ConfigurationError, match="clickhouse://"):
            open_store(url)

    def test_unknown_scheme_names_both(self) -> None:
        with pytest.raises(ConfigurationError, match="clickhouse://HOST:PORT/DATABASE"):
            open_store("postgres://x/y")


class TestUnreachable:
    def test_open_fails_in_one_line(self) -> None:
        """Nothing listening: a one-line StoreError naming the address."""
        port = free_port()
        with pytest.raises(StoreError) as caught:
            open_store(f"clickhouse://127.0.0.1:{port}/db", connect_timeout_s=1.0)
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message and "\n" not in message
        assert not isinstance(caught.value, StoreUnavailable)

    def test_read_only_needs_a_store(self) -> None:
        """read_only on a database without our tables: StoreError, nothing created."""
        server = shared_server()
        database = new_database("absent")
        with pytest.raises(StoreError, match=database):
            open_store(f"clickhouse://127.0.0.1:{server.port}/{database}", read_only=True)
        client = server.client()
        try:
            names = {n for (n,) in client.execute("SHOW DATABASES")}
        finally:
            client.disconnect()
        assert database not in names


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ClickHouseServer]:
    """A server of this test's own, to stop and restart."""
    shared_server()  # fails under CI / skips elsewhere when no server can start
    server = ClickHouseServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


class TestRestart:
    def test_killed_mid_ingest(self, own_server: ClickHouseServer) -> None:
        """ClickHouse killed between writes: the write raises StoreUnavailable
        (retryable); once it is back the retry is stored once; nothing acknowledged
        is lost, nothing counted twice."""
        store = ClickHouseStore("127.0.0.1", own_server.port, "restart",
                                connect_timeout_s=1.0, query_timeout_s=5.0)
        try:
            first = [make_request([task_span(f"a{i}", session_id="s", user_id="u",
                                             start_ns=BASE_NS + i * SEC)]) for i in range(5)]
            write(store, *first)
            own_server.stop(kill=True)
            retried = make_request([task_span("b", session_id="s", user_id="u",
                                              start_ns=BASE_NS + 10 * SEC),
                                    feedback_span("a0", "success", time_ns=BASE_NS + SEC)])
            with pytest.raises(StoreUnavailable, match="unavailable"):
                write(store, retried)
            with pytest.raises(StoreUnavailable):
                store.counters()
            own_server.start()
            (result,) = write(store, retried)
            assert (result.spans_stored, result.tasks_new, result.feedback_new) == (2, 1, 1)
            (again,) = write(store, retried)  # the collector retries once more
            assert (again.spans_stored, again.spans_duplicate) == (0, 2)
            state = check_store(store, [*first, retried])
            assert state.sessions["s"].task_count == 6
            assert state.sessions["s"].success_count == 1
        finally:
            store.close()


class TestReplicas:
    def test_schema_created_by_many_at_once(self) -> None:
        """Several replicas starting at once on a new database all open it; what one
        writes the others read."""
        server = shared_server()
        database = new_database("race")
        stores: list[ClickHouseStore] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def start() -> None:
            try:
                s = ClickHouseStore("127.0.0.1", server.port, database)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
            else:
                with lock:
                    stores.append(s)

        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        try:
            assert errors == []
            assert len(stores) == 4
            request = make_request([task_span("t", session_id="s", user_id="u")])
            write(stores[0], request)
            for s in stores[1:]:
                check_store(s, [request])
        finally:
            for s in stores:
                s.close()


class TestServe:
    def test_serve_on_clickhouse(self) -> None:
        """``serve --store clickhouse://...``: OTLP/HTTP in, the views and counters out."""
        server = shared_server()
        url = f"clickhouse://127.0.0.1:{server.port}/{new_database('serve')}"
        settings = ServerSettings(store=url, http_port=0, grpc_port=0)
        request = make_request([task_span("t1", session_id="s1", user_id="u1", input="hi"),
                                task_span("t2", session_id="s1", user_id="u1",
                                          start_ns=BASE_NS + SEC)])
        with AggregatorServer(settings) as aggregator:
            reply = httpx.post(f"http://127.0.0.1:{aggregator.http_port}/v1/traces",
                               content=request.SerializeToString(),
                               headers={"Content-Type": "application/x-protobuf"}, timeout=30)
            assert reply.status_code == 200, reply.text
            session = httpx.get(f"http://127.0.0.1:{aggregator.http_port}/api/sessions/s1",
                                timeout=30)
            assert session.status_code == 200, session.text
        store = open_store(url, read_only=True)
        try:
            check_store(store, [request])
        finally:
            store.close()
