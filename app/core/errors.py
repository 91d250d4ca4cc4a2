"""The one error hierarchy of the front end; ``app.core.problems`` maps it to problem+json.

Domain code raises these (never ``HTTPException``). ``FieldError`` names the offending
multipart part, spec field, query parameter or body field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FieldError",
    "ServiceError",
    "NotFoundError",
    "ConflictError",
    "InvalidRequestError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
    "UnauthorizedError",
    "UnavailableError",
    "TooManyRequestsError",
    "DependencyUnavailableError",
    "InsufficientStorageError",
    "RequestTimeoutError",
    "DEPENDENCY_RETRY_AFTER_S",
]

DEPENDENCY_RETRY_AFTER_S = 5
"""What a 503 for a dependency that is down tells the client to wait (``Retry-After``)."""


@dataclass(frozen=True)
class FieldError:
    """One field-level problem: which part/field, where it was, and what is wrong."""

    field: str
    message: str
    location: str = "body"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "location": self.location, "message": self.message}


@dataclass
class ServiceError(Exception):
    """Base of every error the service answers on purpose."""

    detail: str
    errors: list[FieldError] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    status = 500
    title = "Internal Server Error"
    slug = "internal"

    def __str__(self) -> str:
        return self.detail


class NotFoundError(ServiceError):
    status, title, slug = 404, "Not Found", "not-found"


class ConflictError(ServiceError):
    status, title, slug = 409, "Conflict", "conflict"


class InvalidRequestError(ServiceError):
    status, title, slug = 422, "Unprocessable Content", "validation"


class PayloadTooLargeError(ServiceError):
    status, title, slug = 413, "Content Too Large", "too-large"


class UnsupportedMediaTypeError(ServiceError):
    status, title, slug = 415, "Unsupported Media Type", "media-type"


class UnauthorizedError(ServiceError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class UnavailableError(ServiceError):
    status, title, slug = 503, "Service Unavailable", "unavailable"


class TooManyRequestsError(ServiceError):
    """The explain queue is full; ``extra`` carries ``retry_after_s`` for the header."""

    status, title, slug = 429, "Too Many Requests", "too-many-requests"


class DependencyUnavailableError(ServiceError):
    """A dependency (database, broker, file descriptors) is down or exhausted; retry later.

    ``extra`` carries ``dependency`` (which one) and ``retry_after_s`` for the header.
    """

    status, title, slug = 503, "Service Unavailable", "dependency-unavailable"

    @classmethod
    def of(cls, dependency: str, reason: str) -> DependencyUnavailableError:
        return cls(
            f"{dependency} unavailable: {reason}"[:500],
            extra={"dependency": dependency, "retry_after_s": DEPENDENCY_RETRY_AFTER_S},
        )


class InsufficientStorageError(ServiceError):
    """The artifact store is full or read-only: nothing was stored (or nothing removed)."""

    status, title, slug = 507, "Insufficient Storage", "insufficient-storage"


class RequestTimeoutError(ServiceError):
    """The client did not send its request body within the deadline."""

    status, title, slug = 408, "Request Timeout", "request-timeout"
