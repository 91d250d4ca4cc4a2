"""Routes of the models domain: register, status, list, delete, stored test points."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.core.openapi import problem_responses
from app.dependencies import ContextDep, ModelDep, OffsetQuery, SessionDep, TenantDep
from app.models import service
from app.models.schemas import ModelList, ModelPublic, TestPointPage
from app.models.uploads import Deadline, PartBudget, receive_multipart

router = APIRouter(prefix="/models", tags=["models"])

_NPY = "a .npy file (numpy.save, no pickles)"


def _file(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "binary", "description": description}


def _json_array(description: str) -> dict[str, Any]:
    return {"type": "array", "description": description}


REGISTER_BODY: dict[str, Any] = {
    "required": True,
    "description": "One part per array or file; `spec` and `train_labels` always, then the "
    "parts of the spec's `kind`: `weights` + `train_features` (linear) or `booster` + "
    "`train_inputs` (xgboost).",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["spec", "train_labels"],
                "properties": {
                    "spec": {
                        "$ref": "#/components/schemas/ModelSpec",
                        "description": "The model spec, as JSON; only `kind` is required.",
                    },
                    "weights": _file(f"linear: (k, d) float head weights, {_NPY}"),
                    "bias": _file(f"linear: (k,) float head bias (default zeros), {_NPY}"),
                    "train_features": _file(f"linear: (n, d) float φ(x) rows, {_NPY}"),
                    "test_features": _file(f"linear: (m, d) float stored test rows, {_NPY}"),
                    "booster": _file(
                        "xgboost: the booster saved as .json or .ubj (never a pickle)"
                    ),
                    "train_inputs": _file(f"xgboost: (n, p) float raw training rows, {_NPY}"),
                    "test_inputs": _file(f"xgboost: (m, p) float raw stored test rows, {_NPY}"),
                    "train_labels": _file(f"(n,) integer labels in 0..num_classes-1, {_NPY}"),
                    "test_labels": _file(f"(m,) integer labels of the stored test rows, {_NPY}"),
                    "train_ids": _json_array('n distinct strings; default "0".."n-1"'),
                    "train_records": _json_array("n JSON values shown beside each point"),
                    "test_ids": _json_array("m distinct strings for the stored test rows"),
                    "test_records": _json_array("m JSON values for the stored test rows"),
                },
            },
            "encoding": {
                name: {"contentType": "application/json"}
                for name in ("spec", "train_ids", "train_records", "test_ids", "test_records")
            },
        }
    },
}


@router.post(
    "",
    status_code=202,
    response_model=ModelPublic,
    summary="Register a model",
    openapi_extra={"requestBody": REGISTER_BODY},
    responses={
        202: {"description": "Stored and queued; `Location` is the model's URL."},
        **problem_responses(413, 415),
    },
)
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


@router.get("", response_model=ModelList, summary="List the tenant's models")
def list_models(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Models per page.")] = 100,
    offset: OffsetQuery = 0,
) -> ModelList:
    """A page of the tenant's models, newest first, and how many there are in all."""
    return service.list_models(session, tenant=tenant, limit=limit, offset=offset)


@router.get(
    "/{model_id}",
    response_model=ModelPublic,
    summary="A model's status",
    responses=problem_responses(404),
)
def get_model(session: SessionDep, model: ModelDep) -> ModelPublic:
    """The model's status body: queued, running (with progress), ready or failed (with the
    recorded problem)."""
    return service.get_model_public(session, model)


@router.delete(
    "/{model_id}",
    status_code=204,
    summary="Delete a model",
    responses={204: {"description": "Deleted."}, **problem_responses(404)},
)
def delete_model(session: SessionDep, model: ModelDep, context: ContextDep) -> Response:
    """Remove the model, its rows and its files."""
    service.delete_model(session, model, context=context)
    return Response(status_code=204)


@router.get(
    "/{model_id}/test-points",
    response_model=TestPointPage,
    summary="A model's stored test points",
    responses=problem_responses(404, 409),
)
def list_test_points(
    session: SessionDep,
    model: ModelDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Points per page.")] = 50,
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
