"""The ranked, paginated query over the scores index (model, method, score)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models_store import Score, TrainPoint

__all__ = ["ranked_points", "count_scores"]


def ranked_points(
    session: Session, model_id: str, method: str, *, limit: int, offset: int
) -> list[tuple[Score, TrainPoint]]:
    """Training points of ``model_id`` by descending self-score under ``method``."""
    query = (
        select(Score, TrainPoint)
        .join(
            TrainPoint,
            (TrainPoint.model_id == Score.model_id) & (TrainPoint.train_index == Score.train_index),
        )
        .where(Score.model_id == model_id, Score.method == method)
        .order_by(Score.score.desc(), Score.train_index)
        .limit(limit)
        .offset(offset)
    )
    return [(score, point) for score, point in session.execute(query)]


def count_scores(session: Session, model_id: str, method: str) -> int:
    query = (
        select(func.count())
        .select_from(Score)
        .where(Score.model_id == model_id, Score.method == method)
    )
    return session.scalar(query) or 0
