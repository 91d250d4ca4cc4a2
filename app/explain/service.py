"""The query path: explanations of stored test points and of submitted rows.

Per request: one model row (by primary key), the cached memory-mapped arrays, one engine
call (a pass over the n training features, shared with concurrent requests), and one
query for the ≤ 2·k returned rows (plain columns, records as stored JSON text). The
statements run in autocommit, and no connection is held while the request waits for its
pass. Answers are
built as plain JSON values in the shape of ``ExplanationPublic`` (the schema documents
them; the values are typed here, so they are not validated again) and serialised once, to
bytes, in the worker thread; the result cache stores those bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.core.errors import (
    FieldError,
    InvalidRequestError,
    NotFoundError,
    ServiceError,
    TooManyRequestsError,
)
from app.core.metrics import EXPLAIN_REJECTED
from app.core.responses import json_bytes
from app.explain.batcher import QueueFullError
from app.explain.cache import cache_key
from app.explain.loader import LoadedModel
from app.explain.repository import TrainRow, train_rows_by_index
from app.explain.schemas import ExplainBatchRequest, ExplainRequest
from app.explain.scoring import ScoringItem, score_items
from models_store import Model
from representer import Explanation, InvalidInputError, Method

__all__ = [
    "parse_target",
    "explain_stored",
    "explain_rows",
    "explain_batch",
]

RETRY_AFTER_FULL_QUEUE_S = 1
"""What a 429 for a full explain queue tells the client to wait (a pass takes milliseconds)."""

Target = str | int
MAX_TARGET_CHARS = 20
"""Longest ``target`` text looked at; class indices are far shorter."""


def parse_target(target: Target, *, num_classes: int, label: int | None, location: str) -> Target:
    """``"predicted"``, the observed ``label``, or a class index, as the engine's target."""
    if target == "predicted":
        return "predicted"
    if target == "label":
        if label is None:
            raise InvalidRequestError(
                "target 'label' needs a stored test label",
                errors=[FieldError("target", "no label is known for this point", location)],
            )
        return int(label)
    if isinstance(target, int):  # a JSON integer: compared, never turned into text
        if 0 <= target < num_classes:
            return target
        shown = "an integer out of range"
    else:
        # Bounded before int(): Python refuses to convert 4,301+ digits (and it costs time).
        text = target[:MAX_TARGET_CHARS]
        if (
            len(target) <= MAX_TARGET_CHARS
            and text.isascii()  # not "²" or "٣"
            and text.isdigit()
            and int(text) < num_classes
        ):
            return int(text)
        shown = repr(text) + ("…" if len(target) > MAX_TARGET_CHARS else "")
    raise InvalidRequestError(
        f"target must be 'predicted', 'label' or a class index in 0..{num_classes - 1}, got {shown}",
        errors=[FieldError("target", f"'predicted', 'label' or 0..{num_classes - 1}", location)],
    )


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ServiceError("the engine produced a non-finite number; nothing is answered")
    return float(value)


def _points(
    rows: dict[int, TrainRow], indices: np.ndarray, values: np.ndarray
) -> list[dict[str, Any]]:
    """``RepresenterPoint`` values, strongest first."""
    points = []
    for rank, (index, contribution) in enumerate(
        zip(indices.tolist(), values.tolist(), strict=False), start=1
    ):
        row = rows[index]
        points.append(
            {
                "rank": rank,
                "train_id": row.train_id,
                "train_index": index,
                "label": row.label,
                "contribution": _finite(contribution),
                "record": row.record,
            }
        )
    return points


def _publish(
    session: Session,
    model: Model,
    explanations: list[Explanation],
    *,
    method: Method,
    test_ids: list[str | None],
) -> list[dict[str, Any]]:
    """Answers for ``explanations``, with every returned training row fetched in one query."""
    indices = sorted(
        {
            int(index)
            for explanation in explanations
            for index in (*explanation.positive_indices, *explanation.negative_indices)
        }
    )
    rows = train_rows_by_index(session, model.id, indices)
    return [
        _to_public(rows, model, explanation, method=method, test_id=test_id)
        for explanation, test_id in zip(explanations, test_ids, strict=True)
    ]


