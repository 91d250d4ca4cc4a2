"""The ranked, paginated query over the scores index (model, method, score)."""

from __future__ import annotations

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session

from models_store import Review, Score, TrainPoint

__all__ = ["ranked_points", "count_scores"]


def _reviewed_filter(query: Select, reviewed: bool | None) -> Select:
    """Only reviewed points (True), only unreviewed ones (False), or all (None)."""
    if reviewed is None:
        return query
    has_review = exists().where(
        Review.model_id == Score.model_id, Review.train_index == Score.train_index
    )
    return query.where(has_review if reviewed else ~has_review)


def ranked_points(
    session: Session,
    model_id: str,
    method: str,
    *,
    limit: int,
    offset: int,
    reviewed: bool | None = None,
) -> list[tuple[Score, TrainPoint]]:
    """Training points of ``model_id`` by descending score under ``method``."""
    query = (
        select(Score, TrainPoint)
        .join(
            TrainPoint,
            (TrainPoint.model_id == Score.model_id) & (TrainPoint.train_index == Score.train_index),
        )
        .where(Score.model_id == model_id, Score.method == method)
    )
    query = (
        _reviewed_filter(query, reviewed)
        .order_by(Score.score.desc(), Score.train_index)
        .limit(limit)
        .offset(offset)
    )
    return [(score, point) for score, point in session.execute(query)]


def count_scores(
    session: Session, model_id: str, method: str, *, reviewed: bool | None = None
) -> int:
    query = (
        select(func.count())
        .select_from(Score)
        .where(Score.model_id == model_id, Score.method == method)
    )
    return session.scalar(_reviewed_filter(query, reviewed)) or 0
