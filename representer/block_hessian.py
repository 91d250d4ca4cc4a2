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
    "PRECONDITIONER_MASS_RTOL",
    "block_thresholds",
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
PRECONDITIONER_MASS_RTOL = 1e-4
"""The block sums of class c leave out its smallest weights w_ic = P_ic(1 − P_ic) as long as
together they carry at most this fraction of the class's weight mass Σ_i w_ic: a
preconditioner needs the block, not its last digits. On peaked heads the mass sits in a few
pairs per row (n=50,000, d=1,024, k=1,000, separation 3: 8 kept pairs a row out of 1,000),
so the block sums and the block self-scores cost s·D² with s ≈ 8n instead of n·k·D²."""
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
    thresholds: np.ndarray,
    device: torch.device,
    progress: ProgressCallback,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 Cholesky factors of every H_cc, and the live-feature mask.

    The blocks are summed ``classes_per_pass`` classes at a time (one pass over the
    features each), so only that many float64 D×D sums exist at once; a row enters the
    sum of class c only where w_ic = P_ic(1 − P_ic) > ``thresholds[c]`` (``block_thresholds``).

    Parameters
    ----------
    train_features : ndarray of shape (n, d), real
    probabilities : ndarray of shape (n, k), float64
    damping : float
        δ >= 0, added to every block.
    thresholds : ndarray of shape (k,), float64
        ``block_thresholds`` of P.
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
            train_features, probabilities, classes, live, thresholds=thresholds, device=device
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
    thresholds: np.ndarray,
    device: torch.device,
) -> torch.Tensor:
    """(1/n) Σ_i P_ic(1 − P_ic) φ̃_i φ̃_iᵀ for c in ``classes``; ORs seen features into ``live``."""
    n, d = train_features.shape
    dim = d + 1
    sums = torch.zeros((len(classes), dim, dim), dtype=torch.float64, device=device)
    chosen_thresholds = torch.as_tensor(
        thresholds[classes.start : classes.stop], dtype=torch.float64, device=device
    )  # (g,)
    block_rows = rows_per_block(8 * (dim * 4 + probabilities.shape[1]))
    for rows, block in augmented_row_blocks(train_features, block_rows=block_rows, device=device):
        chosen_probabilities = block_tensor(
            probabilities[:, classes.start : classes.stop],  # a view: only g columns copied
            rows,
            dtype=np.dtype(np.float64),
            device=device,
        )  # (b, g)
        weights = chosen_probabilities * (1.0 - chosen_probabilities)  # (b, g)
        weights *= weights > chosen_thresholds
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


def support_mask(
    probabilities: np.ndarray, residuals: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """(i, c) whose block self-score terms matter: w_ic > ``thresholds[c]``, plus the label.

    The left-out terms r_ic q_ic / k have r_ic = P_ic, below the weights the block sums
    leave out themselves (``block_thresholds``).

    Parameters
    ----------
    probabilities : ndarray of shape (n, k), float64
    residuals : ndarray of shape (n, k), float64
        r = P − e_y.
    thresholds : ndarray of shape (k,), float64
        ``block_thresholds`` of P.

    Returns
    -------
    ndarray of shape (n, k), bool.
    """
    n, num_classes = probabilities.shape
    mask = np.empty((n, num_classes), dtype=np.bool_)
    step = rows_per_block(8 * num_classes * 3)
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        block = np.asarray(probabilities[rows], dtype=np.float64)
        mask[rows] = (block * (1.0 - block) > thresholds) | (np.asarray(residuals[rows]) < 0)
    return mask


def block_thresholds(
    probabilities: np.ndarray, mass_rtol: float = PRECONDITIONER_MASS_RTOL
) -> np.ndarray:
    """Per class c, the weight t_c at or below which w_ic = P_ic(1 − P_ic) leaves the block sums.

    The left-out weights of class c sum to at most ``mass_rtol`` · Σ_i w_ic (binned by powers
    of two, so the bound holds and a little less than allowed is left out).

    Parameters
    ----------
    probabilities : ndarray of shape (n, k), float64 (may be a memmap; read in row blocks)
    mass_rtol : float

    Returns
    -------
    ndarray of shape (k,), float64, >= 0.
    """
    n, num_classes = probabilities.shape
    bins = 1100  # 2^-1074 (the smallest subnormal) .. 2^0 (w <= 1/4)
    mass = np.zeros((num_classes, bins))
    step = rows_per_block(8 * num_classes * 4)
    offsets = np.arange(num_classes) * bins  # (k,)
    for start in range(0, n, step):
        block = np.asarray(probabilities[start : start + step], dtype=np.float64)
        weights = block * (1.0 - block)  # (b, k)
        _, exponent = np.frexp(weights)  # w in [2^(e−1), 2^e)
        index = np.clip(-exponent, 0, bins - 1)  # bin j holds w < 2^−j
        mass += np.bincount(
            (index + offsets).ravel(), weights.ravel(), minlength=num_classes * bins
        ).reshape(num_classes, bins)
    # mass[:, j] sums w in [2^(−j−1), 2^−j); walk from the smallest weights up.
    below = np.cumsum(mass[:, ::-1], axis=1)[:, ::-1]  # below[c, j]: mass of w < 2^−j
    allowed = mass_rtol * below[:, 0]  # (k,)
    thresholds = np.zeros(num_classes)
    for c in range(num_classes):
        fits = np.flatnonzero(below[c] <= allowed[c])  # j with the mass below 2^−j allowed
        if fits.size:
            thresholds[c] = np.nextafter(np.ldexp(1.0, -int(fits[0])), 0.0)  # keep w >= 2^−j
    return thresholds
