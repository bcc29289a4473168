"""The OpenAPI 3.1 description of ``/api`` (served at ``/api/openapi.json``) and the
endpoint table of ``docs/views.md``, both generated from the views' route table
(``api.views.VIEWS``, with their ``Param`` declarations) and the response field tables
(``api.serialize``): nothing about a view is written twice.
"""

from __future__ import annotations

from typing import Any

from phospho_otel.api import serialize
from phospho_otel.api.params import Param
from phospho_otel.api.views import VIEWS

__all__ = ["endpoints_markdown", "openapi_document"]


def _schema(p: Param) -> dict[str, Any]:
    schema: dict[str, Any]
    if p.kind == "int":
        schema = {"type": "integer"}
    elif p.kind == "number":
        schema = {"type": "number"}
    elif p.kind == "choice":
        schema = {"enum": list(p.choices)}
    elif p.kind == "time":
        schema = {"type": "string", "format": "date-time"}
    else:
        schema = {"type": "string"}
    if p.lo is not None:
        schema["minimum"] = p.lo
    if p.hi is not None:
        schema["maximum"] = p.hi
    if p.default is not None:
        schema["default"] = p.default
    return schema


def _parameter(p: Param) -> dict[str, Any]:
    return {"name": p.name, "in": p.location, "description": p.description,
            "required": p.location == "path", "schema": _schema(p)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"type": "object", "properties": fields, "required": list(fields)}


def _list_of(item: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "total", "next_cursor"], "properties": {
        "items": {"type": "array", "items": _ref(item)},
        "total": {"type": "integer"}, "next_cursor": {"type": ["string", "null"]}}}


def _detail(base: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"allOf": [_ref(base), {"type": "object", "properties": extra}]}


def _schemas() -> dict[str, Any]:
    tasks = {"type": "array", "items": _ref("Task")}
    return {
        "Task": _object(serialize.TASK_FIELDS),
        "Session": _object(serialize.SESSION_FIELDS),
        "SessionDetail": _detail("Session", {"tasks": tasks, "feedback": {
            "type": ["object", "null"], "description": "the latest feedback on the session",
            "properties": {"flag": {"enum": ["success", "failure"]},
                           "notes": {"type": ["string", "null"]},
                           "source": {"type": "string"},
                           "time": {"type": "string", "format": "date-time"}}}}),
        "User": _object(serialize.USER_FIELDS),
        "UserDetail": _detail("User", {
            "sessions": {"type": "array", "items": _ref("Session")}, "tasks": tasks}),
        "SessionList": _list_of("Session"),
        "UserList": _list_of("User"),
        "TaskList": _list_of("Task"),
        "SessionInsights": _object(serialize.SESSION_INSIGHTS_FIELDS),
        "UserInsights": _object(serialize.USER_INSIGHTS_FIELDS),
        "Retention": _object(serialize.RETENTION_FIELDS),
        "Events": _object(serialize.EVENTS_FIELDS),
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "status": {"type": "integer"}, "message": {"type": "string"}}}}},
    }


def _responses(response: str, summary: str, not_found: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "200": {"description": summary,
                "content": {"application/json": {"schema": _ref(response)}}},
        "400": {"$ref": "#/components/responses/BadRequest"},
        "401": {"$ref": "#/components/responses/Unauthorized"},
    }
    if not_found:
        out["404"] = {"$ref": "#/components/responses/NotFound"}
    return out


def openapi_document() -> dict[str, Any]:
    """A new copy of the OpenAPI document (callers may change it)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "phospho-otel views API", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
            "responses": {
                name: {"description": name, "content": {"application/json": {
                    "schema": _ref("Error")}}}
                for name in ("BadRequest", "Unauthorized", "NotFound")
            },
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            v.path: {"get": {"operationId": v.name, "summary": v.summary,
                             "parameters": [_parameter(p) for p in v.params],
                             "responses": _responses(v.response, v.summary, v.not_found)}}
            for v in VIEWS
        },
    }


def _param_markdown(p: Param) -> str:
    text = f"`{p.name}`"
    if p.kind == "choice":
        text += " = " + " \\| ".join(
            f"`{c}`" + (" (default)" if c == p.default else "") for c in p.choices)
    elif p.kind in ("int", "number"):
        bounds = f"{p.lo:g}-{p.hi:g}" if p.lo is not None and p.hi is not None else ""
        default = f"default {p.default:g}" if p.default is not None else ""
        detail = ", ".join(x for x in (bounds, default) if x)
        if detail:
            text += f" ({detail})"
    return text


def endpoints_markdown() -> str:
    """The endpoint table of ``docs/views.md``."""
    lines = ["| endpoint | parameters |", "|---|---|"]
    for v in VIEWS:
        params = ", ".join(_param_markdown(p) for p in v.params if p.location == "query")
        lines.append(f"| `GET {v.path}` | {v.summary}." + (f" {params}" if params else "") + " |")
    return "\n".join(lines)
