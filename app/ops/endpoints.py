"""Operations routes: ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.core.errors import DEPENDENCY_RETRY_AFTER_S, FieldError, UnavailableError
from app.core.openapi import problem_responses
from app.dependencies import ContextDep
from app.ops import service

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", responses=problem_responses(503))
def readyz(
    context: ContextDep,
    authorization: Annotated[
        str | None,
        Header(
            description="Optional `Bearer <key>`: with a valid key, a 503 says why each "
            "part fails (the reasons name hosts and paths)."
        ),
    ] = None,
) -> dict[str, object]:
    """Database, broker and artifact store reachable; 503 naming the failing part otherwise.

    Anyone may ask; only a caller with a valid key sees why a part fails (the reasons name
    hosts and paths).
    """
    failures = service.failing_parts(context)
    if failures:
        detailed = context.keys.is_valid(authorization)
        raise UnavailableError(
            "not ready: " + ", ".join(sorted(failures)),
            errors=[
                FieldError(part, reason if detailed else "failing", "dependency")
                for part, reason in sorted(failures.items())
            ],
            extra={"failing": sorted(failures), "retry_after_s": DEPENDENCY_RETRY_AFTER_S},
        )
    return {"status": "ready", "checks": {"database": "ok", "broker": "ok", "artifact_store": "ok"}}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "The metrics in Prometheus text format 0.0.4.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics(context: ContextDep) -> Response:
    """Requests, latencies, the explain batcher, jobs and models, in Prometheus text format."""
    service.refresh_gauges(context)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
