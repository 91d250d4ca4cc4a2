"""Rows the query path joins: the returned training points only (never all n)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from app.core.responses import StoredJson
from models_store import TrainPoint

__all__ = ["TrainRow", "train_rows_by_index"]


@dataclass(frozen=True, slots=True)
class TrainRow:
    """What an answer shows of a training point; ``record`` is its stored JSON text."""

    train_id: str
    label: int
    record: StoredJson | None


def train_rows_by_index(session: Session, model_id: str, indices: list[int]) -> dict[int, TrainRow]:
    """The rows of ``indices`` (at most 2·k per answer) of ``model_id``, keyed by train index.

    One statement, plain columns (no ORM objects), and each record as the JSON text the
    database holds, so it is neither parsed nor serialised again.
    """
    if not indices:
        return {}
    query = select(
        TrainPoint.train_index,
        TrainPoint.train_id,
        TrainPoint.label,
        cast(TrainPoint.record, Text),
    ).where(TrainPoint.model_id == model_id, TrainPoint.train_index.in_(indices))
    return {
        index: TrainRow(train_id, label, _stored(record))
        for index, train_id, label, record in session.execute(query)
    }


def _stored(text: str | None) -> StoredJson | None:
    """A JSON null (SQL NULL, or the text ``null``) is None; anything else stays text."""
    if text is None or text == "null":
        return None
    return StoredJson(text)
