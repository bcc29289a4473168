"""The CLI's two sources answer alike: ``--db`` (the view functions on the store file,
opened read-only) and ``--url`` (a real server on the same file) print the same JSON, the
same tables and the same errors for the same commands and parameters. Only the freshness
of insights (``computed_at``, ``max_age_s``) may differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from phospho_otel.cli import main
from phospho_otel.server import AggregatorServer

COMMANDS = [
    ["sessions"],
    ["sessions", "--sort", "duration_s", "--order", "asc"],
    ["sessions", "--user", "alice"],
    ["sessions", "--from", "2026-01-11", "--to", "2026-01-12"],
    ["sessions", "--limit", "1", "--offset", "1"],
    ["sessions", "s1"],
    ["sessions", "s3"],
    ["users"],
    ["users", "--sort", "task_count", "--order", "asc"],
    ["users", "--from", "2026-01-11T10:00:00+01:00"],
    ["users", "--limit", "2"],
    ["users", "alice"],
    ["users", "alice", "--limit", "1"],
    ["tasks"],
    ["tasks", "--session", "s1", "--order", "asc"],
    ["tasks", "--user", "bob"],
    ["tasks", "--limit", "3", "--offset", "2"],
    ["tasks", "a1"],
    ["tasks", "c1"],
    ["insights"],
    ["insights", "--user", "alice"],
    ["insights", "--from", "2026-01-11", "--to", "2026-01-12"],
]
"""Commands that succeed."""
FAILING = [
    ["sessions", "--sort", "nope"],
    ["users", "--sort", "nope"],
    ["tasks", "--sort", "nope"],
    ["sessions", "--from", "yesterday"],
    ["sessions", "--from", "2026-01-02", "--to", "2026-01-01"],
    ["users", "--to", "soon"],
    ["insights", "--from", "soon"],
    ["sessions", "nope"],
    ["users", "nope"],
    ["tasks", "nope"],
]
"""Commands that fail: a bad parameter, an unknown id."""
VOLATILE = ("computed_at", "max_age_s")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def without_freshness(data: Any) -> Any:
    """``data`` without the insights' computed_at and max_age_s, at any depth."""
    if isinstance(data, dict):
        return {k: without_freshness(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [without_freshness(v) for v in data]
    return data


@pytest.fixture
def sources(db_path: Path, server: AggregatorServer) -> dict[str, list[str]]:
    """The same data set read from the file (by path and by URL) and from the server."""
    return {
        "db": ["--db", str(db_path)],
        "store": ["--store", f"sqlite:///{db_path}"],
        "url": ["--url", server.http_url],
    }


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_same_json(command: list[str], sources: dict[str, list[str]]) -> None:
    """The same JSON (every key and value, in the same order) from every source."""
    answers = {}
    for name, source in sources.items():
        result = invoke(*command, *source, "--json")
        assert result.exit_code == 0, (name, result.output)
        answers[name] = json.loads(result.output)
    assert answers["db"]  # not an empty answer
    stable = {name: json.dumps(without_freshness(a)) for name, a in answers.items()}
    assert stable["db"] == stable["url"] == stable["store"]  # as text: key order too
    if command[0] == "insights":
        for part in ("sessions", "users"):
            assert answers["db"][part]["max_age_s"] == 0.0
            assert answers["url"][part]["max_age_s"] == 2.0
            assert answers["db"][part]["computed_at"].endswith("Z")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_same_tables(command: list[str], sources: dict[str, list[str]]) -> None:
    """The same tables for people from every source."""
    outputs = {name: invoke(*command, *source) for name, source in sources.items()}
    for name, result in outputs.items():
        assert result.exit_code == 0, (name, result.output)
    assert outputs["db"].output == outputs["url"].output == outputs["store"].output
    assert outputs["db"].output.strip()


@pytest.mark.parametrize("command", FAILING, ids=" ".join)
def test_same_errors(command: list[str], sources: dict[str, list[str]]) -> None:
    """The same exit code and the same message (status and text) from every source."""
    results = {name: CliRunner().invoke(main, [*command, *source, "--json"])
               for name, source in sources.items()}
    for name, result in results.items():
        assert result.exit_code == 1, (name, result.output)
        assert result.output.startswith("Error: 4"), (name, result.output)
    assert results["db"].output == results["url"].output == results["store"].output
    expected = "404" if command[1] == "nope" else "400"
    assert results["db"].output.startswith(f"Error: {expected}: ")
