"""Routes of the explain domain: ``GET /explain`` (stored test point), ``POST /explain``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.core.responses import json_response
from app.core.deps import ContextDep, ModelDep, SessionDep, TenantDep, get_tenant_model
from app.explain import service
from app.explain.schemas import MAX_TOP_K, ExplainRequest, ExplanationList, ExplanationPublic
from representer import Method

router = APIRouter(prefix="/explain", tags=["explain"])


@router.get("", response_model=ExplanationPublic)
def explain_test_point(
    session: SessionDep,
    model: ModelDep,
    context: ContextDep,
    test_id: str,
    k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = 10,
    method: Method = Method.LJE,
    target: str = "predicted",
) -> Any:
    """Top-k positive and negative representer points of a stored test point."""
    body = service.explain_stored(session, model, context=context, test_id=test_id, k=k, method=method, target=target)
    return json_response(body)


@router.post("", response_model=ExplanationList)
def explain_submitted(session: SessionDep, tenant: TenantDep, context: ContextDep, body: ExplainRequest) -> Any:
    """Explanations of submitted φ rows (or raw XGBoost rows), one per row, in order."""
    model = get_tenant_model(session, body.model_id, tenant=tenant)
    return json_response(service.explain_rows(session, model, body, context=context))