def _to_public(
    rows: dict[int, TrainRow],
    model: Model,
    explanation: Explanation,
    *,
    method: Method,
    test_id: str | None,
) -> dict[str, Any]:
    """The ``ExplanationPublic`` JSON of one explanation (every number a Python int/float)."""
    return {
        "model_id": model.id,
        "test_id": test_id,
        "method": method.value,
        "target_class": int(explanation.target_class),
        "prediction": {
            "logits": [_finite(v) for v in np.ravel(explanation.logits).tolist()],
            "probabilities": [_finite(v) for v in np.ravel(explanation.probabilities).tolist()],
            "predicted_class": int(explanation.predicted_class),
        },
        "decomposition": {
            "sum_of_contributions": _finite(explanation.sum_of_contributions),
            "model_output": _finite(explanation.model_output),
            "residual": _finite(explanation.residual),
        },
        "solver": {
            "name": explanation.solver.name,
            "iterations": int(explanation.solver.iterations),
            "relative_residual": _finite(explanation.solver.relative_residual),
        },
        "positive": _points(rows, explanation.positive_indices, explanation.positive_contributions),
        "negative": _points(rows, explanation.negative_indices, explanation.negative_contributions),
    }


def _cached(
    context: ServiceContext,
    model: Model,
    query: dict[str, Any],
    compute: Callable[[], dict[str, Any]],
) -> bytes:
    """The serialised JSON of ``compute()``, from the explain cache when it holds one."""
    if context.results is None:
        return json_bytes(compute())
    key = cache_key(model.id, model.version, query, namespace=context.results.namespace)
    hit = context.results.get(key)
    if hit is not None:
        return hit
    body = json_bytes(compute())
    context.results.put(key, body)
    return body


def explain_stored(
    session: Session,
    model: Model,
    *,
    context: ServiceContext,
    test_id: str,
    k: int,
    method: Method,
    target: str,
) -> bytes:
    """The JSON answer explaining the stored test point ``test_id`` of the ready ``model``."""
    loaded = context.models.get(model)
    index = loaded.test_index(test_id)
    test_features = loaded.test_features
    if index is None or test_features is None:
        raise NotFoundError(f"model {model.id} has no stored test point {test_id!r}")
    label = None if loaded.test_labels is None else int(loaded.test_labels[index])
    engine_target = parse_target(
        target, num_classes=model.num_classes, label=label, location="query"
    )
    query = {"test_id": test_id, "k": k, "method": method.value, "target": engine_target}

    def compute() -> dict[str, Any]:
        item = ScoringItem(
            rows=test_features[index : index + 1],
            targets=[engine_target],
            top_k=min(k, model.n_train),
        )
        explanations = _scored(session, context, model, loaded, method, item)
        [answer] = _publish(session, model, explanations, method=method, test_ids=[test_id])
        return answer

    return _cached(context, model, query, compute)


def _request_rows(model: Model, loaded: LoadedModel, request: ExplainRequest) -> np.ndarray:
    if request.inputs is not None:
        if loaded.embedding is None:
            raise InvalidRequestError(
                "'inputs' are for XGBoost models; send φ rows as 'features'",
                errors=[FieldError("inputs", "only for xgboost models", "body")],
            )
        _check_width("inputs", request.inputs, model.input_dim)
        return np.asarray(loaded.embedding.transform(_float32_rows("inputs", request.inputs)))
    assert request.features is not None  # the request validator asks for one of the two
    _check_width("features", request.features, model.feature_dim)
    return _float32_rows("features", request.features)


def _float32_rows(name: str, rows: list[list[float]]) -> np.ndarray:
    """The rows as float32 (how the engine reads them), refusing values beyond its range."""
    with np.errstate(over="ignore"):
        array = np.asarray(rows, dtype=np.float32)  # (m, width)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InvalidRequestError(
            f"row {row} of {name!r} has values beyond the float32 range (|x| > 3.4e38)",
            errors=[FieldError(name, "values must fit in float32", "body")],
        )
    return array


