"""SQLAlchemy tables: api keys, models, jobs, and the per-point rows of a ready model.

Tenants are plain names carried by keys and models. Dense arrays live in the artifact
store; here are only the small per-point rows that queries join (ids, labels, records)
and the per-method self-scores that ``/debug/suspicious`` ranks with an index.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rps.spec import ModelKind  # re-exported: the spec's kinds are the stored kinds

__all__ = [
    "Base",
    "ApiKey",
    "Model",
    "Job",
    "TrainPoint",
    "TestPoint",
    "Score",
    "Review",
    "ReviewDecision",
    "ModelStatus",
    "JobStatus",
    "ModelKind",
    "utcnow",
]


def utcnow() -> datetime:
    """Timezone-aware now, for every timestamp column."""
    return datetime.now(UTC)


class ModelStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ReviewDecision(str, Enum):
    KEEP = "keep"
    RELABEL = "relabel"
    REMOVE = "remove"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class ApiKey(Base):
    """An API key, stored as the sha256 of the token; ``prefix`` finds the row."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(200), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    """Set by ``rps keys revoke``; a revoked key is refused (within RPS_KEY_CACHE_TTL_S)."""


class Model(Base):
    """A registered model and its published result (``result_dir``, ``version``)."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=ModelStatus.QUEUED.value)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    num_classes: Mapped[int] = mapped_column(Integer)
    num_outputs: Mapped[int] = mapped_column(Integer)
    feature_dim: Mapped[int | None] = mapped_column(Integer, nullable=True)
    input_dim: Mapped[int | None] = mapped_column(Integer, nullable=True)
    n_train: Mapped[int] = mapped_column(Integer)
    n_test: Mapped[int] = mapped_column(Integer, default=0)
    methods: Mapped[list[Any]] = mapped_column()
    spec: Mapped[dict[str, Any]] = mapped_column()
    queue: Mapped[str] = mapped_column(String(50), default="default")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(nullable=True)
    diagnostics: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    result_dir: Mapped[str | None] = mapped_column(String(500), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    parent_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    """The model this one was refit from on reviewed labels (no foreign key: the lineage
    outlives a deleted source)."""
    rankings: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    """Label-error rankings of the last precompute: name -> {"status": "ready"} or
    {"status": "skipped", "reason": ...}."""


class Job(Base):
    """One precompute job; the truth about its state (messages are delivered at least once)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.QUEUED.value, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(nullable=True)
    """When its message was last sent; NULL: not yet (the broker was down): the sweep sends it."""
    heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)
    """Last sign of life of the worker running it; stale: another worker takes the job over."""

    @classmethod
    def queued_for(cls, model_id: str) -> Job:
        """A new job of ``model_id``, queued and not yet tried (for a new model or a refit)."""
        return cls(
            id=str(uuid.uuid4()),
            model_id=model_id,
            status=JobStatus.QUEUED.value,
            attempts=0,
            progress=0.0,
        )


class TrainPoint(Base):
    """Id, label, record and predicted class of one training point of a ready model."""

    __tablename__ = "train_points"
    # Reviews name a point by its id: (model_id, train_id) is looked up by an index.
    __table_args__ = (Index("ix_train_points_model_train_id", "model_id", "train_id"),)

    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    train_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_id: Mapped[str] = mapped_column(String(200))
    label: Mapped[int] = mapped_column(Integer)
    predicted_class: Mapped[int] = mapped_column(Integer)
    record: Mapped[Any] = mapped_column(JSON, nullable=True)


class TestPoint(Base):
    """One stored test point with its label and predicted class; ``(model_id, test_id)`` is
    unique and indexed."""

    __tablename__ = "test_points"
    __test__ = False  # not a pytest test class
    __table_args__ = (Index("ix_test_points_model_test_id", "model_id", "test_id", unique=True),)

    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    test_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    test_id: Mapped[str] = mapped_column(String(200))
    label: Mapped[int | None] = mapped_column(Integer, nullable=True)
    predicted_class: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The registered head's prediction (None for points stored before it was kept)."""
    record: Mapped[Any] = mapped_column(JSON, nullable=True)


class Score(Base):
    """Score of one training point under one ranking, indexed for ranking.

    ``method`` is an explanation method (self-score, docs/math.md §6) or a label-error ranking
    (``representer.label_errors``); both carry the point's suggested label and
    label-error probability.
    """

    __tablename__ = "scores"
    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    method: Mapped[str] = mapped_column(String(20), primary_key=True)
    train_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    suggested_label: Mapped[int | None] = mapped_column(Integer, nullable=True)
    label_error_probability: Mapped[float | None] = mapped_column(Float, nullable=True)


# Pages of /debug/suspicious walk this index in order (score descending, ties by index).
Index("ix_scores_rank", Score.model_id, Score.method, Score.score.desc(), Score.train_index)


class Review(Base):
    """A person's decision on one training point of a model (one row per point, updated)."""

    __tablename__ = "reviews"

    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    train_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(200), index=True)
    train_id: Mapped[str] = mapped_column(String(200))
    old_label: Mapped[int] = mapped_column(Integer)
    new_label: Mapped[int | None] = mapped_column(Integer, nullable=True)
    decision: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
