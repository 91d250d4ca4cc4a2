"""German Credit with XGBoost (paper Sec. 5, 30% of training labels flipped)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from experiments.data import TaskData
from experiments.tasks.base import RetrainScope, XGBoostRegistration, accuracy, fold_indices

__all__ = ["GermanXGBoost", "XGBoostConfig"]


@dataclass(frozen=True)
class XGBoostConfig:
    """Booster settings (the paper's appendix gives none beyond 'XGBoost')."""

    rounds: int = 100
    """Boosting rounds (trees); φ(x) has one entry per tree."""
    max_depth: int = 3
    """Depth of each tree."""
    eta: float = 0.1
    """Shrinkage."""


class GermanXGBoost:
    """Trains boosters on German Credit; the service embeds them as tree margins."""

    description = "German Credit (UCI), XGBoost binary:logistic, tree_margins embedding"

    def __init__(self, data: TaskData, *, config: XGBoostConfig = XGBoostConfig()) -> None:
        self.data = data
        self.config = config

    def _train(self, inputs: np.ndarray, labels: np.ndarray, *, seed: int) -> xgb.Booster:
        params = {
            "objective": "binary:logistic",
            "max_depth": self.config.max_depth,
            "eta": self.config.eta,
            "seed": seed,
            "nthread": 1,
            "eval_metric": "logloss",
        }
        return xgb.train(
            params, xgb.DMatrix(inputs, label=labels), num_boost_round=self.config.rounds
        )

    def fit(self, labels: np.ndarray, *, seed: int) -> xgb.Booster:
        return self._train(self.data.train_inputs, labels, seed=seed)

    def registration(self, model: xgb.Booster) -> XGBoostRegistration:
        return XGBoostRegistration(
            booster=model, train_inputs=self.data.train_inputs, test_inputs=self.data.test_inputs
        )

    def test_probabilities(self, model: xgb.Booster) -> np.ndarray:
        return model.predict(xgb.DMatrix(self.data.test_inputs)).astype(np.float64)

    def out_of_fold_probabilities(
        self, labels: np.ndarray, *, seed: int, folds: int, registration: XGBoostRegistration
    ) -> np.ndarray:
        positive = np.zeros(len(labels))
        for train_rows, held_out in fold_indices(labels, folds=folds, seed=seed):
            booster = self._train(self.data.train_inputs[train_rows], labels[train_rows], seed=seed)
            positive[held_out] = booster.predict(xgb.DMatrix(self.data.train_inputs[held_out]))
        return np.column_stack([1.0 - positive, positive])

    def retrain_accuracy(
        self,
        labels: np.ndarray,
        *,
        seed: int,
        registration: XGBoostRegistration,
        scope: RetrainScope,
    ) -> float:
        # A booster is cheap: always retrained whole, whatever the scope.
        return accuracy(self.test_probabilities(self.fit(labels, seed=seed)), self.data.test_labels)
