"""API schemas of the debug domain."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["Ranking", "SuspiciousPoint", "SuspiciousPage"]


class Ranking(str, Enum):
    """What ``/debug/suspicious`` ranks by: a method's self-contribution (docs/math.md §6) or a
    label-error ranking (``representer.label_errors``)."""

    LJE = "lje"
    L2 = "l2"
    INFLUENCE = "influence"
    CONFIDENCE = "confidence"
    CONFIDENCE_OOF = "confidence_oof"
    CLEANLAB = "cleanlab"
    FUSION = "fusion"


class SuspiciousPoint(BaseModel):
    rank: int
    train_id: str
    train_index: int
    label: int
    predicted_class: int
    score: float
    """The ranking's raw value (larger = more suspicious)."""
    suggested_label: int | None = None
    """The most probable class other than ``label`` (None for models precomputed before
    label rankings existed)."""
    label_error_probability: float | None = Field(default=None, ge=0.0, le=1.0)
    """Calibrated probability that ``label`` is wrong (see representer.label_errors)."""
    record: Any = None


class SuspiciousPage(BaseModel):
    """One page of training points, most suspicious first, under ``method``."""

    model_id: str
    method: Ranking
    total: int
    limit: int
    offset: int
    items: list[SuspiciousPoint]
