"""Queries against a fitted state: contributions and top-k explanations (docs/math.md §2-§6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from representer.config import Method
from representer.errors import InvalidInputError
from representer.explanation import DENSE_SOLVE, Explanation, SolverReport
from representer.influence import influence_contributions
from representer.l2 import l2_contributions
from representer.likelihood import predicted_class_from_logits, target_scores
from representer.lje import lje_contributions
from representer.row_summaries import summarise_rows
from representer.state import FittedState
from representer.validation import check_class_array, check_features, check_state, check_top_k

__all__ = ["contributions", "explain"]


def _l2_scored(
    state: FittedState, train: np.ndarray, test: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, list[SolverReport]]:
    return l2_contributions(state, train, test, targets), [DENSE_SOLVE] * test.shape[0]


_CONTRIBUTIONS: dict[
    Method,
    Callable[
        [FittedState, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, list[SolverReport]]
    ],
] = {
    Method.LJE: lje_contributions,
    Method.L2: _l2_scored,
    Method.INFLUENCE: influence_contributions,
}


def contributions(
    state: FittedState,
    train_features: np.ndarray,
    test_features: np.ndarray,
    *,
    target_classes: np.ndarray | Sequence[int],
) -> np.ndarray:
    """c_i(t) toward each test row's target class.

    Parameters
    ----------
    state : FittedState
    train_features : array of shape (n, d), float
        The same training features ``fit`` saw (may be a read-only float32 memmap). Only
        their shape is checked up front; a NaN/inf in them is reported when it reaches
        the result. States that do not read them (LJE with materialised weights) only
        check the shape.
    test_features : array of shape (m, d), float
    target_classes : array of shape (m,), int
        In 0..num_classes-1. For a binary head class 0 gets −c_i (docs/math.md §5).

    Returns
    -------
    ndarray of shape (m, n), float64
        Row t, column i: the contribution of training point i to test point t.
    """
    state = check_state(state)
    train, test = _check_query_features(state, train_features, test_features)
    targets = check_class_array(
        target_classes,
        argument="target_classes",
        length=test.shape[0],
        num_classes=state.meta["num_classes"],
    )
    values, _ = _contributions(state, train, test, targets)
    return values


def explain(
    state: FittedState,
    train_features: np.ndarray,
    test_features: np.ndarray,
    *,
    target: Literal["predicted"] | int | np.ndarray | Sequence[int | str] = "predicted",
    top_k: int = 10,
) -> list[Explanation]:
    """One ``Explanation`` per row of test_features (m, d), in order.

    Parameters
    ----------
    state : FittedState
    train_features : array of shape (n, d), float
    test_features : array of shape (m, d), float
    target : "predicted", int, or a sequence of length m of int or "predicted"
        The class each explanation is signed toward; defaults to the head's prediction.
        A sequence gives one target per row ("predicted" rows take the head's prediction),
        so rows of different requests can share one pass.
    top_k : int
        How many positive and negative representer points (clamped to n).
    """
    state = check_state(state)
    train, test = _check_query_features(state, train_features, test_features)
    top_k = check_top_k(top_k)
    theta_dagger = np.asarray(state.arrays["theta_dagger"])  # (k_out, D)
    logits = test @ theta_dagger[:, :-1].T + theta_dagger[:, -1]  # (m, k_out)
    predicted = predicted_class_from_logits(logits)
    targets = _resolve_targets(target, predicted, num_classes=state.meta["num_classes"])
    values, reports = _contributions(state, train, test, targets, check_finite=False)  # (m, n)
    # One compiled call for the top-k of both sides, the sums and the finiteness check: a
    # pass shared by many requests takes the interpreter lock back once, not forty times.
    summaries = summarise_rows(values, top_k)
    if not summaries.finite.all():
        raise _non_finite_culprit(train, test, values)
    model_output = target_scores(logits, targets)
    probabilities = _probabilities(logits)
    explanations = []
    for row in range(test.shape[0]):
        positive, negative = summaries.positives[row], summaries.negatives[row]
        total = float(summaries.sums[row])
        explanations.append(
            Explanation(
                target_class=int(targets[row]),
                logits=logits[row].copy(),
                probabilities=probabilities[row].copy(),
                predicted_class=int(predicted[row]),
                model_output=float(model_output[row]),
                sum_of_contributions=total,
                residual=float(model_output[row]) - total,
                positive_indices=positive,
                positive_contributions=values[row, positive],
                negative_indices=negative,
                negative_contributions=values[row, negative],
                solver=reports[row],
            )
        )
    return explanations


def _check_query_features(
    state: FittedState, train_features: Any, test_features: Any
) -> tuple[np.ndarray, np.ndarray]:
    feature_dim = state.meta["feature_dim"]
    # A finiteness scan of the training features would cost a whole query; a NaN/inf in
    # them shows up in the result instead and is reported there (``_contributions``).
    train = check_features(
        train_features,
        argument="train_features",
        feature_dim=feature_dim,
        num_rows=state.meta["n_train"],
        check_finite=False,
    )
    test = check_features(
        test_features, argument="test_features", feature_dim=feature_dim, min_rows=0
    )
    return train, np.asarray(test, dtype=np.float64)


def _contributions(
    state: FittedState,
    train: np.ndarray,
    test: np.ndarray,
    targets: np.ndarray,
    *,
    check_finite: bool = True,
) -> tuple[np.ndarray, list[SolverReport]]:
    """Contributions (m, n) float64 and how each row's H⁺ term was solved; a NaN/inf among
    them raises ``InvalidInputError`` naming its culprit unless ``check_finite`` is False
    (the caller checks them itself, as ``explain`` does)."""
    if test.shape[0] == 0:
        return np.empty((0, train.shape[0])), []
    with np.errstate(over="ignore", invalid="ignore"):  # reported below, with the culprit
        values, reports = _CONTRIBUTIONS[state.method](state, train, test, targets)  # (m, n)
    if check_finite and not np.isfinite(values).all():
        raise _non_finite_culprit(train, test, values)
    return values, reports


def _non_finite_culprit(
    train: np.ndarray, test: np.ndarray, values: np.ndarray
) -> InvalidInputError:
    """Blame NaN/inf contributions on the training features if they hold NaN/inf, else on
    the (finite, checked) test rows whose magnitude overflowed the float32/float64 products.

    Only runs on this error path, so the full scan of the training features costs nothing
    on a normal query.
    """
    try:
        check_features(train, argument="train_features", feature_dim=train.shape[1])
    except InvalidInputError as error:
        return error
    row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
    largest = float(np.abs(test[row]).max())
    return InvalidInputError(
        f"test_features row {row} is too large (max |x| = {largest:.3g}): its contributions overflow",
        argument="test_features",
    )


def _resolve_targets(target: Any, predicted: np.ndarray, *, num_classes: int) -> np.ndarray:
    if isinstance(target, str):
        if target != "predicted":
            raise InvalidInputError(
                f"target must be 'predicted', a class or an array of classes, got {target!r}",
                argument="target",
            )
        return predicted
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        target = np.full(predicted.shape[0], target, dtype=np.int64)
    elif isinstance(target, (list, tuple)) and any(isinstance(item, str) for item in target):
        target = _mixed_targets(target, predicted)
    return check_class_array(
        target, argument="target", length=predicted.shape[0], num_classes=num_classes
    )


def _mixed_targets(target: Sequence[Any], predicted: np.ndarray) -> list[Any]:
    """Per-row targets where some rows say "predicted": those take the head's prediction."""
    if len(target) != predicted.shape[0]:
        return list(target)  # check_class_array names the length mismatch
    resolved = []
    for row, item in enumerate(target):
        if isinstance(item, str) and item != "predicted":
            raise InvalidInputError(
                f"target[{row}] must be 'predicted' or a class, got {item!r}", argument="target"
            )
        resolved.append(int(predicted[row]) if item == "predicted" else item)
    return resolved


def _probabilities(logits: np.ndarray) -> np.ndarray:
    """σ(z) (one output) or softmax(z), shape (m, k_out), float64."""
    if logits.shape[1] == 1:
        return 0.5 * (1.0 + np.tanh(0.5 * logits))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
