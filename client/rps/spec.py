"""The model spec: every setting a registration takes, with every default written once.

The ``spec`` part of ``POST /models`` is the JSON form of ``ModelSpec``. This module is the
one place that defines it, for everyone: the engine's configs (``representer/config.py``)
take their defaults from here, the API validates the part with ``ModelSpec.from_json`` and
stores ``to_json()``, the worker reads the stored spec back with ``from_json``, the OpenAPI
document shows ``json_schema()``, and the client and the ``rps register`` command send the
fields they are given unchanged (the command has one ``--section-field`` flag per field).
It needs only the standard library, so the client imports it without torch.

Adding a field is a one-place change
------------------------------------
Add it to one of the dataclasses below with ``setting(default, description, example=...)``
and its constraints (``minimum``, ``exclusive_minimum``, ``maximum``, ``exclusive_maximum``,
``max_length``, ``min_items``, ``distinct``; an ``Enum`` type lists its choices; a rule
between fields of one section is its ``conflicts()`` method). Parsing with errors that
name the field, ``to_json``, the JSON schema, the API, the stored spec, the worker, the
client, the CLI flag and the round-trip test (``tests/integration/test_spec_round_trip.py``,
which enumerates the fields and sends every ``example``) follow from that. A method setting
reaches the engine when its config (``LJEConfig``, ``L2Config``, ``InfluenceConfig``) has a
field of the same Python name: ``engine_settings`` hands over every such field.
A new section is a new dataclass plus one ``ModelSpec`` field holding it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_SPEC",
    "DEFAULT_CG_TOLERANCE",
    "Embedding",
    "HessianMode",
    "InfluenceSpec",
    "L2Spec",
    "LJESpec",
    "Method",
    "ModelKind",
    "ModelSpec",
    "Queue",
    "SpecError",
    "WeightLayout",
    "XGBoostSpec",
    "as_json",
    "engine_settings",
    "example_spec",
    "json_name",
    "Leaf",
    "leaves",
    "setting",
]


class ModelKind(str, Enum):
    """What was uploaded: a linear head over given features, or an XGBoost booster."""

    LINEAR = "linear"
    XGBOOST = "xgboost"


class Method(str, Enum):
    """The explanation methods."""

    LJE = "lje"  # RPS-LJE
    L2 = "l2"  # RPS-l2 (Yeh et al. 2018)
    INFLUENCE = "influence"  # last-layer influence function


class WeightLayout(str, Enum):
    """How RPS-LJE keeps what a query needs (see ``representer.config.WeightLayout``)."""

    AUTO = "auto"
    KERNEL = "kernel"  # R* (n, k) and M: a query is one (n, D) x (D, k) GEMM
    MATERIALISED = "materialised"  # W (k, n, D) float32: a query is one (n, D) matvec


class HessianMode(str, Enum):
    """How H⁺ is applied (docs/math.md §10).

    ``DENSE`` factorises the (k_out·D)² Hessian once (queries are one product with its
    inverse); ``BLOCKS`` keeps k per-class D×D factors and solves every query by
    preconditioned conjugate gradients on the exact, matrix-free H (queries cost a few
    passes over the features, the precompute and the memory are about k times smaller).
    ``AUTO`` takes dense while its predicted precompute and memory are small
    (``representer.hessian_solver.choose_hessian``) and blocks beyond; a binary head is
    always dense.
    """

    AUTO = "auto"
    DENSE = "dense"
    BLOCKS = "blocks"


class Embedding(str, Enum):
    """How an XGBoost booster becomes features φ(x) plus a linear head."""

    TREE_MARGINS = "tree_margins"
    LEAF_ONEHOT = "leaf_onehot"


class Queue(str, Enum):
    """The worker queue that runs the precompute (``rps worker --queues``)."""

    DEFAULT = "default"
    GPU = "gpu"


def setting(
    default: Any,
    description: str,
    *,
    example: Any,
    json: str | None = None,
    minimum: float | None = None,
    exclusive_minimum: float | None = None,
    maximum: float | None = None,
    exclusive_maximum: float | None = None,
    max_length: int | None = None,
    min_items: int | None = None,
    distinct: bool = False,
) -> Any:
    """A spec field: its default, what it means, a non-default example and its constraints.

    ``json`` is the field's JSON name when it differs from the Python name (``lambda``).
    A list/tuple default is stored as a tuple (the dataclasses are frozen).
    """
    metadata = {
        "description": description,
        "example": example,
        "json": json,
        "minimum": minimum,
        "exclusive_minimum": exclusive_minimum,
        "maximum": maximum,
        "exclusive_maximum": exclusive_maximum,
        "max_length": max_length,
        "min_items": min_items,
        "distinct": distinct,
    }
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return field(default_factory=default, metadata=metadata)
    if isinstance(default, list):
        default = tuple(default)
    return field(default=default, metadata=metadata)


_REQUIRED = dataclasses.MISSING

DEFAULT_CG_TOLERANCE = 1e-6
"""Relative residual ‖b − Hx‖/‖b‖ at which PCG stops (docs/math.md §10.3); float64 products
reach it in about 20 iterations on the benchmark heads and the rankings then equal dense ones."""

HESSIAN_DESCRIPTION = (
    "dense: one (kD)² factor, fastest queries; blocks: per-class factors and PCG on the exact "
    "Hessian at query time (k times less memory and precompute); auto picks (binary: dense)."
)
CG_TOLERANCE_DESCRIPTION = "Relative residual at which PCG stops (hessian blocks only)."
MEMORY_DESCRIPTION = (
    "Bytes this method may use; lowers the operator's RPS_MEMORY_BUDGET_BYTES (never raises "
    "it: a larger value is a 422). Unset: the operator's budget."
)


# -- the spec -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LJESpec:
    """Settings of RPS-LJE."""

    lr: float = setting(
        0.01,
        "Step size γ of the single gradient-ascent step Θ* = Θ† + γ ḡ(Θ†).",
        example=0.05,
        minimum=0,
    )
    damping: float = setting(
        0.0,
        "δ added to the Hessian's diagonal (H + δI); raise it when the solve is singular.",
        example=0.001,
        minimum=0,
    )
    weight_layout: WeightLayout = setting(
        WeightLayout.AUTO,
        "kernel: small state, slower queries; materialised: k·n·D floats, queries at one "
        "pass over the features (needs hessian dense or auto); auto picks by the memory budget.",
        example=WeightLayout.KERNEL,
    )
    hessian: HessianMode = setting(
        HessianMode.AUTO, HESSIAN_DESCRIPTION, example=HessianMode.BLOCKS
    )
    cg_tolerance: float = setting(
        DEFAULT_CG_TOLERANCE,
        CG_TOLERANCE_DESCRIPTION,
        example=1e-7,
        exclusive_minimum=0,
        exclusive_maximum=1,
    )
    memory_budget_bytes: int | None = setting(
        None, MEMORY_DESCRIPTION, example=2**30, exclusive_minimum=0
    )

    def conflicts(self) -> list[tuple[str, str]]:
        """Rules between fields: (field, message) for each broken one."""
        if self.hessian is HessianMode.BLOCKS and self.weight_layout is WeightLayout.MATERIALISED:
            return [
                (
                    "weight_layout",
                    "'materialised' needs the dense inverse: use hessian 'dense' or 'auto', "
                    "or weight_layout 'kernel'/'auto' with hessian 'blocks'",
                )
            ]
        return []


@dataclass(frozen=True)
class L2Spec:
    """Settings of RPS-l2."""

    lam: float = setting(
        0.003,
        "Weight λ of the ridge penalty λ‖Θ‖²_F of the fine-tuning objective.",
        example=0.01,
        json="lambda",
        exclusive_minimum=0,
    )


@dataclass(frozen=True)
class InfluenceSpec:
    """Settings of the last-layer influence function."""

    damping: float = setting(
        0.0,
        "δ added to the Hessian's diagonal (H† + δI); raise it when the solve is singular.",
        example=0.001,
        minimum=0,
    )
    hessian: HessianMode = setting(
        HessianMode.AUTO, HESSIAN_DESCRIPTION, example=HessianMode.BLOCKS
    )
    cg_tolerance: float = setting(
        DEFAULT_CG_TOLERANCE,
        CG_TOLERANCE_DESCRIPTION,
        example=1e-7,
        exclusive_minimum=0,
        exclusive_maximum=1,
    )
    memory_budget_bytes: int | None = setting(
        None, MEMORY_DESCRIPTION, example=2**30, exclusive_minimum=0
    )


@dataclass(frozen=True)
class XGBoostSpec:
    """How an XGBoost model is turned into features and a linear head."""

    embedding: Embedding = setting(
        Embedding.TREE_MARGINS,
        "tree_margins: one feature per tree (its leaf value); leaf_onehot: one per leaf.",
        example=Embedding.LEAF_ONEHOT,
    )


@dataclass(frozen=True)
class ModelSpec:
    """The ``spec`` part of ``POST /models``; only ``kind`` is required."""

    kind: ModelKind = setting(
        _REQUIRED,
        "linear: a head over given features (weights, train_features parts); xgboost: a "
        "booster over raw rows (booster, train_inputs parts).",
        example=ModelKind.XGBOOST,
    )
    name: str = setting("", "A name for people; not unique.", example="credit", max_length=200)
    class_names: tuple[str, ...] | None = setting(
        None,
        "One name per class, in label order; labels are shown by index when absent.",
        example=["good", "bad"],
    )
    methods: tuple[Method, ...] = setting(
        [Method.LJE],
        "The methods to precompute; explain and debug answer only these.",
        example=[Method.LJE, Method.L2, Method.INFLUENCE],
        min_items=1,
        distinct=True,
    )
    lje: LJESpec = setting(LJESpec, "Settings of RPS-LJE.", example={})
    l2: L2Spec = setting(L2Spec, "Settings of RPS-l2.", example={})
    influence: InfluenceSpec = setting(InfluenceSpec, "Settings of influence.", example={})
    xgboost: XGBoostSpec = setting(XGBoostSpec, "Settings of xgboost models.", example={})
    queue: Queue = setting(
        Queue.DEFAULT, "The worker queue that runs the precompute.", example=Queue.GPU
    )

    @classmethod
    def from_json(cls, value: Any) -> ModelSpec:
        """Validate a JSON value (a dict); raises ``SpecError`` naming every bad field."""
        return _parse_section(cls, value, "")

    def to_json(self) -> dict[str, Any]:
        """The JSON form with every field (defaults included), under its JSON name."""
        return as_json(self)

    def method_settings(self, method: Method | str) -> LJESpec | L2Spec | InfluenceSpec:
        """The settings section of ``method``."""
        section: LJESpec | L2Spec | InfluenceSpec = getattr(self, Method(method).value)
        return section


DEFAULT_SPEC_KIND = ModelKind.LINEAR


class SpecError(ValueError):
    """A spec that does not validate; ``errors`` is a list of (field path, message).

    Paths are relative to the spec, dotted, list items by index: ``lje.lr``,
    ``methods.0``; ``""`` is the spec itself.
    """

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__(
            "invalid spec: "
            + "; ".join(f"{path or 'spec'}: {message}" for path, message in self.errors)
        )


# -- generic machinery (driven by the dataclasses above) -------------------------------------

Section = TypeVar("Section")


def json_name(item: dataclasses.Field) -> str:
    """The JSON name of a spec field (``lambda`` for ``L2Spec.lam``)."""
    return item.metadata.get("json") or item.name


def _hints(section: type) -> dict[str, Any]:
    return typing.get_type_hints(section)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1 and len(typing.get_args(annotation)) == 2:
            return members[0], True
    return annotation, False


def _join(path: str, name: str | int) -> str:
    return f"{path}.{name}" if path else str(name)


def _parse_section(section: type[Section], value: Any, path: str) -> Section:
    if isinstance(value, section):
        return value
    if not isinstance(value, Mapping):
        raise SpecError([(path, "must be a JSON object")])
    errors: list[tuple[str, str]] = []
    known = {json_name(item): item for item in dataclasses.fields(section)}  # type: ignore[arg-type]
    for key in value:
        if key not in known:
            errors.append((_join(path, str(key)), f"unknown field; known: {', '.join(known)}"))
    hints = _hints(section)
    arguments: dict[str, Any] = {}
    for name, item in known.items():
        where = _join(path, name)
        if name not in value:
            if item.default is _REQUIRED and item.default_factory is _REQUIRED:
                errors.append((where, "required"))
            continue
        try:
            arguments[item.name] = _parse_value(hints[item.name], item, value[name], where)
        except SpecError as error:
            errors.extend(error.errors)
    if errors:
        raise SpecError(errors)
    parsed = section(**arguments)
    conflicts = getattr(parsed, "conflicts", None)
    if conflicts is not None and (broken := conflicts()):
        raise SpecError([(_join(path, name), message) for name, message in broken])
    return parsed


def _parse_value(annotation: Any, item: dataclasses.Field, value: Any, path: str) -> Any:
    annotation, optional = _unwrap_optional(annotation)
    if value is None:
        if optional:
            return None
        raise SpecError([(path, "must not be null")])
    if dataclasses.is_dataclass(annotation):
        return _parse_section(annotation, value, path)  # type: ignore[arg-type]
    if typing.get_origin(annotation) in (tuple, list):
        return _parse_list(annotation, item, value, path)
    return _parse_scalar(annotation, item.metadata, value, path)


def _parse_list(annotation: Any, item: dataclasses.Field, value: Any, path: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise SpecError([(path, "must be a JSON array")])
    member = typing.get_args(annotation)[0]
    errors: list[tuple[str, str]] = []
    parsed = []
    for index, element in enumerate(value):
        try:
            parsed.append(_parse_scalar(member, {}, element, _join(path, index)))
        except SpecError as error:
            errors.extend(error.errors)
    if errors:
        raise SpecError(errors)
    min_items = item.metadata.get("min_items")
    if min_items is not None and len(parsed) < min_items:
        raise SpecError([(path, f"must hold at least {min_items} item(s)")])
    if item.metadata.get("distinct") and len(set(parsed)) != len(parsed):
        raise SpecError([(path, "items must be distinct")])
    return tuple(parsed)


def _parse_scalar(annotation: Any, metadata: Mapping[str, Any], value: Any, path: str) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        try:
            return annotation(value)
        except ValueError:
            choices = ", ".join(repr(choice.value) for choice in annotation)
            raise SpecError([(path, f"must be one of {choices}, got {value!r}")]) from None
    if annotation is str:
        if not isinstance(value, str):
            raise SpecError([(path, "must be a string")])
        limit = metadata.get("max_length")
        if limit is not None and len(value) > limit:
            raise SpecError([(path, f"must be at most {limit} characters")])
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise SpecError([(path, "must be true or false")])
        return value
    if annotation in (int, float):
        number = _number(annotation, value, path)
        _check_bounds(metadata, number, path)
        return number
    raise TypeError(f"spec field {path}: unsupported type {annotation!r}")


def _number(annotation: type, value: Any, path: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError([(path, "must be a number")])
    if not math.isfinite(value):
        raise SpecError([(path, "must be a finite number")])
    if annotation is int:
        if isinstance(value, float) and not value.is_integer():
            raise SpecError([(path, "must be an integer")])
        return int(value)
    return float(value)


def _check_bounds(metadata: Mapping[str, Any], number: float, path: str) -> None:
    minimum, exclusive, maximum, below = (
        metadata.get("minimum"),
        metadata.get("exclusive_minimum"),
        metadata.get("maximum"),
        metadata.get("exclusive_maximum"),
    )
    if minimum is not None and number < minimum:
        raise SpecError([(path, f"must be >= {minimum}, got {number!r}")])
    if exclusive is not None and number <= exclusive:
        raise SpecError([(path, f"must be > {exclusive}, got {number!r}")])
    if maximum is not None and number > maximum:
        raise SpecError([(path, f"must be <= {maximum}, got {number!r}")])
    if below is not None and number >= below:
        raise SpecError([(path, f"must be < {below}, got {number!r}")])


def as_json(value: Any) -> Any:
    """A spec, a section, an enum or a tuple of them as plain JSON values (JSON names)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            json_name(item): as_json(getattr(value, item.name))
            for item in dataclasses.fields(value)
        }
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [as_json(element) for element in value]
    return value


