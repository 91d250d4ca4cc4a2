"""Route of the debug domain: ``GET /debug/suspicious`` (one thread-pool call per request)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from app.core.openapi import problem_responses
from app.core.responses import json_response
from app.debug import service
from app.debug.schemas import SuspiciousPage
from app.dependencies import OffsetQuery, ReadyModelDep, SessionDep

router = APIRouter(prefix="/debug", tags=["debug"])


@router.get(
    "/suspicious",
    response_model=SuspiciousPage,
    summary="Training points most likely mislabelled",
    responses=problem_responses(404, 409),
)
async def suspicious(
    session: SessionDep,
    ready: ReadyModelDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Points per page.")] = 50,
    offset: OffsetQuery = 0,
) -> Response:
    """Training points ranked by self-contribution, most suspicious first."""
    page = await run_in_threadpool(
        service.suspicious_page,
        session,
        ready.model,
        method=ready.method,
        limit=limit,
        offset=offset,
    )
    return json_response(page)
