"""Query-string parameters: declared once per endpoint (``Param``), parsed and checked in
one place (``parse``), documented from the same declarations (``api.openapi``).

``parse(specs, items)`` takes the request's ``(name, value)`` pairs (from Starlette's
``query_params.multi_items()``, or the CLI) and answers the parsed values by name, or
raises ``errors.BadRequest`` naming the parameter: an unknown name, a value of the wrong
type or out of range, an empty value. Parameters given more than once keep their last
value, except ``Param.repeated`` ones (a list). A ``Param.prefix`` parameter stands for
every name ``<name>.<key>`` (``metadata.version_id=1.0.0``): its value is a dict of key
-> parsed value, in the order given (a key given twice keeps its last value); the key is
checked by ``Param.key_check``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from phospho_otel.api.serialize import decode_cursor, iso_to_ns
from phospho_otel.errors import BadRequest
from phospho_otel.store.api import Page

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "Param",
    "page_from",
    "page_params",
    "parse",
    "range_params",
    "time_range",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_OFFSET = 10_000
"""Deeper pages go by ``cursor``: an offset costs a scan of the rows it skips."""


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of an endpoint.

    ``kind``: ``text``, ``int`` (within ``lo``..``hi``), ``number`` (likewise),
    ``choice`` (one of ``choices``), ``time`` (ISO-8601, parsed to ns) or ``cursor``
    (one of ours, decoded). ``location`` is ``query`` or ``path`` (path parameters are
    the ids in the URL, always given).
    """

    name: str
    kind: str
    description: str
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    location: str = "query"
    repeated: bool = False
    prefix: bool = False
    """Names ``<name>.<key>``: any key (checked by ``key_check``), collected into a dict."""
    key_check: Callable[[str], str | None] | None = None
    """For a ``prefix`` parameter: what is wrong with a key (None: nothing)."""

    @property
    def shown_name(self) -> str:
        """The name as documented: ``metadata.<key>`` for a prefix parameter."""
        return f"{self.name}.<key>" if self.prefix else self.name

    def key_of(self, name: str) -> str | None:
        """The key of a query name of this prefix parameter (None: not one of it);
        ``BadRequest`` naming the parameter when the key is not acceptable."""
        if not self.prefix or not name.startswith(self.name + "."):
            return None
        key = name[len(self.name) + 1:]
        if not key:
            raise BadRequest(f"{name}: the key after {self.name}. must not be empty")
        problem = self.key_check(key) if self.key_check is not None else None
        if problem:
            raise BadRequest(f"{name}: {problem}")
        return key

    def parse(self, raw: str) -> Any:
        """The value of one occurrence, checked."""
        if raw == "" and self.kind != "text":
            raise BadRequest(f"{self.name}: must not be empty")
        if self.kind == "text":
            if raw == "":
                raise BadRequest(f"{self.name}: must not be empty")
            return raw
        if self.kind == "int":
            try:
                value: float = int(raw)
            except ValueError:
                raise BadRequest(f"{self.name}: not an integer: {raw!r}") from None
            self._check_range(value, raw)
            return value
        if self.kind == "number":
            try:
                value = float(raw)
            except ValueError:
                raise BadRequest(f"{self.name}: not a number: {raw!r}") from None
            if value != value:
                raise BadRequest(f"{self.name}: not a number: {raw!r}")
            self._check_range(value, raw)
            return value
        if self.kind == "choice":
            if raw not in self.choices:
                raise BadRequest(
                    f"{self.name}: must be one of {', '.join(self.choices)}, got {raw!r}")
            return raw
        if self.kind == "time":
            try:
                return iso_to_ns(raw)
            except BadRequest as exc:
                raise BadRequest(f"{self.name}: {exc.message}") from None
        if self.kind == "cursor":
            return decode_cursor(raw)
        raise AssertionError(f"unknown parameter kind {self.kind!r}")

    def _check_range(self, value: float, raw: str) -> None:
        lo, hi = self.lo, self.hi
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            hint = "; page further with cursor" if self.name == "offset" and hi is not None \
                and value > hi else ""
            shown = raw if self.kind == "number" else str(value)
            raise BadRequest(f"{self.name}: must be between {_g(lo)} and {_g(hi)}, "
                             f"got {shown}{hint}")


def _empty(name: str) -> Any:
    raise BadRequest(f"{name}: must not be empty")


def _g(bound: float | None) -> str:
    return "-inf" if bound is None else f"{bound:g}"


def parse(specs: Sequence[Param], items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The query parameters by name, parsed (``BadRequest`` on any problem); missing ones
    take their default. Path parameters are not looked for here."""
    query = [p for p in specs if p.location == "query"]
    by_name = {p.name: p for p in query if not p.prefix}
    prefixed = [p for p in query if p.prefix]
    values: dict[str, Any] = {p.name: [] if p.repeated else p.default for p in query}
    for p in prefixed:
        values[p.name] = {}
    given: set[str] = set()
    for name, raw in items:
        spec = by_name.get(name)
        if spec is None:
            for p in prefixed:
                key = p.key_of(name)
                if key is not None:
                    values[p.name][key] = p.parse(raw) if raw != "" else _empty(name)
                    given.add(p.name)
                    break
            else:
                accepted = ", ".join(sorted(p.shown_name for p in query)) or "none"
                raise BadRequest(f"unknown parameter {name!r}; accepted: {accepted}")
            continue
        value = spec.parse(raw)
        if spec.repeated:
            values[name].append(value)
        else:
            values[name] = value
        given.add(name)
    values["_given"] = given
    return values


# ----------------------------------------------------------------------------- shared sets


def range_params(what: str) -> tuple[Param, Param]:
    """``from`` and ``to``: the time range (``[from, to)``) of a list or figure."""
    return (
        Param("from", "time", f"ISO-8601 start of the time range (inclusive): {what}"),
        Param("to", "time", "ISO-8601 end of the time range (exclusive)"),
    )


def page_params(sorts: Sequence[str], default_sort: str) -> tuple[Param, ...]:
    """``sort``, ``order``, ``limit``, ``offset``, ``cursor`` of a list."""
    return (
        Param("sort", "choice", "sort key", default_sort, choices=tuple(sorts)),
        Param("order", "choice", "sort direction", "desc", choices=("asc", "desc")),
        Param("limit", "int", "page size", DEFAULT_LIMIT, 1, MAX_LIMIT),
        Param("offset", "int", "rows to skip (deeper pages: use cursor)", 0, 0, MAX_OFFSET),
        Param("cursor", "cursor", "next_cursor of the previous page (instead of offset)"),
    )


def time_range(args: dict[str, Any]) -> tuple[int | None, int | None]:
    """The parsed ``from``/``to``, checked to be in order."""
    start, end = args["from"], args["to"]
    if start is not None and end is not None and end <= start:
        raise BadRequest("to: must be later than from")
    return start, end


def page_from(args: dict[str, Any]) -> Page:
    """The ``Page`` of parsed ``page_params`` (``cursor`` and ``offset`` exclude each
    other)."""
    if args["cursor"] is not None and "offset" in args["_given"]:
        raise BadRequest("cursor: give either cursor or offset, not both")
    return Page(sort=args["sort"], descending=args["order"] == "desc", limit=args["limit"],
                offset=args["offset"], cursor=args["cursor"])