@dataclass(frozen=True)
class Leaf:
    """One setting that is not a section: where it sits and what it takes."""

    path: str
    """Dotted JSON path in the spec, e.g. ``l2.lambda``."""
    field: dataclasses.Field
    annotation: Any
    """Its type without ``| None``."""
    optional: bool
    """Whether ``null`` is allowed."""

    @property
    def description(self) -> str:
        return str(self.field.metadata["description"])

    @property
    def example(self) -> Any:
        """The example as JSON."""
        return as_json(self.field.metadata["example"])

    @property
    def default(self) -> Any:
        """The default as JSON (``DEFAULT_SPEC``'s value; the kind of ``DEFAULT_SPEC``)."""
        value: Any = DEFAULT_SPEC.to_json()
        for piece in self.path.split("."):
            value = value[piece]
        return value


def leaves(section: type = ModelSpec, path: str = "") -> list[Leaf]:
    """Every setting that is not a section, in order; the CLI and the tests walk these."""
    hints = _hints(section)
    found: list[Leaf] = []
    for item in dataclasses.fields(section):
        where = _join(path, json_name(item))
        annotation, optional = _unwrap_optional(hints[item.name])
        if dataclasses.is_dataclass(annotation):
            found.extend(leaves(annotation, where))  # type: ignore[arg-type]
        else:
            found.append(Leaf(where, item, annotation, optional))
    return found


