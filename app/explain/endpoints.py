"""Routes of the explain domain: ``GET /explain`` (stored test point), ``POST /explain``,
``POST /explain/batch``.

Each runs in ONE thread-pool call per request (session, model lookup, engine, row join,
serialised answer); the event loop only parses the request and sends the bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from app.core.openapi import problem_responses
from app.core.responses import json_response
from app.dependencies import (
    ContextDep,
    ReadyModelQueryDep,
    TenantDep,
    read_only_session,
    ready_model,
)
from app.explain import service
from app.explain.schemas import (
    MAX_TOP_K,
    ExplainBatchRequest,
    ExplainRequest,
    ExplanationList,
    ExplanationPublic,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from models_store import Model

router = APIRouter(prefix="/explain", tags=["explain"])

TARGET_DESCRIPTION = (
    "The class explained: `predicted` (the head's), `label` (the stored label) or a class index."
)


@router.get(
    "",
    response_model=ExplanationPublic,
    summary="Explain a stored test point",
    responses=problem_responses(404, 409, 429),
)
async def explain_test_point(
    context: ContextDep,
    tenant: TenantDep,
    query: ReadyModelQueryDep,
    test_id: Annotated[str, Query(description="The id of a test point stored with the model.")],
    k: Annotated[int, Query(ge=1, le=MAX_TOP_K, description="Training points on each side.")] = 10,
    target: Annotated[str, Query(description=TARGET_DESCRIPTION)] = "predicted",
) -> Response:
    """Top-k positive and negative representer points of a stored test point."""
    method = query.method

    def answer() -> bytes:
        with read_only_session(context) as session:
            model = ready_model(
                session, query.model_id, tenant=tenant, method=method, location="query"
            )
            return service.explain_stored(
                session, model, context=context, test_id=test_id, k=k, method=method, target=target
            )

    return json_response(await run_in_threadpool(answer))


@router.post(
    "",
    response_model=ExplanationList,
    summary="Explain submitted rows",
    responses=problem_responses(404, 409, 429),
)
async def explain_submitted(
    context: ContextDep, tenant: TenantDep, body: ExplainRequest
) -> Response:
    """Explanations of submitted φ rows (or raw XGBoost rows), one per row, in order."""

    return await _answer_for_body(
        context,
        tenant,
        body,
        lambda session, model: service.explain_rows(session, model, body, context=context),
    )


@router.post(
    "/batch",
    response_model=ExplanationList,
    summary="Explain many stored test points",
    responses=problem_responses(404, 409, 429),
)
async def explain_batch(
    context: ContextDep, tenant: TenantDep, body: ExplainBatchRequest
) -> Response:
    """Explanations of up to 1000 stored test points of one model, in the order asked."""

    return await _answer_for_body(
        context,
        tenant,
        body,
        lambda session, model: service.explain_batch(session, model, body, context=context),
    )


async def _answer_for_body(
    context: ContextDep,
    tenant: TenantDep,
    body: ExplainRequest | ExplainBatchRequest,
    explain: Callable[[Session, Model], bytes],
) -> Response:
    """``explain(session, model)`` for the ready model ``body`` names, in one thread-pool
    call (the POST routes' shared body; a missing or unready model is a problem answer)."""

    def answer() -> bytes:
        with read_only_session(context) as session:
            model = ready_model(
                session, body.model_id, tenant=tenant, method=body.method, location="body"
            )
            return explain(session, model)

    return json_response(await run_in_threadpool(answer))
