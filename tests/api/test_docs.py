"""``docs/views.md`` documents the endpoints as the code declares them: its endpoint table
is ``api.openapi.endpoints_markdown()``, generated from ``api.views.VIEWS``."""

from __future__ import annotations

from pathlib import Path

from phospho_otel.api.openapi import endpoints_markdown
from phospho_otel.api.views import VIEWS

DOC = Path(__file__).resolve().parents[2] / "docs" / "views.md"


def test_endpoint_table_is_generated() -> None:
    """The table under "## Endpoints" is exactly endpoints_markdown() (regenerate it from
    there when a view changes)."""
    text = DOC.read_text(encoding="utf-8")
    assert text.count("## Endpoints\n") == 1
    section = text.split("## Endpoints\n", 1)[1].lstrip("\n")
    table = section.split("\n\n", 1)[0]
    assert table == endpoints_markdown()


def test_every_view_once() -> None:
    """Each view's route appears in the doc's tables exactly once."""
    rows = [line for line in DOC.read_text(encoding="utf-8").splitlines()
            if line.startswith("| `GET ")]
    assert [row.split("`")[1] for row in rows] == [f"GET {v.path}" for v in VIEWS]
