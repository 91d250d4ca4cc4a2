"""API schemas of the explain domain."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from representer import Method

__all__ = [
    "Prediction",
    "Decomposition",
    "RepresenterPoint",
    "Solver",
    "ExplanationPublic",
    "ExplainRequest",
    "ExplanationList",
    "ExplainBatchRequest",
    "MAX_TOP_K",
    "MAX_BATCH_IDS",
    "MAX_ROWS",
]

MAX_TOP_K = 1000
MAX_ROWS = 1000
MAX_BATCH_IDS = 1000


class Prediction(BaseModel):
    logits: list[float]
    probabilities: list[float]
    predicted_class: int


class Decomposition(BaseModel):
    sum_of_contributions: float
    model_output: float
    residual: float


class Solver(BaseModel):
    """How the H⁺ term was solved: ``dense`` (a direct factor; 0 iterations, residual not
    measured, 0.0) or ``pcg`` (block-preconditioned CG, docs/math.md §10)."""

    name: str
    iterations: int
    relative_residual: float


class RepresenterPoint(BaseModel):
    rank: int
    train_id: str
    train_index: int
    label: int
    contribution: float
    record: Any = None


class ExplanationPublic(BaseModel):
    """One explanation (docs/api.md ``GET /explain``)."""

    model_id: str
    test_id: str | None
    method: Method
    target_class: int
    prediction: Prediction
    decomposition: Decomposition
    solver: Solver
    positive: list[RepresenterPoint]
    negative: list[RepresenterPoint]


class ExplainRequest(BaseModel):
    """``POST /explain``: φ(x) rows as ``features``, or raw rows as ``inputs`` (XGBoost)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    model_id: str
    # Strict: numbers only (no "1" strings, no booleans), as in the rows the engine takes.
    features: list[list[StrictFloat]] | None = Field(
        default=None, min_length=1, max_length=MAX_ROWS
    )
    inputs: list[list[StrictFloat]] | None = Field(default=None, min_length=1, max_length=MAX_ROWS)
    k: int = Field(default=10, ge=1, le=MAX_TOP_K)
    method: Method = Method.LJE
    target: StrictStr | StrictInt = "predicted"

    @model_validator(mode="after")
    def _one_of_features_inputs(self) -> ExplainRequest:
        if (self.features is None) == (self.inputs is None):
            raise ValueError(
                "send exactly one of 'features' (φ rows) or 'inputs' (raw rows, XGBoost)"
            )
        return self


class ExplanationList(BaseModel):
    explanations: list[ExplanationPublic]


class ExplainBatchRequest(BaseModel):
    """``POST /explain/batch``: stored test points of one model, answered in order."""

    model_config = ConfigDict(extra="forbid")
    model_id: str
    test_ids: list[StrictStr] = Field(min_length=1, max_length=MAX_BATCH_IDS)
    k: int = Field(default=10, ge=1, le=MAX_TOP_K)
    method: Method = Method.LJE
    target: StrictStr | StrictInt = "predicted"
