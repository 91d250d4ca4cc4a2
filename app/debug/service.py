"""Suspicious training points: a page of one ranking (a method's self-scores or a
label-error ranking), the default being the best label ranking the model has."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.core.errors import FieldError, InvalidRequestError
from app.debug import repository
from app.debug.schemas import Ranking, SuspiciousPage, SuspiciousPoint
from models_store import Model
from representer.label_errors import LabelRanking, choose_ranking

__all__ = ["resolve_ranking", "suspicious_page"]

LABEL_RANKINGS = frozenset(ranking.value for ranking in LabelRanking)


def _ready_label_rankings(model: Model) -> set[str]:
    return {
        name
        for name, state in (model.rankings or {}).items()
        if name in LABEL_RANKINGS and state.get("status") == "ready"
    }


def resolve_ranking(model: Model, method: Ranking | None) -> Ranking:
    """``method``, checked against what the model holds, or the default when omitted.

    Raises a 422 naming ``method`` when it was not precomputed (with the stated reason
    for a skipped label ranking).
    """
    ready = _ready_label_rankings(model)
    if method is None:
        if ready:
            return Ranking(choose_ranking(ready).value)
        return Ranking(model.methods[0])
    if method.value in LABEL_RANKINGS:
        if method.value in ready:
            return method
        state = (model.rankings or {}).get(method.value) or {}
        reason = state.get("reason", "the model was precomputed before label rankings existed")
        raise InvalidRequestError(
            f"ranking {method.value!r} is not available for this model: {reason}",
            errors=[FieldError("method", reason, "query")],
        )
    if method.value not in model.methods:
        raise InvalidRequestError(
            f"method {method.value!r} was not precomputed for this model (methods: {model.methods})",
            errors=[FieldError("method", f"not one of {model.methods}", "query")],
        )
    return method


def suspicious_page(
    session: Session,
    model: Model,
    *,
    method: Ranking | None,
    limit: int,
    offset: int,
    reviewed: bool | None = None,
) -> SuspiciousPage:
    """Rank ``offset+1 .. offset+limit`` of the ready ``model``'s most suspicious training
    points; ``reviewed`` False hides reviewed points (ranks count the points shown)."""
    ranking = resolve_ranking(model, method)
    rows = repository.ranked_points(
        session, model.id, ranking.value, limit=limit, offset=offset, reviewed=reviewed
    )
    items = [
        SuspiciousPoint(
            rank=offset + position,
            train_id=point.train_id,
            train_index=point.train_index,
            label=point.label,
            predicted_class=point.predicted_class,
            score=score.score,
            suggested_label=score.suggested_label,
            label_error_probability=score.label_error_probability,
            record=point.record,
        )
        for position, (score, point) in enumerate(rows, start=1)
    ]
    return SuspiciousPage(
        model_id=model.id,
        method=ranking,
        total=repository.count_scores(session, model.id, ranking.value, reviewed=reviewed),
        limit=limit,
        offset=offset,
        items=items,
    )
