"""CIFAR-10 car/horse with a small ResNet and IMDB with a Bi-LSTM (paper Sec. 5)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from experiments.data import TaskData
from experiments.tasks.base import (
    LinearRegistration,
    RetrainScope,
    accuracy,
    fold_indices,
    head_retrain_accuracy,
    without_dead_features,
)
from experiments.tasks.networks import HEAD_LAYER, BiLSTMClassifier, SmallResNet
from experiments.tasks.training import TrainConfig, predict_probabilities, train_network
from representer.adapters import extract_features

__all__ = ["NetworkTask", "cifar_task", "imdb_task"]


@dataclass(frozen=True)
class NetworkSettings:
    """How one network task trains."""

    train: TrainConfig
    """Optimiser of the main training."""
    retrain: TrainConfig
    """Optimiser of each retraining (RetrainScope.MODEL) and of the out-of-fold models."""
    out_of_fold_networks: bool
    """True: cleanlab's probabilities come from networks trained on the other folds;
    False: from a logistic regression on the noisy model's features (cheap, leaks)."""


class NetworkTask:
    """A binary torch network whose final Linear ``head`` is explained."""

    def __init__(
        self,
        data: TaskData,
        *,
        build: Callable[[], nn.Module],
        settings: NetworkSettings,
        description: str,
    ) -> None:
        self.data = data
        self.build = build
        self.settings = settings
        self.description = description

    def _train(
        self, inputs: np.ndarray, labels: np.ndarray, *, seed: int, config: TrainConfig
    ) -> nn.Module:
        torch.manual_seed(seed)
        network = self.build()
        return train_network(
            network,
            inputs,
            labels,
            config=config,
            seed=seed,
            progress=True,
            description=f"train {self.data.name.value} seed {seed}",
        )

    def fit(self, labels: np.ndarray, *, seed: int) -> nn.Module:
        return self._train(self.data.train_inputs, labels, seed=seed, config=self.settings.train)

    def registration(self, model: nn.Module) -> LinearRegistration:
        device = self.settings.train.device
        train_features, head = extract_features(
            model, HEAD_LAYER, self.data.train_inputs, device=device, progress=False
        )
        test_features, _ = extract_features(
            model, HEAD_LAYER, self.data.test_inputs, device=device, progress=False
        )
        return without_dead_features(head, train_features, test_features)

    def test_probabilities(self, model: nn.Module) -> np.ndarray:
        return predict_probabilities(
            model, self.data.test_inputs, device=self.settings.train.device
        )

    def out_of_fold_probabilities(
        self, labels: np.ndarray, *, seed: int, folds: int, registration: LinearRegistration
    ) -> np.ndarray:
        positive = np.zeros(len(labels))
        for train_rows, held_out in fold_indices(labels, folds=folds, seed=seed):
            if self.settings.out_of_fold_networks:
                network = self._train(
                    self.data.train_inputs[train_rows],
                    labels[train_rows],
                    seed=seed,
                    config=self.settings.retrain,
                )
                positive[held_out] = predict_probabilities(
                    network, self.data.train_inputs[held_out], device=self.settings.retrain.device
                )
            else:
                from sklearn.linear_model import LogisticRegression

                model = LogisticRegression(C=1.0, max_iter=2000)
                model.fit(registration.train_features[train_rows], labels[train_rows])
                positive[held_out] = model.predict_proba(registration.train_features[held_out])[
                    :, 1
                ]
        return np.column_stack([1.0 - positive, positive])

    def retrain_accuracy(
        self,
        labels: np.ndarray,
        *,
        seed: int,
        registration: LinearRegistration,
        scope: RetrainScope,
    ) -> float:
        if scope is RetrainScope.HEAD:
            return head_retrain_accuracy(registration, labels, self.data.test_labels)
        network = self._train(
            self.data.train_inputs, labels, seed=seed, config=self.settings.retrain
        )
        return accuracy(self.test_probabilities(network), self.data.test_labels)


def cifar_task(data: TaskData, *, epochs: int, retrain_epochs: int, device: str) -> NetworkTask:
    """CIFAR-10 automobile vs horse, SmallResNet (φ has 64 entries)."""
    return NetworkTask(
        data,
        build=lambda: SmallResNet(width=16),
        settings=NetworkSettings(
            train=TrainConfig(epochs=epochs, learning_rate=2e-3, device=device),
            retrain=TrainConfig(epochs=retrain_epochs, learning_rate=2e-3, device=device),
            out_of_fold_networks=True,
        ),
        description="CIFAR-10 automobile vs horse, ResNet (3 stages of one basic block, width 16-64)",
    )


def imdb_task(data: TaskData, *, epochs: int, retrain_epochs: int, device: str) -> NetworkTask:
    """IMDB sentiment, Bi-LSTM over embeddings trained from scratch (φ has 64 entries)."""
    return NetworkTask(
        data,
        build=lambda: BiLSTMClassifier(
            vocab_size=data.vocab_size, embedding_dim=32, hidden=32, dropout=0.3
        ),
        settings=NetworkSettings(
            train=TrainConfig(epochs=epochs, learning_rate=1e-2, batch_size=32, device=device),
            retrain=TrainConfig(
                epochs=retrain_epochs, learning_rate=1e-2, batch_size=32, device=device
            ),
            out_of_fold_networks=False,  # a 25k-review LSTM per fold is out of reach on 2 CPU cores
        ),
        description="IMDB, Bi-LSTM (embeddings 32 from scratch, hidden 32 per direction, max-pooled), regex tokens",
    )
