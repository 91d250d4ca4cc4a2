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
from representer.feature_blocks import augmented_row_blocks, rows_per_block
from representer.pcg import GATHER_ROWS, ClassPairs, augmented_rows, project
from representer.progress import ProgressCallback

__all__ = [
    "BLOCK_RIDGE",
    "PRECONDITIONER_MASS_RTOL",
    "block_thresholds",
    "support_pairs",
    "ClassPairs",
    "BlockPreconditioner",
    "block_bytes",
    "factor_blocks",
    "block_quadratic_forms",
]

BLOCK_RIDGE = 1e-5
"""ε_c relative to the block's mean diagonal: keeps float32 factors well inside their range."""
PRECONDITIONER_MASS_RTOL = 1e-3
"""The block sums of class c leave out its smallest weights w_ic = P_ic(1 − P_ic) as long as
together they carry at most this fraction of the class's weight mass Σ_i w_ic: a
preconditioner needs the block, not its last digits. On peaked heads the mass sits in a few
pairs per row (n=50,000, d=1,024, k=1,000, separation 3: 2.7 kept pairs a row of 1,000;
k=10, separation 2: 1.9 of 10), so the block sums and self-scores cost s·D², not n·k·D²."""
FACTOR_BATCH = 8
"""Blocks factored by one batched Cholesky call."""
MIN_TRACE_FRACTION = 1e-3
"""A block's ridge is at least BLOCK_RIDGE times this fraction of the mean block trace, so
a class without points still gets a usable (scaled identity) block."""


def block_bytes(num_classes: int, dim: int) -> int:
    """Memory of the k float32 D×D factors plus the float64 sums of one factor batch."""
    return num_classes * dim * dim * 4 + 3 * min(num_classes, FACTOR_BATCH) * dim * dim * 8


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

    A row enters the sum of class c only where w_ic = P_ic(1 − P_ic) > ``thresholds[c]``
    (``block_thresholds``). The kept pairs are grouped by class first, so each block is
    summed from its own rows in a few large GEMMs (s·D² flops for s kept pairs, the D×D
    sum touched once per chunk of rows, not once per class and row block), and factored
    ``FACTOR_BATCH`` classes at a time: only that many float64 D×D sums exist at once.

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
    live, squared_norms = _feature_scan(train_features, device=device)
    pairs = ClassPairs.of(probabilities, lambda block: block * (1.0 - block) > thresholds)
    weights = pairs.values * (1.0 - pairs.values)  # w_ic of the kept pairs (s,)
    traces = np.bincount(
        pairs.classes, weights * squared_norms[pairs.rows], minlength=num_classes
    ) / (n * dim)  # tr(H_cc)/D (k,)
    ridges = BLOCK_RIDGE * np.maximum(traces, MIN_TRACE_FRACTION * traces.mean())
    ridges[~(ridges > 0)] = BLOCK_RIDGE  # no curvature at all (every P one-hot)
    cholesky = torch.empty((num_classes, dim, dim), dtype=torch.float32, device=device)
    for first in range(0, num_classes, FACTOR_BATCH):
        classes = range(first, min(num_classes, first + FACTOR_BATCH))
        sums = torch.zeros((len(classes), dim, dim), dtype=torch.float64, device=device)
        for j, c in enumerate(classes):
            members, values = pairs.of_class(c)
            for chunk in range(0, members.size, GATHER_ROWS):
                part = slice(chunk, chunk + GATHER_ROWS)
                chosen = augmented_rows(train_features, members[part], device=device)
                weight = torch.as_tensor(values[part] * (1.0 - values[part]), device=device)
                sums[j].addmm_(chosen.T, chosen * weight[:, None])  # (D, D)
        sums /= n
        sums.diagonal(dim1=1, dim2=2).add_(
            torch.as_tensor(ridges[first : classes.stop] + damping, device=device)[:, None]
        )
        factors, info = torch.linalg.cholesky_ex(0.5 * (sums + sums.transpose(1, 2)))
        failed = torch.nonzero((info != 0) | ~torch.isfinite(factors).flatten(1).all(dim=1))
        if failed.numel():
            raise SingularSystemError(
                f"the Hessian block of class {first + int(failed[0])} is not positive definite "
                "even with its ridge; check the features for non-finite values or raise "
                "`damping`",
                argument="damping",
            )
        cholesky[first : classes.stop] = factors.to(torch.float32)
        progress(classes.stop / num_classes)
    return cholesky, live


def _feature_scan(
    train_features: np.ndarray, *, device: torch.device
) -> tuple[torch.Tensor, np.ndarray]:
    """Features nonzero on some row (D,) bool, and ‖φ̃_i‖² (n,) float64, in one pass."""
    n, d = train_features.shape
    live = torch.zeros(d + 1, dtype=torch.bool, device=device)
    squared_norms = np.empty(n)
    for rows, block in augmented_row_blocks(
        train_features, block_rows=rows_per_block(8 * (d + 1) * 2), device=device
    ):
        live |= (block != 0).any(dim=0)
        squared_norms[rows] = block.square().sum(dim=1).cpu().numpy()
    return live, squared_norms


def block_quadratic_forms(
    train_features: np.ndarray,
    cholesky: torch.Tensor,
    pairs: ClassPairs,
    *,
    progress: ProgressCallback,
) -> np.ndarray:
    """q_ic = φ̃_iᵀ H_cc⁻¹ φ̃_i = ‖L_c⁻¹ φ̃_i‖² for the ``pairs``, 0 elsewhere.

    One triangular solve per class and chunk of its rows (float32, as the factors).

    Parameters
    ----------
    train_features : ndarray of shape (n, d), real
    cholesky : Tensor of shape (k, D, D), float32
    pairs : ClassPairs (``support_pairs``)

    Returns
    -------
    ndarray of shape (n, k), float64.
    """
    n = train_features.shape[0]
    num_classes = cholesky.shape[0]
    device = cholesky.device
    forms = np.zeros((n, num_classes))
    for c in range(num_classes):
        members, _ = pairs.of_class(c)
        for chunk in range(0, members.size, GATHER_ROWS):
            rows = members[chunk : chunk + GATHER_ROWS]
            chosen = augmented_rows(train_features, rows, device=device, dtype=torch.float32)
            whitened = torch.linalg.solve_triangular(cholesky[c], chosen.T, upper=False)
            forms[rows, c] = whitened.double().square().sum(dim=0).cpu().numpy()  # (b_c,)
        progress((c + 1) / num_classes)
    return forms


def support_pairs(
    probabilities: np.ndarray, train_labels: np.ndarray, thresholds: np.ndarray
) -> ClassPairs:
    """(i, c) whose block self-score terms matter: w_ic > ``thresholds[c]``, plus the label.

    The left-out terms r_ic q_ic / k have r_ic = P_ic, below the weights the block sums
    leave out themselves (``block_thresholds``).

    Parameters
    ----------
    probabilities : ndarray of shape (n, k), float64
    train_labels : ndarray of shape (n,), int64
        The scored class of every row (its label ỹ).
    thresholds : ndarray of shape (k,), float64
        ``block_thresholds`` of P.
    """
    labels = np.asarray(train_labels, dtype=np.int64)
    position = [0]

    def keep(block: np.ndarray) -> np.ndarray:
        mask = block * (1.0 - block) > thresholds
        start = position[0]
        mask[np.arange(block.shape[0]), labels[start : start + block.shape[0]]] = True
        position[0] += block.shape[0]
        return mask

    return ClassPairs.of(probabilities, keep)


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
