"""The OpenAPI 3.1 description of ``/api/...`` (served at ``/api/openapi.json``)."""

from __future__ import annotations

import copy
from typing import Any

from phospho_otel.store.queries import SESSION_SORTS, TASK_SORTS, USER_SORTS

__all__ = ["openapi_document"]


def _param(name: str, where: str, description: str, schema: dict[str, Any],
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "description": description, "required": required,
            "schema": schema}


_FROM = _param("from", "query", "ISO-8601 start of the time range (inclusive)",
               {"type": "string", "format": "date-time"})
_TO = _param("to", "query", "ISO-8601 end of the time range (exclusive)",
             {"type": "string", "format": "date-time"})
_USER_PARAM = _param("user_id", "query", "only this user's items", {"type": "string"})
_ORDER = _param("order", "query", "sort direction", {"enum": ["asc", "desc"], "default": "desc"})
_LIMIT = _param("limit", "query", "page size", {"type": "integer", "minimum": 1,
                                                "maximum": 1000, "default": 50})
_OFFSET = _param("offset", "query", "rows to skip (deeper pages: use cursor)",
                 {"type": "integer", "minimum": 0, "maximum": 10_000})
_CURSOR = _param("cursor", "query", "next_cursor of the previous page (instead of offset)",
                 {"type": "string"})
_MAX_AGE = _param("max_age_s", "query",
                  "serve a cached result at most this old while data changes (0: compute now)",
                  {"type": "number", "minimum": 0, "maximum": 3600})
_FRESHNESS = {"computed_at": {"type": "string", "format": "date-time"},
              "max_age_s": {"type": "number"}}
_TOP = _param("top", "query", "how many top items to list", {"type": "integer", "minimum": 1,
                                                             "maximum": 100})


def _sort(names: dict[str, str], default: str) -> dict[str, Any]:
    return _param("sort", "query", "sort key", {"enum": list(names), "default": default})


def _ok(schema: str, description: str) -> dict[str, Any]:
    return {
        "200": {"description": description,
                "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{schema}"}}}},
        "400": {"$ref": "#/components/responses/BadRequest"},
        "401": {"$ref": "#/components/responses/Unauthorized"},
    }


def _get(summary: str, params: list[dict[str, Any]], schema: str,
         not_found: bool = False) -> dict[str, Any]:
    responses = _ok(schema, summary)
    if not_found:
        responses["404"] = {"$ref": "#/components/responses/NotFound"}
    return {"get": {"summary": summary, "parameters": params, "responses": responses}}


_TIME = {"type": ["string", "null"], "format": "date-time"}
_NUM = {"type": ["number", "null"]}
_STR = {"type": ["string", "null"]}
_INT = {"type": "integer"}

_TASK = {
    "type": "object",
    "properties": {
        "task_id": {"type": "string"}, "session_id": _STR, "user_id": _STR,
        "input": _STR, "output": _STR, "raw_input": {}, "raw_output": {},
        "metadata": {"type": "object"}, "start_time": _TIME, "end_time": _TIME,
        "duration_s": _NUM, "status": {"enum": ["unset", "ok", "error"]},
        "flag": {"enum": ["success", "failure", None]}, "notes": _STR, "flag_source": _STR,
        "position": {"type": ["integer", "null"], "description": "1-based, by (start, task_id)"},
        "is_last": {"type": ["boolean", "null"]}, "name": {"type": "string"},
        "service_name": {"type": "string"}, "convention": {"type": "string"},
        "trace_id": {"type": "string"}, "span_id": {"type": "string"},
    },
}
_LINKS = {"type": ["object", "null"], "additionalProperties": {"type": "string"},
          "description": "Jaeger UI links to the traces, when PHOSPHO_JAEGER_UI_URL is set"}
_SESSION = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"}, "user_id": _STR, "task_count": _INT,
        "start_time": _TIME, "end_time": _TIME, "duration_s": _NUM, "first_task_id": _STR,
        "first_input": _STR, "last_task_id": _STR, "last_input": _STR, "last_output": _STR,
        "last_status": _STR, "success_count": _INT, "failure_count": _INT, "error_count": _INT,
        "links": _LINKS,
    },
}
_USER = {
    "type": "object",
    "properties": {
        "user_id": {"type": "string"}, "task_count": _INT, "session_count": _INT,
        "first_seen": _TIME, "last_seen": _TIME, "avg_session_duration_s": _NUM,
        "avg_tasks_per_session": _NUM,
        "success_rate": {"type": ["number", "null"],
                         "description": "successes / (successes + failures); null if none"},
        "success_count": _INT, "failure_count": _INT, "error_count": _INT, "links": _LINKS,
    },
}


