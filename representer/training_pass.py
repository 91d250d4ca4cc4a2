"""One streaming pass over the training set at a given head Θ (docs/math.md §1).

Computes, block by block in float64: logits Z = Φ̃Θᵀ, residuals R = P − T, the mean
gradient ḡ = Rᵀ Φ̃ / n and, on request, the Hessian H(Θ) and C = Φ̃ᵀΦ̃/n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from representer.feature_blocks import augmented_row_blocks, block_tensor, rows_per_block
from representer.hessian import accumulate_hessian_block, mirror_upper_blocks
from representer.likelihood import one_hot_targets, output_probabilities
from representer.progress import ProgressCallback

__all__ = ["TrainingPass", "run_training_pass"]


@dataclass(frozen=True)
class TrainingPass:
    """What one pass at Θ yields.

    Attributes
    ----------
    logits : ndarray of shape (n, k_out), float64
    residuals : ndarray of shape (n, k_out), float64
        r_i = P_i − T_i (binary: p_i − y_i).
    mean_gradient : Tensor of shape (k_out, D), float64
        ḡ(Θ).
    hessian : Tensor of shape (k_out·D, k_out·D), float64, or None
        H(Θ), symmetric.
    second_moment : Tensor of shape (D, D), float64, or None
        Φ̃ᵀΦ̃/n (softmax heads, when the Hessian is requested).
    """

    logits: np.ndarray
    residuals: np.ndarray
    mean_gradient: torch.Tensor
    hessian: torch.Tensor | None
    second_moment: torch.Tensor | None


def run_training_pass(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    theta: np.ndarray,
    *,
    device: torch.device,
    with_hessian: bool,
    progress: ProgressCallback,
) -> TrainingPass:
    """Stream Φ̃ once at head Θ.

    Parameters
    ----------
    train_features : ndarray of shape (n, d), real
    train_labels : ndarray of shape (n,), int64
    theta : ndarray of shape (k_out, D), float64
    device : torch.device
    with_hessian : bool
    progress : callable taking a float in [0, 1]
    """
    n, d = train_features.shape
    num_outputs, dim = theta.shape
    theta_t = torch.as_tensor(theta, dtype=torch.float64, device=device)
    size = num_outputs * dim
    logits = np.empty((n, num_outputs))
    residuals = np.empty((n, num_outputs))
    gradient_sum = torch.zeros((num_outputs, dim), dtype=torch.float64, device=device)
    hessian = (
        torch.zeros((size, size), dtype=torch.float64, device=device) if with_hessian else None
    )
    moment = None
    if with_hessian and num_outputs > 1:
        moment = torch.zeros((dim, dim), dtype=torch.float64, device=device)
    block_rows = rows_per_block(8 * (size + 2 * dim) if with_hessian else 8 * 2 * dim)
    for rows, block in augmented_row_blocks(train_features, block_rows=block_rows, device=device):
        block_labels = block_tensor(
            train_labels, rows, dtype=np.dtype(np.int64), device=device
        )  # (b,)
        block_logits = block @ theta_t.T  # (b, k_out)
        probabilities = output_probabilities(block_logits)  # (b, k_out)
        block_residuals = probabilities - one_hot_targets(block_labels, num_outputs)
        gradient_sum.addmm_(block_residuals.T, block)  # (k_out, D)
        if hessian is not None:
            accumulate_hessian_block(hessian, block, probabilities)
        if moment is not None:
            moment.addmm_(block.T, block)  # (D, D)
        logits[rows] = block_logits.cpu().numpy()
        residuals[rows] = block_residuals.cpu().numpy()
        progress(rows.stop / n)
    if hessian is not None:
        mirror_upper_blocks(hessian, num_outputs)
        hessian /= n
    if moment is not None:
        moment /= n
    return TrainingPass(
        logits=logits,
        residuals=residuals,
        mean_gradient=gradient_sum / n,
        hessian=hessian,
        second_moment=moment,
    )
