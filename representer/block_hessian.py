"""Per-class Hessian blocks: the PCG preconditioner and the block self-scores (docs/math.md §10.2, §10.4).

H_cc = (1/n) Σ_i P_ic(1 − P_ic) φ̃_i φ̃_iᵀ + (ε_c + δ) I, with a ridge ε_c = ``BLOCK_RIDGE`` ·
tr(H_cc)/D (at least that fraction of the mean block's) so every block is positive definite
even with few points of a class or dead features. Factorised in float64 and kept as float32
Cholesky factors (k, D, D): enough for a preconditioner, half the memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

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
    "LowRankBlocks",
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
LOWRANK_FRACTION = 0.5
"""A block of at most this many kept rows per feature is kept as its rows (``LowRankBlocks``):
k=1,000, n=50,000 leaves about 130 rows per class against D = 1,025."""
WHITENED_MIN_EIGENVALUE = 1e-2
"""A low-rank block applies Q_cᵀQ_c (``LowRankBlocks.whitened``) only on its eigenvectors with
eigenvalues above this: H_cc⁻¹ = (I − Q_cᵀQ_c)/σ_c is (1 − μ)/σ_c along an eigenvector of
eigenvalue μ, so 1/σ_c there changes the block's inverse by at most 1/(1 − μ), 1 % here, and
the preconditioner's reach with it. k=100, n=50,000, d=768, δ=1e-4: 7,141 of 18,711 rows."""
FACTOR_BATCH = 8
"""Blocks factored by one batched Cholesky call."""
MIN_TRACE_FRACTION = 1e-3
"""A block's ridge is at least BLOCK_RIDGE times this fraction of the mean block trace, so
a class without points still gets a usable (scaled identity) block."""


def block_bytes(num_classes: int, dim: int) -> int:
    """Memory of the k float32 blocks plus the float64 sums of one factor batch.

    A dense block is a D×D factor; a low-rank one (m_c ≤ D/2) keeps Ĝ_c, Q_c and the factor of
    K_c, m_c·D + m_c·D + m_c² ≤ 1.25·D² floats: 5·D² bytes a block covers both.
    """
    return num_classes * dim * dim * 5 + 3 * min(num_classes, FACTOR_BATCH) * dim * dim * 8


@dataclass(frozen=True)
class LowRankBlocks:
    """Blocks H_cc = σ_c I + Ĝ_cᵀ Ĝ_c with few rows Ĝ_c = diag(√(w/n)) Φ̃[I_c] (m_c < D).

    H_cc⁻¹ v = (v − Ĝ_cᵀ K_c⁻¹ Ĝ_c v)/σ_c with K_c = σ_c I + Ĝ_c Ĝ_cᵀ (Woodbury): m_c×D rows
    and an m_c×m_c factor instead of D×D, 2·m_c·D flops an apply instead of 2·D².

    Attributes
    ----------
    classes : ndarray of shape (k_l,), int64
    rows : Tensor of shape (Σ m_c, D), float32
        Ĝ of every low-rank class, stacked in ``classes`` order.
    starts : ndarray of shape (k_l + 1,), int64
        Class j's rows are ``rows[starts[j]:starts[j + 1]]``.
    kernels : Tensor of shape (Σ m_c²,), float32
        The lower Cholesky factors of K_c, flattened, at offsets Σ_{j' < j} m_j'².
    sigma : ndarray of shape (k_l,), float64
        σ_c = ε_c + δ.
    """

    classes: np.ndarray
    rows: torch.Tensor
    starts: np.ndarray
    kernels: torch.Tensor
    sigma: np.ndarray
    whitened: list[torch.Tensor] = field(init=False, compare=False, repr=False)
    """Q_c = L_c⁻¹ Ĝ_c (L_c the factor of K_c, solved in float64): Ĝ_cᵀ K_c⁻¹ Ĝ_c = Q_cᵀ Q_c, so
    an apply is two GEMVs a class and no triangular solves; kept as its leading directions
    (``WHITENED_MIN_EIGENVALUE``), (r_c, D) float32 per class with r_c ≤ m_c."""

    def __post_init__(self) -> None:
        whitened = [
            _leading_directions(
                torch.linalg.solve_triangular(factor.double(), rows.double(), upper=False)
            ).float()
            for _, rows, factor, _ in self.parts()
        ]
        object.__setattr__(self, "whitened", whitened)

    def parts(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, float]]:
        """(class, Ĝ_c, factor of K_c, σ_c) for every low-rank class."""
        offset = 0
        for j, c in enumerate(self.classes.tolist()):
            first, last = int(self.starts[j]), int(self.starts[j + 1])
            size = last - first
            factor = self.kernels[offset : offset + size * size].reshape(size, size)
            offset += size * size
            yield c, self.rows[first:last], factor, float(self.sigma[j])


