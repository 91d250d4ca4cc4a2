"""Route of the debug domain: ``GET /debug/suspicious`` (one thread-pool call per request)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from app.core.openapi import problem_responses
from app.core.responses import json_response
from app.debug import service
from app.debug.schemas import Ranking, SuspiciousPage
from app.dependencies import OffsetQuery, SessionDep, TenantDep, ready_any_method

router = APIRouter(prefix="/debug", tags=["debug"])


@router.get(
    "/suspicious",
    response_model=SuspiciousPage,
    summary="Training points most likely mislabelled",
    responses=problem_responses(404, 409),
)
async def suspicious(
    session: SessionDep,
    tenant: TenantDep,
    model_id: Annotated[str, Query(description="The model's id (from POST /models).")],
    method: Annotated[
        Ranking | None, Query(description="Omitted: the default label-error ranking.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Points per page.")] = 50,
    offset: OffsetQuery = 0,
    reviewed: Annotated[
        bool | None,
        Query(description="false: hide reviewed points; true: only reviewed ones; omitted: all."),
    ] = None,
) -> Response:
    """Training points most likely mislabelled first, under ``method`` (named in the answer)."""

    def page() -> SuspiciousPage:
        model = ready_any_method(session, model_id, tenant=tenant)
        return service.suspicious_page(
            session, model, method=method, limit=limit, offset=offset, reviewed=reviewed
        )

    return json_response(await run_in_threadpool(page))
