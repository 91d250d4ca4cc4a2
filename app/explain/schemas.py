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
    model_config = ConfigDict(use_attribute_docstrings=True)
    logits: list[float]
    """The head's outputs z(x), one per output (one for a binary head)."""
    probabilities: list[float]
    """Class probabilities (softmax, or sigmoid for a binary head)."""
    predicted_class: int
    """The class with the highest probability."""


class Decomposition(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
    sum_of_contributions: float
    """Σ of every training point's contribution to the target class."""
    model_output: float
    """The head's output for the target class that the contributions explain."""
    residual: float
    """model_output − sum_of_contributions: what the representer points leave unexplained."""


class Solver(BaseModel):
    """How the H⁺ term was solved: ``dense`` (a direct factor; 0 iterations, residual not
    measured, 0.0) or ``pcg`` (block-preconditioned CG, docs/math.md §10)."""

    model_config = ConfigDict(use_attribute_docstrings=True)
    name: str
    """dense or pcg."""
    iterations: int
    """CG iterations (0 for dense)."""
    relative_residual: float
    """‖b − Hx‖/‖b‖ at the end (0.0 for dense: not measured)."""


class RepresenterPoint(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
    rank: int
    """1 for the strongest point of its side."""
    train_id: str
    """The training point's id."""
    train_index: int
    """Its row in the training arrays."""
    label: int
    """Its training label."""
    contribution: float
    """Its signed contribution to the target class's output."""
    record: Any = None
    """The record registered with it (any JSON), or null."""


class ExplanationPublic(BaseModel):
    """One explanation (docs/api.md ``GET /explain``)."""

    model_config = ConfigDict(use_attribute_docstrings=True)
    model_id: str
    """The model explained."""
    test_id: str | None
    """The stored test point's id; null for submitted rows."""
    method: Method
    """The method that produced the contributions."""
    target_class: int
    """The class whose output is explained."""
    prediction: Prediction
    """What the head predicts for the point."""
    decomposition: Decomposition
    """The output as the sum of contributions plus a residual."""
    solver: Solver
    """How the Hessian term was solved."""
    positive: list[RepresenterPoint]
    """The k training points pushing most toward the target class, strongest first."""
    negative: list[RepresenterPoint]
    """The k training points pushing most against it, strongest first."""


class ExplainRequest(BaseModel):
    """``POST /explain``: φ(x) rows as ``features``, or raw rows as ``inputs`` (XGBoost)."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [
                {"model_id": "0b9c…", "features": [[0.1, -1.2, 0.4]], "k": 5, "method": "lje"}
            ]
        },
    )
    model_id: str
    """The model to explain with."""
    # Strict: numbers only (no "1" strings, no booleans), as in the rows the engine takes.
    features: list[list[StrictFloat]] | None = Field(
        default=None, min_length=1, max_length=MAX_ROWS
    )
    """Linear models: φ(x) rows, shape (m, d)."""
    inputs: list[list[StrictFloat]] | None = Field(default=None, min_length=1, max_length=MAX_ROWS)
    """XGBoost models: raw rows, shape (m, p)."""
    k: int = Field(default=10, ge=1, le=MAX_TOP_K)
    """Training points on each side."""
    method: Method = Method.LJE
    """A method the model was registered with."""
    target: StrictStr | StrictInt = "predicted"
    """predicted, label or a class index."""

    @model_validator(mode="after")
    def _one_of_features_inputs(self) -> ExplainRequest:
        if (self.features is None) == (self.inputs is None):
            raise ValueError(
                "send exactly one of 'features' (φ rows) or 'inputs' (raw rows, XGBoost)"
            )
        return self


class ExplanationList(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
    explanations: list[ExplanationPublic]
    """One explanation per row or test id, in the order asked."""


class ExplainBatchRequest(BaseModel):
    """``POST /explain/batch``: stored test points of one model, answered in order."""

    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [{"model_id": "0b9c…", "test_ids": ["3", "17"], "k": 5, "target": "label"}]
        },
    )
    model_id: str
    """The model to explain with."""
    test_ids: list[StrictStr] = Field(min_length=1, max_length=MAX_BATCH_IDS)
    """Ids of stored test points, answered in this order."""
    k: int = Field(default=10, ge=1, le=MAX_TOP_K)
    """Training points on each side."""
    method: Method = Method.LJE
    """A method the model was registered with."""
    target: StrictStr | StrictInt = "predicted"
    """predicted, label or a class index."""