def _leading_directions(whitened: torch.Tensor) -> torch.Tensor:
    """Rows R (r, D) with RᵀR = Q_cᵀQ_c on the eigenvectors of eigenvalue above
    ``WHITENED_MIN_EIGENVALUE`` and 0 on the others (``whitened``: Q_c (m_c, D), float64).

    With Q_c Q_cᵀ = U diag(μ) Uᵀ, R = U_rᵀ Q_c over the kept μ: RᵀR = Q_cᵀ U_r U_rᵀ Q_c.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(whitened @ whitened.T)  # (m_c,), (m_c, m_c)
    kept = eigenvectors[:, eigenvalues > WHITENED_MIN_EIGENVALUE]  # U_r (m_c, r)
    return kept.T @ whitened  # (r, D)


@dataclass(frozen=True)
class BlockPreconditioner:
    """M⁻¹ = Π blockdiag(H_11⁻¹, …, H_kk⁻¹) Π (symmetric positive definite on S).

    Attributes
    ----------
    cholesky : Tensor of shape (k_d, D, D), float32, lower triangular
        The factors of the dense blocks.
    dense_classes : ndarray of shape (k_d,), int64, or None (every class is dense)
    lowrank : LowRankBlocks, or None
    """

    cholesky: torch.Tensor
    dense_classes: np.ndarray | None = None
    lowrank: LowRankBlocks | None = None

    def __call__(self, directions: torch.Tensor) -> torch.Tensor:
        """M⁻¹ V for a stack (q, k, D) float64; shape (q, k, D), float64, in S."""
        projected = project(directions).to(torch.float32).permute(1, 2, 0)  # (k, D, q)
        if self.dense_classes is None:
            solved = torch.cholesky_solve(projected, self.cholesky)  # H_cc⁻¹ (k, D, q)
        else:
            solved = torch.empty_like(projected)
            dense = torch.as_tensor(self.dense_classes, device=projected.device)
            if dense.numel():
                solved[dense] = torch.cholesky_solve(projected[dense], self.cholesky)
            if self.lowrank is not None and self.lowrank.classes.size:
                classes = self.lowrank.classes.tolist()
                for c, whitened in zip(classes, self.lowrank.whitened, strict=True):
                    vectors = projected[c]  # (D, q)
                    inner = whitened @ vectors  # Q_c v (m_c, q)
                    torch.addmm(vectors, whitened.T, inner, alpha=-1.0, out=solved[c])
                sigma = torch.as_tensor(self.lowrank.sigma, device=solved.device)
                solved[classes] /= sigma.to(solved.dtype)[:, None, None]  # (v − QᵀQv)/σ_c
        return project(solved.permute(2, 0, 1).to(torch.float64))

    def dense_index(self) -> dict[int, int]:
        """Class → its position in ``cholesky``, for the dense classes."""
        if self.dense_classes is None:
            return {c: c for c in range(self.cholesky.shape[0])}
        return {int(c): position for position, c in enumerate(self.dense_classes.tolist())}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The factors as the arrays ``from_arrays`` reads."""
        num_classes = self.cholesky.shape[0]
        dense = self.dense_classes
        arrays = {
            "block_cholesky": self.cholesky.cpu().numpy(),
            "block_dense_classes": np.arange(num_classes) if dense is None else dense,
        }
        if self.lowrank is not None:
            arrays.update(
                block_lowrank_classes=self.lowrank.classes,
                block_lowrank_rows=self.lowrank.rows.cpu().numpy(),
                block_lowrank_starts=self.lowrank.starts,
                block_lowrank_kernels=self.lowrank.kernels.cpu().numpy(),
                block_lowrank_sigma=self.lowrank.sigma,
            )
        return arrays

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], tensor: Callable[[np.ndarray], torch.Tensor]
    ) -> BlockPreconditioner:
        """Read ``to_arrays``'s arrays; ``tensor`` wraps a float32 array (e.g. without a copy)."""
        cholesky = tensor(arrays["block_cholesky"])
        if "block_lowrank_classes" not in arrays:
            dense = arrays.get("block_dense_classes")
            return cls(cholesky, None if dense is None else np.asarray(dense, dtype=np.int64))
        return cls(
            cholesky,
            np.asarray(arrays["block_dense_classes"], dtype=np.int64),
            LowRankBlocks(
                classes=np.asarray(arrays["block_lowrank_classes"], dtype=np.int64),
                rows=tensor(arrays["block_lowrank_rows"]),
                starts=np.asarray(arrays["block_lowrank_starts"], dtype=np.int64),
                kernels=tensor(arrays["block_lowrank_kernels"]),
                sigma=np.asarray(arrays["block_lowrank_sigma"], dtype=np.float64),
            ),
        )


