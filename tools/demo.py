"""The README's main job in one command (``python tools/demo.py``, run by ``scripts/demo.sh``).

1. starts the aggregator (``phospho-otel serve``) on an embedded SQLite file, free ports;
2. starts a rotel collector (``tools.rotel``) exporting OTLP/HTTP to it;
3. runs the example chat app (``examples/chat_app.py``), which sends its tasks through the
   SDK to rotel;
4. waits until every task and feedback of the app is in the views;
5. prints the session view, the user view and the insights with the CLI;
6. stops the collector and keeps the aggregator serving the web dashboard, printing its
   URL (http://127.0.0.1:8318/ when that port is free), until Ctrl-C (``--exit``: stop
   right away); the database stays in the work directory.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python tools/demo.py
    # the repository instead of tools/, whose rotel.py would shadow the rotel package
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from tools.rotel import RotelCollector

__all__ = ["EXAMPLE_APP", "run_demo"]

EXAMPLE_APP = Path(__file__).resolve().parent.parent / "examples" / "chat_app.py"
"""The example app, in the repository."""


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


DASHBOARD_PORT = 8318
"""The aggregator's own default HTTP port: the demo serves there when it is free."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _serve_until_interrupted(server: _Server) -> None:
    """Wait for Ctrl-C (SIGINT) or SIGTERM, or for the server to stop by itself."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and server.process.poll() is None:
        stop.wait(0.5)


class _Server:
    """``python -m phospho_otel serve`` as a child process."""

    def __init__(self, db: Path, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "w")  # closed in stop()
        http_port = DASHBOARD_PORT if _port_free(DASHBOARD_PORT) else 0
        self.process = subprocess.Popen(
            [sys.executable, "-m", "phospho_otel", "serve", "--db", str(db),
             "--host", "127.0.0.1", "--http-port", str(http_port), "--grpc-port", "0"],
            stdout=subprocess.PIPE, stderr=self._log, text=True,
            env={k: v for k, v in os.environ.items() if k != "PHOSPHO_TOKEN"},
        )
        lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            line = ""
        if not line.startswith("phospho-otel listening"):
            self.stop()
            raise RuntimeError(f"the aggregator did not start:\n{log.read_text()}")
        self.listening = line.strip()
        http = line.split("http=")[1].split()[0]
        self.url = f"http://{http}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _cli(*args: str) -> None:
    print(f"\n$ phospho-otel {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "phospho_otel", *args], check=True)


def _wait_for(url: str, expected: dict[str, int], timeout: float = 120.0) -> None:
    """Poll the API until the app's tasks, sessions and feedback are all in."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = _get(f"{url}/api/tasks?limit=1")["total"]
        sessions = _get(f"{url}/api/insights/sessions")
        flagged = sessions["success_count"] + sessions["failure_count"]
        if (tasks, sessions["session_count"], flagged) == (
                expected["tasks"], expected["sessions"], expected["feedback_in_sessions"]):
            print(f"all in: {tasks} tasks, {sessions['session_count']} sessions, "
                  f"{flagged} feedback", flush=True)
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {tasks} tasks, {sessions['session_count']} "
                               f"sessions, {flagged} feedback in; expected {expected}")
        time.sleep(0.2)


def run_demo(*, workdir: str | None = None, users: int = 20, sessions: int = 60,
             seed: int = 7, keep_serving: bool = True) -> int:
    """Run the demo; returns the process exit code (0 when every step worked)."""
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="phospho-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "phospho.db"
    for suffix in ("", "-wal", "-shm"):  # a fresh store: the figures below are this run's
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    _say(f"starting the aggregator on {db}")
    server = _Server(db, work / "aggregator.log")
    rotel: RotelCollector | None = None
    try:
        print(server.listening, flush=True)
        _say("starting the rotel collector (OTLP in, OTLP/HTTP out to the aggregator)")
        rotel = RotelCollector(server.url, exporter_protocol="http",
                               log_path=work / "rotel.log").start()
        print(f"rotel listening grpc={rotel.grpc_endpoint} http={rotel.http_endpoint}",
              flush=True)
        _say(f"running the example chat app: {users} users, {sessions} chats, seed {seed}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        app = subprocess.run(
            [sys.executable, str(EXAMPLE_APP), "--endpoint", rotel.http_endpoint,
             "--protocol", "http/protobuf", "--users", str(users), "--sessions",
             str(sessions), "--seed", str(seed), "--latency-ms", "40"],
            capture_output=True, text=True, env=env, timeout=300,
        )
        if app.returncode != 0:
            print(app.stdout + app.stderr, file=sys.stderr)
            return 1
        expected = json.loads(app.stdout.strip().splitlines()[-1])
        print(f"the app logged {expected['tasks']} tasks in {expected['sessions']} sessions "
              f"for {expected['users']} users, with {expected['feedback']} feedback",
              flush=True)
        _say("waiting until every task is in the views")
        _wait_for(server.url, expected)
        _say("the session view")
        _cli("sessions", "--url", server.url, "--limit", "10")
        _say("the user view")
        _cli("users", "--url", server.url, "--limit", "10")
        _say("insights")
        _cli("insights", "--url", server.url)
        if keep_serving:
            rotel.stop()
            rotel = None
            _say(f"the web dashboard: {server.url}/")
            print(f"dashboard: {server.url}/ (serving until Ctrl-C)", flush=True)
            _serve_until_interrupted(server)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if rotel is not None:
            rotel.stop()
        server.stop()
    _say("done; everything is stopped")
    print(f"The data stays in {db}. Serve it again with:\n"
          f"  phospho-otel serve --db {db}\n"
          f"or read it directly:\n  phospho-otel sessions --db {db}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python tools/demo.py [--workdir DIR] [--users N] [--sessions N] [--seed N]
    [--exit]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None,
                        help="where the database and logs go (default: a new temp dir)")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--exit", action="store_true",
                        help="stop once the views are printed, instead of serving the "
                             "dashboard until Ctrl-C")
    args = parser.parse_args(argv)
    if args.users < 1 or args.sessions < 1:
        parser.error("--users and --sessions must be at least 1")
    return run_demo(workdir=args.workdir, users=args.users, sessions=args.sessions,
                    seed=args.seed, keep_serving=not args.exit)


if __name__ == "__main__":
    raise SystemExit(main())