def _list_of(item: str) -> dict[str, Any]:
    return {"type": "object", "properties": {
        "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
        "total": _INT, "next_cursor": _STR}}


_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "phospho-otel views API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Task": _TASK,
            "Session": _SESSION,
            "SessionDetail": {"allOf": [{"$ref": "#/components/schemas/Session"}, {
                "type": "object", "properties": {"tasks": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Task"}}}}]},
            "User": _USER,
            "UserDetail": {"allOf": [{"$ref": "#/components/schemas/User"}, {
                "type": "object", "properties": {
                    "sessions": {"type": "array",
                                 "items": {"$ref": "#/components/schemas/Session"}},
                    "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}}}]},
            "SessionList": _list_of("Session"),
            "UserList": _list_of("User"),
            "TaskList": _list_of("Task"),
            "SessionInsights": {"type": "object", "properties": {
                "session_count": _INT, "task_count": _INT, "avg_duration_s": _NUM,
                "median_duration_s": _NUM, "p90_duration_s": _NUM, "avg_tasks_per_session": _NUM,
                "success_count": _INT, "failure_count": _INT, "error_count": _INT,
                "length_histogram": {"type": "array", "items": {"type": "object"}},
                "sessions_per_day": {"type": "array", "items": {"type": "object"}},
                "endings": {"type": "array", "items": {"type": "object"},
                            "description": "last tasks grouped by flag and status"},
                **_FRESHNESS}},
            "UserInsights": {"type": "object", "properties": {
                "user_count": _INT, "avg_tasks_per_user": _NUM, "median_tasks_per_user": _NUM,
                "p90_tasks_per_user": _NUM, "avg_sessions_per_user": _NUM, "success_rate": _NUM,
                "tasks_per_user": {"type": "array", "items": {"type": "object"}},
                "top_users": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
                **_FRESHNESS}},
            "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "status": _INT, "message": {"type": "string"}}}}},
        },
        "responses": {
            name: {"description": name, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}
            for name in ("BadRequest", "Unauthorized", "NotFound")
        },
    },
    "security": [{"bearer": []}, {}],
    "paths": {
        "/api/sessions": _get(
            "Sessions started in the time range",
            [_FROM, _TO, _USER_PARAM, _sort(SESSION_SORTS, "start_time"), _ORDER, _LIMIT, _OFFSET,
             _CURSOR], "SessionList"),
        "/api/sessions/{session_id}": _get(
            "One session with its tasks in order",
            [_param("session_id", "path", "session id", {"type": "string"}, True),
             _param("limit", "query", "tasks to list", {"type": "integer", "minimum": 1,
                                                       "maximum": 1000}), _OFFSET],
            "SessionDetail", not_found=True),
        "/api/users": _get(
            "Users active in the time range",
            [_FROM, _TO, _USER_PARAM, _sort(USER_SORTS, "last_seen"), _ORDER, _LIMIT, _OFFSET,
             _CURSOR], "UserList"),
        "/api/users/{user_id}": _get(
            "One user with their latest sessions and tasks",
            [_param("user_id", "path", "user id", {"type": "string"}, True),
             _param("limit", "query", "sessions and tasks to list",
                    {"type": "integer", "minimum": 1, "maximum": 1000})],
            "UserDetail", not_found=True),
        "/api/tasks": _get(
            "Tasks started in the time range",
            [_FROM, _TO, _USER_PARAM, _param("session_id", "query", "only this session's tasks",
                                       {"type": "string"}),
             _sort(TASK_SORTS, "start_time"), _ORDER, _LIMIT, _OFFSET, _CURSOR], "TaskList"),
        "/api/tasks/{task_id}": _get(
            "One task",
            [_param("task_id", "path", "task id", {"type": "string"}, True)], "Task",
            not_found=True),
        "/api/insights/sessions": _get(
            "Session figures over the time range", [_FROM, _TO, _USER_PARAM, _TOP, _MAX_AGE],
            "SessionInsights"),
        "/api/insights/users": _get(
            "User figures over the time range", [_FROM, _TO, _TOP, _MAX_AGE], "UserInsights"),
    },
}


def openapi_document() -> dict[str, Any]:
    """A copy of the OpenAPI document (callers may change it)."""
    return copy.deepcopy(_DOCUMENT)
