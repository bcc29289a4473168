"""Exports of the list views: the whole filtered list as CSV or JSON Lines
(``GET /api/tasks?format=csv``, ``phospho-otel tasks --format csv``).

An export walks the view's pages (``View.pages``, ``EXPORT_PAGE_SIZE`` items each, by
keyset cursor) in the query's ``sort`` and ``order``, from the first item to the last;
the query's ``limit``, ``offset`` and ``cursor`` are ignored, so a page's own query string
exports its whole list. Each page is read from a snapshot of its own: an item written
during an export may or may not be in it, and one whose sort value changes meanwhile may
be missed or listed twice (the default sorts, by start, do not change).

* **JSON Lines** (``application/x-ndjson``): one item per line, exactly as in the JSON
  answer's ``items`` (the same serialization: UTF-8, compact separators).
* **CSV** (``text/csv; charset=utf-8``, RFC 4180, CRLF line ends): a header, then one row
  per item. The columns are declared by the list's field table (``api.serialize``:
  ``TASK_FIELDS``...), not by the rows: a field whose schema declares properties is
  flattened with dots (``evaluation.label``, ``sentiment.score``), any other field is one
  column; in cells, null is empty, booleans are ``true`` / ``false``, numbers their JSON
  text, lists and objects left (``metadata``, ``events``, ``links``) JSON text. Cells are
  written as they are: a spreadsheet may take a cell starting with ``=`` for a formula.

The first page is read before anything is answered, so a bad filter is still a 400.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

from starlette.responses import StreamingResponse

from phospho_otel.api import serialize
from phospho_otel.api.params import MAX_LIMIT
from phospho_otel.api.views import EXPORT_FORMATS, ListPage, View, ViewContext
from phospho_otel.errors import BadRequest
from phospho_otel.store.api import Page

__all__ = [
    "EXPORT_COLUMNS",
    "EXPORT_PAGE_SIZE",
    "MEDIA_TYPES",
    "columns_of",
    "csv_cell",
    "export_chunks",
    "export_response",
]

EXPORT_PAGE_SIZE = MAX_LIMIT
"""Items read per page while exporting."""
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
"""``Content-Type`` of each export format."""
assert tuple(MEDIA_TYPES) == EXPORT_FORMATS

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
"""Starlette's ``JSONResponse`` serialization: a JSON Lines item is the JSON answer's."""


def columns_of(fields: dict[str, dict[str, Any]], prefix: str = "") -> list[str]:
    """The CSV columns of a field table: fields with declared ``properties`` flattened
    with dots, the others one column each, in the table's order."""
    out: list[str] = []
    for name, schema in fields.items():
        if schema.get("properties"):
            out += columns_of(schema["properties"], f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


EXPORT_COLUMNS: dict[str, list[str]] = {
    "sessions": columns_of(serialize.SESSION_FIELDS),
    "users": columns_of(serialize.USER_FIELDS),
    "tasks": columns_of(serialize.TASK_FIELDS),
}
"""The CSV header of each list (``View.export_name`` -> columns)."""


def csv_cell(value: Any) -> str:
    """One CSV cell (see the module doc)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return _dumps(value)


def _csv_lines(rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _encode(fmt: str, columns: Sequence[str], items: list[dict[str, Any]]) -> bytes:
    if fmt == "jsonl":
        return "".join(_dumps(item) + "\n" for item in items).encode("utf-8")
    return _csv_lines([[csv_cell(serialize.field_value(item, c)) for c in columns]
                       for item in items])


def export_chunks(view: View, ctx: ViewContext, args: dict[str, Any]) -> Iterator[bytes]:
    """The export of a list view (``args``: its parsed arguments, ``format`` set) as
    chunks of bytes, one per page. Reads the first page before returning (so a bad
    filter raises here, a ``BadRequest``), the others as the chunks are consumed."""
    fmt = args.get("format")
    if view.pages is None or view.export_name is None:
        raise BadRequest(f"format: {view.path} has no export")
    if fmt not in EXPORT_FORMATS:
        raise BadRequest(f"format: must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    pages = view.pages
    columns = EXPORT_COLUMNS[view.export_name]
    page = Page(sort=args["sort"], descending=args["order"] == "desc", limit=EXPORT_PAGE_SIZE)
    first = pages(ctx, args, page, False)

    def chunks(found: ListPage, page: Page) -> Iterator[bytes]:
        if fmt == "csv":
            yield _csv_lines([columns])
        while True:
            if found.items:
                yield _encode(fmt, columns, found.items)
            if found.next_cursor is None:
                return
            page = Page(page.sort, page.descending, page.limit, cursor=found.next_cursor)
            found = pages(ctx, args, page, False)

    return chunks(first, page)


def export_response(view: View, ctx: ViewContext, args: dict[str, Any]) -> StreamingResponse:
    """The export as a streamed download (``Content-Disposition: attachment;
    filename="<list>.<format>"``)."""
    body = export_chunks(view, ctx, args)
    fmt = args["format"]
    return StreamingResponse(body, media_type=MEDIA_TYPES[fmt], headers={
        "Content-Disposition": f'attachment; filename="{view.export_name}.{fmt}"'})