def _check_width(name: str, rows: list[list[float]], width: int | None) -> None:
    bad = [index for index, row in enumerate(rows) if len(row) != width]
    if bad:
        raise InvalidRequestError(
            f"every row of {name!r} must have {width} values; row {bad[0]} has {len(rows[bad[0]])}",
            errors=[FieldError(name, f"rows must have {width} values", "body")],
        )


def explain_rows(
    session: Session, model: Model, request: ExplainRequest, *, context: ServiceContext
) -> bytes:
    """The JSON ``ExplanationList`` of each submitted row of ``request``, in order."""
    target = parse_target(
        request.target, num_classes=model.num_classes, label=None, location="body"
    )
    loaded = context.models.get(model)
    rows = _request_rows(model, loaded, request)
    item = ScoringItem(
        rows=rows, targets=[target] * rows.shape[0], top_k=min(request.k, model.n_train)
    )
    try:
        explanations = _scored(session, context, model, loaded, request.method, item)
    except InvalidInputError as error:  # the engine's "test_features" are this request's rows
        if error.argument != "test_features":
            raise
        name = "inputs" if request.inputs is not None else "features"
        raise InvalidRequestError(
            str(error), errors=[FieldError(name, str(error), "body")]
        ) from error
    answers = _publish(
        session, model, explanations, method=request.method, test_ids=[None] * len(explanations)
    )
    return json_bytes({"explanations": answers})


def explain_batch(
    session: Session, model: Model, request: ExplainBatchRequest, *, context: ServiceContext
) -> bytes:
    """The JSON ``ExplanationList`` of the stored test points ``request.test_ids``, in order."""
    loaded = context.models.get(model)
    if loaded.test_features is None:
        raise NotFoundError(f"model {model.id} has no stored test points")
    indices = []
    for position, test_id in enumerate(request.test_ids):
        index = loaded.test_index(test_id)
        if index is None:
            raise NotFoundError(
                f"model {model.id} has no stored test point {test_id!r} (test_ids[{position}])"
            )
        indices.append(index)
    targets = []
    for index in indices:
        label = None if loaded.test_labels is None else int(loaded.test_labels[index])
        targets.append(
            parse_target(
                request.target, num_classes=model.num_classes, label=label, location="body"
            )
        )
    item = ScoringItem(
        rows=np.asarray(loaded.test_features[indices]),
        targets=targets,
        top_k=min(request.k, model.n_train),
    )
    explanations = _scored(session, context, model, loaded, request.method, item)
    answers = _publish(
        session, model, explanations, method=request.method, test_ids=list(request.test_ids)
    )
    return json_bytes({"explanations": answers})


def _scored(
    session: Session,
    context: ServiceContext,
    model: Model,
    loaded: LoadedModel,
    method: Method,
    item: ScoringItem,
) -> list[Explanation]:
    """``item`` scored in a pass shared with concurrent requests of the same model and method.

    The session's connection goes back to the pool first (free in the explain routes'
    autocommit sessions; ``model`` keeps its loaded attributes): a request may wait for
    several passes, and the rows it returns are read afterwards with a connection of the
    pool again. Holding it through the wait, 16 clients held 16 connections, more than the
    pool keeps (10), so connections were opened and closed again all the time.
    """
    session.commit()
    state, train_features = loaded.states[method], loaded.train_features

    def score(items):
        return score_items(state, train_features, items, scoring_slots=context.scoring_slots)

    try:
        return context.batcher.submit((model.id, model.version, method), item, score)
    except QueueFullError as error:
        EXPLAIN_REJECTED.inc()
        raise TooManyRequestsError(
            f"{error}; retry in {RETRY_AFTER_FULL_QUEUE_S} s",
            extra={"retry_after_s": RETRY_AFTER_FULL_QUEUE_S},
        ) from error
