"""The HTTP API on a real server (127.0.0.1, free ports) over the scripted data set
(``tests/support/dataset``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from phospho_otel.api.serialize import iso_to_ns
from phospho_otel.server import AggregatorServer, ServerSettings
from tests.support.dataset import SERVICE, write_scripted
from tests.support.otlp import iso_ns, make_request, task_span


class TestViews:
    def test_sessions(self, client: httpx.Client) -> None:
        """GET /api/sessions lists the sessions with their figures."""
        r = client.get("/api/sessions", params={"sort": "duration_s"})
        assert r.status_code == 200
        body = r.json()
        assert body["total"] == 3
        assert [(s["session_id"], s["task_count"], s["duration_s"]) for s in body["items"]] == [
            ("s1", 3, 310.0), ("s2", 1, 30.0), ("s3", 2, 4.0)]
        assert body["items"][0]["links"] is None

    def test_session_detail(self, client: httpx.Client) -> None:
        """GET /api/sessions/{id} gives the session and its tasks in order."""
        body = client.get("/api/sessions/s1").json()
        assert (body["first_input"], body["last_input"], body["success_count"]) == (
            "hello", "thanks", 2)
        assert [(t["task_id"], t["position"], t["is_last"]) for t in body["tasks"]] == [
            ("a1", 1, False), ("a2", 2, False), ("a3", 3, True)]

    def test_users(self, client: httpx.Client) -> None:
        """GET /api/users and /api/users/{id} give the user figures and lists."""
        body = client.get("/api/users", params={"sort": "user_id", "order": "asc"}).json()
        assert [(u["user_id"], u["task_count"], u["success_rate"]) for u in body["items"]] == [
            ("alice", 4, 0.75), ("bob", 2, 0.5), ("carol", 1, None)]
        # from the evaluations, feedback first (docs/insights.md): alice's a1 is answered
        # (her next message moves on), a2 and a3 have success feedback, a4 failure; bob's
        # b1 is repeated by his next message (failure), b2 answered before he left
        alice = client.get("/api/users/alice").json()
        assert alice["avg_session_duration_s"] == 170.0
        assert [s["session_id"] for s in alice["sessions"]] == ["s2", "s1"]
        assert len(alice["tasks"]) == 4

    def test_task(self, client: httpx.Client) -> None:
        """GET /api/tasks/{id} gives one task with flag, notes and position."""
        body = client.get("/api/tasks/a4").json()
        assert (body["flag"], body["notes"], body["status"], body["position"],
                body["is_last"]) == ("failure", "rude", "error", 1, True)
        assert [t["task_id"] for t in client.get(
            "/api/tasks", params={"session_id": "s1", "order": "asc"}).json()["items"]] == [
            "a1", "a2", "a3"]

    def test_insights(self, client: httpx.Client) -> None:
        """GET /api/insights/sessions and /users give the figures over the range."""
        s = client.get("/api/insights/sessions").json()
        assert (s["session_count"], s["median_duration_s"], s["p90_duration_s"]) == (
            3, 30.0, 254.0)
        s = client.get("/api/insights/sessions", params={"from": "2026-01-11T00:00:00Z"}).json()
        assert s["session_count"] == 2
        u = client.get("/api/insights/users").json()
        assert (u["user_count"], u["top_users"][0]["user_id"]) == (3, "alice")

    def test_time_filter(self, client: httpx.Client) -> None:
        """from/to accept ISO-8601 with offsets and select by start time."""
        body = client.get("/api/sessions", params={
            "from": "2026-01-11T10:00:00+01:00", "to": "2026-01-12"}).json()
        assert [s["session_id"] for s in body["items"]] == ["s3", "s2"]

    def test_cursor_pagination(self, client: httpx.Client) -> None:
        """next_cursor walks the whole list; limit caps the page."""
        seen, params = [], {"limit": "2", "sort": "start_time"}
        while True:
            body = client.get("/api/sessions", params=params).json()
            seen += [s["session_id"] for s in body["items"]]
            if body["next_cursor"] is None:
                break
            params = {"limit": "2", "sort": "start_time", "cursor": body["next_cursor"]}
        assert seen == ["s3", "s2", "s1"]

    def test_insights_follow_new_data(self, server: AggregatorServer,
                                      client: httpx.Client) -> None:
        """A write shows in the insights within max_age_s (polled), and at once with
        ?max_age_s=0; computed_at and max_age_s say how fresh a result is."""
        first = client.get("/api/insights/sessions").json()
        assert first["session_count"] == 3
        assert first["max_age_s"] == 2.0
        assert iso_to_ns(first["computed_at"]) > 0
        assert client.get("/api/insights/users").json()["user_count"] == 3
        req = make_request([task_span(
            "d1", start_ns=iso_ns("2026-01-13T00:00:00Z"), end_ns=iso_ns("2026-01-13T00:00:01Z"),
            input="x", session_id="s4", user_id="dave", key="d1")], service=SERVICE)
        r = client.post("/v1/traces", content=req.SerializeToString(),
                        headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 200
        written = time.monotonic()
        fresh = client.get("/api/insights/users", params={"max_age_s": "0"}).json()
        assert (fresh["user_count"], fresh["max_age_s"]) == (4, 0.0)
        deadline = written + first["max_age_s"] + 2.0  # + slack for a loaded machine
        while (s := client.get("/api/insights/sessions").json())["session_count"] != 4:
            assert s["session_count"] == 3
            assert time.monotonic() < deadline, "write not visible within max_age_s"
            time.sleep(0.05)
        assert s["computed_at"] > first["computed_at"]
        assert s["sessions_per_day"][-1] == {"date": "2026-01-13", "sessions": 1}


class TestErrors:
    @pytest.mark.parametrize(("path", "params", "fragment"), [
        ("/api/sessions", {"limit": "0"}, "limit"),
        ("/api/sessions", {"limit": "5000"}, "limit"),
        ("/api/sessions", {"limit": "ten"}, "limit"),
        ("/api/sessions", {"offset": "-1"}, "offset"),
        ("/api/sessions", {"offset": "10001"}, "cursor"),
        ("/api/tasks", {"sort": "task_id"}, "sort"),
        ("/api/sessions", {"sort": "input"}, "sort"),
        ("/api/sessions", {"order": "up"}, "order"),
        ("/api/sessions", {"from": "yesterday"}, "from"),
        ("/api/sessions", {"from": "2026-01-02", "to": "2026-01-01"}, "to"),
        ("/api/sessions", {"cursor": "garbage!"}, "cursor"),
        ("/api/sessions", {"colour": "red"}, "colour"),
        ("/api/users", {"sort": "duration_s"}, "sort"),
        ("/api/tasks/a1", {"x": "1"}, "x"),
        ("/api/insights/sessions", {"to": "soon"}, "to"),
        ("/api/insights/sessions", {"max_age_s": "-1"}, "max_age_s"),
        ("/api/insights/users", {"max_age_s": "soon"}, "max_age_s"),
        ("/api/insights/users", {"max_age_s": "nan"}, "max_age_s"),
    ])
    def test_bad_params(self, client: httpx.Client, path: str, params: dict[str, str],
                        fragment: str) -> None:
        """A bad parameter is a 400 whose JSON message names it."""
        r = client.get(path, params=params)
        assert r.status_code == 400
        assert fragment in r.json()["error"]["message"]

    @pytest.mark.parametrize("path", ["/api/sessions/nope", "/api/users/nope",
                                      "/api/tasks/nope"])
    def test_unknown_ids(self, client: httpx.Client, path: str) -> None:
        """An unknown id is a 404 with a JSON message; the server keeps serving."""
        r = client.get(path)
        assert r.status_code == 404
        assert "nope" in r.json()["error"]["message"]
        assert client.get("/healthz").status_code == 200

    def test_unknown_route(self, client: httpx.Client) -> None:
        """An unknown path is a JSON 404."""
        r = client.get("/api/nothing")
        assert r.status_code == 404
        assert r.json()["error"]["status"] == 404


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[AggregatorServer]:
    settings = ServerSettings(store=str(tmp_path / "t.db"), http_port=0, grpc_port=0,
                              token="s3cret", jaeger_ui_url="http://jaeger.local:16686")
    with AggregatorServer(settings) as srv:
        assert srv.store is not None
        write_scripted(srv.store)
        yield srv


class TestAuth:
    def test_token_required(self, secured: AggregatorServer) -> None:
        """With a token, the API, ingest and Jaeger routes answer 401 without it."""
        with httpx.Client(base_url=secured.http_url) as c:
            for method, path in [("GET", "/api/sessions"), ("GET", "/api/openapi.json"),
                                 ("POST", "/v1/traces"), ("GET", "/jaeger/api/services")]:
                r = c.request(method, path)
                assert r.status_code == 401, path
                assert r.json()["error"]["status"] == 401
                assert r.headers["www-authenticate"] == "Bearer"
            r = c.get("/api/sessions", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
            assert c.get("/healthz").status_code == 200

    def test_token_accepted(self, secured: AggregatorServer) -> None:
        """The right bearer token opens everything; sessions and users carry Jaeger links."""
        headers = {"Authorization": "Bearer s3cret"}
        with httpx.Client(base_url=secured.http_url, headers=headers) as c:
            body = c.get("/api/sessions").json()
            assert body["total"] == 3
            links = body["items"][0]["links"]
            assert links["jaeger_session_traces"].startswith("http://jaeger.local:16686/search?")
            user = c.get("/api/users/alice").json()
            assert "jaeger_user_traces" in user["links"]
            assert c.get("/jaeger/api/services").status_code == 200
