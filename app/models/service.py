"""Registration, status, listing and deletion of models."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import numpy as np
from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.core.errors import (
    ConflictError,
    FieldError,
    InsufficientStorageError,
    InvalidRequestError,
)
from app.core.transactions import after_commit, on_rollback
from app.models import repository
from app.models.plans import RegistrationPlan, check_capacity_of_plan, plan_registration
from app.models.schemas import (
    ModelList,
    ModelPublic,
    ModelSpec,
    TestPointPage,
    TestPointPublic,
)
from app.models.uploads import Upload
from app.models.validation import load_json_part
from models_store import ArtifactStore, Job, Model, ModelFiles, ModelStatus, TestPoint
from rps.spec import SpecError
from rps_server.broker import enqueue_precompute

__all__ = [
    "parse_spec",
    "check_free_space",
    "register",
    "to_public",
    "list_models",
    "delete_model",
    "test_points",
]

logger = logging.getLogger(__name__)
TEST_ID_CHARS = 200  # ``TestPoint.test_id`` column width
MAX_NAME_CHARS = 200
"""Longest class name."""
MAX_CLASSES = 10_000
"""Most classes a model may name (boosters are checked against the same bound)."""


def parse_spec(upload: Upload) -> ModelSpec:
    """The ``spec`` part, validated (422 naming ``spec.<field>``)."""
    part = upload.parts.get("spec")
    if part is None:
        raise InvalidRequestError(
            "the part 'spec' is required", errors=[FieldError("spec", "required", "part")]
        )
    raw = load_json_part(part)
    try:
        spec = ModelSpec.from_json(raw)
    except SpecError as error:
        errors = [
            FieldError(f"spec.{path}" if path else "spec", message, "spec")
            for path, message in error.errors
        ]
        raise InvalidRequestError(
            "invalid spec: " + ", ".join(e.field for e in errors), errors=errors
        ) from error
    _check_class_names(spec.class_names)
    return spec


def _check_class_names(names: tuple[str, ...] | None) -> None:
    """At most ``MAX_CLASSES`` names of 1..``MAX_NAME_CHARS`` characters (every listing shows them)."""
    if names is None:
        return
    if len(names) > MAX_CLASSES or any(not 1 <= len(name) <= MAX_NAME_CHARS for name in names):
        message = f"at most {MAX_CLASSES} names of 1..{MAX_NAME_CHARS} characters"
        raise InvalidRequestError(
            f"spec.class_names: {message}",
            errors=[FieldError("spec.class_names", message, "spec")],
        )


def check_free_space(context: ServiceContext) -> None:
    """507 before reading an upload when the store is below ``RPS_MIN_FREE_DISK_MB``."""
    minimum = context.settings.min_free_disk_mb * 1024**2
    if minimum == 0:
        return
    free = context.store.free_bytes()
    if free < minimum:
        raise InsufficientStorageError(
            f"the artifact store has {free // 1024**2} MiB free, below RPS_MIN_FREE_DISK_MB="
            f"{context.settings.min_free_disk_mb}; nothing was stored",
            errors=[FieldError("artifact_store", f"{free} bytes free", "storage")],
        )


def _store_inputs(store: ArtifactStore, model_id: str, plan: RegistrationPlan) -> None:
    inputs = ModelFiles(store, model_id).inputs
    for stored in plan.files:
        if stored.dtype is None:
            store.move_in(stored.source, inputs / stored.name)
            continue
        array = np.load(stored.source, mmap_mode="r", allow_pickle=False)
        if array.dtype == np.dtype(stored.dtype):
            store.move_in(stored.source, inputs / stored.name)
        else:
            store.save_array(inputs / stored.name, np.asarray(array, dtype=stored.dtype))
    store.save_json(inputs / "train_ids.json", plan.train_ids)
    store.save_json(inputs / "test_ids.json", plan.test_ids)
    if plan.train_records is not None:
        store.save_json(inputs / "train_records.json", plan.train_records)
    if plan.test_records is not None:
        store.save_json(inputs / "test_records.json", plan.test_records)


def _new_rows(plan: RegistrationPlan, *, tenant: str) -> tuple[Model, Job]:
    spec = plan.spec
    model = Model(
        id=str(uuid.uuid4()),
        tenant=tenant,
        name=spec.name or f"{spec.kind.value}-model",
        kind=spec.kind.value,
        status=ModelStatus.QUEUED.value,
        progress=0.0,
        num_classes=plan.num_classes,
        num_outputs=plan.num_outputs,
        feature_dim=plan.feature_dim,
        input_dim=plan.input_dim,
        n_train=plan.n_train,
        n_test=plan.n_test,
        methods=[method.value for method in spec.methods],
        spec=spec.to_json(),
        queue=spec.queue.value,
        version=0,
    )
    return model, Job.queued_for(model.id)


def register(
    session: Session, upload: Upload, *, tenant: str, context: ServiceContext
) -> ModelPublic:
    """Validate ``upload``, store its files, add the model and its job; enqueue after commit."""
    plan = plan_registration(
        upload, parse_spec(upload), booster_limits=context.settings.booster_limits
    )
    check_capacity_of_plan(plan, ceiling=context.settings.memory_budget_bytes)
    model, job = _new_rows(plan, tenant=tenant)
    on_rollback(session, lambda: context.store.delete_model(model.id))
    try:
        _store_inputs(context.store, model.id, plan)
    except BaseException:
        context.store.delete_model(model.id)
        raise
    repository.add_model_with_job(session, model, job)

    def enqueue() -> None:
        try:
            enqueue_precompute(context.broker, job.id, queue=model.queue)
        except Exception as error:  # the job stays queued and unsent: the workers' sweep sends it
            logger.warning(
                "model %s registered: job %s stored but not sent (%s); the job sweep will send it",
                model.id,
                job.id,
                error,
            )
            return
        logger.info("model %s registered: job %s queued on %r", model.id, job.id, model.queue)
        try:
            with context.sessions() as sent, sent.begin():
                repository.mark_enqueued(sent, job.id)
        except Exception as error:  # the sweep may send it again: a duplicate is skipped
            logger.warning("job %s: could not record that it was sent: %s", job.id, error)

    after_commit(session, enqueue)
    return to_public(model, job)


def _utc(moment: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive; they were written in UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def to_public(model: Model, job: Job | None) -> ModelPublic:
    """The status body of ``model`` with its latest job."""
    return ModelPublic(
        id=model.id,
        name=model.name,
        status=model.status,
        progress=model.progress,
        error=model.error,
        kind=model.kind,
        num_classes=model.num_classes,
        feature_dim=model.feature_dim,
        input_dim=model.input_dim,
        n_train=model.n_train,
        n_test=model.n_test,
        methods=list(model.methods),
        class_names=model.spec.get("class_names"),
        created_at=_utc(model.created_at),
        ready_at=_utc(model.ready_at),
        diagnostics=model.diagnostics,
        rankings=model.rankings,
        parent_id=model.parent_id,
        attempts=job.attempts if job else 0,
        job_status=job.status if job else None,
        version=model.version,
    )


def get_model_public(session: Session, model: Model) -> ModelPublic:
    return to_public(model, repository.latest_jobs(session, [model.id]).get(model.id))


def list_models(session: Session, *, tenant: str, limit: int, offset: int) -> ModelList:
    models = repository.list_tenant_models(session, tenant=tenant, limit=limit, offset=offset)
    jobs = repository.latest_jobs(session, [model.id for model in models])
    return ModelList(
        items=[to_public(model, jobs.get(model.id)) for model in models],
        total=repository.count_tenant_models(session, tenant=tenant),
    )


def delete_model(session: Session, model: Model, *, context: ServiceContext) -> None:
    """Delete the model's rows and files, or neither.

    The folder is moved aside first (one rename): if the store refuses, 507 and the rows
    stay. If the deletion then fails to commit, the folder moves back. Once it committed,
    the moved folder, the loaded copy and the cached explanations go.
    """
    model_id = model.id
    repository.delete_model_rows(session, model_id)
    try:
        retired = context.store.retire_model(model_id)
    except OSError as error:
        raise InsufficientStorageError(
            f"could not remove the files of model {model_id} ({error.strerror or error}); "
            "the model is kept",
            errors=[FieldError("artifact_store", str(error.strerror or error), "storage")],
        ) from error
    if retired is not None:
        on_rollback(session, lambda: context.store.restore_model(model_id, retired))

    def remove_files() -> None:
        context.models.forget(model_id)
        if retired is not None:
            context.store.purge(retired)
        if context.results is not None:
            context.results.forget_model(model_id)

    after_commit(session, remove_files)


def _test_point_public(point: TestPoint) -> TestPointPublic:
    return TestPointPublic(
        test_id=point.test_id,
        test_index=point.test_index,
        label=point.label,
        predicted_class=point.predicted_class,
        record=point.record,
    )


def test_points(
    session: Session,
    model: Model,
    *,
    label: int | None,
    correct: bool | None,
    test_id: str | None = None,
    limit: int,
    offset: int,
) -> TestPointPage:
    """A page of the ready ``model``'s stored test points, filtered by label and by whether
    the head predicted them right (points without a label or prediction match neither), and
    to the one point ``test_id`` when given.

    Raises 409 with the model's status when it is not ready (its points are stored at the
    end of the precompute) and 422 naming ``label`` when it is not a class index.
    """
    if model.status != ModelStatus.READY.value:
        public = get_model_public(session, model).model_dump(mode="json")
        raise ConflictError(
            f"model {model.id} is {model.status}, not ready: its test points are stored "
            "when the precompute finishes",
            extra={"model_status": model.status, "model": public},
        )
    if test_id is not None and not (test_id.isprintable() and len(test_id) <= TEST_ID_CHARS):
        test_id = ""  # no stored id can match (and PostgreSQL refuses NUL parameters)
    if label is not None and not 0 <= label < model.num_classes:
        raise InvalidRequestError(
            f"label must be a class index in 0..{model.num_classes - 1}, got {label}",
            errors=[FieldError("label", f"not in 0..{model.num_classes - 1}", "query")],
        )
    points = repository.test_points_page(
        session,
        model.id,
        label=label,
        correct=correct,
        test_id=test_id,
        limit=limit,
        offset=offset,
    )
    return TestPointPage(
        model_id=model.id,
        total=repository.count_test_points(
            session, model.id, label=label, correct=correct, test_id=test_id
        ),
        limit=limit,
        offset=offset,
        items=[_test_point_public(point) for point in points],
    )
