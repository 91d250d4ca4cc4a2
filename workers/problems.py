"""The problem bodies a failed precompute job records (``Job.error``, ``Model.error``)."""

from __future__ import annotations

from typing import Any

from dramatiq.middleware import Interrupt

from models_store import is_storage_error
from representer import RepresenterError

__all__ = ["problem_body"]


def problem_body(error: BaseException) -> dict[str, Any]:
    """The problem+json body a failed job shows as ``error``."""
    from workers.isolation import ChildJobFailed, PrecomputeCrashed

    if isinstance(error, RepresenterError):
        body: dict[str, Any] = {
            "type": "urn:rps:problem:precompute-invalid",
            "title": "Precompute rejected the model",
            "status": 422,
            "detail": str(error),
        }
        if error.argument:
            body["errors"] = [
                {"field": error.argument, "location": "engine", "message": str(error)}
            ]
        return body
    if is_storage_error(error):
        assert isinstance(error, OSError)
        return {
            "type": "urn:rps:problem:insufficient-storage",
            "title": "Insufficient Storage",
            "status": 507,
            "detail": f"the artifact store refused the results ({error.strerror or error}); "
            "nothing was kept; free space and register the model again",
        }
    if isinstance(error, ChildJobFailed):  # made in the child from the original error
        return error.problem
    if isinstance(error, PrecomputeCrashed):
        return {
            "type": "urn:rps:problem:precompute-crashed",
            "title": "Precompute crashed",
            "status": 500,
            "detail": f"{error}: native code failed on this model. The job ran in a process of "
            "its own, so nothing else was affected; the job is not retried",
        }
    if isinstance(error, Interrupt):
        return {
            "type": "urn:rps:problem:precompute-interrupted",
            "title": "Precompute interrupted",
            "status": 503,
            "detail": f"{type(error).__name__}: the job exceeded RPS_JOB_TIME_LIMIT_MS or the worker shut down",
        }
    return {
        "type": "urn:rps:problem:precompute-failed",
        "title": "Precompute failed",
        "status": 500,
        "detail": f"{type(error).__name__}: {error}"[:2000],
    }
