"""Database access of the models domain (add and flush only; the boundary commits)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, delete, func, select, true, update
from sqlalchemy.orm import Session

from app.core.errors import NotFoundError
from models_store import Job, Model, Review, Score, TestPoint, TrainPoint, utcnow

__all__ = [
    "get_tenant_model",
    "add_model_with_job",
    "latest_jobs",
    "list_tenant_models",
    "count_tenant_models",
    "delete_model_rows",
    "test_points_page",
    "count_test_points",
    "mark_enqueued",
]


MODEL_ID_CHARS = 36  # ``Model.id`` holds a UUID


def get_tenant_model(session: Session, model_id: str, *, tenant: str) -> Model:
    """The model ``model_id`` of ``tenant``; another tenant's model is 404 like a missing one.

    An id no model can have (too long, non-ASCII, NUL or other control characters, which
    PostgreSQL refuses as query parameters) is 404 without asking the database.
    """
    possible = len(model_id) <= MODEL_ID_CHARS and model_id.isascii() and model_id.isprintable()
    model = session.get(Model, model_id) if possible else None
    if model is None or model.tenant != tenant:
        raise NotFoundError(f"no model with id {model_id!r}")
    return model


def add_model_with_job(session: Session, model: Model, job: Job) -> None:
    session.add(model)
    session.flush()
    session.add(job)
    session.flush()


def latest_jobs(session: Session, model_ids: list[str]) -> dict[str, Job]:
    """The most recent job of each model."""
    if not model_ids:
        return {}
    jobs = session.scalars(
        select(Job).where(Job.model_id.in_(model_ids)).order_by(Job.created_at)
    ).all()
    return {job.model_id: job for job in jobs}


def list_tenant_models(session: Session, *, tenant: str, limit: int, offset: int) -> list[Model]:
    query = (
        select(Model)
        .where(Model.tenant == tenant)
        .order_by(Model.created_at.desc(), Model.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query).all())


def count_tenant_models(session: Session, *, tenant: str) -> int:
    return (
        session.scalar(select(func.count()).select_from(Model).where(Model.tenant == tenant)) or 0
    )


def delete_model_rows(session: Session, model_id: str) -> None:
    """Delete a model and every row that hangs off it."""
    for table in (Review, Score, TrainPoint, TestPoint, Job):
        session.execute(delete(table).where(table.model_id == model_id))
    session.execute(delete(Model).where(Model.id == model_id))
    session.flush()


def _test_point_filter(
    model_id: str, *, label: int | None, correct: bool | None, test_id: str | None
) -> ColumnElement[bool]:
    """Rows of ``model_id`` with ``label``, predicted right or wrong, with id ``test_id``
    (each only if given)."""
    conditions: list[ColumnElement[bool]] = [TestPoint.model_id == model_id]
    if test_id is not None:
        conditions.append(TestPoint.test_id == test_id)
    if label is not None:
        conditions.append(TestPoint.label == label)
    if correct is not None:
        known = and_(TestPoint.label.is_not(None), TestPoint.predicted_class.is_not(None))
        agrees = TestPoint.label == TestPoint.predicted_class
        conditions.append(and_(known, agrees if correct else ~agrees))
    return and_(true(), *conditions)


def test_points_page(
    session: Session,
    model_id: str,
    *,
    label: int | None,
    correct: bool | None,
    test_id: str | None,
    limit: int,
    offset: int,
) -> list[TestPoint]:
    """Stored test points of ``model_id`` in stored order, filtered."""
    query = (
        select(TestPoint)
        .where(_test_point_filter(model_id, label=label, correct=correct, test_id=test_id))
        .order_by(TestPoint.test_index)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query).all())


def count_test_points(
    session: Session,
    model_id: str,
    *,
    label: int | None,
    correct: bool | None,
    test_id: str | None,
) -> int:
    query = (
        select(func.count())
        .select_from(TestPoint)
        .where(_test_point_filter(model_id, label=label, correct=correct, test_id=test_id))
    )
    return session.scalar(query) or 0


def mark_enqueued(session: Session, job_id: str) -> None:
    """Record that the job's message reached the broker (the outbox sweep skips it)."""
    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=utcnow()))
