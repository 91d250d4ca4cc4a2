"""API schemas of the reviews domain."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Decision",
    "ReviewCreate",
    "ReviewPublic",
    "ReviewList",
    "ReviewFormat",
    "RefitCreate",
    "RefitPublic",
]

NOTE_MAX_CHARS = 2000


class Decision(str, Enum):
    """What a person decided about a training point's label."""

    KEEP = "keep"  # the label is right
    RELABEL = "relabel"  # the label is wrong; ``label`` is the right one
    REMOVE = "remove"  # the point should not be trained on


class ReviewFormat(str, Enum):
    JSON = "json"
    CSV = "csv"


class ReviewCreate(BaseModel):
    """Body of ``PUT /models/{model_id}/reviews/{train_id}``."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    label: int | None = Field(default=None, description="The right class; relabel only.")
    note: str = Field(default="", max_length=NOTE_MAX_CHARS)


class ReviewPublic(BaseModel):
    """One review: the point, its registered and its new label, the decision."""

    model_id: str
    train_id: str
    train_index: int
    old_label: int
    new_label: int | None
    """The label a refit trains with: ``label`` (relabel), ``old_label`` (keep), None (remove)."""
    decision: Decision
    note: str
    created_at: datetime
    time: datetime
    """When the decision was last set."""


class ReviewList(BaseModel):
    model_id: str
    total: int
    items: list[ReviewPublic]


class RefitCreate(BaseModel):
    """Optional body of ``POST /models/{model_id}/refit``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)


class RefitPublic(BaseModel):
    """The new model registered by a refit (precomputed like any model; its status at
    ``GET /models/{id}`` gives the test accuracy before and after under ``diagnostics``)."""

    id: str
    parent_id: str
    name: str
    status: str
    n_train: int
    relabelled: int
    removed: int
    kept: int
