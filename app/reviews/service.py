"""Reviews of training points, their export, and refits of a model on the reviewed labels."""

from __future__ import annotations

import csv
import io
import logging
import uuid
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.core.errors import FieldError, InvalidRequestError, NotFoundError
from app.core.transactions import after_commit, on_rollback
from app.reviews import repository
from app.reviews.schemas import (
    Decision,
    RefitCreate,
    RefitPublic,
    ReviewCreate,
    ReviewList,
    ReviewPublic,
)
from models_store import (
    Job,
    Model,
    ModelFiles,
    ModelKind,
    ModelStatus,
    Review,
    TrainPoint,
    utcnow,
)
from rps_server.broker import enqueue_precompute

__all__ = ["put_review", "list_reviews", "reviews_csv", "refit"]

logger = logging.getLogger("rps.app")
CSV_COLUMNS = ("train_id", "old_label", "new_label", "decision", "note", "time")


def _utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back naive; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _public(review: Review) -> ReviewPublic:
    return ReviewPublic(
        model_id=review.model_id,
        train_id=review.train_id,
        train_index=review.train_index,
        old_label=review.old_label,
        new_label=review.new_label,
        decision=Decision(review.decision),
        note=review.note,
        created_at=_utc(review.created_at),
        time=_utc(review.updated_at),
    )


def _new_label(body: ReviewCreate, *, old_label: int, num_classes: int) -> int | None:
    """The label a refit trains with; 422 naming ``label`` when it does not fit the decision."""
    if body.decision is not Decision.RELABEL:
        if body.label is not None:
            raise InvalidRequestError(
                f"label is only taken with decision 'relabel', not {body.decision.value!r}",
                errors=[FieldError("label", "only with decision 'relabel'", "body")],
            )
        return old_label if body.decision is Decision.KEEP else None
    if body.label is None or not 0 <= body.label < num_classes:
        message = f"a class in 0..{num_classes - 1}"
        raise InvalidRequestError(
            f"relabel needs label, {message}; got {body.label!r}",
            errors=[FieldError("label", message, "body")],
        )
    return body.label


def put_review(
    session: Session, model: Model, train_id: str, body: ReviewCreate, *, tenant: str
) -> ReviewPublic:
    """Set the review of ``train_id`` (the same body twice leaves the same review)."""
    point = repository.train_point_by_id(session, model.id, train_id)
    if point is None:
        raise NotFoundError(
            f"model {model.id} has no training point {train_id!r}",
            errors=[FieldError("train_id", "unknown training point", "path")],
        )
    new_label = _new_label(body, old_label=point.label, num_classes=model.num_classes)
    review = repository.get_review(session, model.id, point.train_index)
    now = utcnow()
    if review is None:
        review = Review(
            model_id=model.id,
            train_index=point.train_index,
            tenant=tenant,
            train_id=point.train_id,
            old_label=point.label,
            created_at=now,
        )
    review.new_label, review.decision, review.note = new_label, body.decision.value, body.note
    review.updated_at = now
    repository.add_review(session, review)
    return _public(review)


def list_reviews(session: Session, model: Model) -> ReviewList:
    items = [_public(review) for review in repository.model_reviews(session, model.id)]
    return ReviewList(model_id=model.id, total=len(items), items=items)


def reviews_csv(session: Session, model: Model) -> str:
    """The reviews as CSV: train_id, old_label, new_label, decision, note, time (ISO 8601)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for review in list_reviews(session, model).items:
        writer.writerow(
            [
                review.train_id,
                review.old_label,
                "" if review.new_label is None else review.new_label,
                review.decision.value,
                review.note,
                review.time.isoformat(),
            ]
        )
    return buffer.getvalue()


def _corrected_points(session: Session, model: Model) -> tuple[list[TrainPoint], dict]:
    """The source's training rows and its reviews by train index."""
    points = list(
        session.scalars(
            select(TrainPoint)
            .where(TrainPoint.model_id == model.id)
            .order_by(TrainPoint.train_index)
        ).all()
    )
    reviews = {review.train_index: review for review in repository.model_reviews(session, model.id)}
    return points, reviews


