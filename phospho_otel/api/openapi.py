"""The OpenAPI 3.1 description of ``/api`` (served at ``/api/openapi.json``) and the
endpoint table of ``docs/views.md``, both generated from the views' route table
(``api.views.VIEWS``, with their ``Param`` declarations), the response field tables
(``api.serialize``) and the feedback routes' (``api.feedback``): nothing about a view is
written twice.

A prefix parameter (``metadata.<key>``) is documented under that name, with
``x-prefix: "metadata."``: OpenAPI has no way to name a family of query parameters.
"""

from __future__ import annotations

from typing import Any

from phospho_otel.api import serialize
from phospho_otel.api.export import EXPORT_COLUMNS, MEDIA_TYPES
from phospho_otel.api.feedback import (
    FEEDBACK_BODY_SCHEMA,
    FEEDBACK_FIELDS,
    FEEDBACK_PATHS,
    MAX_BODY_BYTES,
)
from phospho_otel.api.params import Param
from phospho_otel.api.views import VIEWS, View

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
    out = {"name": p.shown_name, "in": p.location, "description": p.description,
           "required": p.location == "path", "schema": _schema(p)}
    if p.prefix:
        out["x-prefix"] = f"{p.name}."
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"type": "object", "properties": fields, "required": list(fields)}


def _list_of(item: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "total", "next_cursor", "searched_to"],
            "properties": {
        "items": {"type": "array", "items": _ref(item)},
        "total": {"type": ["integer", "null"],
                  "description": "null when not counted: the search stopped early"},
        "next_cursor": {"type": ["string", "null"]},
        "searched_to": {"type": ["string", "number", "null"], "description": (
            "set when a filter no index answers (metadata, q, flag) stopped the search "
            "before the end of the list: the sort value (an ISO time for times) it searched "
            "to; the page holds the matches found so far, maybe none, and next_cursor goes "
            "on from there")}}}


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
            "sessions": {"type": "array", "items": _ref("Session")}, "tasks": tasks,
            "tasks_per_day": {"type": "array", "description": "the user's tasks by the UTC day "
                              "they started, days without any left out",
                              "items": {"type": "object", "properties": {
                                  "date": {"type": "string", "format": "date"},
                                  "tasks": {"type": "integer"}}}}}),
        "SessionList": _list_of("Session"),
        "UserList": _list_of("User"),
        "TaskList": _list_of("Task"),
        "SessionInsights": _object(serialize.SESSION_INSIGHTS_FIELDS),
        "UserInsights": _object(serialize.USER_INSIGHTS_FIELDS),
        "Retention": _object(serialize.RETENTION_FIELDS),
        "Events": _object(serialize.EVENTS_FIELDS),
        "Feedback": _object(FEEDBACK_FIELDS),
        "FeedbackBody": FEEDBACK_BODY_SCHEMA,
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "status": {"type": "integer"}, "message": {"type": "string"}}}}},
    }


def _responses(view: View) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _ref(view.response)}}
    if view.export_name is not None:  # with format=...
        header = ",".join(EXPORT_COLUMNS[view.export_name])
        content[MEDIA_TYPES["csv"]] = {"schema": {
            "type": "string", "description": f"format=csv: the whole list; header {header}"}}
        content[MEDIA_TYPES["jsonl"]] = {"schema": {
            "type": "string", "description": "format=jsonl: the whole list, one item (as in"
                                             " items) per line"}}
    out: dict[str, Any] = {
        "200": {"description": view.summary, "content": content},
        "400": {"$ref": "#/components/responses/BadRequest"},
        "401": {"$ref": "#/components/responses/Unauthorized"},
    }
    if view.not_found:
        out["404"] = {"$ref": "#/components/responses/NotFound"}
    return out


_FEEDBACK_SUMMARY = {"task": "Give feedback on a task (as the SDK's user_feedback does)",
                     "session": "Give feedback on a whole session"}


def _feedback_operation(kind: str) -> dict[str, Any]:
    id_name = f"{kind}_id"
    return {"post": {
        "operationId": f"{kind}_feedback", "summary": _FEEDBACK_SUMMARY[kind],
        "description": "Stored as a feedback span through ingest (idempotent, the latest"
                       " feedback by time wins); answered once durable.",
        "parameters": [{"name": id_name, "in": "path", "description": f"{kind} id",
                        "required": True, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "description": f"at most {MAX_BODY_BYTES} bytes",
                        "content": {"application/json": {"schema": _ref("FeedbackBody")}}},
        "responses": {
            "200": {"description": "the feedback, stored",
                    "content": {"application/json": {"schema": _ref("Feedback")}}},
            **{status: {"$ref": f"#/components/responses/{name}"} for status, name in (
                ("400", "BadRequest"), ("401", "Unauthorized"), ("404", "NotFound"),
                ("413", "PayloadTooLarge"), ("415", "UnsupportedMediaType"),
                ("503", "Unavailable"))}}}}


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
                for name in ("BadRequest", "Unauthorized", "NotFound", "PayloadTooLarge",
                             "UnsupportedMediaType", "Unavailable")
            },
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            **{v.path: {"get": {"operationId": v.name, "summary": v.summary,
                                "parameters": [_parameter(p) for p in v.params],
                                "responses": _responses(v)}}
               for v in VIEWS},
            **{path: _feedback_operation(kind) for kind, path in FEEDBACK_PATHS.items()},
        },
    }


def _param_markdown(p: Param) -> str:
    text = f"`{p.shown_name}`"
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
    for kind, path in FEEDBACK_PATHS.items():
        lines.append(f"| `POST {path}` | {_FEEDBACK_SUMMARY[kind]}. JSON body: `flag` ="
                     " `success` \\| `failure`, `notes`, `source` (default `owner`) |")
    return "\n".join(lines)