def factor_blocks(
    train_features: np.ndarray,
    probabilities: np.ndarray,
    *,
    damping: float,
    thresholds: np.ndarray,
    device: torch.device,
    progress: ProgressCallback,
) -> tuple[BlockPreconditioner, torch.Tensor]:
    """The factors of every H_cc (float32), and the live-feature mask.

    A row enters the sum of class c only where w_ic = P_ic(1 − P_ic) > ``thresholds[c]``
    (``block_thresholds``). The kept pairs are grouped by class first, so each block is
    summed from its own rows in a few large GEMMs (s·D² flops for s kept pairs, the D×D
    sum touched once per chunk of rows, not once per class and row block), and factored
    ``FACTOR_BATCH`` classes at a time: only that many float64 D×D sums exist at once. A
    class with at most ``LOWRANK_FRACTION``·D kept rows keeps its rows instead
    (``LowRankBlocks``: H_cc = σ_c I + Ĝ_cᵀĜ_c, an m_c×m_c factor, no D×D matrix at all).

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
    preconditioner : BlockPreconditioner
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
    sigma = ridges + damping  # (k,)
    counts = np.diff(pairs.starts)  # m_c (k,)
    low = counts <= LOWRANK_FRACTION * dim
    dense_classes = np.flatnonzero(~low)
    cholesky = torch.empty((dense_classes.size, dim, dim), dtype=torch.float32, device=device)
    done = 0
    for first in range(0, dense_classes.size, FACTOR_BATCH):
        batch = dense_classes[first : first + FACTOR_BATCH]
        sums = torch.zeros((batch.size, dim, dim), dtype=torch.float64, device=device)
        for j, c in enumerate(batch.tolist()):
            members, values = pairs.of_class(c)
            for chunk in range(0, members.size, GATHER_ROWS):
                part = slice(chunk, chunk + GATHER_ROWS)
                chosen = augmented_rows(train_features, members[part], device=device)
                weight = torch.as_tensor(values[part] * (1.0 - values[part]), device=device)
                sums[j].addmm_(chosen.T, chosen * weight[:, None])  # (D, D)
        sums /= n
        sums.diagonal(dim1=1, dim2=2).add_(torch.as_tensor(sigma[batch], device=device)[:, None])
        factors, info = torch.linalg.cholesky_ex(0.5 * (sums + sums.transpose(1, 2)))
        _check_factors(factors, info, batch)
        cholesky[first : first + batch.size] = factors.to(torch.float32)
        done += batch.size
        progress(done / num_classes)
    low_classes = np.flatnonzero(low)
    rows, kernels = [], []
    for c in low_classes.tolist():
        members, values = pairs.of_class(c)
        scale = torch.as_tensor(np.sqrt(values * (1.0 - values) / n), device=device)
        scaled = augmented_rows(train_features, members, device=device) * scale[:, None]  # Ĝ_c
        kernel = scaled @ scaled.T  # Ĝ Ĝᵀ (m_c, m_c)
        kernel.diagonal().add_(float(sigma[c]))
        factor, info = torch.linalg.cholesky_ex(kernel[None])
        _check_factors(factor, info, np.array([c]))
        rows.append(scaled.to(torch.float32))
        kernels.append(factor[0].to(torch.float32).flatten())
        done += 1
        if done % FACTOR_BATCH == 0 or done == num_classes:
            progress(done / num_classes)
    if low_classes.size == 0:
        return BlockPreconditioner(cholesky), live
    empty = torch.zeros(0, dtype=torch.float32, device=device)
    lowrank = LowRankBlocks(
        classes=low_classes,
        rows=torch.cat(rows) if rows else empty.reshape(0, dim),
        starts=np.concatenate([[0], np.cumsum(counts[low_classes])]).astype(np.int64),
        kernels=torch.cat(kernels) if kernels else empty,
        sigma=sigma[low_classes],
    )
    return BlockPreconditioner(cholesky, dense_classes, lowrank), live


def _check_factors(factors: torch.Tensor, info: torch.Tensor, classes: np.ndarray) -> None:
    """Raise ``SingularSystemError`` naming the first block whose factorisation failed."""
    failed = torch.nonzero((info != 0) | ~torch.isfinite(factors).flatten(1).all(dim=1))
    if failed.numel():
        raise SingularSystemError(
            f"the Hessian block of class {int(classes[int(failed[0])])} is not positive "
            "definite even with its ridge; check the features for non-finite values or raise "
            "`damping`",
            argument="damping",
        )


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
    preconditioner: BlockPreconditioner,
    pairs: ClassPairs,
    *,
    progress: ProgressCallback,
) -> np.ndarray:
    """q_ic = φ̃_iᵀ H_cc⁻¹ φ̃_i for the ``pairs``, 0 elsewhere.

    Dense blocks: ‖L_c⁻¹ φ̃_i‖², one triangular solve per class and chunk of its rows; low-rank
    blocks: (‖φ̃_i‖² − ‖L_K⁻¹ Ĝ_c φ̃_i‖²)/σ_c. Float32, as the factors.

    Parameters
    ----------
    train_features : ndarray of shape (n, d), real
    preconditioner : BlockPreconditioner
    pairs : ClassPairs (``support_pairs``)

    Returns
    -------
    ndarray of shape (n, k), float64.
    """
    n = train_features.shape[0]
    num_classes = pairs.starts.size - 1
    device = preconditioner.cholesky.device
    forms = np.zeros((n, num_classes))
    lowrank = {
        c: (rows, factor, sigma)
        for c, rows, factor, sigma in (
            preconditioner.lowrank.parts() if preconditioner.lowrank else []
        )
    }
    dense = preconditioner.dense_index()
    for c in range(num_classes):
        members, _ = pairs.of_class(c)
        for chunk in range(0, members.size, GATHER_ROWS):
            rows = members[chunk : chunk + GATHER_ROWS]
            chosen = augmented_rows(train_features, rows, device=device, dtype=torch.float32).T
            if c in lowrank:
                scaled, factor, sigma = lowrank[c]
                inner = torch.linalg.solve_triangular(factor, scaled @ chosen, upper=False)
                values = (
                    chosen.double().square().sum(dim=0) - inner.double().square().sum(dim=0)
                ) / sigma
            else:
                whitened = torch.linalg.solve_triangular(
                    preconditioner.cholesky[dense[c]], chosen, upper=False
                )
                values = whitened.double().square().sum(dim=0)
            forms[rows, c] = values.cpu().numpy()  # (b_c,)
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