def refit(
    session: Session,
    model: Model,
    body: RefitCreate,
    *,
    tenant: str,
    context: ServiceContext,
) -> RefitPublic:
    """Register a new model over the source's stored features with the reviewed labels.

    Its inputs are the source's published features (for XGBoost: the tree embedding) and
    head, the corrected labels (relabel: the new label; remove: the row is dropped); the
    worker refits the head on them (``representer.logistic``), precomputes it like any
    model and reports the test accuracy before and after.
    """
    points, reviews = _corrected_points(session, model)
    keep = np.array(
        [
            reviews.get(p.train_index) is None
            or reviews[p.train_index].decision != Decision.REMOVE.value
            for p in points
        ]
    )
    labels = np.array(
        [
            reviews[p.train_index].new_label
            if p.train_index in reviews and reviews[p.train_index].new_label is not None
            else p.label
            for p in points
        ],
        dtype=np.int64,
    )[keep]
    counts = {decision: 0 for decision in Decision}
    for review in reviews.values():
        counts[Decision(review.decision)] += 1
    if len(labels) < 2 or len(np.unique(labels)) < 2:
        raise InvalidRequestError(
            "the reviews leave fewer than two training points or a single class to refit on",
            errors=[FieldError("reviews", "too many removed", "body")],
        )
    new_model, job = _new_rows(model, body, n_train=len(labels), tenant=tenant)
    on_rollback(session, lambda: context.store.delete_model(new_model.id))
    try:
        _store_inputs(context, model, new_model.id, points, keep, labels)
    except BaseException:
        context.store.delete_model(new_model.id)
        raise
    repository.add_model_with_job(session, new_model, job)

    def enqueue() -> None:
        try:
            enqueue_precompute(context.broker, job.id, queue=new_model.queue)
        except Exception:  # the job row stays queued; `rps serve` re-enqueues at start
            logger.exception("could not enqueue job %s of model %s", job.id, new_model.id)

    after_commit(session, enqueue)
    return RefitPublic(
        id=new_model.id,
        parent_id=model.id,
        name=new_model.name,
        status=new_model.status,
        n_train=new_model.n_train,
        relabelled=counts[Decision.RELABEL],
        removed=counts[Decision.REMOVE],
        kept=counts[Decision.KEEP],
    )


def _new_rows(source: Model, body: RefitCreate, *, n_train: int, tenant: str) -> tuple[Model, Job]:
    spec = dict(source.spec)
    name = body.name or f"{source.name} (refit)"[:200]
    spec.update(kind=ModelKind.LINEAR.value, name=name)
    model = Model(
        id=str(uuid.uuid4()),
        tenant=tenant,
        name=name,
        kind=ModelKind.LINEAR.value,
        status=ModelStatus.QUEUED.value,
        progress=0.0,
        num_classes=source.num_classes,
        num_outputs=source.num_outputs,
        feature_dim=None,
        input_dim=None,
        n_train=n_train,
        n_test=source.n_test,
        methods=list(source.methods),
        spec=spec,
        queue=source.queue,
        version=0,
        parent_id=source.id,
    )
    return model, Job.queued_for(model.id)


def _store_inputs(
    context: ServiceContext,
    source: Model,
    model_id: str,
    points: list[TrainPoint],
    keep: np.ndarray,
    labels: np.ndarray,
) -> None:
    """The new model's inputs: the source's published features and head, the new labels."""
    store = context.store
    if source.result_dir is None:
        raise NotFoundError(f"model {source.id} has no published result")
    result = ModelFiles.result(source.result_dir)
    inputs = ModelFiles(store, model_id)
    source_inputs = ModelFiles(store, source.id)
    features = store.load_array(result.train_features)  # (n, d) float32, memory-mapped
    if keep.all():
        store.link_or_copy(result.train_features, inputs.input("train_features.npy"))
    else:
        store.save_array(inputs.input("train_features.npy"), np.asarray(features[keep]))
    store.link_or_copy(result.head_weights, inputs.input("weights.npy"))
    store.link_or_copy(result.head_bias, inputs.input("bias.npy"))
    store.save_array(inputs.input("train_labels.npy"), labels)
    kept = [point for point, chosen in zip(points, keep, strict=True) if chosen]
    store.save_json(inputs.input("train_ids.json"), [point.train_id for point in kept])
    store.save_json(inputs.input("train_records.json"), [point.record for point in kept])
    for source_path, name in (
        (result.test_features, "test_features.npy"),
        (source_inputs.input("test_ids.json"), "test_ids.json"),
        (source_inputs.input("test_labels.npy"), "test_labels.npy"),
        (source_inputs.input("test_records.json"), "test_records.json"),
    ):
        if source_path.exists():
            store.link_or_copy(source_path, inputs.input(name))
    if not inputs.input("test_ids.json").exists():
        store.save_json(inputs.input("test_ids.json"), [])
