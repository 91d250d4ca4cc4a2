"""Routes of the reviews domain: set and list reviews of a model's training points, refit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from app.core.openapi import problem_responses
from app.dependencies import ContextDep, SessionDep, TenantDep, ready_any_method
from app.reviews import service
from app.reviews.schemas import (
    RefitCreate,
    RefitPublic,
    ReviewCreate,
    ReviewFormat,
    ReviewList,
    ReviewPublic,
)

router = APIRouter(prefix="/models", tags=["reviews"])


ModelIdPath = Annotated[str, Path(description="The model's id (from POST /models).")]


@router.put(
    "/{model_id}/reviews/{train_id}",
    response_model=ReviewPublic,
    summary="Review a training point's label",
    responses=problem_responses(404, 409),
)
async def put_review(
    session: SessionDep,
    tenant: TenantDep,
    model_id: ModelIdPath,
    train_id: Annotated[str, Path(description="The training point's id.")],
    body: ReviewCreate,
) -> ReviewPublic:
    """Keep, relabel or remove one training point (setting it again replaces the review)."""

    def put() -> ReviewPublic:
        model = ready_any_method(session, model_id, tenant=tenant)
        return service.put_review(session, model, train_id, body, tenant=tenant)

    return await run_in_threadpool(put)


@router.get(
    "/{model_id}/reviews",
    response_model=ReviewList,
    summary="A model's reviews",
    responses={200: {"content": {"text/csv": {}}}, **problem_responses(404, 409)},
)
async def list_reviews(
    session: SessionDep,
    tenant: TenantDep,
    model_id: ModelIdPath,
    format: Annotated[ReviewFormat, Query(description="json or csv")] = ReviewFormat.JSON,
) -> Response | ReviewList:
    """Every review of the model: train_id, old label, new label, decision, note, time."""

    def load() -> ReviewList | str:
        model = ready_any_method(session, model_id, tenant=tenant)
        if format is ReviewFormat.CSV:
            return service.reviews_csv(session, model)
        return service.list_reviews(session, model)

    answer = await run_in_threadpool(load)
    if isinstance(answer, str):
        return Response(answer, media_type="text/csv")
    return answer


@router.post(
    "/{model_id}/refit",
    status_code=202,
    response_model=RefitPublic,
    summary="Refit on the reviewed labels",
    responses=problem_responses(404, 409),
)
async def refit(
    response: Response,
    session: SessionDep,
    tenant: TenantDep,
    context: ContextDep,
    model_id: ModelIdPath,
    body: Annotated[RefitCreate | None, Body()] = None,
) -> RefitPublic:
    """Register a new model whose head is refit on the reviewed labels (202, like POST /models)."""

    def register() -> RefitPublic:
        model = ready_any_method(session, model_id, tenant=tenant)
        return service.refit(session, model, body or RefitCreate(), tenant=tenant, context=context)

    refitted = await run_in_threadpool(register)
    response.headers["Location"] = f"/models/{refitted.id}"
    return refitted
