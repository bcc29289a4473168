"""A list's columns, and how a cell shows one JSON value of the API.

``render_cell(item, column, link)`` answers the ``<td>``: ``data-field`` names the JSON
field (dotted for a nested one), ``data-value`` holds its exact value (a string as it is,
anything else as JSON), and the text shows it for people (``rendering``'s filters). It is
plain Python rather than a template macro because a list page has hundreds of cells, and
a macro call costs ten times as much as this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from phospho_otel.api.serialize import field_value
from phospho_otel.dashboard.rendering import environment

__all__ = ["SHOW", "Column", "badge", "render_cell"]


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a list: the JSON field it shows, its heading, the sort key it orders
    by (None: not sortable) and how it is shown (a key of ``SHOW``)."""

    field: str
    label: str
    sort: str | None = None
    show: str = "text"


_filters = environment.filters
_clip_text: Callable[[Any, int], str] = _filters["clip"]
_json_attr: Callable[[Any], str] = _filters["json_attr"]
_number: Callable[..., str] = _filters["number"]
Link = Callable[..., str]
DASH = Markup("—")


def badge(value: str | None) -> Markup:
    if value is None:
        return Markup('<span class="none">—</span>')
    return Markup(f'<span class="badge badge-{escape(value.replace(" ", "_"))}">'
                  f'{escape(value.replace("_", " "))}</span>')


def _item_link(kind: str, clip: int) -> Callable[[Any, Link], Markup]:
    def show(value: Any, link: Link) -> Markup:
        if value is None:
            return DASH
        href = link(f"/{kind}/{quote(str(value), safe='')}")
        return Markup(f'<a href="{escape(href)}">{escape(_clip_text(str(value), clip))}</a>')
    return show


def _clip(value: Any, link: Link) -> Markup:
    return Markup(f'<span title="{escape(value or "")}">{escape(_clip_text(value, 80))}</span>')


def _classes(value: Any, link: Link) -> Markup:
    return Markup(" ".join(
        f'<span class="badge badge-{escape(c["label"])}" title="{escape("; ".join(c["reasons"]))}">'
        f'{escape(c["label"])}</span>' for c in value or ()))


def _events(value: Any, link: Link) -> Markup:
    return Markup(" ".join(f'<span class="badge badge-event">{escape(e["name"])}</span>'
                           for e in value or ()))


def _tokens(value: Any, link: Link) -> Markup:
    """A ``usage`` object as ``in / out`` tokens."""
    if not value or (value.get("input_tokens") is None and value.get("output_tokens") is None):
        return DASH
    return escape(f"{_number(value.get('input_tokens'))} / {_number(value.get('output_tokens'))}")


def _cost(value: Any, link: Link) -> Markup:
    return DASH if value is None else escape(_number(value, 4))


def _text(value: Any, link: Link) -> Markup:
    return DASH if value is None else escape(value)


def _filter(name: str) -> Callable[[Any, Link], Markup]:
    def show(value: Any, link: Link) -> Markup:
        return escape(_filters[name](value))
    return show


SHOW: dict[str, Callable[[Any, Link], Markup]] = {
    "session_link": _item_link("sessions", 28),
    "user_link": _item_link("users", 28),
    "task_link": _item_link("tasks", 16),
    "when": _filter("when"),
    "number": _filter("number"),
    "duration": _filter("duration"),
    "percent": _filter("percent"),
    "badge": lambda value, link: badge(value),
    "clip": _clip,
    "classes": _classes,
    "events": _events,
    "tokens": _tokens,
    "cost": _cost,
    "text": _text,
}
"""How each ``Column.show`` kind shows a value."""


def render_cell(item: Mapping[str, Any], column: Column, link: Link) -> Markup:
    value = field_value(item, column.field)
    return Markup(f'<td data-field="{escape(column.field)}" '
                  f'data-value="{escape(_json_attr(value))}">{SHOW[column.show](value, link)}</td>')
