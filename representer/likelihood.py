"""The head's link function and residuals (docs/math.md §1), shared by every method.

A binary head has one output (k_out = 1, sigmoid); a multi-class head has k_out = k >= 2
outputs (softmax). Written this way, one formula serves both: the residual is P − T with
T the one-hot label (binary: T = y), and the Hessian weights are P_c (δ_cc' − P_c')
(binary: p (1 − p)).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "output_probabilities",
    "one_hot_targets",
    "predicted_class_from_logits",
    "probabilities_from_residuals",
    "target_scores",
]


def output_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """σ(z) for one output, softmax(z) for several.

    Parameters
    ----------
    logits : Tensor of shape (b, k_out)

    Returns
    -------
    Tensor of shape (b, k_out), same dtype.
    """
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def one_hot_targets(labels: torch.Tensor, num_outputs: int) -> torch.Tensor:
    """T with residual r = P − T: e_y for softmax heads, y itself for a sigmoid head.

    Parameters
    ----------
    labels : Tensor of shape (b,), int64
    num_outputs : int
        k_out.

    Returns
    -------
    Tensor of shape (b, k_out), float64.
    """
    if num_outputs == 1:
        return labels.to(torch.float64)[:, None]
    targets = torch.zeros((labels.shape[0], num_outputs), dtype=torch.float64, device=labels.device)
    targets[torch.arange(labels.shape[0], device=labels.device), labels] = 1.0
    return targets


def predicted_class_from_logits(logits: np.ndarray) -> np.ndarray:
    """The head's predicted class: z > 0 for one output, argmax otherwise.

    Parameters
    ----------
    logits : ndarray of shape (m, k_out)

    Returns
    -------
    ndarray of shape (m,), int64.
    """
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).astype(np.int64)
    return np.argmax(logits, axis=1).astype(np.int64)


def target_scores(logits: np.ndarray, target_classes: np.ndarray) -> np.ndarray:
    """The score of each row's target class (docs/math.md §5): z_c, binary class 0 → −z.

    Parameters
    ----------
    logits : ndarray of shape (m, k_out)
    target_classes : ndarray of shape (m,), int64

    Returns
    -------
    ndarray of shape (m,), float64.
    """
    if logits.shape[1] == 1:
        return np.where(target_classes == 1, logits[:, 0], -logits[:, 0])
    return logits[np.arange(logits.shape[0]), target_classes]


def probabilities_from_residuals(residuals: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """P = R + T for a softmax head (T one-hot at the labels).

    Parameters
    ----------
    residuals : ndarray of shape (n, k), float64
    labels : ndarray of shape (n,), int64

    Returns
    -------
    ndarray of shape (n, k), float64, clipped to [0, 1].
    """
    probabilities = np.array(residuals, dtype=np.float64)
    probabilities[np.arange(labels.shape[0]), labels] += 1.0
    return np.clip(probabilities, 0.0, 1.0)
