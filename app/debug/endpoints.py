"""Route of the debug domain: ``GET /debug/suspicious`` (one thread-pool call per request)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from app.core.deps import OffsetQuery, SessionDep, TenantDep
from app.core.responses import json_response
from app.debug import service
from app.debug.schemas import SuspiciousPage
from representer import Method

router = APIRouter(prefix="/debug", tags=["debug"])


@router.get("/suspicious", response_model=SuspiciousPage)
async def suspicious(
    session: SessionDep,
    tenant: TenantDep,
    model_id: str,
    method: Method = Method.LJE,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: OffsetQuery = 0,
) -> Response:
    """Training points ranked by self-contribution, most suspicious first."""
    page = await run_in_threadpool(
        service.suspicious_page,
        session,
        model_id,
        tenant=tenant,
        method=method,
        limit=limit,
        offset=offset,
    )
    return json_response(page)
