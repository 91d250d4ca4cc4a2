"""``/openapi.json`` says what the service does: checked on every operation it lists.

Nothing here names a route: the checks walk the document (and the app's routes), so a route
added later without summary, description, problem responses, security or descriptions of its
fields fails here.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from app.dependencies import get_model, get_ready_model_query, get_tenant
from rps.spec import ModelSpec, json_name, leaves

PROBLEM = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
CAMEL_CASE = re.compile(r"^[a-z][a-zA-Z0-9]*$")


@pytest.fixture
async def document(service) -> dict[str, Any]:
    async with service.client() as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(document: dict[str, Any]):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def _dependency_calls(route: APIRoute) -> set[Any]:
    calls, pending = set(), [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is not None:
            calls.add(dependant.call)
        pending.extend(dependant.dependencies)
    return calls


def _schema_routes(service) -> dict[str, APIRoute]:
    """Every API route of the app as ``METHOD /path`` (its effective path, prefix included)."""
    found = {}
    for context in iter_route_contexts(service.app.routes):
        route = context.original_route
        effective = getattr(context, "_effective_route", route)
        if isinstance(route, APIRoute) and getattr(effective, "include_in_schema", True):
            for method in route.methods:
                found[f"{method} {context.path_format}"] = route
    return found


async def test_every_operation_has_a_readable_id_summary_and_description(document):
    ids = []
    for label, operation in _operations(document):
        ids.append(operation["operationId"])
        assert CAMEL_CASE.match(operation["operationId"]), (label, operation["operationId"])
        assert operation.get("summary"), label
        assert operation.get("description"), label
        assert operation.get("tags"), label
    assert len(ids) == len(set(ids)) and ids


async def test_every_error_response_is_a_problem_on_every_operation(document):
    for label, operation in _operations(document):
        responses = operation["responses"]
        assert "500" in responses, label
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in responses, label
        for status, response in responses.items():
            if int(status) >= 400:
                assert response["content"] == {PROBLEM: {"schema": {"$ref": PROBLEM_REF}}}, (
                    label,
                    status,
                )
                assert response.get("description"), (label, status)
            else:
                assert PROBLEM not in response.get("content", {}), (label, status)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail"}


async def test_routes_document_the_statuses_their_dependencies_answer(service, document):
    routes = _schema_routes(service)
    operations = dict(_operations(document))
    assert set(routes) == set(operations)
    for label, route in routes.items():
        responses, calls = operations[label]["responses"], _dependency_calls(route)
        if get_tenant in calls:
            assert "401" in responses, label
            assert operations[label].get("security") == [{"bearerAuth": []}], label
        if get_model in calls or get_ready_model_query in calls:
            assert "404" in responses, label
        if get_ready_model_query in calls:
            assert {"404", "409", "422"} <= set(responses), label
    assert "429" in operations["GET /explain"]["responses"]
    assert {"413", "415"} <= set(operations["POST /models"]["responses"])
    assert "503" in operations["GET /readyz"]["responses"]


async def test_bearer_security_scheme(document):
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert scheme.get("description")


async def test_every_field_and_parameter_is_described(document):
    missing = []

    def walk(schema: dict[str, Any], where: str) -> None:
        for name, prop in (schema.get("properties") or {}).items():
            if not prop.get("description"):
                missing.append(f"{where}.{name}")
            walk(prop, f"{where}.{name}")

    for name, schema in document["components"]["schemas"].items():
        walk(schema, name)
    for label, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if not parameter.get("description"):
                missing.append(f"{label} {parameter['in']} {parameter['name']}")
        for media in (operation.get("requestBody") or {}).get("content", {}).values():
            walk(media.get("schema", {}), f"{label} body")
    assert missing == []


async def test_register_body_is_multipart_with_the_spec_schema(document):
    operation = document["paths"]["/models"]["post"]
    multipart = operation["requestBody"]["content"]["multipart/form-data"]
    properties = multipart["schema"]["properties"]
    assert properties["spec"]["$ref"] == "#/components/schemas/ModelSpec"
    assert multipart["encoding"]["spec"]["contentType"] == "application/json"
    assert {"spec", "train_labels"} <= set(multipart["schema"]["required"])
    for part in ("weights", "train_features", "booster", "train_inputs", "train_labels"):
        assert properties[part]["format"] == "binary", part

    spec = document["components"]["schemas"]["ModelSpec"]
    assert list(spec["properties"]) == [json_name(f) for f in dataclasses.fields(ModelSpec)]
    assert spec["required"] == ["kind"] and spec["additionalProperties"] is False
    for leaf in leaves():  # every setting, with its default and an example
        node = spec
        for piece in leaf.path.split("."):
            node = node["properties"][piece]
        assert node.get("examples") == [leaf.example] or node["anyOf"][0].get("examples") == [
            leaf.example
        ], leaf.path
        if leaf.path != "kind":
            assert node["default"] == leaf.default, leaf.path


async def test_request_bodies_and_main_answers_have_examples(document):
    schemas = document["components"]["schemas"]
    for label, operation in _operations(document):
        content = (operation.get("requestBody") or {}).get("content", {})
        if "application/json" in content:
            schema = content["application/json"]["schema"]
            refs = [schema.get("$ref")] + [part.get("$ref") for part in schema.get("anyOf", [])]
            names = [ref.rsplit("/", 1)[1] for ref in refs if ref]
            assert names and all(schemas[name].get("examples") for name in names), label
    assert schemas["ModelPublic"].get("examples") and schemas["Problem"].get("examples")


async def test_metrics_are_documented_as_text(document):
    content = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]
