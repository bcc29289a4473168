"""The list filters over HTTP (a real server on the scripted data set): ``metadata.<key>``
on the three lists, ``q`` and ``flag`` on tasks, and their 400s."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


def ids(client: httpx.Client, path: str, params: Any,
        id_field: str) -> tuple[list[str], int | None]:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    return sorted(item[id_field] for item in body["items"]), body["total"]


class TestMetadata:
    def test_tasks_sessions_users(self, client: httpx.Client) -> None:
        """a1 (alice, s1) has metadata {"model": "gpt-x", "tokens": 12}: the task, its
        session and its user match; a number matches its text."""
        q = {"metadata.model": "gpt-x"}
        assert ids(client, "/api/tasks", q, "task_id") == (["a1"], 1)
        assert ids(client, "/api/sessions", q, "session_id") == (["s1"], 1)
        assert ids(client, "/api/users", q, "user_id") == (["alice"], 1)
        assert ids(client, "/api/tasks", {"metadata.tokens": "12"}, "task_id") == (["a1"], 1)
        assert ids(client, "/api/tasks", {"metadata.model": "gpt-y"}, "task_id") == ([], 0)

    def test_keys_are_anded(self, client: httpx.Client) -> None:
        both = [("metadata.model", "gpt-x"), ("metadata.tokens", "12")]
        assert ids(client, "/api/tasks", both, "task_id") == (["a1"], 1)
        wrong = [("metadata.model", "gpt-x"), ("metadata.tokens", "13")]
        assert ids(client, "/api/sessions", wrong, "session_id") == ([], 0)

    def test_with_other_filters(self, client: httpx.Client) -> None:
        q = {"metadata.model": "gpt-x", "user_id": "bob"}
        assert ids(client, "/api/tasks", q, "task_id") == ([], 0)
        assert ids(client, "/api/users", {"metadata.model": "gpt-x", "user_id": "alice"},
                   "user_id") == (["alice"], 1)

    @pytest.mark.parametrize(("name", "value", "fragment"), [
        ("metadata.", "x", "metadata."),
        ('metadata.a"b', "x", 'metadata.a"b'),
        ("metadata.a\\b", "x", "metadata.a\\b"),
        ("metadata.a\tb", "x", "metadata.a\tb"),
        ("metadata.model", "", "metadata.model"),
        ("metadata", "x", "metadata"),
        ("meta.model", "x", "metadata.<key>"),  # unknown: the accepted list names it
    ])
    @pytest.mark.parametrize("path", ["/api/tasks", "/api/sessions", "/api/users"])
    def test_bad_names(self, client: httpx.Client, path: str, name: str, value: str,
                       fragment: str) -> None:
        """A key that cannot be one, an empty value, a bare prefix: 400 naming it."""
        r = client.get(path, params=[(name, value)])
        assert r.status_code == 400, r.text
        assert fragment in r.json()["error"]["message"]

    def test_not_on_other_views(self, client: httpx.Client) -> None:
        r = client.get("/api/insights/sessions", params={"metadata.model": "gpt-x"})
        assert r.status_code == 400
        assert "metadata.model" in r.json()["error"]["message"]


class TestTaskFilters:
    @pytest.mark.parametrize(("params", "expected"), [
        ({"q": "HELLO"}, ["a1", "b1", "b2"]),
        ({"q": "again"}, ["b2"]),  # in the output
        ({"q": "hello", "user_id": "bob"}, ["b1", "b2"]),
        ({"flag": "success"}, ["a2", "a3"]),
        ({"flag": "failure"}, ["a4"]),
        ({"flag": "none"}, ["a1", "b1", "b2", "c1"]),
        ({"flag": "none", "q": "hello"}, ["a1", "b1", "b2"]),
        ({"flag": "success", "session_id": "s1", "q": "thanks"}, ["a3"]),
        ({"evaluation": "success", "flag": "success"}, ["a2", "a3"]),
        ({"flag": "none", "metadata.model": "gpt-x"}, ["a1"]),
    ])
    def test_match(self, client: httpx.Client, params: dict[str, str],
                   expected: list[str]) -> None:
        assert ids(client, "/api/tasks", params, "task_id") == (expected, len(expected))

    @pytest.mark.parametrize(("params", "fragment"), [
        ({"flag": "yes"}, "flag"), ({"q": ""}, "q"), ({"flag": ""}, "flag")])
    def test_bad(self, client: httpx.Client, params: dict[str, str], fragment: str) -> None:
        r = client.get("/api/tasks", params=params)
        assert r.status_code == 400
        assert r.json()["error"]["message"].startswith(fragment)
