"""The OpenAPI document as the contract says it: problem+json errors, bearer auth, readable ids.

Routes declare the problems they answer with ``responses=problem_responses(404, 409, ...)``;
``install_openapi`` then completes every operation of the generated document:

* every error response (4xx/5xx) is ``application/problem+json`` with the ``Problem`` schema
  (FastAPI's ``HTTPValidationError`` JSON is replaced: the service never answers it);
* an operation with parameters or a body answers 422, one behind the bearer scheme 401, and
  every operation may answer 500;
* operation ids are the route function's name in lowerCamelCase (``registerModel``);
* extra component schemas (the model spec) are added under ``components.schemas``.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.core.problems import PROBLEM_MEDIA_TYPE

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_SCHEMA",
    "install_openapi",
    "operation_id",
    "problem_responses",
]

PROBLEM_REF = "#/components/schemas/Problem"

FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "FieldError",
    "description": "One field-level problem: which part or field, where it was sent, what is wrong.",
    "properties": {
        "field": {
            "type": "string",
            "description": "The part, spec field, parameter or body field at fault (dotted).",
            "examples": ["spec.lje.lr"],
        },
        "location": {
            "type": "string",
            "description": "Where it was: query, path, body, header, part, spec, engine, dependency.",
            "examples": ["spec"],
        },
        "message": {
            "type": "string",
            "description": "What is wrong with it.",
            "examples": ["must be >= 0, got -1.0"],
        },
    },
    "required": ["field", "location", "message"],
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "An error (RFC 9457 problem details); every 4xx and 5xx answer is one.",
    "properties": {
        "type": {
            "type": "string",
            "description": "The problem type, ``urn:rps:problem:<slug>``.",
            "examples": ["urn:rps:problem:validation"],
        },
        "title": {
            "type": "string",
            "description": "The HTTP status's phrase.",
            "examples": ["Unprocessable Content"],
        },
        "status": {"type": "integer", "description": "The HTTP status code.", "examples": [422]},
        "detail": {
            "type": "string",
            "description": "What went wrong, for people.",
            "examples": ["invalid spec: spec.lje.lr"],
        },
        "errors": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/FieldError"},
            "description": "The fields at fault, when the problem is about fields.",
        },
        "retry_after_s": {
            "type": "number",
            "description": "429/503: seconds to wait before trying again (also Retry-After).",
        },
        "model_status": {
            "type": "string",
            "description": "409: the status of the model that is not ready.",
        },
        "model": {
            "type": "object",
            "description": "409: the status body of the model that is not ready.",
        },
        "failing": {
            "type": "array",
            "items": {"type": "string"},
            "description": "503 from /readyz: the dependencies that failed.",
        },
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
    "examples": [
        {
            "type": "urn:rps:problem:validation",
            "title": "Unprocessable Content",
            "status": 422,
            "detail": "invalid spec: spec.lje.lr",
            "errors": [
                {"field": "spec.lje.lr", "location": "spec", "message": "must be >= 0, got -1.0"}
            ],
        }
    ],
}

_MEANING = {
    401: "No API key, or an unknown one, while the service has keys.",
    404: "No such model (or test point) for this tenant.",
    409: "The model is not ready: the problem carries its status.",
    413: "A part is larger than RPS_MAX_UPLOAD_BYTES.",
    415: "The body is not multipart/form-data.",
    422: "A parameter, body field, part or spec field is invalid: ``errors`` names it.",
    429: "The explain queue is full; retry after Retry-After seconds.",
    500: "An unexpected error; it was logged (never a stack trace).",
    503: "A dependency is unavailable; retry later.",
}


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _MEANING.get(status, HTTPStatus(status).phrase),
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}
        }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer"},
            }
        }
    return response


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route answering these problem statuses (problem+json each)."""
    return {status: _problem_response(status) for status in statuses}


def operation_id(route: APIRoute) -> str:
    """``register_model`` -> ``registerModel``."""
    first, *rest = route.name.split("_")
    return first + "".join(piece[:1].upper() + piece[1:] for piece in rest)


def _complete_operation(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    wanted: set[int] = {500}
    if operation.get("parameters") or operation.get("requestBody"):
        wanted.add(422)
    if operation.get("security"):
        wanted.add(401)
    for status in wanted:
        responses.setdefault(str(status), {})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            described = response.get("description")
            response.clear()
            response.update(_problem_response(int(status)))
            if described and described not in ("Validation Error", "Successful Response"):
                response["description"] = described


def _drop_validation_schemas(document: dict[str, Any]) -> None:
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def install_openapi(
    app: FastAPI,
    *,
    extra_schemas: Mapping[str, dict[str, Any]] | None = None,
    tags: list[dict[str, Any]] | None = None,
) -> None:
    """Make ``app.openapi()`` build (once) the completed document described above."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
            tags=tags,
        )
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        schemas["FieldError"] = FIELD_ERROR_SCHEMA
        schemas.update(extra_schemas or {})
        for path_item in document.get("paths", {}).values():
            for operation in path_item.values():
                _complete_operation(operation)
        _drop_validation_schemas(document)
        app.openapi_schema = document
        return document

    app.openapi = build  # type: ignore[method-assign]
