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

    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [{"decision": "relabel", "label": 2, "note": "a 7 written like a 2"}]
        },
    )

    decision: Decision
    """keep, relabel (with label) or remove."""
    label: int | None = Field(default=None, description="The right class; relabel only.")
    note: str = Field(default="", max_length=NOTE_MAX_CHARS)
    """Why, for the next person (up to 2000 characters)."""


class ReviewPublic(BaseModel):
    """One review: the point, its registered and its new label, the decision."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    model_id: str
    """The model."""
    train_id: str
    """The training point's id."""
    train_index: int
    """Its row in the training arrays."""
    old_label: int
    """Its registered label."""
    new_label: int | None
    """The label a refit trains with: ``label`` (relabel), ``old_label`` (keep), None (remove)."""
    decision: Decision
    """keep, relabel or remove."""
    note: str
    """The reviewer's note."""
    created_at: datetime
    """When it was first reviewed."""
    time: datetime
    """When the decision was last set."""


class ReviewList(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    model_id: str
    """The model."""
    total: int
    """Reviews in all."""
    items: list[ReviewPublic]
    """Every review."""


class RefitCreate(BaseModel):
    """Optional body of ``POST /models/{model_id}/refit``."""

    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra={"examples": [{"name": "digits-reviewed"}]},
    )

    name: str | None = Field(default=None, max_length=200)
    """Name of the new model (default: derived from the parent's)."""


class RefitPublic(BaseModel):
    """The new model registered by a refit (precomputed like any model; its status at
    ``GET /models/{id}`` gives the test accuracy before and after under ``diagnostics``)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """The new model's id."""
    parent_id: str
    """The model it was refit from."""
    name: str
    """The new model's name."""
    status: str
    """Its status (queued at first)."""
    n_train: int
    """Its training points (removed ones left out)."""
    relabelled: int
    """Points trained with a new label."""
    removed: int
    """Points left out."""
    kept: int
    """Points reviewed and kept."""
