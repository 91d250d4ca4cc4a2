"""Operations routes: ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.core.errors import DEPENDENCY_RETRY_AFTER_S, FieldError, UnavailableError
from app.dependencies import ContextDep
from app.ops import service

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(
    context: ContextDep, authorization: Annotated[str | None, Header()] = None
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


@router.get("/metrics")
def metrics(context: ContextDep) -> Response:
    """Prometheus text format."""
    service.refresh_gauges(context)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
