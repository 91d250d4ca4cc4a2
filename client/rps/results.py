"""Typed answers of the service: small dataclasses built from the JSON bodies.

Every result keeps the body it was built from in ``raw`` and still answers ``result["key"]``,
``result.get("key")``, ``"key" in result`` and ``dict(result)`` from it, so code written
against the plain JSON keeps working. Fields the service adds later stay reachable that way
(and in ``raw``) before this module names them. ``to_frame()`` needs pandas (``pip install
rps-explain-client[pandas]``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

__all__ = [
    "Contribution",
    "Decomposition",
    "Explanation",
    "Model",
    "Prediction",
    "Solver",
    "SuspiciousItem",
    "SuspiciousPage",
    "TestPoint",
    "TestPointPage",
    "explanations_frame",
    "models_frame",
]

Result = TypeVar("Result", bound="_Body")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "to_frame() needs pandas: pip install 'rps-explain-client[pandas]'"
        ) from error
    return pandas


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(eq=False)
class _Body:
    """Mapping-style access to the JSON body the result was built from."""

    raw: dict[str, Any] = field(default_factory=dict, repr=False, kw_only=True)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.raw

    def keys(self) -> Any:
        return self.raw.keys()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Body):
            return self.raw == other.raw
        if isinstance(other, Mapping):
            return self.raw == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def _simple(cls: type[Result], body: Mapping[str, Any], **overrides: Any) -> Result:
        """Fields taken from ``body`` by name (missing ones at their defaults)."""
        names = {item.name for item in fields(cls) if item.name != "raw"}
        values = {name: body[name] for name in names if name in body}
        values.update(overrides)
        return cls(**values, raw=dict(body))


@dataclass(eq=False)
class Model(_Body):
    """A model's status (``GET /models/{id}``)."""

    id: str = ""
    name: str = ""
    status: str = ""
    progress: float = 0.0
    kind: str = ""
    num_classes: int = 0
    feature_dim: int | None = None
    input_dim: int | None = None
    n_train: int = 0
    n_test: int = 0
    methods: list[str] = field(default_factory=list)
    class_names: list[str] | None = None
    error: dict[str, Any] | None = None
    diagnostics: dict[str, Any] | None = None
    attempts: int = 0
    job_status: str | None = None
    version: int = 0
    created_at: datetime | None = None
    ready_at: datetime | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Model:
        return cls._simple(
            body, created_at=_time(body.get("created_at")), ready_at=_time(body.get("ready_at"))
        )

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass(eq=False)
class Prediction(_Body):
    logits: list[float] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    predicted_class: int = 0

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Prediction:
        return cls._simple(body)


@dataclass(eq=False)
class Decomposition(_Body):
    """The explained output as the sum of the contributions plus a residual."""

    sum_of_contributions: float = 0.0
    model_output: float = 0.0
    residual: float = 0.0

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Decomposition:
        return cls._simple(body)


@dataclass(eq=False)
class Solver(_Body):
    name: str = ""
    iterations: int = 0
    relative_residual: float = 0.0

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Solver:
        return cls._simple(body)


@dataclass(eq=False)
class Contribution(_Body):
    """One training point of an explanation: its signed push on the target class."""

    rank: int = 0
    train_id: str = ""
    train_index: int = 0
    label: int = 0
    contribution: float = 0.0
    record: Any = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Contribution:
        return cls._simple(body)


@dataclass(eq=False)
class Explanation(_Body):
    """One explanation: ``positive`` and ``negative`` training points, strongest first."""

    model_id: str = ""
    test_id: str | None = None
    method: str = ""
    target_class: int = 0
    prediction: Prediction = field(default_factory=Prediction)
    decomposition: Decomposition = field(default_factory=Decomposition)
    solver: Solver | None = None
    positive: list[Contribution] = field(default_factory=list)
    negative: list[Contribution] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Explanation:
        return cls._simple(
            body,
            prediction=Prediction.from_json(body.get("prediction") or {}),
            decomposition=Decomposition.from_json(body.get("decomposition") or {}),
            solver=Solver.from_json(body["solver"]) if body.get("solver") else None,
            positive=[Contribution.from_json(item) for item in body.get("positive") or []],
            negative=[Contribution.from_json(item) for item in body.get("negative") or []],
        )

    def rows(self) -> list[dict[str, Any]]:
        """One row per training point (positive side first): the table ``to_frame`` shows."""
        return [
            {
                "model_id": self.model_id,
                "test_id": self.test_id,
                "method": self.method,
                "target_class": self.target_class,
                "side": side,
                "rank": point.rank,
                "train_id": point.train_id,
                "train_index": point.train_index,
                "label": point.label,
                "contribution": point.contribution,
                "record": point.record,
            }
            for side, points in (("positive", self.positive), ("negative", self.negative))
            for point in points
        ]

    def to_frame(self) -> Any:
        """A pandas DataFrame of ``rows()``."""
        return _pandas().DataFrame(self.rows())


def explanations_frame(explanations: list[Explanation]) -> Any:
    """One DataFrame of the rows of many explanations (``test_id`` tells them apart)."""
    return _pandas().DataFrame([row for item in explanations for row in item.rows()])


def models_frame(models: list[Model]) -> Any:
    """A DataFrame with one row per model (its status fields)."""
    return (
        _pandas()
        .DataFrame(
            [{item.name: getattr(model, item.name) for item in fields(Model)} for model in models]
        )
        .drop(columns=["raw"])
    )


@dataclass(eq=False)
class SuspiciousItem(_Body):
    """A training point of the label-error ranking."""

    rank: int = 0
    train_id: str = ""
    train_index: int = 0
    label: int = 0
    predicted_class: int = 0
    score: float = 0.0
    suggested_label: int | None = None
    label_error_probability: float | None = None
    record: Any = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SuspiciousItem:
        return cls._simple(body)


@dataclass(eq=False)
class SuspiciousPage(_Body):
    """A page of the ranking (``GET /debug/suspicious``); iterating yields its items."""

    model_id: str = ""
    method: str = ""
    total: int = 0
    limit: int = 0
    offset: int = 0
    items: list[SuspiciousItem] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SuspiciousPage:
        return cls._simple(
            body, items=[SuspiciousItem.from_json(item) for item in body.get("items") or []]
        )

    def __iter__(self) -> Iterator[SuspiciousItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per training point of this page."""
        names = [item.name for item in fields(SuspiciousItem) if item.name != "raw"]
        return _pandas().DataFrame(
            [{name: getattr(point, name) for name in names} for point in self.items],
            columns=names,
        )


@dataclass(eq=False)
class TestPoint(_Body):
    """A stored test point."""

    __test__ = False  # not a pytest test class

    test_id: str = ""
    test_index: int = 0
    label: int | None = None
    predicted_class: int | None = None
    record: Any = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TestPoint:
        return cls._simple(body)


@dataclass(eq=False)
class TestPointPage(_Body):
    """A page of ``GET /models/{id}/test-points``; iterating yields its points."""

    __test__ = False

    model_id: str = ""
    total: int = 0
    limit: int = 0
    offset: int = 0
    items: list[TestPoint] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TestPointPage:
        return cls._simple(
            body, items=[TestPoint.from_json(item) for item in body.get("items") or []]
        )

    def __iter__(self) -> Iterator[TestPoint]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
