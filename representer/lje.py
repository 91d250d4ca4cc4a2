"""RPS-LJE (docs/math.md §2): precompute and contributions.

Precompute: Θ* = Θ† + γ ḡ(Θ†); at Θ* the residuals R*, the Hessian H* and the exact
inverse M of H* + J⊗C + δI (equal to H*⁺ on zero-class-sum vectors); the
self-contributions of §6. A query for test point t toward class c is

    c_i(t)_c = (1/n) Θ*_c φ̃_t − (1/n) Σ_c' r*_ic' φ̃_iᵀ B_cc' φ̃_t,

with [B_c1 … B_ck] = row block c of M (binary: c_i(t) = (1/n)(θ*·φ̃_t − r*_i φ̃_iᵀ M φ̃_t);
toward class 0 the sign flips, §5). Queries use the kernel form or materialised weights
(``WeightLayout``, ``lje_weights``).
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import torch

from representer.block_hessian import block_quadratic_forms, support_pairs
from representer.config import HessianMode, LJEConfig, WeightLayout
from representer.explanation import DENSE_SOLVE, SolverReport
from representer.feature_blocks import (
    augmented_product,
    augmented_row_blocks,
    block_tensor,
    rows_per_block,
)
from representer.head import LinearHead
from representer.hessian import factorize_hessian
from representer.hessian_solver import (
    BlockSystem,
    SolvedDirections,
    block_kernel_scores,
    choose_hessian,
    pcg_reports,
    solve_with_state,
)
from representer.kernel import kernel_scores
from representer.likelihood import (
    predicted_class_from_logits,
    probabilities_from_residuals,
    target_scores,
)
from representer.lje_weights import choose_layout, materialise_weights, materialised_contributions
from representer.method_fit import MethodFit, relative_shift
from representer.progress import ProgressCallback, stage_progress
from representer.state import FittedState
from representer.training_pass import TrainingPass, run_training_pass

__all__ = ["fit_lje", "lje_contributions"]


def fit_lje(
    head: LinearHead,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    config: LJEConfig,
    *,
    device: torch.device,
    progress: ProgressCallback | None,
) -> MethodFit:
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
    MethodFit
        arrays: ``theta_dagger``, ``theta_star``, ``newton_theta`` (k_out, D) float64;
        ``residuals_star`` (n, k_out) float64; ``self_contributions`` (n,) float32 (signed
        c_i(x_i) at ỹ_i, binary: the logit contribution); ``self_scores`` (n,) float32
        (their absolute values); ``train_predicted_class`` (n,) int64; and either
        ``hessian_inverse`` (k_out·D, k_out·D) float64 (kernel layout) or ``lje_weights``
        (k_out, n, D) float32 (materialised layout).
        diagnostics: ``train_accuracy``, ``mean_abs_residual`` (mean |ρ_i| at each
        point's predicted class), ``theta_shift`` (‖Θ* − Θ†‖_F / ‖Θ†‖_F).
        meta: ``weight_layout_used``.
    """
    n = train_features.shape[0]
    num_outputs, dim = head.num_outputs, head.feature_dim + 1
    hessian = choose_hessian(
        HessianMode.DENSE
        if config.weight_layout is WeightLayout.MATERIALISED  # W needs the dense M
        else config.hessian,
        n=n,
        num_outputs=num_outputs,
        dim=dim,
        memory_budget_bytes=config.memory_budget_bytes,
    )
    layout = (
        choose_layout(config, n=n, num_outputs=num_outputs, dim=dim)
        if hessian is HessianMode.DENSE
        else WeightLayout.KERNEL
    )
    theta_dagger = head.theta  # (k_out, D)
    at_dagger = run_training_pass(
        train_features,
        train_labels,
        theta_dagger,
        device=device,
        with_hessian=False,
        progress=stage_progress(progress, 0.0, 0.1),
    )
    theta_star = theta_dagger + config.lr * at_dagger.mean_gradient.cpu().numpy()  # Θ* (k_out, D)
    at_star = run_training_pass(
        train_features,
        train_labels,
        theta_star,
        device=device,
        with_hessian=hessian is HessianMode.DENSE,
        progress=stage_progress(progress, 0.1, 0.4 if hessian is HessianMode.BLOCKS else 0.6),
    )
    own_class = train_labels if num_outputs > 1 else np.zeros_like(train_labels)
    solve = _dense_solve if hessian is HessianMode.DENSE else _blocks_solve
    newton_shift, query_arrays, self_contribution, solver_diagnostics = solve(
        train_features,
        own_class,
        theta_star,
        at_star,
        config,
        layout=layout,
        device=device,
        progress=stage_progress(progress, 0.4 if hessian is HessianMode.BLOCKS else 0.6, 1.0),
    )
    newton_theta = theta_star - newton_shift  # (k_out, D)
    arrays = {
        "theta_dagger": theta_dagger,
        "theta_star": theta_star,
        "newton_theta": newton_theta,
        "residuals_star": at_star.residuals,
        **query_arrays,
    }
    predicted = predicted_class_from_logits(at_dagger.logits)  # (n,)
    newton_logits = _logits(train_features, newton_theta)  # Σ_i c_i(x_j) for every j (n, k_out)
    arrays.update(
        self_contributions=self_contribution.astype(np.float32),
        self_scores=np.abs(self_contribution).astype(np.float32),
        train_predicted_class=predicted,
    )
    diagnostics = {
        "train_accuracy": float(np.mean(predicted == train_labels)),
        "mean_abs_residual": float(
            np.mean(np.abs(target_scores(at_dagger.logits - newton_logits, predicted)))
        ),
        "theta_shift": relative_shift(theta_star, theta_dagger),
        **solver_diagnostics,
    }
    return MethodFit(
        arrays=arrays,
        diagnostics=diagnostics,
        meta={"weight_layout_used": layout.value, "hessian_used": hessian.value},
    )


