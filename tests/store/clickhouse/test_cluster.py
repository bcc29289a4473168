"""The replicated cluster of ``deploy/clickhouse-cluster``: ZooKeeper and two ClickHouse
servers (one shard, two replicas) started from that example's configuration on free
ports, an aggregator (``serve --store clickhouse://...?cluster=phospho``) on each,
clients sending OTLP/HTTP to either with retries, one ClickHouse server killed mid-ingest
and restarted: every acknowledged request is in the views, nothing counted twice, and
both servers answer the same.

Needs Debian's ``zookeeper`` package (ZooKeeper 3.8 and a JRE; ``zookeeperd`` is the same
plus a service; run here as a child process) besides ``clickhouse-server``
(``scripts/test.sh`` installs both): skipped without it, except under CI (``CI=true``),
where it fails.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from phospho_otel.errors import ConfigurationError
from phospho_otel.server import AggregatorServer
from phospho_otel.server.settings import ServerSettings
from phospho_otel.store import clickhouse_address, open_store
from phospho_otel.store.clickhouse import ClickHouseStore
from phospho_otel.store.clickhouse.schema import LOCAL_SUFFIX, TABLE_COLUMNS, ddl, on_cluster
from tests.store.clickhouse.workload import workload
from tests.support.clickhouse import ClickHouseServer, server_command
from tests.support.oracle import check_store
from tools.rotel import free_port

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "clickhouse-cluster"
ZOOKEEPER_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
CLUSTER = "phospho"


def _missing() -> str | None:
    if server_command() is None:
        return "clickhouse-server is not installed (apt-get install -y clickhouse-server)"
    if shutil.which("java") is None or not Path("/usr/share/java/zookeeper.jar").exists():
        return "ZooKeeper is not installed (apt-get install -y zookeeper)"
    return None


def _require_zookeeper() -> None:
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: the cluster test must run)", pytrace=False)
    pytest.skip(reason)


class ZooKeeper:
    """A standalone ZooKeeper server (the example's ``zoo.cfg``), a child process."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        directory.mkdir(parents=True)
        lines = []
        for line in (EXAMPLE / "zookeeper" / "zoo.cfg").read_text().splitlines():
            key = line.split("=", 1)[0]
            if key == "dataDir":
                line = f"dataDir={directory / 'data'}"
            elif key == "clientPort":
                line = f"clientPort={self.port}"
            elif key == "tickTime":  # sessions as short as 1 s (2 ticks): see ClusterServer
                line = "tickTime=500"
            lines.append(line)
        config = directory / "zoo.cfg"
        config.write_text("\n".join(lines) + "\n")
        self._log = open(directory / "zookeeper.log", "wb")
        self.process = subprocess.Popen(
            ["java", "-Xmx256m", "-cp", ZOOKEEPER_CLASSPATH,
             "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self._ok():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ZooKeeper did not start: "
                                   f"{(directory / 'zookeeper.log').read_text()[-1000:]}")
            time.sleep(0.1)

    def _ok(self) -> bool:
        """Serving sessions: ``srvr`` names the mode (``ruok`` answers earlier, while
        session handshakes still fail, and ClickHouse 18.16 may crash on its first
        ZooKeeper call after a failed handshake)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"srvr")
                return b"Mode:" in sock.recv(4096)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


class ClusterServer(ClickHouseServer):
    """One server of the example cluster: its ``config.xml`` from ``deploy/``, with free
    ports and its files in ``directory``."""

    def __init__(self, directory: Path, n: int, tcp_ports: list[int],
                 zookeeper_port: int) -> None:
        command = server_command()
        assert command is not None
        directory.mkdir(parents=True)
        self.directory = directory
        self.port = tcp_ports[n - 1]
        tree = ET.parse(EXAMPLE / f"clickhouse-{n}" / "config.xml")
        root = tree.getroot()
        values = {"tcp_port": self.port, "http_port": free_port(),
                  "interserver_http_port": free_port(), "path": f"{directory}/data/",
                  "tmp_path": f"{directory}/tmp/", "user_files_path": f"{directory}/files/",
                  "format_schema_path": f"{directory}/schemas/",
                  "logger/log": directory / "server.log",
                  "logger/errorlog": directory / "error.log"}
        for path, value in values.items():
            element = root.find(path)
            assert element is not None, path
            element.text = str(value)
        for element, port in zip(root.iterfind(f"remote_servers/{CLUSTER}/shard/replica/port"),
                                 tcp_ports, strict=True):
            element.text = str(port)
        (node_port,) = root.iterfind("zookeeper/node/port")
        node_port.text = str(zookeeper_port)
        # A killed server's ZooKeeper session outlives it by its timeout (30 s by
        # default), and until it expires the restarted server's tables stay read-only
        # ("replica appears to be already active"): 2 s here, to keep the test short.
        zookeeper = root.find("zookeeper")
        assert zookeeper is not None
        ET.SubElement(zookeeper, "session_timeout_ms").text = "2000"
        tree.write(directory / "config.xml")
        shutil.copy(EXAMPLE / f"clickhouse-{n}" / "users.xml", directory / "users.xml")
        self._command = [*command, f"--config-file={directory / 'config.xml'}"]
        self.start()


class Cluster:
    def __init__(self, directory: Path) -> None:
        self.zookeeper = ZooKeeper(directory / "zookeeper")
        ports = [free_port(), free_port()]
        self.servers: list[ClusterServer] = []
        try:
            for n in (1, 2):
                self.servers.append(ClusterServer(directory / f"clickhouse-{n}", n, ports,
                                                  self.zookeeper.port))
        except BaseException:
            self.stop()
            raise

    def url(self, n: int, database: str) -> str:
        return f"clickhouse://127.0.0.1:{self.servers[n].port}/{database}?cluster={CLUSTER}"

    def sync(self, database: str) -> None:
        """Wait until each server has fetched every part the other one wrote."""
        for server in self.servers:
            client = server.client()
            try:
                for (name,) in client.execute(
                        "SELECT name FROM system.tables WHERE database = %(db)s"
                        " AND engine LIKE 'Replicated%%'", {"db": database}):
                    client.execute(f"SYSTEM SYNC REPLICA {database}.{name}")
            finally:
                client.disconnect()

    def ddl_tasks(self) -> int:
        """How many ``ON CLUSTER`` statements were queued so far."""
        client = self.servers[0].client()
        try:
            return int(client.execute("SELECT count() FROM system.zookeeper"
                                      " WHERE path = '/clickhouse/task_queue/ddl'")[0][0])
        finally:
            client.disconnect()

    def stop(self) -> None:
        for server in self.servers:  # their data is thrown away: no need to wait
            server.stop(kill=True)
        self.zookeeper.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster of this module's tests (each uses a database of its own)."""
    _require_zookeeper()
    started = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield started
    finally:
        started.stop()


class TestOptions:
    def test_url(self) -> None:
        """``?cluster=NAME`` is the one URL option; a bad one says what to write."""
        assert clickhouse_address("clickhouse://ch1:9001/phospho?cluster=phospho") == {
            "host": "ch1", "port": 9001, "database": "phospho", "cluster": "phospho"}
        for url in ("clickhouse://h/db?shards=2", "clickhouse://h/db?cluster=",
                    "clickhouse://h/db?cluster=a-b"):
            with pytest.raises(ConfigurationError, match=r"\?cluster=NAME"):
                open_store(url)

    def test_statements(self) -> None:
        """On a cluster every statement is ``ON CLUSTER``; each table is a replicated
        ``_local`` table under a ``Distributed`` one, each view reads and fills
        ``_local`` tables; the single-server schema is unchanged."""
        single = ddl("db")
        clustered = ddl("db", "c")
        assert all(" ON CLUSTER c " in s or s.endswith(" ON CLUSTER c") for s in clustered)
        assert not any("ON CLUSTER" in s or "_local" in s for s in single)
        tables = [s for s in single if s.startswith("CREATE TABLE")]
        views = [s for s in single if s.startswith("CREATE MATERIALIZED VIEW")]
        assert len(clustered) == 1 + 2 * len(tables) + len(views)
        spans_local, spans = on_cluster(single[1], "db", "c")
        assert spans_local.startswith("CREATE TABLE IF NOT EXISTS db.spans_local ON CLUSTER c (")
        assert ("ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/spans',"
                " '{replica}') PARTITION BY") in spans_local
        assert spans == ("CREATE TABLE IF NOT EXISTS db.spans ON CLUSTER c AS db.spans_local"
                         " ENGINE = Distributed(c, db, spans_local, rand())")
        (view,) = on_cluster(views[0], "db", "c")
        assert " TO db.span_index_local AS" in view and view.endswith("FROM db.spans_local")
        with pytest.raises(ValueError, match="no cluster form"):
            on_cluster("CREATE TABLE IF NOT EXISTS db.x (a String) ENGINE = Memory", "db", "c")


def test_schema_on_cluster(cluster: Cluster) -> None:
    """``?cluster=`` creates every table on both servers: replicated ``_local`` tables
    under ``Distributed`` ones; a second replica's start creates nothing again."""
    store = open_store(cluster.url(0, "layout"))
    store.close()
    for server in cluster.servers:
        client = server.client()
        try:
            engines = dict(client.execute(
                "SELECT name, engine FROM system.tables WHERE database = 'layout'"))
        finally:
            client.disconnect()
        for table in TABLE_COLUMNS:
            assert engines[table] == "Distributed"
            assert engines[table + LOCAL_SUFFIX].startswith("Replicated")
        assert engines["span_index_mv"] == "MaterializedView"
    before = cluster.ddl_tasks()
    assert before >= len(ddl("layout", CLUSTER))
    open_store(cluster.url(1, "layout")).close()
    assert cluster.ddl_tasks() == before  # nothing ON CLUSTER: it all exists


def _small(requests: list[ExportTraceServiceRequest], size: int = 30
           ) -> list[ExportTraceServiceRequest]:
    """The same spans (duplicates included) in requests of at most ``size`` spans, as a
    collector's batches: many requests, so that a server dies in the middle of them."""
    out = []
    for request in requests:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for start in range(0, len(scope_spans.spans), size):
                    part = ExportTraceServiceRequest()
                    copy = part.resource_spans.add()
                    copy.resource.CopyFrom(resource_spans.resource)
                    scope = copy.scope_spans.add()
                    scope.scope.CopyFrom(scope_spans.scope)
                    scope.spans.extend(scope_spans.spans[start : start + size])
                    out.append(part)
    return out


def _send(ports: list[int], requests: list[ExportTraceServiceRequest], seed: int,
          acknowledged: list[int], refused: list[int], errors: list[BaseException]) -> None:
    """Send each request to a random aggregator; on a refusal (503) or a dead connection
    retry on the other one, as a collector's load balancer does; sometimes send an
    acknowledged request again (a lost reply)."""
    rng = random.Random(seed)
    try:
        with httpx.Client(timeout=30) as client:
            for i, request in enumerate(requests):
                body = request.SerializeToString()
                target = rng.randrange(2)
                for _ in range(600):
                    try:
                        reply = client.post(f"http://127.0.0.1:{ports[target]}/v1/traces",
                                            content=body,
                                            headers={"Content-Type": "application/x-protobuf"})
                        status = reply.status_code
                    except httpx.TransportError:
                        status = 0
                    if status == 200:
                        break
                    assert status in (0, 503), reply.text
                    refused.append(i)
                    target = 1 - target
                    time.sleep(0.05)
                else:
                    raise AssertionError(f"request {i} never acknowledged")
                acknowledged.append(i)
                if rng.random() < 0.1:
                    client.post(f"http://127.0.0.1:{ports[1 - target]}/v1/traces",
                                content=body, headers={"Content-Type": "application/x-protobuf"})
    except BaseException as exc:
        errors.append(exc)


def test_replica_killed_mid_ingest(cluster: Cluster) -> None:
    """An aggregator on each server, two clients; server 2 killed mid-ingest and
    restarted: its aggregator answers 503 meanwhile, the clients' retries go to the
    other; afterwards both servers hold every acknowledged request exactly once."""
    database = "killed"
    requests = _small(workload(11, tasks_n=120, users_n=12)[0])
    aggregators = [AggregatorServer(ServerSettings(store=cluster.url(n, database),
                                                   http_port=0, grpc_port=0))
                   for n in (0, 1)]
    try:
        for aggregator in aggregators:
            aggregator.start()
        ports = [a.http_port for a in aggregators]
        acknowledged: list[int] = []
        refused: list[int] = []
        errors: list[BaseException] = []
        halves = [requests[0::2], requests[1::2]]
        clients = [threading.Thread(target=_send, args=(ports, half, seed, acknowledged,
                                                        refused, errors))
                   for seed, half in enumerate(halves)]
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + 120
        while len(acknowledged) < len(requests) // 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        cluster.servers[1].stop(kill=True)
        down_at = len(acknowledged)
        while len(acknowledged) < down_at + len(requests) // 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not errors
        cluster.servers[1].start()
        for thread in clients:
            thread.join(180)
        assert not errors, errors
        assert len(acknowledged) == len(requests)
        assert refused, "the killed server's aggregator never refused a request"
    finally:
        for aggregator in aggregators:
            aggregator.stop()
    cluster.sync(database)
    states = []
    for n in (0, 1):
        store = open_store(cluster.url(n, database), read_only=True)
        assert isinstance(store, ClickHouseStore)
        try:
            states.append(check_store(store, requests))
            spans = {(s.trace_id, s.span_id) for r in requests for rs in r.resource_spans
                     for ss in rs.scope_spans for s in ss.spans}
            with store.read() as reader:
                traces = reader.get_traces(sorted({t for t, _ in spans}))
            keys = [(s.span.trace_id, s.span.span_id) for t in traces for s in t.spans]
            assert len(keys) == len(set(keys)) == len(spans)
        finally:
            store.close()
    assert states[0] == states[1]
    assert len(states[0].tasks) == 120
