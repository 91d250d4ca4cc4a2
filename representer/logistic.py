"""Refitting a linear head on stored features: L2-penalised logistic regression.

Used for out-of-fold probabilities (label-error rankings) and for refitting a head on
reviewed labels. The user's network is never touched: only Θ = [W, b] over φ is fit.

The objective, on features standardised per column (mean μ, scale σ, from the rows fit)::

    L(W, b) = (1/n) Σ_i −log softmax(W x̃_i + b)[y_i] + (α / 2n) ‖W‖²,   x̃ = (φ − μ) / σ

with α = ``RefitConfig.l2`` (scikit-learn's C = 1/α). The head returned acts on raw φ.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

from representer.errors import InvalidInputError
from representer.head import LinearHead

__all__ = [
    "RefitConfig",
    "RefitTimeout",
    "class_probabilities",
    "fit_logistic_head",
    "out_of_fold_probabilities",
    "estimate_refit_seconds",
]


@dataclass(frozen=True)
class RefitConfig:
    """How a head is refit on stored features."""

    folds: int = 5
    """K of the K-fold out-of-fold probabilities."""
    l2: float = 100.0
    """α, the L2 penalty on the standardised weights (scikit-learn's C = 1/α). 100: on
    seeds 0-2 of ``experiments.label_rankings`` α = 1 overfit the stored features (German
    Credit's tree embedding: out-of-fold log-loss 0.43 against 0.33 at α = 100; CIFAR
    car/horse 0.51 against 0.48) and found fewer flipped labels (see docs/methods.md)."""
    max_iter: int = 200
    """L-BFGS iterations per fit."""
    seed: int = 0
    """Seed of the stratified fold assignment."""

    def __post_init__(self) -> None:
        if not (isinstance(self.folds, int) and self.folds >= 2):
            raise InvalidInputError(
                f"folds must be an int >= 2, got {self.folds!r}", argument="folds"
            )
        if not (isinstance(self.l2, (int, float)) and np.isfinite(self.l2) and self.l2 > 0):
            raise InvalidInputError(
                f"l2 must be a finite number > 0, got {self.l2!r}", argument="l2"
            )
        if not (isinstance(self.max_iter, int) and self.max_iter >= 1):
            raise InvalidInputError(
                f"max_iter must be an int >= 1, got {self.max_iter!r}", argument="max_iter"
            )


class RefitTimeout(Exception):
    """A refit passed its deadline (``time.monotonic()`` seconds)."""


def class_probabilities(head: LinearHead, features: np.ndarray) -> np.ndarray:
    """P(class | φ) of every row, shape (n, num_classes) float64 (binary: [1 − p, p])."""
    logits = head.logits(features)  # (n, k_out)
    if head.is_binary:
        logits = np.hstack([np.zeros_like(logits), logits])  # (n, 2)
    return np.exp(log_softmax(logits, axis=1))


def _loss_and_gradient(
    packed: np.ndarray, features: np.ndarray, onehot: np.ndarray, alpha: float
) -> tuple[float, np.ndarray]:
    n, d = features.shape
    k = onehot.shape[1]
    theta = packed.reshape(k, d + 1)
    weights, bias = theta[:, :d], theta[:, d]
    log_p = log_softmax(features @ weights.T + bias, axis=1)  # (n, k)
    loss = -np.sum(onehot * log_p) / n + alpha / (2 * n) * np.sum(weights**2)
    residual = (np.exp(log_p) - onehot) / n  # (n, k)
    gradient = np.empty_like(theta)
    gradient[:, :d] = residual.T @ features + alpha / n * weights  # (k, d)
    gradient[:, d] = residual.sum(axis=0)
    return float(loss), gradient.ravel()


def _standardise(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    mean = features.mean(axis=0)  # (d,)
    scale = features.std(axis=0)
    scale[scale < 1e-12] = 1.0  # constant columns stay constant (zero after centring)
    return (features - mean) / scale, mean, scale


def fit_logistic_head(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    config: RefitConfig | None = None,
    deadline: float | None = None,
) -> LinearHead:
    """The L2-penalised logistic head over raw ``features`` (see the module docstring).

    Parameters
    ----------
    features : array of shape (n, d), float
    labels : array of shape (n,), int in 0..num_classes-1
    num_classes : int >= 2
        A binary problem gives a one-logit head (k_out = 1), like the heads the service takes.
    config : RefitConfig, optional
    deadline : float, optional
        ``time.monotonic()`` value after which ``RefitTimeout`` is raised.

    Returns
    -------
    LinearHead with weights (k_out, d), bias (k_out,).
    """
    config = config or RefitConfig()
    labels = np.asarray(labels, dtype=np.int64)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= num_classes:
        raise InvalidInputError(f"labels must lie in 0..{num_classes - 1}", argument="labels")
    standardised, mean, scale = _standardise(features)  # (n, d)
    n, d = standardised.shape
    onehot = np.zeros((n, num_classes))
    onehot[np.arange(n), labels] = 1.0

    def stop_at_deadline(_: np.ndarray) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise RefitTimeout

    solution = minimize(
        _loss_and_gradient,
        np.zeros(num_classes * (d + 1)),
        args=(standardised, onehot, float(config.l2)),
        jac=True,
        method="L-BFGS-B",
        callback=stop_at_deadline,
        options={"maxiter": config.max_iter},
    )
    theta = solution.x.reshape(num_classes, d + 1)
    weights = theta[:, :d] / scale  # back to raw φ: W x̃ = (W/σ) φ − (W/σ) μ
    bias = theta[:, d] - weights @ mean
    if num_classes == 2:  # softmax over two classes = sigmoid of the logit difference
        weights, bias = weights[1:] - weights[:1], bias[1:] - bias[:1]
    return LinearHead(weights, bias)


def _fold_assignment(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Stratified fold of every row, shape (n,) int64: each class dealt round-robin."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        assignment[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return assignment


def out_of_fold_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    config: RefitConfig | None = None,
    deadline: float | None = None,
) -> np.ndarray:
    """P(class | φ_i) from a head refit on the other folds, shape (n, num_classes) float64."""
    config = config or RefitConfig()
    labels = np.asarray(labels, dtype=np.int64)
    fold = _fold_assignment(labels, config.folds, config.seed)  # (n,)
    probabilities = np.empty((len(labels), num_classes))
    for held_out in range(config.folds):
        rows = fold == held_out
        head = fit_logistic_head(
            features[~rows],
            labels[~rows],
            num_classes=num_classes,
            config=config,
            deadline=deadline,
        )
        probabilities[rows] = class_probabilities(head, features[rows])
    return probabilities


TYPICAL_EVALUATIONS = 50
"""Loss-and-gradient evaluations a refit is expected to take at α = 100. Measured with
L-BFGS on scikit-learn's digits (29 iterations, 32 evaluations) and on clustered synthetic
heads n=5,000-20,000, d=64-512, k=10-100 (11-17 iterations, 12-19 evaluations). Assuming
all ``max_iter`` iterations made the estimate 10-20x the real cost, so the out-of-fold
rankings were skipped on heads whose refits take seconds; the deadline still bounds a fit
that runs longer than expected."""


def estimate_refit_seconds(features: np.ndarray, num_classes: int, config: RefitConfig) -> float:
    """Seconds the K fold refits and the refit on all rows are expected to take: one
    timed loss-and-gradient pass × K × min(TYPICAL_EVALUATIONS, 1.25 · max_iter).

    ``K`` because each of the K fits sees (K − 1)/K of the rows and the last one all of
    them; 1.25 for the extra evaluations of L-BFGS line searches when a fit runs to
    ``max_iter``. An expected cost, not a bound: the caller enforces its budget as a
    deadline as well.
    """
    sample = np.asarray(features[: min(len(features), 4096)], dtype=np.float64)
    onehot = np.zeros((len(sample), num_classes))
    onehot[:, 0] = 1.0
    packed = np.zeros(num_classes * (sample.shape[1] + 1))
    started = time.perf_counter()
    _loss_and_gradient(packed, sample, onehot, 1.0)
    per_pass = (time.perf_counter() - started) * len(features) / max(len(sample), 1)
    return per_pass * config.folds * min(TYPICAL_EVALUATIONS, 1.25 * config.max_iter)
