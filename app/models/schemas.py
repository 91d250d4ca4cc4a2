"""API schemas of the models domain: the status body; the spec is ``rps.spec.ModelSpec``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from rps.spec import ModelSpec

__all__ = ["ModelSpec", "ModelPublic", "ModelList", "TestPointPublic", "TestPointPage"]


class ModelPublic(BaseModel):
    """The model status body of docs/api.md, plus ``attempts``, ``job_status``, ``class_names``."""

    id: str
    name: str
    status: str
    progress: float
    error: dict[str, Any] | None
    kind: str
    num_classes: int
    feature_dim: int | None
    input_dim: int | None = None
    n_train: int
    n_test: int
    methods: list[str]
    class_names: list[str] | None = None
    created_at: datetime
    ready_at: datetime | None
    diagnostics: dict[str, Any] | None
    parent_id: str | None = None
    """The model this one was refit from (``POST /models/{id}/refit``), if any."""
    rankings: dict[str, Any] | None = None
    """Label-error rankings of the precompute: name -> {"status": "ready"} or
    {"status": "skipped", "reason": ...} (``/debug/suspicious?method=``)."""
    attempts: int
    job_status: str | None
    version: int


class ModelList(BaseModel):
    items: list[ModelPublic]
    total: int


class TestPointPublic(BaseModel):
    """One stored test point: its id, label, the head's predicted class and its record."""

    __test__ = False  # not a pytest test class

    test_id: str
    test_index: int
    label: int | None
    predicted_class: int | None
    """None for models precomputed before predicted classes were stored."""
    record: Any = None


class TestPointPage(BaseModel):
    """A page of ``GET /models/{id}/test-points`` (``total`` counts the filtered points)."""

    __test__ = False

    model_id: str
    total: int
    limit: int
    offset: int
    items: list[TestPointPublic]
