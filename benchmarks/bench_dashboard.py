"""Dashboard page timings at 1,000,000 tasks / 100,000 sessions / 10,000 users
(``--quick``: 100x fewer). Budgets: each page's server time p95 <= 100 ms, and each page
ready in the browser in <= 1 s (p95).

    .venv/bin/python benchmarks/bench_dashboard.py [--quick] [--db PATH] [--requests N]
        [--loads N] [--chromium PATH]

The store is ``bench_views``' data set (tasks, feedback and their analyses, written
through the store's own write paths; ``--db`` reuses or creates that file). The real
server (``phospho-otel serve`` as a child process on a free 127.0.0.1 port, without the
analyzer, so that nothing writes while pages are timed) then serves it, and for each page
(the list pages with their default view and a few filters, detail pages for random ids,
/insights):

* **server p95**: ``--requests`` sequential GETs of the page's HTML after 3 warm-up
  requests, over one keep-alive connection (``http.client``: each request sent in one
  write; ``bench_views`` measured ~40 ms of Nagle/delayed-ACK wait on loopback with
  httpx's sync client, which would swamp a 100 ms budget), from sending the request to
  the last byte of the body;
* **API p95**, the baseline measured in the same run: the same for the JSON API call(s)
  behind the page, with the same ids and filters (for /insights, the insights calls one
  after the other, as one sample); the ratio page / API is the dashboard's own cost;
* **browser ready p95**: ``--loads`` navigations of headless Chromium (Debian's, driven
  by Playwright by its path: ``--chromium``, ``$PHOSPHO_CHROMIUM`` or /usr/bin/chromium)
  after one warm-up load (so static files come from the browser cache, as for a returning
  user), each timed from navigation start (``performance.timeOrigin``) to the moment
  ``document.body.dataset.ready`` becomes ``"1"`` (``performance.now()`` recorded by a
  MutationObserver the page gets before its own scripts).

Prints one table: page, server p95 ms, API p95 ms, page/API, browser ready p95 ms, and
whether each is within its budget. A page that does not answer 200 is reported as such.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import p95
from bench_views import _counts, _has_analyses, populate, populate_analyses

from phospho_otel.dashboard.pages import USER_PAGE_ROWS
from phospho_otel.store import open_store

__all__ = ["PageCase", "main"]

SERVER_BUDGET_MS = 100.0
BROWSER_BUDGET_MS = 1000.0
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync")
_READY_LINE = re.compile(r"listening http=127\.0\.0\.1:(\d+)")
_RECORD_READY = """(() => {
  const check = () => {
    if (window.__phosphoReadyAt === undefined && document.body !== null
        && document.body.dataset.ready === '1') {
      window.__phosphoReadyAt = performance.now();
    }
  };
  new MutationObserver(check).observe(document, {
    subtree: true, childList: true, attributes: true, attributeFilter: ['data-ready']});
  document.addEventListener('DOMContentLoaded', check);
})();"""
"""Records ``performance.now()`` (ms since navigation start) when the page becomes ready."""

Request = tuple[str, dict[str, object]]


@dataclass(frozen=True)
class PageCase:
    """A page to time: a name, and for one random draw (``make(rng)``) the page's request
    and the API requests behind it."""

    name: str
    make: Callable[[random.Random], tuple[Request, list[Request]]]


@dataclass
class PageResult:
    name: str
    server_ms: float | None = None
    api_ms: float | None = None
    browser_ms: float | None = None
    error: str | None = None


def _url(path: str, params: dict[str, object]) -> str:
    query = urllib.parse.urlencode(params)
    return path + (f"?{query}" if query else "")


def page_cases(n_tasks: int, n_sessions: int, n_users: int) -> list[PageCase]:
    """The pages timed, each with the API calls it stands on."""
    week: dict[str, object] = {"from": "2025-11-30T00:00:00Z", "to": "2025-12-07T00:00:00Z"}

    def uid(rng: random.Random) -> str:
        return f"user-{rng.randrange(n_users):05d}"

    def listing(name: str, params: Callable[[random.Random], dict[str, object]]
                ) -> Callable[[random.Random], tuple[Request, list[Request]]]:
        def make(rng: random.Random) -> tuple[Request, list[Request]]:
            p = params(rng)
            return (f"/{name}", p), [(f"/api/{name}", p)]
        return make

    def detail(name: str, make_id: Callable[[random.Random], str],
               api_params: dict[str, object]
               ) -> Callable[[random.Random], tuple[Request, list[Request]]]:
        """A detail page, and the API call it makes (``api_params``: the page's)."""
        def make(rng: random.Random) -> tuple[Request, list[Request]]:
            item = urllib.parse.quote(make_id(rng), safe="")
            return (f"/{name}/{item}", {}), [(f"/api/{name}/{item}", api_params)]
        return make

    def insights(params: dict[str, object]
                 ) -> Callable[[random.Random], tuple[Request, list[Request]]]:
        def make(rng: random.Random) -> tuple[Request, list[Request]]:
            return ("/insights", params), [
                ("/api/insights/sessions", params), ("/api/insights/users", params),
                ("/api/insights/retention", {}), ("/api/events", {})]
        return make

    return [
        PageCase("/insights", insights({})),
        PageCase("/insights?from&to (1 week)", insights(week)),
        PageCase("/sessions", listing("sessions", lambda r: {})),
        PageCase("/sessions?state=ended", listing("sessions", lambda r: {"state": "ended"})),
        PageCase("/sessions?user_id", listing("sessions", lambda r: {"user_id": uid(r)})),
        PageCase("/sessions?sort=duration_s&offset=1000",
                 listing("sessions", lambda r: {"sort": "duration_s", "offset": 1000})),
        PageCase("/sessions?metadata.model=m",
                 listing("sessions", lambda r: {"metadata.model": "m"})),
        PageCase("/sessions?metadata (no match)",
                 listing("sessions", lambda r: {"metadata.model": "none"})),
        PageCase("/sessions/{id}",
                 detail("sessions", lambda r: f"session-{r.randrange(n_sessions):06d}",
                        {"steps": "true"})),
        PageCase("/users", listing("users", lambda r: {})),
        PageCase("/users?class=struggling",
                 listing("users", lambda r: {"class": "struggling"})),
        PageCase("/users?sort=task_count", listing("users", lambda r: {"sort": "task_count"})),
        PageCase("/users?sort=success_rate",
                 listing("users", lambda r: {"sort": "success_rate"})),
        PageCase("/users?sort=cost", listing("users", lambda r: {"sort": "cost"})),
        PageCase("/users?metadata (no match)",
                 listing("users", lambda r: {"metadata.model": "none"})),
        PageCase("/users/{id}", detail("users", uid, {"limit": USER_PAGE_ROWS})),
        PageCase("/tasks", listing("tasks", lambda r: {})),
        PageCase("/tasks?user_id", listing("tasks", lambda r: {"user_id": uid(r)})),
        PageCase("/tasks?evaluation=failure",
                 listing("tasks", lambda r: {"evaluation": "failure"})),
        PageCase("/tasks?q=refund", listing("tasks", lambda r: {"q": "refund"})),
        PageCase("/tasks?q (no match)", listing("tasks", lambda r: {"q": "zq-no-such-text"})),
        PageCase("/tasks?metadata (no match)",
                 listing("tasks", lambda r: {"metadata.model": "none"})),
        PageCase("/tasks?from&to (1 week)", listing("tasks", lambda r: dict(week))),
        PageCase("/tasks/{id}", detail("tasks", lambda r: f"task-{r.randrange(n_tasks):07d}",
                                       {"steps": "true"})),
    ]


# ----------------------------------------------------------------------------- server


class Server:
    """``phospho-otel serve`` on ``db`` as a child process, on free 127.0.0.1 ports."""

    def __init__(self, db: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOSPHO_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "phospho_otel", "serve", "--db", str(db),
             "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
             "--analyzer-interval", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert self.process.stdout is not None
        seen = []
        for line in self.process.stdout:
            seen.append(line)
            match = _READY_LINE.search(line)
            if match:
                self.port = int(match.group(1))
                threading.Thread(target=self.process.stdout.read, daemon=True).start()
                return
        raise RuntimeError(f"the server did not start: {''.join(seen)}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class Client:
    """Sequential GETs over one keep-alive connection; each returns (status, ms)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str, params: dict[str, object]) -> tuple[int, float]:
        t0 = time.perf_counter()
        self.conn.request("GET", _url(path, params))
        response = self.conn.getresponse()
        response.read()
        return response.status, (time.perf_counter() - t0) * 1000

    def close(self) -> None:
        self.conn.close()


def _time_requests(client: Client, draws: Sequence[Sequence[Request]]) -> tuple[float, str]:
    """p95 ms over the draws (each draw's requests timed together), after 3 warm-up
    draws; the error of the first non-200 answer, else ""."""
    for requests in draws[:3]:
        for path, params in requests:
            client.get(path, params)
    samples = []
    for requests in draws:
        total = 0.0
        for path, params in requests:
            status, ms = client.get(path, params)
            if status != 200:
                return 0.0, f"HTTP {status} for {_url(path, params)}"
            total += ms
        samples.append(total)
    return p95(samples), ""


# ----------------------------------------------------------------------------- browser


def _browser_ready(base_url: str, cases: Sequence[tuple[str, list[str]]], chromium: str
                   ) -> dict[str, tuple[float, str]]:
    """p95 ms from navigation start to ready, per case (name, page URLs: the first one a
    warm-up load)."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    out: dict[str, tuple[float, str]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=list(CHROMIUM_FLAGS))
        context = browser.new_context(base_url=base_url,
                                      viewport={"width": 1280, "height": 900})
        context.add_init_script(_RECORD_READY)
        page = context.new_page()
        for name, urls in cases:
            samples: list[float] = []
            error = ""
            for k, url in enumerate(urls):
                try:
                    response = page.goto(url)
                    if response is None or response.status != 200:
                        error = f"HTTP {response.status if response else '?'} for {url}"
                        break
                    page.wait_for_function(
                        "() => window.__phosphoReadyAt !== undefined", timeout=30_000)
                    ready = float(page.evaluate("window.__phosphoReadyAt"))
                except PlaywrightError as exc:
                    error = f"{url}: {str(exc).splitlines()[0]}"
                    break
                if k:
                    samples.append(ready)
            out[name] = (p95(samples) if samples and not error else 0.0, error)
        browser.close()
    return out


# ----------------------------------------------------------------------------- main


def _store(path: Path, n_tasks: int, n_sessions: int, n_users: int) -> None:
    """Make sure ``path`` holds the data set and its analyses (build what is missing)."""
    if not path.exists():
        t0 = time.perf_counter()
        populate(path, n_tasks, n_sessions, n_users)
        print(f"data set written through store.write and store.write_analysis in"
              f" {time.perf_counter() - t0:.1f} s")
    elif not _has_analyses(path):
        store = open_store(str(path), synchronous="NORMAL")
        try:
            populate_analyses(store, n_tasks, n_sessions, n_users)
        finally:
            store.close()
    open_store(str(path), synchronous="NORMAL").close()  # as a server would: new indexes
    print("data set: {:,} tasks / {:,} sessions / {:,} users".format(*_counts(path)))


def _mark(value: float | None, budget: float) -> str:
    if value is None:
        return "-"
    return "ok" if value <= budget else "OVER"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a 100x smaller store and fewer samples (a smoke run)")
    parser.add_argument("--db", help="reuse (or create) this data file")
    parser.add_argument("--requests", type=int, default=None,
                        help="server samples per page (default 100, quick 20)")
    parser.add_argument("--loads", type=int, default=None,
                        help="browser loads per page (default 20, quick 5)")
    parser.add_argument("--chromium", default=None,
                        help="Chromium binary (default $PHOSPHO_CHROMIUM or /usr/bin/chromium)")
    args = parser.parse_args(argv)
    scale = 100 if args.quick else 1
    n_tasks, n_sessions, n_users = 1_000_000 // scale, 100_000 // scale, 10_000 // scale
    requests = args.requests or (20 if args.quick else 100)
    loads = args.loads or (5 if args.quick else 20)
    chromium = args.chromium or os.environ.get("PHOSPHO_CHROMIUM") or "/usr/bin/chromium"
    if not os.access(chromium, os.X_OK):
        print(f"no Chromium at {chromium}: apt-get install chromium, or --chromium PATH",
              file=sys.stderr)
        return 2

    tmp = tempfile.TemporaryDirectory(prefix="bench-dashboard-")
    path = Path(args.db) if args.db else Path(tmp.name) / "dashboard.db"
    _store(path, n_tasks, n_sessions, n_users)
    cases = page_cases(n_tasks, n_sessions, n_users)
    rng = random.Random(12)
    draws = {c.name: [c.make(rng) for _ in range(requests + 3)] for c in cases}
    results = {c.name: PageResult(c.name) for c in cases}

    server = Server(path)
    try:
        client = Client(server.port)
        for case in cases:
            result = results[case.name]
            ms, error = _time_requests(client, [[page] for page, _ in draws[case.name]])
            result.server_ms, result.error = (ms, None) if not error else (None, error)
            ms, error = _time_requests(client, [api for _, api in draws[case.name]])
            if error:
                result.error = result.error or f"API: {error}"
            else:
                result.api_ms = ms
        client.close()
        browser_cases = [(c.name, [_url(*page) for page, _ in draws[c.name][: loads + 1]])
                         for c in cases if results[c.name].server_ms is not None]
        for name, (ms, error) in _browser_ready(server.url, browser_cases, chromium).items():
            if error:
                results[name].error = f"browser: {error}"
            else:
                results[name].browser_ms = ms
    finally:
        server.stop()
        tmp.cleanup()

    print(f"\n{requests} server samples and {loads} browser loads per page; budgets: server"
          f" p95 <= {SERVER_BUDGET_MS:.0f} ms, ready p95 <= {BROWSER_BUDGET_MS:.0f} ms")
    print(f"{'page':42} {'server p95':>10} {'API p95':>9} {'page/API':>8} {'ready p95':>10}"
          f"  {'server':6} {'browser':7}")
    worst_server = worst_browser = 0.0
    failed = False
    for r in results.values():
        def cell(v: float | None, width: int) -> str:
            return f"{v:{width}.1f}" if v is not None else f"{'-':>{width}}"
        ratio = (f"{r.server_ms / r.api_ms:8.2f}" if r.server_ms is not None and r.api_ms
                 else f"{'-':>8}")
        print(f"{r.name:42} {cell(r.server_ms, 10)} {cell(r.api_ms, 9)} {ratio}"
              f" {cell(r.browser_ms, 10)}  {_mark(r.server_ms, SERVER_BUDGET_MS):6}"
              f" {_mark(r.browser_ms, BROWSER_BUDGET_MS):7}"
              + (f"  {r.error}" if r.error else ""))
        worst_server = max(worst_server, r.server_ms or 0.0)
        worst_browser = max(worst_browser, r.browser_ms or 0.0)
        failed = failed or r.error is not None
    print(f"worst server p95 {worst_server:.1f} ms "
          f"({'within' if worst_server <= SERVER_BUDGET_MS else 'OVER'} budget); worst ready"
          f" p95 {worst_browser:.1f} ms "
          f"({'within' if worst_browser <= BROWSER_BUDGET_MS else 'OVER'} budget)"
          + ("; some pages did not answer" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
