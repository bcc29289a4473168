"""``--format csv|jsonl`` and ``--metadata`` on the list commands: the whole list on
stdout, byte for byte the API's export, from the file (``--db``) and from a server
(``--url``) alike."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from phospho_otel.cli import main
from phospho_otel.server import AggregatorServer


@pytest.mark.parametrize(("command", "query"), [
    (["tasks", "--format", "csv"], {"format": "csv"}),
    (["tasks", "--format", "jsonl", "--order", "asc", "--limit", "1"],
     {"format": "jsonl", "order": "asc"}),
    (["tasks", "--format", "csv", "--flag", "none", "--text", "hello"],
     {"format": "csv", "flag": "none", "q": "hello"}),
    (["sessions", "--format", "jsonl", "--metadata", "model=gpt-x"],
     {"format": "jsonl", "metadata.model": "gpt-x"}),
    (["users", "--format", "csv", "--sort", "user_id"], {"format": "csv", "sort": "user_id"}),
])
def test_same_bytes_as_the_api(db_path: Path, server: AggregatorServer, command: list[str],
                               query: dict[str, str]) -> None:
    api = httpx.get(f"{server.http_url}/api/{command[0]}", params=query, trust_env=False)
    assert api.status_code == 200 and api.content
    for source in (["--db", str(db_path)], ["--url", server.http_url]):
        result = CliRunner().invoke(main, [*command, *source], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == api.content, source


def test_metadata_filter_on_tables(db_path: Path) -> None:
    result = CliRunner().invoke(main, ["users", "--db", str(db_path), "--metadata",
                                       "model=gpt-x"])
    assert result.exit_code == 0, result.output
    assert "alice" in result.output and "bob" not in result.output


@pytest.mark.parametrize(("args", "fragment"), [
    (["tasks", "--metadata", "model"], "KEY=VALUE"),
    (["tasks", "--metadata", 'a"b=1'], "metadata.a\"b"),
    (["tasks", "--format", "xml"], "format"),
])
def test_bad(db_path: Path, args: list[str], fragment: str) -> None:
    result = CliRunner().invoke(main, [*args, "--db", str(db_path)])
    assert result.exit_code != 0
    assert fragment in result.output
