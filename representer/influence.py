"""Last-layer influence function (Koh & Liang 2017; docs/math.md §4).

At Θ† (no ascent step): g_i = r†_i ⊗ φ̃_i, H† = H(Θ†), and

    I(i, t) = (1/n) g_tᵀ H†⁺ g_i,    g_t = (P†_t − e_target) ⊗ φ̃_t
                                      (binary: (p_t − [target = 1]) φ̃_t),

positive when point i helps the target prediction. Self-influence (1/n) g_iᵀ H†⁺ g_i ≥ 0
is the suspicious-label score.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import torch

from representer.block_hessian import block_quadratic_forms, support_pairs
from representer.config import HessianMode, InfluenceConfig
from representer.explanation import DENSE_SOLVE, SolverReport
from representer.feature_blocks import augmented_product, augmented_row_blocks, rows_per_block
from representer.head import LinearHead
from representer.hessian import HessianFactor, factorize_hessian
from representer.hessian_solver import (
    BlockSystem,
    block_kernel_scores,
    choose_hessian,
    pcg_reports,
    solve_with_state,
)
from representer.kernel import directions_from_rows, kernel_scores
from representer.likelihood import (
    predicted_class_from_logits,
    probabilities_from_residuals,
    target_scores,
)
from representer.method_fit import MethodFit, relative_shift
from representer.progress import ProgressCallback, stage_progress
from representer.state import FittedState
from representer.training_pass import TrainingPass, run_training_pass

__all__ = ["fit_influence", "influence_contributions"]


def fit_influence(
    head: LinearHead,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    config: InfluenceConfig,
    *,
    device: torch.device,
    progress: ProgressCallback | None,
) -> MethodFit:
    """Precompute the influence function.

    Returns
    -------
    MethodFit
    arrays : dict
        ``theta_dagger`` (k_out, D) float64; ``residuals`` (n, k_out) float64 (r†);
        ``hessian_inverse`` (k_out·D, k_out·D) float64; ``self_scores`` (n,) float32
        (self-influence); ``train_predicted_class`` (n,) int64.
    diagnostics : dict
        ``train_accuracy``; ``mean_abs_residual``: mean over training points of
        |(mat(H†⁺ vec ḡ(Θ†)) φ̃_i)| at the predicted class, the Newton-step size of §2.5
        that measures how far Θ† is from stationary; ``theta_shift`` = 0 (no step).
    """
    n = train_features.shape[0]
    num_outputs, dim = head.num_outputs, head.feature_dim + 1
    hessian = choose_hessian(
        config.hessian,
        n=n,
        num_outputs=num_outputs,
        dim=dim,
        memory_budget_bytes=config.memory_budget_bytes,
    )
    theta_dagger = head.theta
    blocks = hessian is HessianMode.BLOCKS
    at_dagger = run_training_pass(
        train_features,
        train_labels,
        theta_dagger,
        device=device,
        with_hessian=not blocks,
        progress=stage_progress(progress, 0.0, 0.3 if blocks else 0.5),
    )
    solve = _blocks_solve if blocks else _dense_solve
    query_arrays, self_influence, shift_logits, solver_diagnostics = solve(
        train_features,
        train_labels,
        at_dagger,
        config,
        device=device,
        progress=stage_progress(progress, 0.3 if blocks else 0.5, 1.0),
    )
    predicted = predicted_class_from_logits(at_dagger.logits)
    arrays = {
        "theta_dagger": theta_dagger,
        "residuals": at_dagger.residuals,
        **query_arrays,
        "self_scores": self_influence.astype(np.float32),
        "train_predicted_class": predicted,
    }
    diagnostics = {
        "train_accuracy": float(np.mean(predicted == train_labels)),
        "mean_abs_residual": float(np.mean(np.abs(target_scores(shift_logits, predicted)))),
        "theta_shift": relative_shift(theta_dagger, theta_dagger),
        **solver_diagnostics,
    }
    return MethodFit(arrays=arrays, diagnostics=diagnostics, meta={"hessian_used": hessian.value})


def _dense_solve(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    at_dagger: TrainingPass,
    config: InfluenceConfig,
    *,
    device: torch.device,
    progress: ProgressCallback,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, float]]:
    """M, the exact self-influence (n,) and Φ̃ mat(H⁺ḡ)ᵀ (n, k_out) from the dense factor."""
    num_outputs = at_dagger.residuals.shape[1]
    assert at_dagger.hessian is not None  # asked for with_hessian=True
    factor = factorize_hessian(
        at_dagger.hessian,
        num_outputs=num_outputs,
        damping=config.damping,
        second_moment=at_dagger.second_moment,
    )
    newton_shift = factor.solve(at_dagger.mean_gradient.reshape(1, -1)).reshape(
        num_outputs, -1
    )  # mat(H⁺ vec ḡ)
    self_influence, shift_logits = _self_influence(
        train_features,
        at_dagger.residuals,
        factor,
        newton_shift,
        progress=stage_progress(progress, 0.1, 1.0),
    )
    inverse = factor.inverse()  # (k_out·D, k_out·D)
    return {"hessian_inverse": inverse.cpu().numpy()}, self_influence, shift_logits, {}


def _blocks_solve(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    at_dagger: TrainingPass,
    config: InfluenceConfig,
    *,
    device: torch.device,
    progress: ProgressCallback,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, float]]:
    """Blocks + PCG (docs/math.md §10): self-influence (1/n) Σ_c r_ic² q_ic from the blocks."""
    n = train_features.shape[0]
    residuals = at_dagger.residuals  # r† (n, k)
    probabilities = probabilities_from_residuals(residuals, train_labels)  # P† (n, k)
    system = BlockSystem.fit(
        train_features,
        probabilities,
        damping=config.damping,
        tolerance=config.cg_tolerance,
        device=device,
        progress=stage_progress(progress, 0.0, 0.5),
    )
    newton = system.solve(at_dagger.mean_gradient[None])  # mat(H⁺ vec ḡ) (1, k, D)
    assert system.block_thresholds is not None  # set by fit
    forms = block_quadratic_forms(
        train_features,
        system.preconditioner,
        support_pairs(probabilities, train_labels, system.block_thresholds),
        progress=stage_progress(progress, 0.5, 1.0),
    )  # q_ic (n, k)
    self_influence = (residuals * residuals * forms).sum(axis=1) / n  # (n,)
    shift_logits = augmented_product(train_features, newton.solution[0].cpu().numpy().T)
    [report] = pcg_reports(newton)
    diagnostics = {
        "newton_cg_iterations": float(report.iterations),
        "newton_cg_relative_residual": report.relative_residual,
    }
    return system.to_arrays(), self_influence, shift_logits, diagnostics


def _self_influence(
    train_features: np.ndarray,
    residuals: np.ndarray,
    factor: HessianFactor,
    newton_shift: torch.Tensor,
    *,
    progress: ProgressCallback,
) -> tuple[np.ndarray, np.ndarray]:
    """(1/n) g_iᵀ A⁻¹ g_i = (1/n) ‖L⁻¹ S g_i‖² for every i, and Φ̃ mat(H⁺ḡ)ᵀ.

    Returns
    -------
    self_influence : ndarray of shape (n,), float64, >= 0
    shift_logits : ndarray of shape (n, k_out), float64
    """
    n = train_features.shape[0]
    num_outputs, dim = newton_shift.shape
    device = newton_shift.device
    residuals_t = torch.as_tensor(residuals, device=device)
    self_influence = torch.empty(n, dtype=torch.float64, device=device)
    shift_logits = torch.empty((n, num_outputs), dtype=torch.float64, device=device)
    block_rows = rows_per_block(8 * num_outputs * dim * 3)
    for rows, block in augmented_row_blocks(train_features, block_rows=block_rows, device=device):
        gradients = (residuals_t[rows][:, :, None] * block[:, None, :]).reshape(
            block.shape[0], -1
        )  # (b, k_out·D)
        whitened = factor.whiten(gradients)  # (b, k_out·D)
        self_influence[rows] = (whitened * whitened).sum(dim=1) / n
        shift_logits[rows] = block @ newton_shift.T  # (b, k_out)
        progress(rows.stop / n)
    return self_influence.cpu().numpy(), shift_logits.cpu().numpy()


def influence_contributions(
    state: FittedState,
    train_features: np.ndarray,
    test_features: np.ndarray,
    target_classes: np.ndarray,
) -> tuple[np.ndarray, list[SolverReport]]:
    """I(i, t) toward each test row's target class.

    Parameters
    ----------
    state : FittedState of method INFLUENCE
    train_features : ndarray of shape (n, d), float32 or float64
    test_features : ndarray of shape (m, d), float64
    target_classes : ndarray of shape (m,), int64

    Returns
    -------
    values : ndarray of shape (m, n), float64
    reports : list of m ``SolverReport``
    """
    arrays = state.arrays
    theta_dagger = np.asarray(arrays["theta_dagger"])  # (k_out, D)
    num_outputs, dim = theta_dagger.shape
    n, m = train_features.shape[0], test_features.shape[0]
    test_augmented = np.hstack([test_features, np.ones((m, 1))])  # (m, D)
    logits = test_augmented @ theta_dagger.T  # (m, k_out)
    if num_outputs == 1:
        test_residuals = 1.0 / (1.0 + np.exp(-logits)) - (target_classes == 1)[:, None]  # (m, 1)
    else:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        test_residuals = shifted / shifted.sum(axis=1, keepdims=True)
        test_residuals[np.arange(m), target_classes] -= 1.0  # P_t − e_target (m, k)
    test_gradients = test_residuals[:, :, None] * test_augmented[:, None, :]  # g_t (m, k_out, D)
    reports = [DENSE_SOLVE] * m
    if "block_cholesky" in arrays:
        keys: list[Hashable] = [
            (int(c), row.tobytes()) for c, row in zip(target_classes, test_augmented, strict=True)
        ]
        solved = solve_with_state(state, train_features, test_gradients, keys)
        scores = block_kernel_scores(
            state,
            train_features,
            arrays["residuals"],
            solved.directions,
            train_logits=solved.train_logits,
        )
        reports = solved.reports
        return scores / n, reports
    directions = directions_from_rows(
        np.asarray(arrays["hessian_inverse"]),
        test_gradients.reshape(m, -1),
        num_outputs=num_outputs,
    )
    scores = kernel_scores(train_features, np.asarray(arrays["residuals"]), directions) / n
    return scores, reports
