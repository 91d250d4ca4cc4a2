"""API schemas of the models domain: the status body; the spec is ``rps.spec.ModelSpec``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from rps.spec import ModelSpec

__all__ = ["ModelSpec", "ModelPublic", "ModelList", "TestPointPublic", "TestPointPage"]


class ModelPublic(BaseModel):
    """The model status body of docs/api.md, plus ``attempts``, ``job_status``, ``class_names``."""

    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "0b9c6f1e-5d0a-4b8e-9a52-2f7d8c1e4a10",
                    "name": "toy-head",
                    "status": "running",
                    "progress": 0.4,
                    "error": None,
                    "kind": "linear",
                    "num_classes": 3,
                    "feature_dim": 8,
                    "input_dim": None,
                    "n_train": 500,
                    "n_test": 20,
                    "methods": ["lje"],
                    "class_names": None,
                    "created_at": "2026-01-01T12:00:00Z",
                    "ready_at": None,
                    "diagnostics": None,
                    "attempts": 1,
                    "job_status": "running",
                    "version": 0,
                }
            ]
        },
    )
    id: str
    """The model's id."""
    name: str
    """The spec's name."""
    status: str
    """queued, running, ready or failed."""
    progress: float
    """Fraction of the precompute done, 0..1."""
    error: dict[str, Any] | None
    """When failed: the job's problem body."""
    kind: str
    """linear or xgboost."""
    num_classes: int
    """Classes of the head."""
    feature_dim: int | None
    """d, the length of φ(x)."""
    input_dim: int | None = None
    """XGBoost: p, the length of a raw row."""
    n_train: int
    """Training points."""
    n_test: int
    """Stored test points."""
    methods: list[str]
    """The methods precomputed."""
    class_names: list[str] | None = None
    """The spec's class names, if given."""
    created_at: datetime
    """When it was registered."""
    ready_at: datetime | None
    """When it became ready."""
    diagnostics: dict[str, Any] | None
    """Numbers of the precompute (fit quality, timings)."""
    parent_id: str | None = None
    """The model this one was refit from (``POST /models/{id}/refit``), if any."""
    rankings: dict[str, Any] | None = None
    """Label-error rankings of the precompute: name -> {"status": "ready"} or
    {"status": "skipped", "reason": ...} (``/debug/suspicious?method=``)."""
    attempts: int
    """How often the job ran."""
    job_status: str | None
    """The latest job's status."""
    version: int
    """Increases when a new precompute is published."""


class ModelList(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
    items: list[ModelPublic]
    """This page of models."""
    total: int
    """The tenant's models in all."""


class TestPointPublic(BaseModel):
    """One stored test point: its id, label, the head's predicted class and its record."""

    model_config = ConfigDict(use_attribute_docstrings=True)
    __test__ = False  # not a pytest test class

    test_id: str
    """The stored test point's id."""
    test_index: int
    """Its row in the stored test arrays."""
    label: int | None
    """Its label, if stored."""
    predicted_class: int | None
    """None for models precomputed before predicted classes were stored."""
    record: Any = None
    """The record registered with it (any JSON), or null."""


class TestPointPage(BaseModel):
    """A page of ``GET /models/{id}/test-points`` (``total`` counts the filtered points)."""

    model_config = ConfigDict(use_attribute_docstrings=True)
    __test__ = False

    model_id: str
    """The model."""
    total: int
    """Points matching the filters."""
    limit: int
    """Page size asked."""
    offset: int
    """Points skipped."""
    items: list[TestPointPublic]
    """This page of points."""
