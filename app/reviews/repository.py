"""Database access of the reviews domain (add and flush only; the boundary commits)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models_store import Job, Model, Review, TrainPoint

__all__ = ["train_point_by_id", "get_review", "add_review", "model_reviews", "add_model_with_job"]


def train_point_by_id(session: Session, model_id: str, train_id: str) -> TrainPoint | None:
    query = select(TrainPoint).where(
        TrainPoint.model_id == model_id, TrainPoint.train_id == train_id
    )
    return session.scalars(query.limit(1)).first()


def get_review(session: Session, model_id: str, train_index: int) -> Review | None:
    return session.get(Review, (model_id, train_index))


def add_review(session: Session, review: Review) -> None:
    session.add(review)
    session.flush()


def model_reviews(session: Session, model_id: str) -> list[Review]:
    query = select(Review).where(Review.model_id == model_id).order_by(Review.train_index)
    return list(session.scalars(query).all())


def add_model_with_job(session: Session, model: Model, job: Job) -> None:
    session.add(model)
    session.flush()
    session.add(job)
    session.flush()
