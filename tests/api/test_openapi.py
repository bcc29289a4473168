"""The OpenAPI document (``api.openapi``, served at ``/api/openapi.json``) says what the
views do: every view of ``api.views.VIEWS`` with its parameters as declared (and as the
real server enforces them), and response schemas whose properties are exactly the keys
the real server answers over the scripted data set."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from phospho_otel.api import serialize
from phospho_otel.api.feedback import FEEDBACK_PATHS
from phospho_otel.api.openapi import openapi_document
from phospho_otel.api.params import Param
from phospho_otel.api.views import VIEWS, View
from phospho_otel.store.api import SESSION_SORTS

IDS = {"session_id": "s1", "user_id": "alice", "task_id": "a1"}
"""Path ids of the scripted data set whose answers fill every list of the schemas."""
VOLATILE = ("computed_at", "max_age_s")
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "object": (dict,), "array": (list,), "null": (type(None),),
}


def url_of(view: View) -> str:
    return view.path.format(**IDS)


def get(client: httpx.Client, view: View, **params: Any) -> httpx.Response:
    return client.get(url_of(view), params=params)


def stable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in VOLATILE}


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``$ref`` followed and ``allOf`` merged into one schema."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return resolve(doc, doc["components"]["schemas"][name])
    if "allOf" in schema:
        merged: dict[str, Any] = {"type": "object", "properties": {}}
        for part in schema["allOf"]:
            merged["properties"].update(resolve(doc, part).get("properties", {}))
        return merged
    return schema


MAY_BE_EMPTY = {"events", "end_evidence", "classes", "examples", "reasons", "per_day"}
"""Arrays a scripted item may hold nothing in (a task with no event, a user in no class,
an event no task has); each is filled in some item of the data set, which
``test_field_tables`` sees."""


def check_shape(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> int:
    """Assert that ``value`` has exactly the schema's properties, at every depth, and
    values of its types; returns how many objects were compared."""
    schema = resolve(doc, schema)
    types = schema.get("type")
    if types is not None:
        allowed = tuple(t for name in ([types] if isinstance(types, str) else types)
                        for t in JSON_TYPES[name])
        assert isinstance(value, allowed) and not (
            isinstance(value, bool) and bool not in allowed), (where, value, types)
    if "enum" in schema:
        assert value in schema["enum"], (where, value)
    compared = 0
    if "properties" in schema and value is not None:
        assert set(value) == set(schema["properties"]), where
        compared += 1
        for key, sub in schema["properties"].items():
            compared += check_shape(doc, sub, value[key], f"{where}.{key}")
    if schema.get("type") == "array":
        if not value and where.rsplit(".", 1)[-1] in MAY_BE_EMPTY:
            return compared
        assert value, f"{where}: empty; the data set should fill it"
        for i, item in enumerate(value):
            compared += check_shape(doc, schema["items"], item, f"{where}[{i}]")
    return compared


class TestOpenAPI:
    def test_document(self, client: httpx.Client) -> None:
        """/api/openapi.json describes every view route with its parameters."""
        doc = client.get("/api/openapi.json").json()
        assert doc["openapi"].startswith("3.")
        for path in ("/api/sessions", "/api/sessions/{session_id}", "/api/users",
                     "/api/users/{user_id}", "/api/tasks", "/api/tasks/{task_id}",
                     "/api/insights/sessions", "/api/insights/users"):
            assert "get" in doc["paths"][path], path
        sort = next(p for p in doc["paths"]["/api/sessions"]["get"]["parameters"]
                    if p["name"] == "sort")
        assert sort["schema"]["enum"] == list(SESSION_SORTS)

    def test_served_document_is_generated(self, client: httpx.Client) -> None:
        """The server answers openapi_document(): the GET routes of VIEWS, then the POST
        feedback routes (api.feedback)."""
        doc = client.get("/api/openapi.json").json()
        assert doc == openapi_document()
        assert list(doc["paths"]) == [v.path for v in VIEWS] + list(FEEDBACK_PATHS.values())
        for path in FEEDBACK_PATHS.values():
            assert list(doc["paths"][path]) == ["post"], path
        for v in VIEWS:
            assert list(doc["paths"][v.path]) == ["get"], v.path
            op = doc["paths"][v.path]["get"]
            assert (op["operationId"], op["summary"]) == (v.name, v.summary)
            assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{v.response}"}
            assert ("404" in op["responses"]) == v.not_found, v.path


def expected_schema(p: Param) -> dict[str, Any]:
    """What the document must say of a parameter, from its declaration alone."""
    by_kind: dict[str, dict[str, Any]] = {
        "int": {"type": "integer"}, "number": {"type": "number"},
        "choice": {"enum": list(p.choices)}, "time": {"type": "string", "format": "date-time"},
    }
    schema = by_kind.get(p.kind, {"type": "string"})
    for key, value in (("minimum", p.lo), ("maximum", p.hi), ("default", p.default)):
        if value is not None:
            schema[key] = value
    return schema


class TestParameters:
    @pytest.mark.parametrize("view", VIEWS, ids=[v.name for v in VIEWS])
    def test_parameters_equal_declarations(self, view: View) -> None:
        """Every parameter, in order, with its place, ranges, default and choices."""
        doc = openapi_document()
        params = doc["paths"][view.path]["get"]["parameters"]
        assert [p["name"] for p in params] == [p.shown_name for p in view.params]
        for p, documented in zip(view.params, params, strict=True):
            prefix = {"x-prefix": f"{p.name}."} if p.prefix else {}
            assert documented == {
                "name": p.shown_name, "in": p.location, "description": p.description,
                "required": p.location == "path", "schema": expected_schema(p),
                **prefix}, p.name
            if p.location == "path":
                assert "{" + p.name + "}" in view.path
        assert {p.name for p in view.params if p.location == "path"} == {
            part[1:-1] for part in view.path.split("/") if part.startswith("{")}

    @pytest.mark.parametrize("view", VIEWS, ids=[v.name for v in VIEWS])
    def test_server_enforces_documented_ranges(self, client: httpx.Client,
                                               view: View) -> None:
        """Documented bounds are accepted, one step beyond them is a 400 naming the
        parameter; every documented choice is accepted, another one is not; an
        undocumented parameter is refused."""
        schemas = {p["name"]: p["schema"] for p in
                   openapi_document()["paths"][view.path]["get"]["parameters"]
                   if p["in"] == "query"}
        for name, schema in schemas.items():
            step = 1 if schema.get("type") == "integer" else 0.5
            if "minimum" in schema:
                assert get(client, view, **{name: schema["minimum"]}).status_code == 200, name
                bad = get(client, view, **{name: schema["minimum"] - step})
                assert bad.status_code == 400 and name in bad.json()["error"]["message"]
            if "maximum" in schema:
                assert get(client, view, **{name: schema["maximum"]}).status_code == 200, name
                bad = get(client, view, **{name: schema["maximum"] + step})
                assert bad.status_code == 400 and name in bad.json()["error"]["message"]
            for choice in schema.get("enum", []):
                assert get(client, view, **{name: choice}).status_code == 200, (name, choice)
            if "enum" in schema:
                bad = get(client, view, **{name: "nope"})
                assert bad.status_code == 400 and name in bad.json()["error"]["message"]
            if schema.get("format") == "date-time":
                ok = get(client, view, **{name: "2026-01-11T00:00:00+01:00"})
                assert ok.status_code == 200, name
                bad = get(client, view, **{name: "soon"})
                assert bad.status_code == 400 and name in bad.json()["error"]["message"]
        bad = get(client, view, undocumented="1")
        assert bad.status_code == 400 and "undocumented" in bad.json()["error"]["message"]

    @pytest.mark.parametrize("view", VIEWS, ids=[v.name for v in VIEWS])
    def test_documented_defaults(self, client: httpx.Client, view: View) -> None:
        """Giving a parameter its documented default answers the same as leaving it out."""
        plain = get(client, view)
        assert plain.status_code == 200
        for p in openapi_document()["paths"][view.path]["get"]["parameters"]:
            if p["in"] == "query" and "default" in p["schema"]:
                given = get(client, view, **{p["name"]: p["schema"]["default"]})
                assert given.status_code == 200, p["name"]
                assert stable(given.json()) == stable(plain.json()), p["name"]


class TestResponses:
    @pytest.mark.parametrize("view", VIEWS, ids=[v.name for v in VIEWS])
    def test_schema_properties_are_the_answered_keys(self, client: httpx.Client,
                                                     view: View) -> None:
        """Each response schema's properties, at every depth, are exactly the keys the
        server answers for that view, with values of the documented types."""
        doc = openapi_document()
        r = get(client, view)
        assert r.status_code == 200
        schema = doc["paths"][view.path]["get"]["responses"]["200"]["content"][
            "application/json"]["schema"]
        assert check_shape(doc, schema, r.json(), view.name) >= 1

    def test_field_tables(self, client: httpx.Client) -> None:
        """The answered keys are the serialize field tables (session_json keys ==
        SESSION_FIELDS...), and the schemas are made of them."""
        def keys(path: str, **params: Any) -> list[str]:
            return list(client.get(path, params=params).json())

        session = client.get("/api/sessions").json()["items"][0]
        user = client.get("/api/users").json()["items"][0]
        task = client.get("/api/tasks").json()["items"][0]
        assert list(session) == list(serialize.SESSION_FIELDS)
        assert list(user) == list(serialize.USER_FIELDS)
        assert list(task) == list(serialize.TASK_FIELDS)
        assert keys("/api/sessions/s1") == [*serialize.SESSION_FIELDS, "feedback", "tasks"]
        assert keys("/api/users/alice") == [*serialize.USER_FIELDS, "sessions", "tasks",
                                             "tasks_per_day"]
        assert keys("/api/tasks/a1") == list(serialize.TASK_FIELDS)
        assert keys("/api/insights/sessions") == list(serialize.SESSION_INSIGHTS_FIELDS)
        assert keys("/api/insights/users") == list(serialize.USER_INSIGHTS_FIELDS)
        schemas = openapi_document()["components"]["schemas"]
        for name, fields in (("Session", serialize.SESSION_FIELDS),
                             ("User", serialize.USER_FIELDS), ("Task", serialize.TASK_FIELDS),
                             ("SessionInsights", serialize.SESSION_INSIGHTS_FIELDS),
                             ("UserInsights", serialize.USER_INSIGHTS_FIELDS)):
            assert schemas[name]["properties"] == fields, name
            assert schemas[name]["required"] == list(fields), name

    def test_errors_have_the_error_schema(self, client: httpx.Client) -> None:
        """400 and 404 answers have the documented Error shape."""
        doc = openapi_document()
        error = {"$ref": "#/components/schemas/Error"}
        for path, params in (("/api/sessions", {"limit": "0"}), ("/api/tasks/nope", {})):
            r = client.get(path, params=params)
            assert r.status_code in (400, 404)
            assert check_shape(doc, error, r.json(), path) == 2
