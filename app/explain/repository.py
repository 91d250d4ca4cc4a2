"""Rows the query path joins: the returned training points only (never all n)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models_store import TrainPoint

__all__ = ["train_points_by_index"]


def train_points_by_index(
    session: Session, model_id: str, indices: list[int]
) -> dict[int, TrainPoint]:
    """The rows of ``indices`` (at most 2·k) of ``model_id``, keyed by train index."""
    if not indices:
        return {}
    query = select(TrainPoint).where(
        TrainPoint.model_id == model_id, TrainPoint.train_index.in_(indices)
    )
    return {row.train_index: row for row in session.scalars(query)}
