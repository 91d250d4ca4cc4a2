"""One exception class per problem status the service answers, all ``ServiceError``.

Catch ``ServiceError`` for any answered error, or the class of one status::

    try:
        client.explain(model_id, test_id="17")
    except NotFound:
        ...
    except TooManyRequests as busy:
        time.sleep(busy.retry_after or 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "BadRequest",
    "Conflict",
    "InternalServerError",
    "ModelFailedError",
    "NotFound",
    "PayloadTooLarge",
    "ServiceError",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "UnsupportedMediaType",
    "WaitTimeoutError",
    "error_for",
]


def _describe_field_error(error: Any) -> str:
    if not isinstance(error, Mapping):
        return str(error)
    where = error.get("loc") or error.get("field") or error.get("part") or error.get("name")
    if isinstance(where, (list, tuple)):
        where = ".".join(str(piece) for piece in where)
    message = error.get("msg") or error.get("message") or error.get("detail") or ""
    return f"{where}: {message}" if where else str(message or error)


class ServiceError(Exception):
    """The service answered an error (problem+json, RFC 9457).

    Attributes
    ----------
    status : int
        The HTTP status code (or the failed job's problem status).
    problem : dict
        The problem body: ``type``, ``title``, ``status``, ``detail``, maybe ``errors``.
    """

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        title = self.problem.get("title") or "error"
        detail = self.problem.get("detail")
        message = f"{status} {title}" + (f": {detail}" if detail else "")
        for error in self.problem.get("errors") or []:
            message += f"\n  - {_describe_field_error(error)}"
        super().__init__(message)

    @property
    def type(self) -> str:
        """The problem type, e.g. ``urn:rps:problem:validation``."""
        return str(self.problem.get("type") or "about:blank")

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail") or "")

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The fields at fault: ``field``, ``location``, ``message`` each."""
        return [dict(error) for error in self.problem.get("errors") or []]

    @property
    def fields(self) -> list[str]:
        """The names of the fields at fault (``spec.lje.lr``, ``train_labels``, ...)."""
        return [str(error.get("field")) for error in self.errors if error.get("field")]


class BadRequest(ServiceError):
    """400."""


class Unauthorized(ServiceError):
    """401: no API key, or an unknown one."""


class NotFound(ServiceError):
    """404: no such model or test point for this tenant."""


class Conflict(ServiceError):
    """409: the model is not ready; ``model_status`` says where it is."""

    @property
    def model_status(self) -> str | None:
        return self.problem.get("model_status")


class PayloadTooLarge(ServiceError):
    """413: a part is larger than the service takes."""


class UnsupportedMediaType(ServiceError):
    """415."""


class Unprocessable(ServiceError):
    """422: a part, spec field, parameter or body field is invalid; ``fields`` names them."""


class _RetryAfter(ServiceError):
    def __init__(
        self, status: int, problem: Mapping[str, Any], *, retry_after: float | None = None
    ) -> None:
        super().__init__(status, problem)
        if retry_after is None and problem.get("retry_after_s") is not None:
            retry_after = float(problem["retry_after_s"])
        self.retry_after = retry_after
        """Seconds to wait before retrying (``Retry-After``), or None."""


class TooManyRequests(_RetryAfter):
    """429: the explain queue is full; wait ``retry_after`` seconds."""


class ServiceUnavailable(_RetryAfter):
    """503: a dependency of the service is down; wait ``retry_after`` seconds."""


class InternalServerError(ServiceError):
    """500: an unexpected error on the service (it was logged there)."""


_BY_STATUS: dict[int, type[ServiceError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: Unprocessable,
    429: TooManyRequests,
    500: InternalServerError,
    503: ServiceUnavailable,
}


def error_for(
    status: int, problem: Mapping[str, Any], *, retry_after: str | None = None
) -> ServiceError:
    """The exception of an answered ``status`` (``ServiceError`` for one without a class)."""
    cls = _BY_STATUS.get(status, ServiceError)
    if issubclass(cls, _RetryAfter):
        seconds = None
        if retry_after:
            try:
                seconds = float(retry_after)
            except ValueError:
                seconds = None
        return cls(status, problem, retry_after=seconds)
    return cls(status, problem)


class ModelFailedError(ServiceError):
    """The model's precompute job failed; ``problem`` is the job's recorded error body."""

    def __init__(self, model: Any) -> None:
        self.model = model
        problem = model.get("error") or {"title": "precompute failed"}
        if not isinstance(problem, Mapping):
            problem = {"title": "precompute failed", "detail": str(problem)}
        super().__init__(int(problem.get("status") or 500), problem)


class WaitTimeoutError(TimeoutError):
    """The model did not become ready within the allowed time; ``model`` is its last status."""

    def __init__(self, model: Any, timeout: float) -> None:
        self.model = model
        super().__init__(
            f"model {model.get('id')} still {model.get('status')!r} "
            f"(progress {model.get('progress')}) after {timeout:g} s"
        )
