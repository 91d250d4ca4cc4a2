"""Mini-batch training and prediction for the binary torch networks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["TrainConfig", "predict_probabilities", "train_network"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser settings of one training run."""

    epochs: int
    """Passes over the training data."""
    learning_rate: float = 2e-3
    """Adam step size."""
    weight_decay: float = 1e-4
    """Adam (L2) weight decay."""
    batch_size: int = 64
    """Rows per step."""
    device: str = "cpu"
    """Where to train ("cuda" when available in full mode)."""


def train_network(
    network: nn.Module,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    config: TrainConfig,
    seed: int,
    progress: bool = False,
    description: str = "train",
) -> nn.Module:
    """Train ``network`` in place with binary cross-entropy on (inputs, labels); returns it.

    Parameters
    ----------
    network : nn.Module
        Maps a batch of inputs to logits of shape (batch, 1).
    inputs : ndarray of shape (n, ...)
    labels : ndarray of shape (n,), int64 in {0, 1}
    """
    generator = torch.Generator().manual_seed(seed)
    network.to(config.device).train()
    optimiser = torch.optim.Adam(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    input_tensor = torch.from_numpy(inputs)
    target_tensor = torch.from_numpy(labels.astype(np.float32))
    loss_function = nn.BCEWithLogitsLoss()
    steps = config.epochs * int(np.ceil(len(labels) / config.batch_size))
    with tqdm(total=steps, desc=description, disable=not progress, leave=False) as bar:
        for _ in range(config.epochs):
            order = torch.randperm(len(labels), generator=generator)
            for start in range(0, len(labels), config.batch_size):
                batch = order[start : start + config.batch_size]
                logits = network(input_tensor[batch].to(config.device)).squeeze(1)  # (batch,)
                loss = loss_function(logits, target_tensor[batch].to(config.device))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                bar.update(1)
    return network.eval()


@torch.no_grad()
def predict_probabilities(
    network: nn.Module, inputs: np.ndarray, *, device: str = "cpu", batch_size: int = 256
) -> np.ndarray:
    """P(class 1) for every row, shape (n,) float64."""
    network.to(device).eval()
    outputs = [
        torch.sigmoid(network(torch.from_numpy(inputs[start : start + batch_size]).to(device)))
        .squeeze(1)
        .cpu()
        for start in range(0, len(inputs), batch_size)
    ]
    return torch.cat(outputs).double().numpy()
