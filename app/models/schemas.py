"""API schemas of the models domain: the registration spec and the status body."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models_store import ModelKind
from representer import (
    DEFAULT_CG_TOLERANCE,
    HessianMode,
    InfluenceConfig,
    L2Config,
    LJEConfig,
    Method,
    WeightLayout,
)

__all__ = [
    "ModelSpec",
    "ModelPublic",
    "ModelList",
    "TestPointPublic",
    "TestPointPage",
    "EmbeddingName",
    "QueueName",
]

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)


class EmbeddingName(str, Enum):
    """How an XGBoost booster becomes features + linear head (docs/math.md §7)."""

    TREE_MARGINS = "tree_margins"
    LEAF_ONEHOT = "leaf_onehot"


class QueueName(str, Enum):
    DEFAULT = "default"
    GPU = "gpu"


HESSIAN_DESCRIPTION = (
    "dense: one (kD)² factor, fastest queries; blocks: per-class factors and PCG on the exact "
    "Hessian at query time (k times less memory and precompute); auto picks (binary: dense)"
)
CG_TOLERANCE_DESCRIPTION = "relative residual at which PCG stops (hessian blocks)"
MEMORY_DESCRIPTION = (
    "lowers the operator's RPS_MEMORY_BUDGET_BYTES for this method (never raises it)"
)


class LJESpec(BaseModel):
    model_config = _STRICT
    lr: float = Field(default=0.01, ge=0)
    damping: float = Field(default=0.0, ge=0)
    weight_layout: WeightLayout = Field(
        default=WeightLayout.AUTO,
        description="kernel: small state, slower queries; materialised: k·n·D floats, queries at one pass; auto picks",
    )
    hessian: HessianMode = Field(default=HessianMode.AUTO, description=HESSIAN_DESCRIPTION)
    cg_tolerance: float = Field(
        default=DEFAULT_CG_TOLERANCE, gt=0, lt=1, description=CG_TOLERANCE_DESCRIPTION
    )
    memory_budget_bytes: int | None = Field(default=None, gt=0, description=MEMORY_DESCRIPTION)

    @model_validator(mode="after")
    def _materialised_needs_dense(self) -> LJESpec:
        if self.hessian is HessianMode.BLOCKS and self.weight_layout is WeightLayout.MATERIALISED:
            raise ValueError("weight_layout 'materialised' needs hessian 'dense' or 'auto'")
        return self

    def to_config(self, *, ceiling: int) -> LJEConfig:
        return LJEConfig(
            lr=self.lr,
            damping=self.damping,
            weight_layout=self.weight_layout,
            hessian=self.hessian,
            cg_tolerance=self.cg_tolerance,
            memory_budget_bytes=min(self.memory_budget_bytes or ceiling, ceiling),
        )


class L2Spec(BaseModel):
    model_config = _STRICT
    lam: float = Field(default=0.003, gt=0, alias="lambda")

    def to_config(self, *, ceiling: int) -> L2Config:
        return L2Config(lam=self.lam)


class InfluenceSpec(BaseModel):
    model_config = _STRICT
    damping: float = Field(default=0.0, ge=0)
    hessian: HessianMode = Field(default=HessianMode.AUTO, description=HESSIAN_DESCRIPTION)
    cg_tolerance: float = Field(
        default=DEFAULT_CG_TOLERANCE, gt=0, lt=1, description=CG_TOLERANCE_DESCRIPTION
    )
    memory_budget_bytes: int | None = Field(default=None, gt=0, description=MEMORY_DESCRIPTION)

    def to_config(self, *, ceiling: int) -> InfluenceConfig:
        return InfluenceConfig(
            damping=self.damping,
            hessian=self.hessian,
            cg_tolerance=self.cg_tolerance,
            memory_budget_bytes=min(self.memory_budget_bytes or ceiling, ceiling),
        )


class XGBoostSpec(BaseModel):
    model_config = _STRICT
    embedding: EmbeddingName = EmbeddingName.TREE_MARGINS


class ModelSpec(BaseModel):
    """The ``spec`` part of ``POST /models`` (docs/api.md); only ``kind`` is required."""

    model_config = _STRICT
    name: str = Field(default="", max_length=200)
    kind: ModelKind
    class_names: list[str] | None = None
    methods: list[Method] = Field(default_factory=lambda: [Method.LJE], min_length=1)
    lje: LJESpec = Field(default_factory=LJESpec)
    l2: L2Spec = Field(default_factory=L2Spec)
    influence: InfluenceSpec = Field(default_factory=InfluenceSpec)
    xgboost: XGBoostSpec = Field(default_factory=XGBoostSpec)
    queue: QueueName = QueueName.DEFAULT

    @field_validator("methods")
    @classmethod
    def _distinct_methods(cls, methods: list[Method]) -> list[Method]:
        if len(set(methods)) != len(methods):
            raise ValueError("methods must be distinct")
        return methods

    def method_config(
        self, method: Method, *, ceiling: int
    ) -> LJEConfig | L2Config | InfluenceConfig:
        """The engine config of ``method`` from this spec, within the operator's ``ceiling``."""
        specs: dict[Method, LJESpec | L2Spec | InfluenceSpec] = {
            Method.LJE: self.lje,
            Method.L2: self.l2,
            Method.INFLUENCE: self.influence,
        }
        return specs[method].to_config(ceiling=ceiling)


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
