"""API schemas of the debug domain."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from representer import Method

__all__ = ["SuspiciousPoint", "SuspiciousPage"]


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
    """Its self-contribution: how much it explains its own label."""
    record: Any = None
    """The record registered with it (any JSON), or null."""


class SuspiciousPage(BaseModel):
    """One page of training points ranked by self-contribution (docs/math.md §6)."""

    model_config = ConfigDict(use_attribute_docstrings=True)
    model_id: str
    """The model ranked."""
    method: Method
    """The method whose self-contributions rank the points."""
    total: int
    """Training points in the ranking."""
    limit: int
    """Page size asked."""
    offset: int
    """Points skipped."""
    items: list[SuspiciousPoint]
    """This page of the ranking."""
