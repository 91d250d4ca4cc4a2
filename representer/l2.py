"""RPS-l2 (Yeh et al. 2018; docs/math.md §3), the baseline.

Fine-tune the head on the model's own probabilities P† with a ridge penalty,
Θ_λ = argmin (1/n) Σ_i CE(P_Θ,i, P†_i) + λ‖Θ‖²_F (L-BFGS, full batch), then
α_i = −(P_λ,i − P†_i)/(2λn) and c_i(t)_c = α_ic φ̃_iᵀφ̃_t; Σ_i α_i φ̃_iᵀ = Θ_λ.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import torch

from representer.config import L2Config
from representer.feature_blocks import (
    augmented_product,
    augmented_row_blocks,
    float32_product_t,
    rows_per_block,
)
from representer.head import LinearHead
from representer.kernel import COMPILED_CONTRACTION, contract_product
from representer.likelihood import output_probabilities, predicted_class_from_logits, target_scores
from representer.method_fit import MethodFit, relative_shift
from representer.progress import ProgressCallback, stage_progress
from representer.state import FittedState

__all__ = ["fit_l2", "l2_contributions"]

CACHE_BYTES = 1024**3
"""Hold Φ̃ in float64 for the L-BFGS iterations when it needs at most this much."""
PRODUCT_BYTES = 256 * 1024**2
"""Cap on the (n, m) float64 product of one query batch."""


class _SoftTargetObjective:
    """F(Θ) = (1/n) Σ CE(P_Θ,i, P†_i) + λ‖Θ‖² and its gradient, streamed over Φ̃ blocks."""

    def __init__(
        self, train_features: np.ndarray, theta_dagger: np.ndarray, lam: float, device: torch.device
    ):
        self.n = train_features.shape[0]
        self.lam = lam
        self.shape = theta_dagger.shape
        self.device = device
        self.train_features = train_features
        dim = theta_dagger.shape[1]
        self.block_rows = rows_per_block(8 * dim * 2)
        cache = self.n * dim * 8 <= CACHE_BYTES
        self.cached = list(self._fresh_blocks()) if cache else None
        theta_t = torch.as_tensor(theta_dagger, device=device)
        self.soft_targets = [
            output_probabilities(block @ theta_t.T) for _, block in self.blocks()
        ]  # P† per block

    def _fresh_blocks(self):
        """Φ̃ row blocks converted anew: (rows, (b, D) float64)."""
        return augmented_row_blocks(
            self.train_features, block_rows=self.block_rows, device=self.device
        )

    def blocks(self):
        """Φ̃ row blocks, from the cache when it exists."""
        return iter(self.cached) if self.cached is not None else self._fresh_blocks()

    def __call__(self, theta_flat: np.ndarray) -> tuple[float, np.ndarray]:
        theta = torch.as_tensor(theta_flat.reshape(self.shape), device=self.device)
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        gradient = 2.0 * self.lam * theta  # (k_out, D)
        for (_, block), targets in zip(self.blocks(), self.soft_targets, strict=False):
            logits = block @ theta.T  # (b, k_out)
            if self.shape[0] == 1:
                loss += (torch.nn.functional.softplus(logits) - targets * logits).sum()
            else:
                loss -= (targets * torch.log_softmax(logits, dim=1)).sum()
            gradient += (output_probabilities(logits) - targets).T @ block / self.n  # (k_out, D)
        value = float(loss) / self.n + self.lam * float((theta * theta).sum())
        return value, gradient.cpu().numpy().reshape(-1)

    def alphas(self, theta: np.ndarray) -> np.ndarray:
        """α_i = −(P_Θ,i − P†_i)/(2λn), shape (n, k_out), float64."""
        theta_t = torch.as_tensor(theta, device=self.device)
        parts = [
            output_probabilities(block @ theta_t.T) - targets
            for (_, block), targets in zip(self.blocks(), self.soft_targets, strict=False)
        ]
        return (torch.cat(parts) / (-2.0 * self.lam * self.n)).cpu().numpy()


def fit_l2(
    head: LinearHead,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    config: L2Config,
    *,
    device: torch.device,
    progress: ProgressCallback | None,
) -> MethodFit:
    """Precompute RPS-l2.

    Returns
    -------
    MethodFit
    arrays : dict
        ``theta_dagger``, ``theta_lambda`` and ``alpha_theta`` = Σ_i α_i φ̃_iᵀ (k_out, D)
        float64; ``alpha`` (n, k_out) float64; ``self_scores`` (n,) float32
        (|α_{i,ỹ_i}|·‖φ̃_i‖², binary |α_i|·‖φ̃_i‖²); ``train_predicted_class`` (n,) int64.
    diagnostics : dict
        ``train_accuracy``; ``mean_abs_residual``: mean |z†_i − Σ_j c_j(x_i)| at the
        predicted class (how far the fine-tuned output is from the original);
        ``theta_shift`` = ‖Θ_λ − Θ†‖_F/‖Θ†‖_F; ``grad_reduction_reached``; ``iterations``.
    """
    report = stage_progress(progress, 0.0, 1.0)
    theta_dagger = head.theta
    objective = _SoftTargetObjective(train_features, theta_dagger, config.lam, device)
    _, initial_gradient = objective(theta_dagger.reshape(-1))
    target_norm = np.linalg.norm(initial_gradient) / config.grad_reduction
    iterations = iter(range(1, int(config.max_iter) + 1))
    result = scipy.optimize.minimize(
        objective,
        theta_dagger.reshape(-1),
        jac=True,
        method="L-BFGS-B",
        options={
            "maxiter": int(config.max_iter),
            "gtol": target_norm / np.sqrt(initial_gradient.size),
            "ftol": 0.0,
        },
        callback=lambda _: report(0.8 * next(iterations, config.max_iter) / config.max_iter),
    )
    report(0.8)
    theta_lambda = result.x.reshape(theta_dagger.shape)
    _, final_gradient = objective(result.x)
    alpha = objective.alphas(theta_lambda)  # (n, k_out)
    feature_norms, alpha_theta, logits = _alpha_pass(objective, alpha, theta_dagger)
    own = train_labels if head.num_outputs > 1 else np.zeros_like(train_labels)
    self_scores = np.abs(alpha[np.arange(alpha.shape[0]), own]) * feature_norms
    predicted = predicted_class_from_logits(logits)
    fine_tuned_logits = augmented_product(train_features, alpha_theta.T)  # Σ_j c_j(x_i) (n, k_out)
    initial_norm = float(np.linalg.norm(initial_gradient))
    arrays = {
        "theta_dagger": theta_dagger,
        "theta_lambda": theta_lambda,
        "alpha_theta": alpha_theta,
        "alpha": alpha,
        "self_scores": self_scores.astype(np.float32),
        "train_predicted_class": predicted,
    }
    diagnostics = {
        "train_accuracy": float(np.mean(predicted == train_labels)),
        "mean_abs_residual": float(
            np.mean(np.abs(target_scores(logits - fine_tuned_logits, predicted)))
        ),
        "theta_shift": relative_shift(theta_lambda, theta_dagger),
        "grad_reduction_reached": initial_norm / max(float(np.linalg.norm(final_gradient)), 1e-300),
        "iterations": int(result.nit),
    }
    return MethodFit(arrays=arrays, diagnostics=diagnostics)


def _alpha_pass(
    objective: _SoftTargetObjective, alpha: np.ndarray, theta_dagger: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """‖φ̃_i‖² (n,), Σ_i α_i φ̃_iᵀ (k_out, D) and the original logits Z† (n, k_out)."""
    norms, logits = [], []
    alpha_theta = np.zeros(theta_dagger.shape)
    for rows, block in objective.blocks():
        block_np = block.cpu().numpy()  # (b, D)
        norms.append(np.einsum("bd,bd->b", block_np, block_np))
        alpha_theta += alpha[rows].T @ block_np  # (k_out, D)
        logits.append(block_np @ theta_dagger.T)  # (b, k_out)
    return np.concatenate(norms), alpha_theta, np.concatenate(logits)


def l2_contributions(
    state: FittedState,
    train_features: np.ndarray,
    test_features: np.ndarray,
    target_classes: np.ndarray,
) -> np.ndarray:
    """c_i(t) = α_{i,c} φ̃_iᵀφ̃_t toward each test row's target class (binary class 0: −α_i φ̃_iᵀφ̃_t).

    Returns
    -------
    ndarray of shape (m, n), float64.
    """
    alpha = np.asarray(state.arrays["alpha"])  # (n, k_out)
    n, num_outputs = alpha.shape
    m = test_features.shape[0]
    test_augmented = np.hstack([test_features, np.ones((m, 1))])  # (m, D)
    rows_class = target_classes if num_outputs > 1 else np.zeros_like(target_classes)
    values = np.empty((m, n))
    batch = max(1, PRODUCT_BYTES // (8 * n))
    for start in range(0, m, batch):
        stop = min(m, start + batch)
        vectors = test_augmented[start:stop].T  # (D, b)
        product_t = float32_product_t(train_features, vectors) if COMPILED_CONTRACTION else None
        if product_t is not None:  # (b, n) float32: bias, float64 view and α in one pass
            values[start:stop] = contract_product(
                product_t, vectors[-1], alpha, stop - start, columns=rows_class[start:stop]
            )
            continue
        kernel = augmented_product(train_features, vectors)  # φ̃_iᵀφ̃_t (n, b)
        values[start:stop] = kernel.T * alpha[:, rows_class[start:stop]].T  # (b, n)
    if num_outputs == 1:
        values[target_classes == 0] *= -1.0
    return values
