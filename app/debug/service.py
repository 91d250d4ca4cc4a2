"""Suspicious training points: a page of the self-score ranking."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.debug import repository
from app.debug.schemas import SuspiciousPage, SuspiciousPoint
from models_store import Model
from representer import Method

__all__ = ["suspicious_page"]


def suspicious_page(
    session: Session, model: Model, *, method: Method, limit: int, offset: int
) -> SuspiciousPage:
    """Rank ``offset+1 .. offset+limit`` of the ready ``model``'s most suspicious training points."""
    rows = repository.ranked_points(session, model.id, method.value, limit=limit, offset=offset)
    items = [
        SuspiciousPoint(
            rank=offset + position,
            train_id=point.train_id,
            train_index=point.train_index,
            label=point.label,
            predicted_class=point.predicted_class,
            score=score.score,
            record=point.record,
        )
        for position, (score, point) in enumerate(rows, start=1)
    ]
    return SuspiciousPage(
        model_id=model.id,
        method=method,
        total=repository.count_scores(session, model.id, method.value),
        limit=limit,
        offset=offset,
        items=items,
    )
