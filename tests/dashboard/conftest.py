"""Fixtures of the dashboard's browser tests: Debian's headless Chromium driven by
Playwright (by its path: ``$PHOSPHO_CHROMIUM``, else ``/usr/bin/chromium``; never a
downloaded browser), and live aggregators (``phospho-otel serve`` as a child process on
free 127.0.0.1 ports, a temporary SQLite file, the analyzer every 0.2 s) fed through the
real SDK by ``workload.py``, one open and one with ``--token``.

* ``browser``: one Chromium for the session; a missing browser is an error, not a skip.
* ``page``: a fresh context on the open server (``base_url`` set: ``page.goto("/tasks")``)
  whose console errors, uncaught exceptions and failed or 4xx/5xx requests fail the test
  at teardown; ``new_page(base_url, allowed_statuses=...)`` makes more (the auth tests').
* ``server`` / ``token_server``: the live aggregators, analysed (every task has its
  evaluation, the backfilled sessions are ended) before any test runs.
* ``api(path, **params)``: the open server's JSON (``api("/api/tasks", **{"metadata.
  version_id": "1.1.0"})``); ``token_api`` the token server's, with the bearer token.
* ``screenshot(page, name)``: a full-page PNG in ``test-artifacts/dashboard/<name>.png``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.dashboard import workload
from tests.dashboard.pages import PageProblems
from tests.support.service import start_server

__all__ = [
    "ARTIFACTS",
    "CHROMIUM_FLAGS",
    "TOKEN",
    "Api",
    "LiveServer",
    "NewPage",
    "Screenshot",
    "api",
    "browser",
    "chromium_path",
    "new_page",
    "page",
    "screenshot",
    "server",
    "token_api",
    "token_server",
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync")
TOKEN = "dashboard-test-token-5f2c"
WORKLOAD = Path(__file__).with_name("workload.py")
JAEGER_UI = "http://jaeger.invalid:16686"
"""A Jaeger UI URL for the trace links (never fetched by the tests)."""

Api = Callable[..., Any]
NewPage = Callable[..., Page]
Screenshot = Callable[[Page, str], Path]


# ----------------------------------------------------------------------------- browser


def chromium_path() -> str:
    """The Chromium to drive: ``$PHOSPHO_CHROMIUM``, else Debian's ``/usr/bin/chromium``;
    fails (an error of the test using it, never a skip) when it is not there."""
    path = os.environ.get("PHOSPHO_CHROMIUM") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.fail(f"no Chromium at {path}: install Debian's (apt-get install chromium; "
                    "scripts/test.sh does) or set PHOSPHO_CHROMIUM to a Chromium binary "
                    "(never `playwright install`)", pytrace=False)
    return path


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    # package scope: Playwright's sync API keeps an event loop in this thread while it
    # runs, which later tests' asyncio.run() would meet; it stops after tests/dashboard
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Chromium, launched once."""
    b = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                   args=list(CHROMIUM_FLAGS))
    yield b
    b.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[NewPage]:
    """``new_page(base_url, allowed_statuses=())``: a page in a fresh context (its own
    cookies); at teardown the test fails listing whatever went wrong on any of them."""
    made: list[tuple[Page, PageProblems]] = []

    def make(base_url: str, allowed_statuses: tuple[int, ...] = ()) -> Page:
        context = browser.new_context(base_url=base_url, viewport={"width": 1280,
                                                                   "height": 900})
        context.set_default_timeout(15_000)
        page = context.new_page()
        problems = PageProblems(allowed_statuses)
        problems.watch(page)
        made.append((page, problems))
        return page

    yield make
    found = []
    for page, problems in made:
        found += problems.problems
        page.context.close()
    if found:
        pytest.fail("problems on the page:\n  " + "\n  ".join(found), pytrace=False)


@pytest.fixture
def page(new_page: NewPage, server: LiveServer) -> Page:
    """A page on the open server (``page.goto("/sessions")``)."""
    return new_page(server.url)


@pytest.fixture(scope="session")
def screenshot() -> Screenshot:
    def take(page: Page, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


# ----------------------------------------------------------------------------- servers


@dataclass
class LiveServer:
    """A running ``phospho-otel serve``: its base URL, process and token (if any)."""

    url: str
    process: subprocess.Popen[str]
    token: str | None

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15, trust_env=False)


def _serve(db: Path, *options: str) -> LiveServer:
    token = None
    if "--token" in options:
        token = options[options.index("--token") + 1]
    proc, http_port, _ = start_server(db, "--analyzer-interval", "0.2", *options)
    return LiveServer(f"http://127.0.0.1:{http_port}", proc, token)


def _stop(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(5)


def _feed(server: LiveServer, *args: str) -> None:
    """Run the workload (the real SDK, in its own process) against the server."""
    command = [sys.executable, str(WORKLOAD), server.url, *args]
    if server.token:
        command += ["--token", server.token]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith(("OTEL_", "PHOSPHO_"))})
    assert result.returncode == 0, f"the workload failed:\n{result.stdout}{result.stderr}"


def _wait_analysed(server: LiveServer, tasks: int, ended: set[str],
                   timeout_s: float = 60.0) -> None:
    """Until the API has ``tasks`` tasks, each evaluated, and the sessions ``ended``
    ended (the analyzer's passes)."""
    deadline = time.monotonic() + timeout_s
    state: Any = None
    with server.client() as client:
        while True:
            listed = client.get("/api/tasks", params={"limit": 1000}).json()
            sessions = client.get("/api/sessions", params={"limit": 1000}).json()
            not_evaluated = [t["task_id"] for t in listed["items"] if not t["evaluation"]]
            not_ended = ended - {s["session_id"] for s in sessions["items"]
                                 if s["state"] == "ended"}
            state = (listed["total"], not_evaluated, sorted(not_ended))
            if listed["total"] == tasks and not not_evaluated and not not_ended:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"not analysed after {timeout_s}s: (tasks, not evaluated, "
                            f"sessions not ended) = {state}")
            time.sleep(0.2)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The open aggregator holding ``workload``'s data set, analysed."""
    db = tmp_path_factory.mktemp("dashboard") / "dashboard.db"
    live = _serve(db, "--jaeger-ui-url", JAEGER_UI)
    try:
        _feed(live)
        _wait_analysed(live, workload.TASKS,
                       set(workload.SESSIONS) - {workload.LIVE_SESSION})
        yield live
    finally:
        _stop(live)


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """An aggregator with ``--token TOKEN`` holding the small data set."""
    db = tmp_path_factory.mktemp("dashboard-token") / "dashboard.db"
    live = _serve(db, "--token", TOKEN)
    try:
        _feed(live, "--small")
        _wait_analysed(live, workload.SMALL_TASKS, set())
        yield live
    finally:
        _stop(live)


def _api(server: LiveServer) -> Iterator[Api]:
    with server.client() as client:

        def get(path: str, **params: Any) -> Any:
            response = client.get(path, params={k: v for k, v in params.items()
                                                if v is not None})
            assert response.status_code == 200, (
                f"GET {response.request.url}: {response.status_code} {response.text[:300]}")
            return response.json()

        yield get


@pytest.fixture(scope="session")
def api(server: LiveServer) -> Iterator[Api]:
    """``api(path, **params)``: the open server's JSON for that GET (asserts 200)."""
    yield from _api(server)


@pytest.fixture(scope="session")
def token_api(token_server: LiveServer) -> Iterator[Api]:
    """``token_api(path, **params)``: the token server's JSON, with the bearer token."""
    yield from _api(token_server)
