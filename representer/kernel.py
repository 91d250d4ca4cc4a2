"""The Hessian-whitened kernel shared by RPS-LJE and influence (docs/math.md §2.4, §4).

Both methods score training point i against a test direction v = M b_t (M the inverse of
the factorised system, b_t a (k_out·D) right-hand side built from the test point) as

    s_i(t) = Σ_c' R_ic' φ̃_iᵀ V_t,c'        (V_t = mat(v), shape (k_out, D))

which is one GEMM Φ̃ · [V_t,1 … V_t,k] per test point; the n×k×D tensor of per-point
weights never exists. With float32 features, the product's bias row, its float64 view and
the sum over c' are one compiled pass over the float32 product (``contract_product``):
NumPy's conversion, addition and ``einsum`` took 27 of the 124 ms of an influence pass of
16 points (n=50,000, d=512, 10 classes, AMD Zen 4, 2 threads).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import cast

import numpy as np
import torch

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; platforms without a wheel
    numba = None  # type: ignore[assignment]

from representer.feature_blocks import augmented_product, float32_product_t
from representer.row_kernels import row_ranges, run_on_ranges

__all__ = [
    "COMPILED_CONTRACTION",
    "kernel_scores",
    "directions_from_rows",
    "contract_product",
    "compile_contraction",
]

COMPILED_CONTRACTION = numba is not None
"""Whether ``contract_product`` can run (numba is importable)."""

PRODUCT_BYTES = 256 * 1024**2
"""Cap on the (n, m·k_out) float64 product held at once; test points are batched under it."""
ZERO_SUM_ATOL = 1e-12
"""A residual row P_i − e_ỹi sums to zero up to float64 rounding of k_out terms in [−1, 1]
(about 1e-16 each); ``kernel_scores`` folds the last class only when every row is within it."""
MIN_TERMS_TO_SPLIT = 2_000_000
"""Products (count·p·n) from which ``contract_product`` splits the training rows over the
pass's threads: about 2 ms of work, where a helper thread's start may wait milliseconds
for the interpreter lock in a busy API process (one influence point: 450,000 terms, 16:
7.2 million)."""
MIN_COLUMNS_PER_THREAD = 256
"""Columns of M below which ``directions_from_rows`` keeps a range on one thread."""


def directions_from_rows(
    inverse: np.ndarray, right_hand_sides: np.ndarray, *, num_outputs: int
) -> np.ndarray:
    """V_t = mat(M b_t) for every row b_t.

    The product reads all of M (210 MB for k_out·D = 5,130), so the pass's threads
    (``torch.get_num_threads()``) each take a range of its columns, as NumPy products on
    the helper threads of ``representer.row_kernels``. An API process runs NumPy's BLAS on
    one thread (``rps serve``): OpenBLAS's own helper threads spin for about 0.1 s after
    each product, and a oneDNN product that followed at once took 69-75 ms instead of
    41-43 (n=50,000, d=512, 160 columns, AMD Zen 4, two threads).

    Parameters
    ----------
    inverse : ndarray of shape (k_out·D, k_out·D), float64, symmetric
    right_hand_sides : ndarray of shape (m, k_out·D), float64
    num_outputs : int
        k_out.

    Returns
    -------
    ndarray of shape (m, k_out, D), float64.
    """
    size = inverse.shape[0]
    directions = np.empty((right_hand_sides.shape[0], size))  # (m, k_out·D)

    def columns(start: int, stop: int) -> None:  # M is symmetric: b_tᵀ M = (M b_t)ᵀ
        directions[:, start:stop] = right_hand_sides @ inverse[:, start:stop]

    spans = row_ranges(size, torch.get_num_threads(), min_rows=MIN_COLUMNS_PER_THREAD)
    run_on_ranges(columns, spans)
    return directions.reshape(right_hand_sides.shape[0], num_outputs, -1)


def kernel_scores(
    train_features: np.ndarray, residuals: np.ndarray, directions: np.ndarray
) -> np.ndarray:
    """s_i(t) = Σ_c' R_ic' φ̃_iᵀ V_t,c' for every test direction and training row.

    Where every row of R sums to zero (softmax residuals), the last class is folded into
    the others: k_out − 1 product columns per test point instead of k_out, the same sums
    (the dropped term is (Σ_c' R_ic') φ̃_iᵀ V_t,last, at most ``ZERO_SUM_ATOL`` times its
    size). For 16 influence points (n=50,000, d=512, 10 classes) that is a GEMM of 144
    columns instead of 160: 36-41 ms against 40-45 on two threads of an AMD Zen 4.

    Parameters
    ----------
    train_features : ndarray of shape (n, d), float32 or float64
    residuals : ndarray of shape (n, k_out), float64
    directions : ndarray of shape (m, k_out, D), float64

    Returns
    -------
    ndarray of shape (m, n), float64.
    """
    if directions.shape[1] > 1 and _rows_sum_to_zero(residuals):
        # Softmax residuals P_i − e_ỹi: R_i,last = −Σ_c'<last R_ic', so the scores are
        # Σ_c'<last R_ic' φ̃_iᵀ (V_t,c' − V_t,last), a GEMM with one column fewer per point.
        directions = directions[:, :-1] - directions[:, -1:]  # (m, k_out − 1, D)
        residuals = residuals[:, :-1]  # (n, k_out − 1)
    n = train_features.shape[0]
    m, num_outputs, dim = directions.shape
    scores = np.empty((m, n))
    batch = max(1, PRODUCT_BYTES // (8 * n * num_outputs))
    for start in range(0, m, batch):
        stop = min(m, start + batch)
        stacked = directions[start:stop].reshape(-1, dim).T  # (D, b·k_out)
        product_t = float32_product_t(train_features, stacked) if COMPILED_CONTRACTION else None
        if product_t is not None:  # (b·k_out, n) float32
            scores[start:stop] = contract_product(product_t, stacked[-1], residuals, stop - start)
            continue
        product = augmented_product(train_features, stacked)  # (n, b·k_out)
        product = product.reshape(n, stop - start, num_outputs)
        scores[start:stop] = np.einsum("ibc,ic->bi", product, residuals)  # (b, n)
    return scores


def _rows_sum_to_zero(residuals: np.ndarray) -> bool:
    """Whether every row of R (n, k_out) sums to zero, to ``ZERO_SUM_ATOL``."""
    return bool(np.abs(residuals.sum(axis=1)).max() <= ZERO_SUM_ATOL)


def contract_product(
    product_t: np.ndarray,
    bias: np.ndarray,
    residuals: np.ndarray,
    count: int,
    *,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """s[j, i] = Σ_c' (P[j·k_out + c', i] + bias[j·k_out + c']) R_ic', summed in float64.

    With ``columns``, each product column weighs by its own column of R instead:
    s[j, i] = Σ_c (P[j·p + c, i] + bias[j·p + c]) R[i, columns[j·p + c]] for the p = len(columns)
    / count product columns of test point j (RPS-ℓ2: p = 1, R = α, columns = the targets).
    From ``MIN_TERMS_TO_SPLIT`` products on, the training rows are split over the pass's
    threads (``torch.get_num_threads()``); a row's sums do not depend on the split.

    Parameters
    ----------
    product_t : ndarray of shape (count·p, n), float32 (any strides)
        (Φ V[:d])ᵀ for ``count`` test points, p columns each (p = k_out without ``columns``).
    bias : ndarray of shape (count·p,), float64
        The bias row V[d].
    residuals : ndarray of shape (n, r), float64
    count : int
    columns : ndarray of shape (count·p,), int, each in 0..r-1, optional
        Default: column j·k_out + c' weighs by R[:, c'].

    Returns
    -------
    ndarray of shape (count, n), float64.
    """
    n = product_t.shape[1]
    if columns is None:
        columns = np.tile(np.arange(residuals.shape[1]), count)  # (count·k_out,)
    out = np.empty((count, n))  # (count, n)
    contract = _contraction()
    bias = np.ascontiguousarray(bias, dtype=np.float64)
    residuals = np.ascontiguousarray(residuals, dtype=np.float64)
    columns = np.ascontiguousarray(columns, dtype=np.int64)
    terms = columns.shape[0] * n
    threads = torch.get_num_threads() if terms >= MIN_TERMS_TO_SPLIT else 1
    run_on_ranges(
        lambda start, stop: contract(product_t, bias, residuals, columns, out, start, stop),
        row_ranges(n, threads),
    )
    return out


def compile_contraction() -> None:
    """Compile ``contract_product`` now for both product layouts (the few-row kernels' and
    oneDNN's transposed one), so no query waits for numba; a no-op without numba."""
    if numba is None:
        return
    residuals = np.zeros((3, 2))
    for product_t in (np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32).T):
        contract_product(product_t, np.zeros(2), residuals, 1)


@functools.cache
def _contraction() -> Callable[..., None]:
    """contract(product_t, bias, residuals, columns, out, start, stop): training rows
    start..stop of ``contract_product``, compiled once per process."""
    if numba is None:
        raise RuntimeError("contract_product needs numba")

    def contract(product_t, bias, residuals, columns, out, start, stop):  # pragma: no cover
        per_point = columns.shape[0] // out.shape[0]
        for i in range(start, stop):  # one training row: its p·count products together
            for j in range(out.shape[0]):
                total = 0.0
                for c in range(per_point):
                    column = j * per_point + c
                    weight = residuals[i, columns[column]]
                    total += (np.float64(product_t[column, i]) + bias[column]) * weight
                out[j, i] = total

    compiled = numba.njit(boundscheck=False, nogil=True)(contract)
    return cast(Callable[..., None], compiled)
