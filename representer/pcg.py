"""The exact Hessian as a matrix-free product, and batched preconditioned CG (docs/math.md §10).

For V (k, D): mat(H vec V) = (1/n) Σ_i A_i V φ̃_i φ̃_iᵀ with A_i = diag(P_i) − P_i P_iᵀ, i.e.
Z = Φ̃ Vᵀ (n, k), Z'_i = P_i ⊙ Z_i − P_i (P_iᵀ Z_i), then Z'ᵀ Φ̃ / n: two GEMMs streamed over
row blocks of Φ̃, never anything of size (kD)². Several right-hand sides share the GEMMs
(their V are stacked as columns). PCG runs on the zero class-sum subspace S (the range of
H), each right-hand side stopping at its own tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from representer.errors import SingularSystemError
from representer.feature_blocks import augmented_row_blocks, block_tensor, rows_per_block

__all__ = ["HessianProduct", "PCGResult", "project", "solve_pcg", "MAX_CG_ITERATIONS"]

MAX_CG_ITERATIONS = 500
"""PCG gives up (and reports the residual it reached) after this many iterations."""


def project(directions: torch.Tensor) -> torch.Tensor:
    """Π V: subtract the class mean, so every column sums to zero over classes.

    Parameters
    ----------
    directions : Tensor of shape (q, k, D)

    Returns
    -------
    Tensor of shape (q, k, D), a new tensor.
    """
    return directions - directions.mean(dim=1, keepdim=True)


@dataclass(frozen=True)
class HessianProduct:
    """V ↦ mat((H + δI) vec V) on the live features, for stacks of V.

    Attributes
    ----------
    train_features : ndarray of shape (n, d), real (may be a read-only memmap)
    probabilities : ndarray of shape (n, k), float64
        P_i at the Θ where H is taken.
    damping : float
        δ >= 0.
    live : Tensor of shape (D,), bool
        Features that are not zero on every training row; H is zero on the others, whose
        entries the product (and every right-hand side) keeps at zero (the pseudo-inverse).
    """

    train_features: np.ndarray
    probabilities: np.ndarray
    damping: float
    live: torch.Tensor

    def __call__(self, directions: torch.Tensor) -> torch.Tensor:
        """mat((H + δI) vec V) for every V.

        Parameters
        ----------
        directions : Tensor of shape (q, k, D), float64

        Returns
        -------
        Tensor of shape (q, k, D), float64; zero class-sum when damping is 0.
        """
        q, num_classes, dim = directions.shape
        device = directions.device
        n = self.train_features.shape[0]
        stacked = directions.reshape(q * num_classes, dim)  # (q·k, D)
        product = torch.zeros_like(stacked)  # (q·k, D)
        block_rows = rows_per_block(8 * (dim + 3 * q * num_classes))
        for rows, block in augmented_row_blocks(
            self.train_features, block_rows=block_rows, device=device
        ):
            probabilities = block_tensor(
                self.probabilities, rows, dtype=np.dtype(np.float64), device=device
            )[:, None, :]  # (b, 1, k)
            logits = (block @ stacked.T).reshape(-1, q, num_classes)  # Z (b, q, k)
            weighted = probabilities * logits  # P_i ⊙ Z_i (b, q, k)
            weighted -= probabilities * weighted.sum(dim=2, keepdim=True)  # − P_i (P_iᵀ Z_i)
            product.addmm_(weighted.reshape(-1, q * num_classes).T, block)  # Z'ᵀ Φ̃ (q·k, D)
        product /= n
        if self.damping:
            product += self.damping * stacked
        result = product.reshape(q, num_classes, dim)
        result[:, :, ~self.live] = 0.0
        return result


@dataclass(frozen=True)
class PCGResult:
    """Solutions of a batch of systems and how far each got.

    Attributes
    ----------
    solution : Tensor of shape (q, k, D), float64
    iterations : ndarray of shape (q,), int64
    relative_residual : ndarray of shape (q,), float64
        ‖b − (H + δI) x‖ / ‖b‖ recomputed from x after the last iteration (0 for b = 0).
    """

    solution: torch.Tensor
    iterations: np.ndarray
    relative_residual: np.ndarray


def _dot(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Per-system inner product ⟨L_j, R_j⟩ of (q, k, D) stacks, shape (q,)."""
    return (left * right).sum(dim=(1, 2))


def solve_pcg(
    product: Callable[[torch.Tensor], torch.Tensor],
    precondition: Callable[[torch.Tensor], torch.Tensor],
    right_hand_sides: torch.Tensor,
    *,
    tolerance: float,
    max_iterations: int = MAX_CG_ITERATIONS,
) -> PCGResult:
    """Solve (H + δI) x_j = Π b_j on S for every j by preconditioned CG.

    Every system stops at its own relative residual ``tolerance``; the products of the
    systems still running share their GEMMs.

    Parameters
    ----------
    product : callable (q, k, D) -> (q, k, D)
        The operator (``HessianProduct``); symmetric positive definite on S.
    precondition : callable (q, k, D) -> (q, k, D)
        M⁻¹, symmetric positive definite on S and mapping into S.
    right_hand_sides : Tensor of shape (q, k, D), float64
        Projected onto S here.
    tolerance : float
        Stop when ‖r‖/‖b‖ <= tolerance.

    Raises
    ------
    SingularSystemError
        A search direction of zero or negative curvature: H is singular on S.
    """
    rhs = project(right_hand_sides)
    q = rhs.shape[0]
    rhs_norm = rhs.flatten(1).norm(dim=1)  # (q,)
    solution = torch.zeros_like(rhs)
    residual = rhs.clone()
    iterations = np.zeros(q, dtype=np.int64)
    active = torch.nonzero(rhs_norm > 0).flatten()
    if active.numel():
        preconditioned = precondition(residual[active])
        direction = preconditioned.clone()
        residual_dot = _dot(residual[active], preconditioned)  # ⟨r, z⟩ (a,)
    for _ in range(max_iterations):
        if active.numel() == 0:
            break
        curved = product(direction)  # (a, k, D)
        curvature = _dot(direction, curved)  # (a,)
        if not bool((curvature > 0).all()) or not bool(torch.isfinite(curvature).all()):
            raise SingularSystemError(
                "the Hessian is singular on the zero class-sum subspace (a PCG direction "
                "has zero curvature); raise `damping`",
                argument="damping",
            )
        step = residual_dot / curvature  # α (a,)
        solution[active] += step[:, None, None] * direction
        residual[active] -= step[:, None, None] * curved
        iterations[active.cpu().numpy()] += 1
        reached = residual[active].flatten(1).norm(dim=1) / rhs_norm[active]  # (a,)
        running = reached > tolerance
        if not bool(running.any()):
            break
        active, direction, residual_dot = (
            active[running],
            direction[running],
            residual_dot[running],
        )
        preconditioned = precondition(residual[active])
        new_dot = _dot(residual[active], preconditioned)
        direction = preconditioned + (new_dot / residual_dot)[:, None, None] * direction
        residual_dot = new_dot
    true_residual = rhs - product(solution) if q else rhs
    norms = true_residual.flatten(1).norm(dim=1)
    relative = torch.where(rhs_norm > 0, norms / rhs_norm.clamp_min(1e-300), 0.0)
    return PCGResult(
        solution=solution, iterations=iterations, relative_residual=relative.cpu().numpy()
    )
