"""Map every error to RFC 9457 problem+json in one place; never a bare 500 with a trace."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sql_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import (
    DependencyUnavailableError,
    FieldError,
    InsufficientStorageError,
    InvalidRequestError,
    ServiceError,
)
from models_store import is_descriptor_error, is_storage_error
from representer import RepresenterError

__all__ = [
    "install_problem_handlers",
    "problem_response",
    "as_service_error",
    "PROBLEM_MEDIA_TYPE",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger(__name__)


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    errors: list[FieldError] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response; ``errors`` lists field-level problems."""
    body: dict[str, Any] = {
        "type": f"urn:rps:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [error.as_dict() for error in errors]
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if extra.get("retry_after_s") is not None:  # 429 and 503 say when to come back
        headers["Retry-After"] = str(max(1, round(float(extra["retry_after_s"]))))
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers or None
    )


def _from_service_error(error: ServiceError) -> JSONResponse:
    return problem_response(
        error.status, error.title, error.detail, slug=error.slug, errors=error.errors, **error.extra
    )


def _location_and_field(loc: tuple[Any, ...]) -> tuple[str, str]:
    if loc and loc[0] in ("query", "path", "body", "header"):
        return str(loc[0]), ".".join(str(part) for part in loc[1:]) or str(loc[0])
    return "body", ".".join(str(part) for part in loc)


async def _on_request_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for item in exc.errors():
        location, name = _location_and_field(tuple(item.get("loc", ())))
        errors.append(FieldError(field=name, message=item.get("msg", "invalid"), location=location))
    named = ", ".join(sorted({error.field for error in errors}))
    return _from_service_error(InvalidRequestError(f"invalid request: {named}", errors=errors))


async def _on_service_error(_request: Request, exc: ServiceError) -> JSONResponse:
    return _from_service_error(exc)


async def _on_engine_error(_request: Request, exc: RepresenterError) -> JSONResponse:
    name = exc.argument or "request"
    return _from_service_error(
        InvalidRequestError(
            str(exc), errors=[FieldError(field=name, message=str(exc), location="engine")]
        )
    )


async def _on_http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    titles = {404: "Not Found", 405: "Method Not Allowed", 401: "Unauthorized"}
    return problem_response(
        exc.status_code,
        titles.get(exc.status_code, "HTTP error"),
        str(exc.detail),
        slug="http",
    )


def as_service_error(error: BaseException) -> ServiceError | None:
    """The problem a failing dependency deserves: the database or Redis unreachable, or
    out of file descriptors -> 503 ``dependency-unavailable`` with ``Retry-After``; the
    store full or read-only -> 507 ``insufficient-storage``. ``None`` for anything else."""
    if isinstance(error, ServiceError):
        return error
    if isinstance(error, sql_errors.OperationalError | sql_errors.InterfaceError):
        return DependencyUnavailableError.of("database", _first_line(error.orig or error))
    if isinstance(error, sql_errors.TimeoutError):  # the connection pool is exhausted
        return DependencyUnavailableError.of("database", "no free connection in the pool")
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return DependencyUnavailableError.of("broker", _first_line(error))
    if is_descriptor_error(error):
        return DependencyUnavailableError.of("file descriptors", _first_line(error))
    if is_storage_error(error):
        assert isinstance(error, OSError)
        return InsufficientStorageError(
            f"the artifact store cannot take the write: {error.strerror or error}; nothing was kept",
            errors=[FieldError("artifact_store", str(error.strerror or error), "storage")],
        )
    return None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


async def _on_dependency_error(request: Request, exc: Exception) -> JSONResponse:
    problem = as_service_error(exc)
    if problem is None:
        return await _on_unexpected(request, exc)
    logger.warning("%s %s: %s", request.method, request.url.path, problem.detail)
    return _from_service_error(problem)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    problem = as_service_error(exc)  # e.g. wrapped in an exception group by the task group
    if problem is not None:
        return _from_service_error(problem)
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500, "Internal Server Error", "an unexpected error occurred; it was logged", slug="internal"
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every exception into problem+json."""
    # Any, not Exception: each handler takes its own exception type.
    handlers: list[tuple[type[Exception], Callable[[Request, Any], Awaitable[JSONResponse]]]] = [
        (RequestValidationError, _on_request_validation),
        (ServiceError, _on_service_error),
        (RepresenterError, _on_engine_error),
        (StarletteHTTPException, _on_http_error),
        (sql_errors.OperationalError, _on_dependency_error),
        (sql_errors.InterfaceError, _on_dependency_error),
        (sql_errors.TimeoutError, _on_dependency_error),
        (redis.ConnectionError, _on_dependency_error),
        (redis.TimeoutError, _on_dependency_error),
        (OSError, _on_dependency_error),
        (Exception, _on_unexpected),
    ]
    for exception_type, handler in handlers:
        app.add_exception_handler(exception_type, handler)
