"""Route of the debug domain: ``GET /debug/suspicious``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.core.responses import json_response
from app.core.deps import ModelDep, SessionDep
from app.debug import service
from app.debug.schemas import SuspiciousPage
from representer import Method

router = APIRouter(prefix="/debug", tags=["debug"])


@router.get("/suspicious", response_model=SuspiciousPage)
def suspicious(
    session: SessionDep,
    model: ModelDep,
    method: Method = Method.LJE,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Training points ranked by self-contribution, most suspicious first."""
    return json_response(service.suspicious_page(session, model, method=method, limit=limit, offset=offset))
