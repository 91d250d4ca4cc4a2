"""API schemas of the models domain: the status body; the spec is ``rps.spec.ModelSpec``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from rps.spec import ModelSpec

__all__ = ["ModelSpec", "ModelPublic", "ModelList"]


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
    attempts: int
    job_status: str | None
    version: int


class ModelList(BaseModel):
    items: list[ModelPublic]
    total: int
