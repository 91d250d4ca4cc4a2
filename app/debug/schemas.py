"""API schemas of the debug domain."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from representer import Method

__all__ = ["SuspiciousPoint", "SuspiciousPage"]


class SuspiciousPoint(BaseModel):
    rank: int
    train_id: str
    train_index: int
    label: int
    predicted_class: int
    score: float
    record: Any = None


class SuspiciousPage(BaseModel):
    """One page of training points ranked by self-contribution (docs/math.md §6)."""

    model_id: str
    method: Method
    total: int
    limit: int
    offset: int
    items: list[SuspiciousPoint]
