"""The Jinja2 environment of the dashboard's templates (``dashboard/templates``), with
autoescaping on and the filters the templates format values with.

The filters show a JSON value of the API for people and never change what it is: the
exact value stays in the cell's ``data-value`` (tests compare pages with the API there).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

__all__ = ["environment", "render"]


def _duration(seconds: float | None) -> str:
    """``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``; an em dash for None."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def _when(iso: str | None) -> str:
    """An API time (ISO-8601 UTC) as ``2026-12-01 17:50:04``."""
    if not iso:
        return "—"
    try:
        dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def _percent(share: float | None) -> str:
    if share is None or (isinstance(share, float) and math.isnan(share)):
        return "—"
    return f"{share * 100:.1f}%"


def _number(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _usage(usage: dict[str, Any] | None) -> str:
    """A ``usage`` object as ``1,234 in / 56 out tokens · cost 0.0123``; an em dash when
    nothing was reported."""
    if not usage:
        return "—"
    parts = []
    if usage.get("input_tokens") is not None or usage.get("output_tokens") is not None:
        parts.append(f"{_number(usage.get('input_tokens'))} in / "
                     f"{_number(usage.get('output_tokens'))} out tokens")
    if usage.get("cost") is not None:
        parts.append(f"cost {_number(usage['cost'], 4)}")
    return " · ".join(parts) or "—"


def _clip(text: str | None, length: int = 120) -> str:
    if text is None:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


def _json_attr(value: Any) -> str:
    """A value for a ``data-value`` attribute: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _json_script(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block (``<``, ``>``, ``&`` escaped,
    so that no text in it can close the element)."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # escaped above for a script data block


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


environment = Environment(
    loader=PackageLoader("phospho_otel.dashboard", "templates"),
    autoescape=select_autoescape(("html",)),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
"""The templates, loaded once from the package (they ship as package data)."""
environment.filters.update(
    duration=_duration, when=_when, percent=_percent, number=_number, clip=_clip,
    usage=_usage,
    json_attr=_json_attr, json_script=_json_script, pretty_json=_pretty_json,
)


def render(template: str, **context: Any) -> str:
    """The named template rendered with ``context``."""
    return environment.get_template(template).render(**context)
