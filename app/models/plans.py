"""Turn the parts of a validated upload into a registration plan (linear or XGBoost).

Everything is checked here, before anything is stored: shapes, dtypes, finiteness, label
range, ids, records, and (XGBoost) that the booster loads from ``.json``/``.ubj``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import FieldError, InvalidRequestError
from app.models.schemas import ModelSpec
from app.models.uploads import Upload, UploadedPart
from app.models.validation import (
    check_ids,
    check_labels,
    check_matrix,
    check_records,
    check_vector,
    load_npy,
    reject,
)
from models_store import ModelKind
from representer import MemoryLimitError, check_capacity, engine_config
from representer.adapters.xgboost_checks import BoosterLimits

__all__ = [
    "StoredFile",
    "RegistrationPlan",
    "plan_registration",
    "check_capacity_of_plan",
    "MIN_TRAIN_POINTS",
]

MIN_TRAIN_POINTS = 2
_SHARED_PARTS = {
    "spec",
    "train_labels",
    "train_ids",
    "train_records",
    "test_labels",
    "test_ids",
    "test_records",
}
_PARTS = {
    ModelKind.LINEAR: _SHARED_PARTS | {"weights", "bias", "train_features", "test_features"},
    ModelKind.XGBOOST: _SHARED_PARTS | {"booster", "train_inputs", "test_inputs"},
}
BOOSTER_SUFFIXES = (".json", ".ubj")
ROWS_DTYPE = "float32"  # how feature/input rows are stored (and must be finite as)


@dataclass(frozen=True)
class StoredFile:
    """One upload to keep: where it is, its name in the store, the dtype to store it as."""

    source: Path
    name: str
    dtype: str | None = None  # None: move the bytes as they are


@dataclass(frozen=True)
class RegistrationPlan:
    """What a valid registration will store."""

    spec: ModelSpec
    num_classes: int
    num_outputs: int
    feature_dim: int
    input_dim: int | None
    n_train: int
    n_test: int
    files: tuple[StoredFile, ...]
    train_ids: list[str]
    test_ids: list[str]
    train_records: list[Any] | None
    test_records: list[Any] | None


def _require(upload: Upload, name: str) -> UploadedPart:
    part = upload.parts.get(name)
    if part is None:
        raise InvalidRequestError(
            f"the part {name!r} is required", errors=[FieldError(name, "required", "part")]
        )
    return part


def _check_parts(upload: Upload, kind: ModelKind) -> None:
    unknown = sorted(set(upload.parts) - _PARTS[kind])
    if unknown:
        raise InvalidRequestError(
            f"unknown parts for a {kind.value} model: {', '.join(unknown)}",
            errors=[
                FieldError(name, f"not a part of a {kind.value} registration", "part")
                for name in unknown
            ],
        )


def _linear_head(upload: Upload) -> tuple[int, int, list[StoredFile]]:
    weights_part = _require(upload, "weights")
    weights = load_npy(weights_part)
    check_matrix("weights", weights)
    num_outputs, feature_dim = weights.shape
    files = [StoredFile(weights_part.path, "weights.npy", "float64")]
    if "bias" in upload.parts:
        bias = load_npy(upload.parts["bias"])
        check_vector("bias", bias, length=num_outputs)
        files.append(StoredFile(upload.parts["bias"].path, "bias.npy", "float64"))
    return num_outputs, feature_dim, files


def _booster_head(upload: Upload, spec: ModelSpec, limits: BoosterLimits) -> tuple[int, int, int]:
    from representer import InvalidInputError
    from representer.adapters import BoosterEmbedding, load_booster

    part = _require(upload, "booster")
    if not part.filename or not part.filename.lower().endswith(BOOSTER_SUFFIXES):
        raise reject(
            "booster", "must be an XGBoost model saved as .json or .ubj (file name suffix)"
        )
    try:
        booster = load_booster(part.path, limits=limits)
        embedding = BoosterEmbedding.from_booster(
            booster, embedding=spec.xgboost.embedding, limits=limits
        )
    except InvalidInputError as error:  # the structural check names the tree and field
        named = error.argument or ""
        field = named if named.startswith("booster") else "booster"
        raise reject(field, str(error)) from error
    except Exception as error:  # any loader failure is the upload's fault
        raise reject("booster", f"could not be loaded as an XGBoost model: {error}") from error
    head = embedding.head
    return head.num_outputs, head.feature_dim, int(booster.num_features())


def _rows_part(upload: Upload, kind: ModelKind) -> tuple[str, str]:
    return (
        ("train_features", "test_features")
        if kind is ModelKind.LINEAR
        else ("train_inputs", "test_inputs")
    )


def plan_registration(
    upload: Upload, spec: ModelSpec, *, booster_limits: BoosterLimits
) -> RegistrationPlan:
    """Check every part of ``upload`` for a model of ``spec.kind``; nothing is stored."""
    _check_parts(upload, spec.kind)
    if spec.kind is ModelKind.LINEAR:
        num_outputs, feature_dim, files = _linear_head(upload)
        input_dim, width = None, feature_dim
    else:
        num_outputs, feature_dim, input_dim = _booster_head(upload, spec, booster_limits)
        booster = upload.parts["booster"]
        files, width = (
            [StoredFile(booster.path, f"booster{Path(booster.filename or '').suffix.lower()}")],
            input_dim,
        )
    num_classes = 2 if num_outputs == 1 else num_outputs
    if spec.class_names is not None and len(spec.class_names) != num_classes:
        raise InvalidRequestError(
            f"spec.class_names must name {num_classes} classes, got {len(spec.class_names)}",
            errors=[FieldError("spec.class_names", f"must hold {num_classes} names", "spec")],
        )
    train_name, test_name = _rows_part(upload, spec.kind)
    train_rows = load_npy(_require(upload, train_name))
    check_matrix(train_name, train_rows, cols=width, stored_dtype=ROWS_DTYPE)
    n_train = train_rows.shape[0]
    if n_train < MIN_TRAIN_POINTS:
        raise reject(
            train_name, f"needs at least {MIN_TRAIN_POINTS} training points, got {n_train}"
        )
    labels = load_npy(_require(upload, "train_labels"))
    check_labels("train_labels", labels, length=n_train, num_classes=num_classes)
    files += [
        StoredFile(upload.parts[train_name].path, f"{train_name}.npy", ROWS_DTYPE),
        StoredFile(upload.parts["train_labels"].path, "train_labels.npy", "int64"),
    ]
    n_test = _plan_test_set(upload, test_name, width=width, num_classes=num_classes, files=files)
    return RegistrationPlan(
        spec=spec,
        num_classes=num_classes,
        num_outputs=num_outputs,
        feature_dim=feature_dim,
        input_dim=input_dim,
        n_train=n_train,
        n_test=n_test,
        files=tuple(files),
        train_ids=check_ids(upload.parts.get("train_ids"), length=n_train),
        test_ids=check_ids(upload.parts.get("test_ids"), length=n_test),
        train_records=check_records(upload.parts.get("train_records"), length=n_train),
        test_records=check_records(upload.parts.get("test_records"), length=n_test),
    )


def _plan_test_set(
    upload: Upload, test_name: str, *, width: int, num_classes: int, files: list[StoredFile]
) -> int:
    if test_name not in upload.parts:
        for name in ("test_labels", "test_ids", "test_records"):
            if name in upload.parts:
                raise reject(name, f"needs the {test_name!r} part")
        return 0
    test_rows = load_npy(upload.parts[test_name])
    check_matrix(test_name, test_rows, cols=width, stored_dtype=ROWS_DTYPE)
    files.append(StoredFile(upload.parts[test_name].path, f"{test_name}.npy", ROWS_DTYPE))
    n_test = test_rows.shape[0]
    if "test_labels" in upload.parts:
        labels = load_npy(upload.parts["test_labels"])
        check_labels("test_labels", labels, length=n_test, num_classes=num_classes)
        files.append(StoredFile(upload.parts["test_labels"].path, "test_labels.npy", "int64"))
    return n_test


def check_capacity_of_plan(plan: RegistrationPlan, *, ceiling: int) -> None:
    """Refuse, before anything is stored, a head that no allowed solver serves in memory.

    ``ceiling`` is the operator's ``RPS_MEMORY_BUDGET_BYTES``; a spec's
    ``<method>.memory_budget_bytes`` may lower it, never raise it.
    """
    for method in plan.spec.methods:
        field = f"spec.{method.value}.memory_budget_bytes"
        requested = getattr(getattr(plan.spec, method.value), "memory_budget_bytes", None)
        if requested is not None and requested > ceiling:
            raise InvalidRequestError(
                f"{field}={requested} is above the operator's ceiling "
                f"RPS_MEMORY_BUDGET_BYTES={ceiling}; a spec may only lower it",
                errors=[FieldError(field, f"at most {ceiling}", "spec")],
            )
        try:
            check_capacity(
                engine_config(plan.spec, method, ceiling=ceiling),
                n=plan.n_train,
                num_outputs=plan.num_outputs,
                feature_dim=plan.feature_dim,
            )
        except MemoryLimitError as error:
            raise InvalidRequestError(
                f"{method.value}: {error} (the ceiling is RPS_MEMORY_BUDGET_BYTES={ceiling})",
                errors=[FieldError(field, f"this head needs more than {ceiling} bytes", "spec")],
            ) from error
