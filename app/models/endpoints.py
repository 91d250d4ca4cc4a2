"""Routes of the models domain: register, status, list, delete, stored test points."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.dependencies import ContextDep, ModelDep, OffsetQuery, SessionDep, TenantDep
from app.models import service
from app.models.schemas import ModelList, ModelPublic, TestPointPage
from app.models.uploads import Deadline, PartBudget, receive_multipart

router = APIRouter(prefix="/models", tags=["models"])


@router.post("", status_code=202, response_model=ModelPublic)
async def register_model(
    request: Request,
    response: Response,
    session: SessionDep,
    tenant: TenantDep,
    context: ContextDep,
) -> ModelPublic:
    """Register a model from multipart parts (docs/api.md); 202 with its status."""
    settings = context.settings
    await run_in_threadpool(service.check_free_space, context)
    with context.upload_slots.hold():
        upload = await receive_multipart(
            request.stream(),
            request.headers.get("content-type"),
            tmp_root=settings.upload_tmp_dir,
            budget=PartBudget(
                max_part_bytes=settings.max_upload_bytes,
                max_json_part_bytes=settings.max_json_part_bytes,
                max_spec_bytes=settings.max_spec_bytes,
                max_parts=settings.max_multipart_parts,
            ),
            deadline=Deadline(settings.upload_timeout_s, settings.upload_idle_timeout_s),
        )
        try:
            model = await run_in_threadpool(
                service.register, session, upload, tenant=tenant, context=context
            )
        finally:
            upload.close()
    response.headers["Location"] = f"/models/{model.id}"
    return model


@router.get("", response_model=ModelList)
def list_models(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: OffsetQuery = 0,
) -> ModelList:
    return service.list_models(session, tenant=tenant, limit=limit, offset=offset)


@router.get("/{model_id}", response_model=ModelPublic)
def get_model(session: SessionDep, model: ModelDep) -> ModelPublic:
    return service.get_model_public(session, model)


@router.delete("/{model_id}", status_code=204)
def delete_model(session: SessionDep, model: ModelDep, context: ContextDep) -> Response:
    service.delete_model(session, model, context=context)
    return Response(status_code=204)


@router.get("/{model_id}/test-points", response_model=TestPointPage)
def list_test_points(
    session: SessionDep,
    model: ModelDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: OffsetQuery = 0,
    label: Annotated[int | None, Query(description="Only points with this label.")] = None,
    correct: Annotated[
        bool | None, Query(description="Only points the head predicts right (true) or wrong.")
    ] = None,
    test_id: Annotated[str | None, Query(description="Only the point with this id.")] = None,
) -> TestPointPage:
    """The model's stored test points: id, label, the head's predicted class, record."""
    return service.test_points(
        session,
        model,
        label=label,
        correct=correct,
        test_id=test_id,
        limit=limit,
        offset=offset,
    )
