"""API schemas of the debug domain."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
    ADAPTIVE = "adaptive"


class SuspiciousPoint(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
    rank: int
    """1 for the most suspicious point."""
    train_id: str
    """The training point's id."""
    train_index: int
    """Its row in the training arrays."""
    label: int
    """Its training label."""
    predicted_class: int
    """The class the head predicts for it."""
    score: float
    """The ranking's raw value (larger = more suspicious)."""
    suggested_label: int | None = None
    """The most probable class other than ``label`` (None for models precomputed before
    label rankings existed)."""
    label_error_probability: float | None = Field(default=None, ge=0.0, le=1.0)
    """Calibrated probability that ``label`` is wrong (see representer.label_errors)."""
    record: Any = None
    """The record registered with it (any JSON), or null."""


class SuspiciousPage(BaseModel):
    """One page of training points, most suspicious first, under ``method``."""

    model_config = ConfigDict(use_attribute_docstrings=True)
    model_id: str
    """The model ranked."""
    method: Ranking
    """The ranking used (a method's self-contribution or a label-error ranking)."""
    total: int
    """Training points in the ranking."""
    limit: int
    """Page size asked."""
    offset: int
    """Points skipped."""
    items: list[SuspiciousPoint]
    """This page of the ranking."""
