"""Feedback through the API (``POST /api/tasks/{id}/feedback``, ``POST
/api/sessions/{id}/feedback``, ``api.feedback``) on a real server over the scripted data
set: it is stored through ingest as the SDK's feedback span, and every view shows it."""

from __future__ import annotations

import json

import httpx
import pytest

from phospho_otel.aggregator.extract import extract
from phospho_otel.api.feedback import MAX_NOTES_CHARS, feedback_request
from phospho_otel.semconv import SEMCONV_VERSION


def post(client: httpx.Client, path: str, body: object,
         content_type: str = "application/json") -> httpx.Response:
    return client.post(path, content=json.dumps(body).encode(),
                       headers={"Content-Type": content_type})


class TestTaskFeedback:
    def test_shows_everywhere(self, client: httpx.Client) -> None:
        """b1 (bob, s3) has no feedback: after a POST its flag, notes and source are the
        owner's, and bob's and s3's success counts count it; a later failure replaces it."""
        assert client.get("/api/tasks/b1").json()["flag"] is None
        before_user = client.get("/api/users/bob").json()
        before_session = client.get("/api/sessions/s3").json()
        r = post(client, "/api/tasks/b1/feedback", {"flag": "success", "notes": "nice"})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert (answer["task_id"], answer["session_id"], answer["flag"], answer["notes"],
                answer["source"]) == ("b1", "s3", "success", "nice", "owner")
        task = client.get("/api/tasks/b1").json()
        assert (task["flag"], task["notes"], task["flag_source"]) == ("success", "nice", "owner")
        user = client.get("/api/users/bob").json()
        assert user["success_count"] == before_user["success_count"] + 1
        session = client.get("/api/sessions/s3").json()
        assert session["success_count"] == before_session["success_count"] + 1
        assert [t["flag"] for t in session["tasks"] if t["task_id"] == "b1"] == ["success"]
        listed = client.get("/api/tasks", params={"flag": "success", "user_id": "bob"}).json()
        assert [t["task_id"] for t in listed["items"]] == ["b1"]

        r = post(client, "/api/tasks/b1/feedback", {"flag": "failure", "notes": None,
                                                    "source": "reviewer"})
        assert r.status_code == 200
        task = client.get("/api/tasks/b1").json()
        assert (task["flag"], task["notes"], task["flag_source"]) == ("failure", None, "reviewer")
        session = client.get("/api/sessions/s3").json()
        assert (session["success_count"], session["failure_count"]) == (
            before_session["success_count"], before_session["failure_count"] + 1)

    def test_stored_as_the_sdks_span(self, client: httpx.Client) -> None:
        """The span is a feedback span of our convention, found in the trace API."""
        answer = post(client, "/api/tasks/a1/feedback", {"flag": "failure"}).json()
        r = client.get(f"/jaeger/api/traces/{answer['trace_id']}")
        assert r.status_code == 200
        (trace,) = r.json()["data"]
        (span,) = trace["spans"]
        tags = {t["key"]: t["value"] for t in span["tags"]}
        assert (tags["phospho.span.type"], tags["phospho.task.id"], tags["phospho.feedback.flag"],
                tags["phospho.feedback.source"], tags["phospho.semconv.version"],
                tags["session.id"]) == ("feedback", "a1", "failure", "owner", SEMCONV_VERSION,
                                        "s1")
        assert trace["processes"][span["processID"]]["serviceName"] == "phospho-otel"

    def test_ids_with_slashes(self, client: httpx.Client) -> None:
        r = post(client, "/api/tasks/no%2Fsuch/feedback", {"flag": "success"})
        assert r.status_code == 404
        assert "no/such" in r.json()["error"]["message"]


class TestSessionFeedback:
    def test_shows_on_the_session(self, client: httpx.Client) -> None:
        r = post(client, "/api/sessions/s3/feedback", {"flag": "failure", "notes": "slow"})
        assert r.status_code == 200, r.text
        assert (r.json()["task_id"], r.json()["session_id"]) == (None, "s3")
        feedback = client.get("/api/sessions/s3").json()["feedback"]
        assert (feedback["flag"], feedback["notes"], feedback["source"]) == (
            "failure", "slow", "owner")


class TestErrors:
    @pytest.mark.parametrize("path", ["/api/tasks/nope/feedback",
                                      "/api/sessions/nope/feedback"])
    def test_unknown(self, client: httpx.Client, path: str) -> None:
        r = post(client, path, {"flag": "success"})
        assert r.status_code == 404
        assert "nope" in r.json()["error"]["message"]

    @pytest.mark.parametrize(("body", "fragment"), [
        ({"flag": "great"}, "flag"),
        ({}, "flag"),
        ({"flag": "success", "notes": 3}, "notes"),
        ({"flag": "success", "notes": "x" * (MAX_NOTES_CHARS + 1)}, "notes"),
        ({"flag": "success", "source": ""}, "source"),
        ({"flag": "success", "source": 1}, "source"),
        ({"flag": "success", "colour": "red"}, "colour"),
        (["success"], "body"),
    ])
    def test_bad_body(self, client: httpx.Client, body: object, fragment: str) -> None:
        r = post(client, "/api/tasks/a1/feedback", body)
        assert r.status_code == 400
        assert r.json()["error"]["message"].startswith(fragment)
        assert client.get("/api/tasks/a1").json()["flag"] is None  # nothing stored

    def test_not_json(self, client: httpx.Client) -> None:
        r = client.post("/api/tasks/a1/feedback", content=b"{flag: success",
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("body")

    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                              ""])
    def test_content_type(self, client: httpx.Client, content_type: str) -> None:
        r = post(client, "/api/tasks/a1/feedback", {"flag": "success"}, content_type)
        assert r.status_code == 415
        assert "application/json" in r.json()["error"]["message"]

    def test_too_large(self, client: httpx.Client) -> None:
        r = post(client, "/api/tasks/a1/feedback", {"flag": "success", "notes": "x" * 70_000})
        assert r.status_code == 413

    def test_get_is_not_feedback(self, client: httpx.Client) -> None:
        assert client.get("/api/tasks/a1/feedback").status_code == 404


def test_feedback_request_is_extracted_as_feedback() -> None:
    """``feedback_request`` (the dashboard reuses it) makes one valid feedback record."""
    request = feedback_request(flag="success", task_id="t1", session_id="s", user_id="u",
                               notes="ok", time_ns=1_700_000_000_000_000_000,
                               task_span=(b"\x01" * 16, b"\x02" * 8))
    extraction = extract(request)
    (record,) = extraction.feedback
    assert (record.task_id, record.flag, record.notes, record.source, record.time_ns) == (
        "t1", "success", "ok", "owner", 1_700_000_000_000_000_000)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.links[0].trace_id == b"\x01" * 16
    session = extract(feedback_request(flag="failure", session_id="s"))
    assert session.feedback == []
    assert [(e.session_id, e.kind, e.flag) for e in session.session_events] == [
        ("s", "feedback", "failure")]
    with pytest.raises(ValueError):
        feedback_request(flag="maybe", task_id="t1")