def example_spec() -> ModelSpec:
    """A spec with every leaf setting at its ``example`` (each differs from its default)."""
    document: dict[str, Any] = {}
    for leaf in leaves():
        *sections, name = leaf.path.split(".")
        target = document
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = leaf.example
    return ModelSpec.from_json(document)


def engine_settings(section: Any, config_fields: typing.Iterable[str]) -> dict[str, Any]:
    """The settings of ``section`` an engine config with ``config_fields`` takes, by name."""
    names = set(config_fields)
    return {
        item.name: getattr(section, item.name)
        for item in dataclasses.fields(section)
        if item.name in names
    }


def json_schema() -> dict[str, Any]:
    """The JSON schema (OpenAPI 3.1 dialect) of the spec; sections are inlined."""
    return _section_schema(ModelSpec)


def _section_schema(section: type) -> dict[str, Any]:
    hints = _hints(section)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for item in dataclasses.fields(section):
        name = json_name(item)
        annotation, optional = _unwrap_optional(hints[item.name])
        if dataclasses.is_dataclass(annotation):
            schema = _section_schema(annotation)  # type: ignore[arg-type]
        else:
            schema = _value_schema(annotation, item.metadata)
            schema["examples"] = [as_json(item.metadata["example"])]
        if optional:
            schema = {"anyOf": [schema, {"type": "null"}]}
        schema["description"] = item.metadata["description"]
        if item.default is _REQUIRED and item.default_factory is _REQUIRED:
            required.append(name)
        elif item.default is not _REQUIRED:
            schema["default"] = as_json(item.default)
        properties[name] = schema
    schema = {
        "type": "object",
        "title": section.__name__,
        "description": (section.__doc__ or "").strip().splitlines()[0],
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def _value_schema(annotation: Any, metadata: Mapping[str, Any]) -> dict[str, Any]:
    if typing.get_origin(annotation) in (tuple, list):
        schema: dict[str, Any] = {
            "type": "array",
            "items": _value_schema(typing.get_args(annotation)[0], {}),
        }
        if metadata.get("min_items") is not None:
            schema["minItems"] = metadata["min_items"]
        if metadata.get("distinct"):
            schema["uniqueItems"] = True
        return schema
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return {"type": "string", "enum": [choice.value for choice in annotation]}
    if annotation is str:
        schema = {"type": "string"}
        if metadata.get("max_length") is not None:
            schema["maxLength"] = metadata["max_length"]
        return schema
    if annotation is bool:
        return {"type": "boolean"}
    schema = {"type": "integer" if annotation is int else "number"}
    for key, json_key in (
        ("minimum", "minimum"),
        ("exclusive_minimum", "exclusiveMinimum"),
        ("maximum", "maximum"),
        ("exclusive_maximum", "exclusiveMaximum"),
    ):
        if metadata.get(key) is not None:
            schema[json_key] = metadata[key]
    return schema


DEFAULT_SPEC = ModelSpec(kind=DEFAULT_SPEC_KIND)
"""A linear model with every default: read defaults from here (``DEFAULT_SPEC.lje.lr``)."""
