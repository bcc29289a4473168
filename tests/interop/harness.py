"""The interop harness: the fake model server, a real aggregator (OTLP/HTTP receiver in
front of a real SQLite store, with ``OTLPPathMiddleware``), and an app of
``tests/interop/apps`` run in its own process (each library sets process-wide state:
its tracer provider, its patches of ``openai``), then what the views show, read through
the store API and compared with ``apps.conversation.TURNS``.

``ROUTES``: an app sends to the aggregator ``direct``, or through a real ``rotel``
collector (``tools.rotel``, a foreground child process, OTLP/HTTP in and out). The
app's environment names where to send (``OTLP_BASE_URL``, ``OTLP_TRACES_URL``); after
an app run through rotel, ``run_app`` stops rotel (SIGTERM flushes what it holds), so
that the views are read once everything has arrived; a later run starts it again."""

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
from phospho_otel.api.steps import task_steps
from phospho_otel.insights.analyzer import Analyzer
from phospho_otel.insights.config import InsightsConfig
from phospho_otel.receiver.http import OTLPPathMiddleware, otlp_traces_endpoint
from phospho_otel.store.api import Page, SessionFilter, Store, UserFilter
from phospho_otel.store.sqlite import SQLiteStore
from tests.interop.apps.conversation import SYSTEM_PROMPT, TURNS, Turn
from tests.interop.fake_openai import fake_openai
from tests.support.servers import serve_asgi
from tools.rotel import RotelCollector

__all__ = ["ROUTES", "Aggregator", "check_views", "interop_env", "run_app",
           "running_aggregator"]

ROUTES = ("direct", "rotel")
"""How an app's spans reach the aggregator (``interop_env(route=...)``)."""
_COLLECTORS: dict[str, RotelCollector] = {}
"""The rotel of each running ``interop_env`` through rotel, by its traces URL."""

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
def interop_env(tmp_path: Path, route: str = "direct",
                ) -> Iterator[tuple[Aggregator, dict[str, str]]]:
    """The fake model server and an aggregator (behind rotel for ``route="rotel"``);
    yields the aggregator and the environment an app runs with (``OPENAI_BASE_URL``,
    ``OTLP_BASE_URL``, ``OTLP_TRACES_URL``: the aggregator's or rotel's)."""
    assert route in ROUTES, route
    with fake_openai() as openai_url, running_aggregator(tmp_path / "interop.db") as agg:
        if route == "direct":
            yield agg, {"OPENAI_BASE_URL": openai_url, "OTLP_BASE_URL": agg.base_url,
                        "OTLP_TRACES_URL": agg.traces_url}
            return
        rotel = RotelCollector(agg.base_url, exporter_protocol="http",
                               log_path=tmp_path / "rotel.log")
        with rotel:
            traces_url = f"{rotel.http_endpoint}/v1/traces"
            _COLLECTORS[traces_url] = rotel
            try:
                yield agg, {"OPENAI_BASE_URL": openai_url, "OTLP_BASE_URL": rotel.http_endpoint,
                            "OTLP_TRACES_URL": traces_url}
            finally:
                del _COLLECTORS[traces_url]


def run_app(name: str, *args: str, env: Mapping[str, str]) -> None:
    """Run ``apps/<name>_app.py`` to its end (its exporter flushed at exit); through
    rotel, then stop rotel, which flushes what it holds to the aggregator."""
    rotel = _COLLECTORS.get(env.get("OTLP_TRACES_URL", ""))
    if rotel is not None and rotel.process is None:
        rotel.start()  # stopped after an earlier run
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("OTEL_", "LANGFUSE_", "TRACELOOP_", "LOGFIRE_",
                                     "PHOENIX_", "OPENAI_"))}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, str(APPS / f"{name}_app.py"), *args], env=full_env, cwd=ROOT,
        capture_output=True, text=True, timeout=APP_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{name} app failed:\n{done.stdout}\n{done.stderr}"
    if rotel is not None:
        code = rotel.stop()
        assert code == 0, f"rotel exited with {code}:\n{rotel.log()}"


def _by_session() -> dict[str, list[Turn]]:
    out: dict[str, list[Turn]] = {}
    for t in TURNS:
        out.setdefault(t.session_id, []).append(t)
    return out


def _words(text: str) -> int:
    return len(text.split())


def expected_tokens(turns: list[Turn]) -> list[tuple[int, int]]:
    """Each turn's (input, output) tokens as the fake model counts them (words): the
    system prompt, the session's earlier turns and replies, and the turn's words."""
    out = []
    history = _words(SYSTEM_PROMPT)
    for t in turns:
        out.append((history + _words(t.text), _words(t.reply)))
        history += _words(t.text) + _words(t.reply)
    return out


def check_usage_and_steps(store: Store) -> None:
    """After the analyzer: each task's tokens are its LLM call's (the fake model's
    counts) and its model ``fake-gpt``; each task has an LLM step naming that model."""
    analyzer = Analyzer(store, InsightsConfig(), classify_every_s=0)
    while analyzer.run_once():
        pass
    with store.read() as reader:
        for session_id, turns in _by_session().items():
            rows = reader.session_tasks(session_id, limit=100)
            analyses = reader.task_analyses([r.task.task_id for r in rows])
            usages = [analyses[r.task.task_id].usage for r in rows]
            got = [(u.input_tokens, u.output_tokens) if u is not None else None for u in usages]
            assert got == expected_tokens(turns), (session_id, got)
            assert {u.model if u is not None else None for u in usages} == {"fake-gpt"}
            for r in rows:
                trace = reader.get_traces([r.task.trace_id])[0]
                steps = task_steps(trace, r.task.span_id, r.task.start_ns)["steps"]
                assert any(st["kind"] == "llm" and st.get("model") == "fake-gpt"
                           for st in steps), (r.task.name, steps)


def check_views(store: Store, convention: str, *,
                streamed_output: bool = True, usage: bool = True) -> None:
    """The views show one task per turn, each with the user's words as input and the
    model's reply as output, the system prompt in its metadata, ``convention`` on every
    task; sessions and users as in ``TURNS``; with ``usage``, each task's tokens, model
    and LLM step (``check_usage_and_steps``). ``streamed_output=False``: the streamed
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
    if usage:
        check_usage_and_steps(store)
