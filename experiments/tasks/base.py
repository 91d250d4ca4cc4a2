"""What every task offers the experiments: train, predict, register, retrain."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import numpy as np

from experiments.data import TaskData
from representer import LinearHead

__all__ = ["LinearRegistration", "Registration", "RetrainScope", "Task", "XGBoostRegistration"]


class RetrainScope(str, Enum):
    """What is retrained on the partly corrected labels of the debugging experiment."""

    MODEL = "model"  # the whole model from scratch (paper)
    HEAD = "head"  # a logistic regression on the frozen features of the noisy model (cheap)


@dataclass(frozen=True)
class LinearRegistration:
    """A torch network as features + head (registered with ``register_linear``).

    train_features (n, d) float32, test_features (m, d) float32, head (1, d).
    """

    head: LinearHead
    train_features: np.ndarray
    test_features: np.ndarray
    dropped_features: int = 0
    """Feature columns removed because they are zero on every train and test row (dead
    ReLU units): they change no logit but make the head's Hessian singular."""


@dataclass(frozen=True)
class XGBoostRegistration:
    """A booster and the raw rows it takes (registered with ``register_xgboost``).

    train_inputs (n, p) float64, test_inputs (m, p) float64.
    """

    booster: Any
    train_inputs: np.ndarray
    test_inputs: np.ndarray


Registration = LinearRegistration | XGBoostRegistration


class Task(Protocol):
    """One of the paper's (data set, model) pairs."""

    data: TaskData
    description: str

    def fit(self, labels: np.ndarray, *, seed: int) -> Any:
        """Train a model on ``data.train_inputs`` with ``labels`` (n,); returns the model."""

    def registration(self, model: Any) -> Registration:
        """What the service needs to explain ``model``."""

    def test_probabilities(self, model: Any) -> np.ndarray:
        """P(class 1) on the test set, shape (m,) float64."""

    def out_of_fold_probabilities(
        self, labels: np.ndarray, *, seed: int, folds: int, registration: Registration
    ) -> np.ndarray:
        """Class probabilities (n, 2) of each training point from a model not trained on it."""

    def retrain_accuracy(
        self, labels: np.ndarray, *, seed: int, registration: Registration, scope: RetrainScope
    ) -> float:
        """Test accuracy after retraining on ``labels`` (n,)."""


def without_dead_features(
    head: LinearHead, train_features: np.ndarray, test_features: np.ndarray
) -> LinearRegistration:
    """Drop the feature columns that are exactly zero on every train and test row.

    Exact for every stored point: such a column adds nothing to any logit. train_features
    (n, d), test_features (m, d) float32; the head keeps the matching weight columns.
    """
    alive = np.any(train_features != 0, axis=0) | np.any(test_features != 0, axis=0)  # (d,)
    return LinearRegistration(
        head=LinearHead(head.weights[:, alive], head.bias),
        train_features=np.ascontiguousarray(train_features[:, alive]),
        test_features=np.ascontiguousarray(test_features[:, alive]),
        dropped_features=int((~alive).sum()),
    )


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows where ``probabilities > 0.5`` matches ``labels``."""
    return float(np.mean((probabilities > 0.5).astype(np.int64) == labels))


def head_retrain_accuracy(
    registration: LinearRegistration, labels: np.ndarray, test_labels: np.ndarray
) -> float:
    """Test accuracy of a logistic regression refit on frozen training features (RetrainScope.HEAD)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=2000)
    model.fit(registration.train_features, labels)
    return float(model.score(registration.test_features, test_labels))


def fold_indices(
    labels: np.ndarray, *, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (train, held-out) index pairs covering every row once as held-out."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))
