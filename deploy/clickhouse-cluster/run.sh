#!/usr/bin/env bash
# Runs the example cluster in the foreground: ZooKeeper on 127.0.0.1:2181 and two
# ClickHouse servers, native ports 9001 and 9002 (one shard, two replicas: cluster
# "phospho"). Data goes to ./data/. Ctrl-C stops all three.
#
# Needs Debian's clickhouse-server (18.16, or any newer ClickHouse) and zookeeperd:
#   apt-get install -y clickhouse-server zookeeperd
# No system service is used: the three servers are children of this script.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p data/zookeeper data/clickhouse-1 data/clickhouse-2

clickhouse_server() {
  if command -v clickhouse-server >/dev/null; then echo clickhouse-server
  elif [ -x /usr/sbin/clickhouse-server ]; then echo /usr/sbin/clickhouse-server
  else echo "clickhouse server"; fi
}
ZK_CLASSPATH=/etc/zookeeper/conf:/usr/share/java/zookeeper.jar

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait || true; }
trap stop EXIT INT TERM

java -Xmx512m -cp "$ZK_CLASSPATH" org.apache.zookeeper.server.quorum.QuorumPeerMain \
  zookeeper/zoo.cfg >data/zookeeper/zookeeper.log 2>&1 &
pids+=($!)
# serving sessions: "srvr" names the mode (ClickHouse 18.16 may crash on its first
# ZooKeeper call after a failed handshake, so it starts only then)
zookeeper_ok() { exec 3<>/dev/tcp/127.0.0.1/2181 && echo srvr >&3 && grep -q Mode: <&3; }
for _ in $(seq 100); do (zookeeper_ok) 2>/dev/null && break; sleep 0.2; done
for n in 1 2; do
  TZ=UTC $(clickhouse_server) --config-file="clickhouse-$n/config.xml" \
    >"data/clickhouse-$n/stdout.log" 2>&1 &
  pids+=($!)
done
echo "ZooKeeper 127.0.0.1:2181, ClickHouse 127.0.0.1:9001 and 127.0.0.1:9002 (cluster phospho)"
echo "logs in $(pwd)/data/; Ctrl-C stops"
wait -n "${pids[@]}"
echo "a server exited; stopping the others" >&2
