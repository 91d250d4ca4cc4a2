"""RPS-LJE (MATH.md §2): precompute and contributions.

Precompute: Θ* = Θ† + γ ḡ(Θ†); at Θ* the residuals R*, the Hessian H* and its exact
inverse M on zero-class-sum vectors; the self-contributions of §6. A query for test point
t toward class c is

    c_i(t)_c = (1/n) Θ*_c φ̃_t − (1/n) Σ_c' r*_ic' φ̃_iᵀ B_cc' φ̃_t,

with [B_c1 … B_ck] = row block c of M (binary: c_i(t) = (1/n)(θ*·φ̃_t − r*_i φ̃_iᵀ M φ̃_t);
toward class 0 the sign flips, §5).
"""

from __future__ import annotations

import numpy as np
import torch

from representer.config import LJEConfig
from representer.feature_blocks import augmented_row_blocks, rows_per_block
from representer.head import LinearHead
from representer.hessian import check_hessian_memory, factorize_hessian
from representer.kernel import kernel_scores
from representer.likelihood import predicted_class_from_logits, target_scores
from representer.progress import ProgressCallback, stage_progress
from representer.state import FittedState
from representer.training_pass import run_training_pass

__all__ = ["fit_lje", "lje_contributions"]


def fit_lje(
    head: LinearHead,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    config: LJEConfig,
    *,
    device: torch.device,
    progress: ProgressCallback | None,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Precompute RPS-LJE.

    Parameters
    ----------
    head : LinearHead
        Θ† of shape (k_out, D).
    train_features : ndarray of shape (n, d), real
    train_labels : ndarray of shape (n,), int64
    config : LJEConfig
    device : torch.device
    progress : callable taking a float in [0, 1], optional

    Returns
    -------
    arrays : dict
        ``theta_dagger``, ``theta_star``, ``newton_theta`` (k_out, D) float64;
        ``residuals_star`` (n, k_out) float64; ``hessian_inverse`` (k_out·D, k_out·D)
        float64; ``self_contributions`` (n,) float32; ``self_scores`` (n,) float32;
        ``train_predicted_class`` (n,) int64.
    diagnostics : dict
        ``train_accuracy``, ``mean_abs_residual`` (mean |ρ_i| at each point's predicted
        class), ``theta_shift`` (‖Θ* − Θ†‖_F / ‖Θ†‖_F).
    """
    num_outputs, dim = head.num_outputs, head.feature_dim + 1
    check_hessian_memory(num_outputs, dim, memory_budget_bytes=config.memory_budget_bytes)
    theta_dagger = head.theta  # (k_out, D)
    at_dagger = run_training_pass(
        train_features, train_labels, theta_dagger,
        device=device, with_hessian=False, progress=stage_progress(progress, 0.0, 0.1),
    )
    theta_star = theta_dagger + config.lr * at_dagger.mean_gradient.cpu().numpy()  # Θ* (k_out, D)
    at_star = run_training_pass(
        train_features, train_labels, theta_star,
        device=device, with_hessian=True, progress=stage_progress(progress, 0.1, 0.7),
    )
    factor = factorize_hessian(
        at_star.hessian, num_outputs=num_outputs, damping=config.damping, second_moment=at_star.second_moment
    )
    inverse = factor.inverse()  # M (k_out·D, k_out·D)
    stage_progress(progress, 0.7, 0.75)(1.0)
    newton_shift = (inverse @ at_star.mean_gradient.reshape(-1)).reshape(num_outputs, dim)  # mat(H*⁺ vec ḡ*)
    newton_theta = theta_star - newton_shift.cpu().numpy()  # (k_out, D)
    self_contribution, newton_logits = _self_contributions(
        train_features, train_labels, theta_star, newton_theta, at_star.residuals, inverse,
        progress=stage_progress(progress, 0.75, 1.0),
    )
    predicted = predicted_class_from_logits(at_dagger.logits)  # (n,)
    residual_logits = at_dagger.logits - newton_logits  # ρ_i (n, k_out)
    arrays = {
        "theta_dagger": theta_dagger,
        "theta_star": theta_star,
        "newton_theta": newton_theta,
        "residuals_star": at_star.residuals,
        "hessian_inverse": inverse.cpu().numpy(),
        "self_contributions": self_contribution.astype(np.float32),
        "self_scores": np.abs(self_contribution).astype(np.float32),
        "train_predicted_class": predicted,
    }
    diagnostics = {
        "train_accuracy": float(np.mean(predicted == train_labels)),
        "mean_abs_residual": float(np.mean(np.abs(target_scores(residual_logits, predicted)))),
        "theta_shift": relative_shift(theta_star, theta_dagger),
    }
    return arrays, diagnostics


def relative_shift(theta: np.ndarray, theta_dagger: np.ndarray) -> float:
    """‖Θ − Θ†‖_F / ‖Θ†‖_F (the absolute shift when Θ† = 0)."""
    shift = float(np.linalg.norm(theta - theta_dagger))
    reference = float(np.linalg.norm(theta_dagger))
    return shift / reference if reference > 0 else shift


def _self_contributions(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    theta_star: np.ndarray,
    newton_theta: np.ndarray,
    residuals_star: np.ndarray,
    inverse: torch.Tensor,
    *,
    progress: ProgressCallback,
) -> tuple[np.ndarray, np.ndarray]:
    """c_i(x_i) at the observed label (binary: the logit contribution), and Φ̃ Θ_Newtonᵀ.

    Only row block ỹ_i of M is needed for point i: rows are grouped by label and each
    group costs one GEMM Φ̃_c [B_c1 … B_ck].

    Returns
    -------
    self_contribution : ndarray of shape (n,), float64
    newton_logits : ndarray of shape (n, k_out), float64
    """
    n = train_features.shape[0]
    num_outputs, dim = theta_star.shape
    device = inverse.device
    theta_star_t = torch.as_tensor(theta_star, device=device)
    newton_t = torch.as_tensor(newton_theta, device=device)
    residuals_t = torch.as_tensor(residuals_star, device=device)
    labels_t = torch.as_tensor(train_labels, device=device)
    self_contribution = torch.empty(n, dtype=torch.float64, device=device)
    newton_logits = torch.empty((n, num_outputs), dtype=torch.float64, device=device)
    block_rows = rows_per_block(8 * num_outputs * dim * 2)
    for rows, block in augmented_row_blocks(train_features, block_rows=block_rows, device=device):
        newton_logits[rows] = block @ newton_t.T  # (b, k_out)
        own_class = labels_t[rows] if num_outputs > 1 else torch.zeros_like(labels_t[rows])
        values = torch.empty(block.shape[0], dtype=torch.float64, device=device)
        for c in torch.unique(own_class).tolist():
            members = torch.nonzero(own_class == c).flatten()
            features = block[members]  # (b_c, D)
            whitened = (features @ inverse[c * dim : (c + 1) * dim, :]).reshape(-1, num_outputs, dim)  # (b_c, k_out, D)
            quadratic = torch.einsum("bkd,bd,bk->b", whitened, features, residuals_t[rows][members])  # (b_c,)
            values[members] = (features @ theta_star_t[c] - quadratic) / n
        self_contribution[rows] = values
        progress(rows.stop / n)
    return self_contribution.cpu().numpy(), newton_logits.cpu().numpy()


def lje_contributions(
    state: FittedState, train_features: np.ndarray, test_features: np.ndarray, target_classes: np.ndarray
) -> np.ndarray:
    """c_i(t) toward each test row's target class.

    Parameters
    ----------
    state : FittedState of method LJE
    train_features : ndarray of shape (n, d), float32 or float64
    test_features : ndarray of shape (m, d), float64
    target_classes : ndarray of shape (m,), int64

    Returns
    -------
    ndarray of shape (m, n), float64.
    """
    arrays = state.arrays
    theta_star = np.asarray(arrays["theta_star"])  # (k_out, D)
    inverse = arrays["hessian_inverse"]  # (k_out·D, k_out·D), maybe memory-mapped
    num_outputs, dim = theta_star.shape
    n = train_features.shape[0]
    m = test_features.shape[0]
    test_augmented = np.hstack([test_features, np.ones((m, 1))])  # (m, D)
    # Binary heads compute the class-1 (logit) contribution and flip it for class 0.
    rows_class = target_classes if num_outputs > 1 else np.zeros_like(target_classes)
    directions = np.empty((m, num_outputs * dim))
    for c in np.unique(rows_class):
        members = np.flatnonzero(rows_class == c)
        row_block = np.asarray(inverse[c * dim : (c + 1) * dim, :])  # (D, k_out·D) = [B_c1 … B_ck]
        directions[members] = test_augmented[members] @ row_block  # (m_c, k_out·D)
    scores = kernel_scores(
        train_features, np.asarray(arrays["residuals_star"]), directions.reshape(m, num_outputs, dim)
    )  # (m, n)
    spread = np.einsum("md,md->m", test_augmented, theta_star[rows_class])  # Θ*_c φ̃_t (m,)
    values = (spread[:, None] - scores) / n
    if num_outputs == 1:
        values[target_classes == 0] *= -1.0
    return values
