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
from representer.pcg import class_support, project
from representer.progress import ProgressCallback

__all__ = [
    "BLOCK_RIDGE",
    "classes_per_pass",
    "support_mask",
    "BlockPreconditioner",
    "block_bytes",
    "factor_blocks",
    "block_quadratic_forms",
]

BLOCK_RIDGE = 1e-5
"""ε_c relative to the block's mean diagonal: keeps float32 factors well inside their range."""
BLOCK_SUMS_BYTES = 512 * 1024**2
"""Float64 block sums accumulated per pass over the features (k = 1000, D = 1025: 63 a pass)."""
MIN_TRACE_FRACTION = 1e-3
"""A block's ridge is at least BLOCK_RIDGE times this fraction of the mean block trace, so
a class without points still gets a usable (scaled identity) block."""


def block_bytes(num_classes: int, dim: int) -> int:
    """Memory of the k float32 D×D factors plus the float64 sums of one pass."""
    return num_classes * dim * dim * 4 + min(num_classes, classes_per_pass(dim)) * dim * dim * 8


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
    threshold: float,
    device: torch.device,
    progress: ProgressCallback,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 Cholesky factors of every H_cc, and the live-feature mask.

    The blocks are summed ``classes_per_pass`` classes at a time (one pass over the
    features each), so only that many float64 D×D sums exist at once; a row enters the
    sum of class c only where (i, c) is in ``class_support``.

    Parameters
    ----------
    train_features : ndarray of shape (n, d), real
    probabilities : ndarray of shape (n, k), float64
    damping : float
        δ >= 0, added to every block.
    threshold : float
        ``support_threshold`` of P.
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
    per_pass = classes_per_pass(dim)
    cholesky = torch.empty((num_classes, dim, dim), dtype=torch.float32, device=device)
    live = torch.zeros(dim, dtype=torch.bool, device=device)
    for first in range(0, num_classes, per_pass):
        classes = range(first, min(num_classes, first + per_pass))
        sums = _block_sums(
            train_features, probabilities, classes, live, threshold=threshold, device=device
        )
        _factor_into(cholesky, sums, classes, damping=damping)
        progress(classes.stop / num_classes)
    return cholesky, live


def classes_per_pass(dim: int) -> int:
    """How many float64 D×D block sums one pass over the features accumulates."""
    return max(1, BLOCK_SUMS_BYTES // (8 * dim * dim))


def _block_sums(
    train_features: np.ndarray,
    probabilities: np.ndarray,
    classes: range,
    live: torch.Tensor,
    *,
    threshold: float,
    device: torch.device,
) -> torch.Tensor:
    """(1/n) Σ_i P_ic(1 − P_ic) φ̃_i φ̃_iᵀ for c in ``classes``; ORs seen features into ``live``."""
    n, d = train_features.shape
    dim = d + 1
    sums = torch.zeros((len(classes), dim, dim), dtype=torch.float64, device=device)
    block_rows = rows_per_block(8 * (dim * 4 + probabilities.shape[1]))
    for rows, block in augmented_row_blocks(train_features, block_rows=block_rows, device=device):
        block_probabilities = block_tensor(
            probabilities, rows, dtype=np.dtype(np.float64), device=device
        )
        keep = class_support(block_probabilities, threshold)[:, classes.start : classes.stop]
        chosen_probabilities = block_probabilities[:, classes.start : classes.stop]
        weights = chosen_probabilities * (1.0 - chosen_probabilities) * keep  # (b, g)
        live |= (block != 0).any(dim=0)
        for j in range(len(classes)):
            members = torch.nonzero(weights[:, j] > 0).flatten()
            if members.numel() == 0:
                continue
            chosen = block[members]  # (b_c, D)
            sums[j].addmm_(chosen.T, chosen * weights[members, j, None])  # (D, D)
    return sums / n


def _factor_into(
    cholesky: torch.Tensor, sums: torch.Tensor, classes: range, *, damping: float
) -> None:
    """Ridge, factor in float64 and store float32 factors of ``classes`` into ``cholesky``.

    ε_c = BLOCK_RIDGE · max(tr(H_cc)/D, MIN_TRACE_FRACTION · the pass's mean of tr/D).
    """
    traces = torch.diagonal(sums, dim1=1, dim2=2).mean(dim=1)  # tr(H_cc)/D (g,)
    floor = MIN_TRACE_FRACTION * float(traces.mean())
    for j, c in enumerate(classes):
        system = sums[j]
        ridge = BLOCK_RIDGE * max(float(traces[j]), floor)
        if not ridge > 0:  # no curvature at all in this pass (every P one-hot)
            ridge = BLOCK_RIDGE
        system.diagonal().add_(ridge + damping)
        factor, info = torch.linalg.cholesky_ex(0.5 * (system + system.T))
        if int(info) != 0 or not bool(torch.isfinite(factor).all()):
            raise SingularSystemError(
                f"the Hessian block of class {c} is not positive definite even with its ridge; "
                "check the features for non-finite values or raise `damping`",
                argument="damping",
            )
        cholesky[c] = factor.to(torch.float32)


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


def support_mask(probabilities: np.ndarray, residuals: np.ndarray, threshold: float) -> np.ndarray:
    """(i, c) whose terms matter: ``class_support`` of P, plus the label (where r_ic < 0).

    Parameters
    ----------
    probabilities : ndarray of shape (n, k), float64
    residuals : ndarray of shape (n, k), float64
        r = P − e_y.
    threshold : float
        ``support_threshold`` of P.

    Returns
    -------
    ndarray of shape (n, k), bool.
    """
    n, num_classes = probabilities.shape
    mask = np.empty((n, num_classes), dtype=np.bool_)
    step = rows_per_block(8 * num_classes * 3)
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        block = torch.from_numpy(np.array(probabilities[rows], dtype=np.float64))
        mask[rows] = class_support(block, threshold).numpy() | (np.asarray(residuals[rows]) < 0)
    return mask