def _dense_solve(
    train_features: np.ndarray,
    own_class: np.ndarray,
    theta_star: np.ndarray,
    at_star: TrainingPass,
    config: LJEConfig,
    *,
    layout: WeightLayout,
    device: torch.device,
    progress: ProgressCallback,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    """The dense factor: mat(H*⁺ḡ*) (k_out, D), M or W, and the self-contributions (n,)."""
    num_outputs, dim = theta_star.shape
    assert at_star.hessian is not None  # asked for with_hessian=True
    factor = factorize_hessian(
        at_star.hessian,
        num_outputs=num_outputs,
        damping=config.damping,
        second_moment=at_star.second_moment,
    )
    newton_shift = factor.solve(at_star.mean_gradient.reshape(1, -1)).reshape(
        num_outputs, dim
    )  # mat(H*⁺ vec ḡ*)
    inverse = factor.inverse()  # M (k_out·D, k_out·D)
    del factor
    progress(0.15)
    query_arrays, self_contribution = _query_arrays(
        layout,
        train_features,
        own_class,
        theta_star,
        at_star.residuals,
        inverse,
        progress=stage_progress(progress, 0.15, 1.0),
    )
    return newton_shift.cpu().numpy(), query_arrays, self_contribution, {}


def _blocks_solve(
    train_features: np.ndarray,
    own_class: np.ndarray,
    theta_star: np.ndarray,
    at_star: TrainingPass,
    config: LJEConfig,
    *,
    layout: WeightLayout,
    device: torch.device,
    progress: ProgressCallback,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    """Blocks + PCG (docs/math.md §10): the Newton step by PCG, self-contributions from the blocks."""
    n = train_features.shape[0]
    probabilities = probabilities_from_residuals(at_star.residuals, own_class)  # P* (n, k)
    system = BlockSystem.fit(
        train_features,
        probabilities,
        damping=config.damping,
        tolerance=config.cg_tolerance,
        device=device,
        progress=stage_progress(progress, 0.0, 0.5),
    )
    newton = system.solve(at_star.mean_gradient[None])  # mat(H*⁺ vec ḡ*) (1, k, D)
    residuals = at_star.residuals  # r* (n, k)
    assert system.block_thresholds is not None  # set by fit
    needed = support_pairs(probabilities, own_class, system.block_thresholds)
    forms = block_quadratic_forms(
        train_features,
        system.preconditioner,
        needed,
        progress=stage_progress(progress, 0.5, 1.0),
    )  # q_ic (n, k)
    rows = np.arange(n)
    hessian_term = residuals[rows, own_class] * forms[rows, own_class] - (residuals * forms).mean(
        axis=1
    )  # r_iỹ q_iỹ − (1/k) Σ_c r_ic q_ic (n,)
    self_contribution = (at_star_scores(at_star, own_class) - hessian_term) / n
    [report] = pcg_reports(newton)
    diagnostics = {
        "newton_cg_iterations": float(report.iterations),
        "newton_cg_relative_residual": report.relative_residual,
    }
    return newton.solution[0].cpu().numpy(), system.to_arrays(), self_contribution, diagnostics


def at_star_scores(at_star: TrainingPass, own_class: np.ndarray) -> np.ndarray:
    """Θ*_ỹ φ̃_i for every training point, shape (n,), float64."""
    return at_star.logits[np.arange(own_class.shape[0]), own_class]


def _query_arrays(
    layout: WeightLayout,
    train_features: np.ndarray,
    own_class: np.ndarray,
    theta_star: np.ndarray,
    residuals_star: np.ndarray,
    inverse: torch.Tensor,
    *,
    progress: ProgressCallback,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """What queries read in ``layout`` (M or W), and the self-contributions (n,) float64."""
    if layout is WeightLayout.MATERIALISED:
        weights, self_contribution = materialise_weights(
            train_features, own_class, theta_star, residuals_star, inverse, progress=progress
        )
        return {"lje_weights": weights}, self_contribution
    self_contribution = _kernel_self_contributions(
        train_features, own_class, theta_star, residuals_star, inverse, progress=progress
    )
    return {"hessian_inverse": inverse.cpu().numpy()}, self_contribution


def _logits(train_features: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Φ̃ Θᵀ, shape (n, k_out), float64 (accumulated in the features' dtype)."""
    return augmented_product(train_features, theta.T)


def _kernel_self_contributions(
    train_features: np.ndarray,
    own_class: np.ndarray,
    theta_star: np.ndarray,
    residuals_star: np.ndarray,
    inverse: torch.Tensor,
    *,
    progress: ProgressCallback,
) -> np.ndarray:
    """c_i(x_i) at ỹ_i: only row block ỹ_i of M is needed, one GEMM per label group.

    Returns
    -------
    ndarray of shape (n,), float64.
    """
    n = train_features.shape[0]
    num_outputs, dim = theta_star.shape
    device = inverse.device
    theta_star_t = torch.as_tensor(theta_star, device=device)
    residuals_t = torch.as_tensor(residuals_star, device=device)
    self_contribution = np.empty(n)
    block_rows = rows_per_block(8 * num_outputs * dim * 2)
    for rows, block in augmented_row_blocks(train_features, block_rows=block_rows, device=device):
        values = torch.empty(block.shape[0], dtype=torch.float64, device=device)
        block_class = block_tensor(own_class, rows, dtype=np.dtype(np.int64), device=device)
        for c in torch.unique(block_class).tolist():
            members = torch.nonzero(block_class == c).flatten()
            every_row = members.numel() == block.shape[0]
            features = block if every_row else block[members]  # (b_c, D)
            whitened = (features @ inverse[c * dim : (c + 1) * dim, :]).reshape(
                -1, num_outputs, dim
            )  # (b_c, k, D)
            per_class = (whitened * features[:, None, :]).sum(dim=2)  # φ̃_iᵀ B_cc' φ̃_i (b_c, k)
            quadratic = (per_class * residuals_t[rows][members]).sum(dim=1)  # (b_c,)
            values[members] = (features @ theta_star_t[c] - quadratic) / n
        self_contribution[rows] = values.cpu().numpy()
        progress(rows.stop / n)
    return self_contribution


def lje_contributions(
    state: FittedState,
    train_features: np.ndarray,
    test_features: np.ndarray,
    target_classes: np.ndarray,
) -> tuple[np.ndarray, list[SolverReport]]:
    """c_i(t) toward each test row's target class.

    Parameters
    ----------
    state : FittedState of method LJE
    train_features : ndarray of shape (n, d), float32 or float64
    test_features : ndarray of shape (m, d), float64
    target_classes : ndarray of shape (m,), int64

    Returns
    -------
    values : ndarray of shape (m, n), float64
    reports : list of m ``SolverReport``
    """
    arrays = state.arrays
    theta_star = np.asarray(arrays["theta_star"])  # (k_out, D)
    num_outputs, dim = theta_star.shape
    n, m = train_features.shape[0], test_features.shape[0]
    test_augmented = np.hstack([test_features, np.ones((m, 1))])  # (m, D)
    # Binary heads compute the class-1 (logit) contribution and flip it for class 0.
    rows_class = target_classes if num_outputs > 1 else np.zeros_like(target_classes)
    reports = [DENSE_SOLVE] * m
    if "lje_weights" in arrays:
        values = materialised_contributions(arrays["lje_weights"], test_augmented, rows_class)
    else:
        if "block_cholesky" in arrays:
            solved = _pcg_directions(state, train_features, test_augmented, rows_class)
            directions, reports = solved.directions, solved.reports
            scores = block_kernel_scores(
                state,
                train_features,
                arrays["residuals_star"],
                directions,
                train_logits=solved.train_logits,
            )  # (m, n)
        else:
            directions = _dense_directions(arrays["hessian_inverse"], test_augmented, rows_class)
            scores = kernel_scores(
                train_features, np.asarray(arrays["residuals_star"]), directions
            )  # (m, n)
        spread = np.einsum("md,md->m", test_augmented, theta_star[rows_class])  # Θ*_c φ̃_t (m,)
        values = (spread[:, None] - scores) / n
    if num_outputs == 1:
        values[target_classes == 0] *= -1.0
    return values, reports


def _dense_directions(
    inverse: np.ndarray, test_augmented: np.ndarray, rows_class: np.ndarray
) -> np.ndarray:
    """Row block c_t of M times φ̃_t, shape (m, k_out, D), float64."""
    m, dim = test_augmented.shape
    num_outputs = inverse.shape[0] // dim
    directions = np.empty((m, num_outputs * dim))
    for c in np.unique(rows_class):
        members = np.flatnonzero(rows_class == c)
        row_block = np.asarray(inverse[c * dim : (c + 1) * dim, :])  # (D, k·D) = [B_c1 … B_ck]
        directions[members] = test_augmented[members] @ row_block  # (m_c, k·D)
    return directions.reshape(m, num_outputs, dim)


def _pcg_directions(
    state: FittedState,
    train_features: np.ndarray,
    test_augmented: np.ndarray,
    rows_class: np.ndarray,
) -> SolvedDirections:
    """X_t = mat(H*⁺ Π(e_c ⊗ φ̃_t)) by PCG (docs/math.md §10.3), shape (m, k, D), float64."""
    m, dim = test_augmented.shape
    num_classes = state.arrays["theta_star"].shape[0]
    rhs = np.zeros((m, num_classes, dim))
    rhs[np.arange(m), rows_class] = test_augmented  # e_c ⊗ φ̃_t
    keys: list[Hashable] = [
        (int(c), row.tobytes()) for c, row in zip(rows_class, test_augmented, strict=True)
    ]
    return solve_with_state(state, train_features, rhs, keys)
