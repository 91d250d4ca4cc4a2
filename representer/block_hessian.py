"""Per-class Hessian blocks: the PCG preconditioner and the block self-scores (docs/math.md §10.2, §10.4).

H_cc = (1/n) Σ_i P_ic(1 − P_ic) φ̃_i φ̃_iᵀ + (ε_c + δ) I, with a ridge ε_c = ``BLOCK_RIDGE`` ·
tr(H_cc)/D (at least that fraction of the mean block's) so every block is positive definite
even with few points of a class or dead features. Factorised in float64 and kept as float32
Cholesky factors (k, D, D): enough for a preconditioner, half the memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from representer.errors import SingularSystemError
from representer.feature_blocks import augmented_row_blocks, block_tensor, rows_per_block
from representer.pcg import project
from representer.progress import ProgressCallback

__all__ = [
    "BLOCK_RIDGE",
    "NEGLIGIBLE_WEIGHT",
    "BlockPreconditioner",
    "block_bytes",
    "factor_blocks",
    "block_quadratic_forms",
]

BLOCK_RIDGE = 1e-5
"""ε_c relative to the block's mean diagonal: keeps float32 factors well inside their range."""
NEGLIGIBLE_WEIGHT = 1e-10
"""Rows with P_ic(1 − P_ic) (block sums) or |r_ic| (self-scores) at or below this are skipped
for class c: with peaked probabilities most (i, c) are, and their terms are below rounding."""


def block_bytes(num_classes: int, dim: int) -> int:
    """Memory of the k float32 D×D factors plus one float64 block being factorised."""
    return num_classes * dim * dim * 4 + dim * dim * 8 * 2


@dataclass(frozen=True)
class BlockPreconditioner:
    """M⁻¹ = Π blockdiag(H_11⁻¹, …, H_kk⁻¹) Π (symmetric positive definite on S).

    Attributes
    ----------
    cholesky : Tensor of shape (k, D, D), float32, lower triangular
    """

    cholesky: torch.Tensor

    def __call__(self, directions: torch.Tensor) -> torch.Tensor:
        """M⁻¹ V for a stack (q, k, D) float64; shape (q, k, D), float64, in S."""
        projected = project(directions).to(torch.float32).permute(1, 2, 0)  # (k, D, q)
        solved = torch.cholesky_solve(projected, self.cholesky)  # H_cc⁻¹ (k, D, q)
        return project(solved.permute(2, 0, 1).to(torch.float64))


def factor_blocks(
    train_features: np.ndarray,
    probabilities: np.ndarray,
    *,
    damping: float,
    device: torch.device,
    progress: ProgressCallback,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 Cholesky factors of every H_cc, and the live-feature mask, in one pass.

    Parameters
    ----------
    train_features : ndarray of shape (n, d), real
    probabilities : ndarray of shape (n, k), float64
    damping : float
        δ >= 0, added to every block.
    device : torch.device
    progress : callable taking a float in [0, 1]

    Returns
    -------
    cholesky : Tensor of shape (k, D, D), float32
    live : Tensor of shape (D,), bool
        Features nonzero on some training row.

    Raises
    ------
    SingularSystemError
        A block is not positive definite even with the ridge (non-finite features).
    """
    n, d = train_features.shape
    num_classes, dim = probabilities.shape[1], d + 1
    sums = torch.zeros((num_classes, dim, dim), dtype=torch.float64, device=device)
    live = torch.zeros(dim, dtype=torch.bool, device=device)
    block_rows = rows_per_block(8 * dim * 4)
    for rows, block in augmented_row_blocks(train_features, block_rows=block_rows, device=device):
        weights = block_tensor(probabilities, rows, dtype=np.dtype(np.float64), device=device)
        weights = weights * (1.0 - weights)  # P_ic (1 − P_ic) (b, k)
        live |= (block != 0).any(dim=0)
        for c in range(num_classes):
            members = torch.nonzero(weights[:, c] > NEGLIGIBLE_WEIGHT).flatten()
            if members.numel() == 0:
                continue
            chosen = block[members]  # (b_c, D)
            sums[c].addmm_(chosen.T, chosen * weights[members, c, None])  # (D, D)
        progress(0.8 * rows.stop / n)
    sums /= n
    traces = torch.diagonal(sums, dim1=1, dim2=2).mean(dim=1)  # tr(H_cc)/D (k,)
    floor = float(traces.mean()) if float(traces.mean()) > 0 else 1.0
    ridges = BLOCK_RIDGE * torch.clamp(traces, min=floor * 1e-3) + damping  # (k,)
    cholesky = torch.empty((num_classes, dim, dim), dtype=torch.float32, device=device)
    for c in range(num_classes):
        system = sums[c]
        system.diagonal().add_(float(ridges[c]))
        factor, info = torch.linalg.cholesky_ex(0.5 * (system + system.T))
        if int(info) != 0 or not bool(torch.isfinite(factor).all()):
            raise SingularSystemError(
                f"the Hessian block of class {c} is not positive definite even with its ridge; "
                "check the features for non-finite values or raise `damping`",
                argument="damping",
            )
        cholesky[c] = factor.to(torch.float32)
        progress(0.8 + 0.2 * (c + 1) / num_classes)
    return cholesky, live


def block_quadratic_forms(
    train_features: np.ndarray,
    cholesky: torch.Tensor,
    needed: np.ndarray,
    *,
    progress: ProgressCallback,
) -> np.ndarray:
    """q_ic = φ̃_iᵀ H_cc⁻¹ φ̃_i = ‖L_c⁻¹ φ̃_i‖² where ``needed[i, c]``, 0 elsewhere.

    Parameters
    ----------
    train_features : ndarray of shape (n, d), real
    cholesky : Tensor of shape (k, D, D), float32
    needed : ndarray of shape (n, k), bool

    Returns
    -------
    ndarray of shape (n, k), float64.
    """
    n = train_features.shape[0]
    num_classes, dim, _ = cholesky.shape
    device = cholesky.device
    forms = np.zeros((n, num_classes))
    block_rows = rows_per_block(8 * dim * 4)
    for rows, block in augmented_row_blocks(train_features, block_rows=block_rows, device=device):
        block32 = block.to(torch.float32)
        block_needed = needed[rows]
        for c in np.flatnonzero(block_needed.any(axis=0)):
            members = np.flatnonzero(block_needed[:, c])
            chosen = block32[torch.as_tensor(members, device=device)].T  # (D, b_c)
            whitened = torch.linalg.solve_triangular(cholesky[c], chosen, upper=False)
            forms[rows.start + members, c] = (
                whitened.double().square().sum(dim=0).cpu().numpy()
            )  # (b_c,)
        progress(rows.stop / n)
    return forms
