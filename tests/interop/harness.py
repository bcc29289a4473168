"""The interop harness: the fake model server, a real aggregator (OTLP/HTTP receiver in
front of a real SQLite store, with ``OTLPPathMiddleware``), and an app of
``tests/interop/apps`` run in its own process (each library sets process-wide state:
its tracer provider, its patches of ``openai``), then what the views show, read through
the store API and compared with ``apps.conversation.TURNS``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from phospho_otel.aggregator.ingest import Ingestor
from phospho_otel.receiver.http import OTLPPathMiddleware, otlp_traces_endpoint
from phospho_otel.store.api import Page, SessionFilter, Store, UserFilter
from phospho_otel.store.sqlite import SQLiteStore
from tests.interop.apps.conversation import SYSTEM_PROMPT, TURNS, Turn
from tests.interop.fake_openai import fake_openai
from tests.support.servers import serve_asgi

__all__ = ["Aggregator", "check_views", "interop_env", "run_app", "running_aggregator"]

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
APP_TIMEOUT_S = 60


@dataclass
class Aggregator:
    store: Store
    base_url: str
    """``http://127.0.0.1:<port>`` (OTLP/HTTP at ``/v1/traces``)."""

    @property
    def traces_url(self) -> str:
        return f"{self.base_url}/v1/traces"


@contextmanager
def running_aggregator(db_path: Path) -> Iterator[Aggregator]:
    """A store + ingestor + OTLP/HTTP receiver on a free 127.0.0.1 port."""
    store = SQLiteStore(db_path)
    ingestor = Ingestor(store)
    app = Starlette(
        routes=[Route("/v1/traces", otlp_traces_endpoint(ingestor, 64 * 1024 * 1024),
                      methods=["POST"])],
        middleware=[Middleware(OTLPPathMiddleware)],
    )
    try:
        with serve_asgi(app) as port:
            yield Aggregator(store, f"http://127.0.0.1:{port}")
    finally:
        ingestor.close()
        store.close()


@contextmanager
def interop_env(tmp_path: Path) -> Iterator[tuple[Aggregator, dict[str, str]]]:
    """The fake model server and an aggregator; yields the aggregator and the environment
    an app runs with (``OPENAI_BASE_URL``, ``OTLP_TRACES_URL``)."""
    with fake_openai() as openai_url, running_aggregator(tmp_path / "interop.db") as agg:
        yield agg, {"OPENAI_BASE_URL": openai_url, "OTLP_TRACES_URL": agg.traces_url}


def run_app(name: str, *args: str, env: Mapping[str, str]) -> None:
    """Run ``apps/<name>_app.py`` to its end (its exporter flushed at exit)."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("OTEL_", "LANGFUSE_", "TRACELOOP_", "LOGFIRE_",
                                     "PHOENIX_", "OPENAI_"))}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, str(APPS / f"{name}_app.py"), *args], env=full_env, cwd=ROOT,
        capture_output=True, text=True, timeout=APP_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{name} app failed:\n{done.stdout}\n{done.stderr}"


def _by_session() -> dict[str, list[Turn]]:
    out: dict[str, list[Turn]] = {}
    for t in TURNS:
        out.setdefault(t.session_id, []).append(t)
    return out


def check_views(store: Store, convention: str, *,
                streamed_output: bool = True) -> None:
    """The views show one task per turn, each with the user's words as input and the
    model's reply as output, the system prompt in its metadata, ``convention`` on every
    task; sessions and users as in ``TURNS``. ``streamed_output=False``: the streamed
    turns' output is not on their task (documented per library)."""
    sessions = _by_session()
    with store.read() as reader:
        listed = reader.list_sessions(SessionFilter(), Page("start_time", limit=100)).items
        assert sorted(s.session_id for s in listed) == sorted(sessions)
        for session_id, turns in sessions.items():
            rollup = reader.get_session(session_id)
            assert rollup is not None
            assert rollup.user_id == turns[0].user_id
            assert rollup.task_count == len(turns), (session_id, rollup)
            assert rollup.first_input == turns[0].text
            assert rollup.last_input == turns[-1].text
            assert rollup.last_output == turns[-1].reply
            rows = reader.session_tasks(session_id, limit=100)
            assert [r.task.input for r in rows] == [t.text for t in turns]
            expected_out = [t.reply if streamed_output or not t.stream else None
                            for t in turns]
            assert [r.task.output for r in rows] == expected_out
            for row in rows:
                assert row.task.convention == convention
                assert row.task.user_id == turns[0].user_id
                assert '"system_prompt":"' + SYSTEM_PROMPT + '"' in row.task.metadata
        users = reader.list_users(UserFilter(), Page("last_seen", limit=100)).items
        by_user = {u.rollup.user_id: u.rollup for u in users}
        expected_users = {t.user_id for t in TURNS}
        assert set(by_user) == expected_users
        for user_id in expected_users:
            own = [t for t in TURNS if t.user_id == user_id]
            assert by_user[user_id].task_count == len(own)
            assert by_user[user_id].session_count == len({t.session_id for t in own})
