"""The Hessian-whitened kernel shared by RPS-LJE and influence (docs/math.md §2.4, §4).

Both methods score training point i against a test direction v = M b_t (M the inverse of
the factorised system, b_t a (k_out·D) right-hand side built from the test point) as

    s_i(t) = Σ_c' R_ic' φ̃_iᵀ V_t,c'        (V_t = mat(v), shape (k_out, D))

which is one GEMM Φ̃ · [V_t,1 … V_t,k] per test point; the n×k×D tensor of per-point
weights never exists.
"""

from __future__ import annotations

import numpy as np

from representer.feature_blocks import augmented_product

__all__ = ["kernel_scores", "directions_from_rows"]

PRODUCT_BYTES = 256 * 1024**2
"""Cap on the (n, m·k_out) float64 product held at once; test points are batched under it."""


def directions_from_rows(
    inverse: np.ndarray, right_hand_sides: np.ndarray, *, num_outputs: int
) -> np.ndarray:
    """V_t = mat(M b_t) for every row b_t.

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
    directions = right_hand_sides @ inverse  # (m, k_out·D); M is symmetric
    return directions.reshape(right_hand_sides.shape[0], num_outputs, -1)


def kernel_scores(
    train_features: np.ndarray, residuals: np.ndarray, directions: np.ndarray
) -> np.ndarray:
    """s_i(t) = Σ_c' R_ic' φ̃_iᵀ V_t,c' for every test direction and training row.

    Parameters
    ----------
    train_features : ndarray of shape (n, d), float32 or float64
    residuals : ndarray of shape (n, k_out), float64
    directions : ndarray of shape (m, k_out, D), float64

    Returns
    -------
    ndarray of shape (m, n), float64.
    """
    n = train_features.shape[0]
    m, num_outputs, dim = directions.shape
    scores = np.empty((m, n))
    batch = max(1, PRODUCT_BYTES // (8 * n * num_outputs))
    for start in range(0, m, batch):
        stop = min(m, start + batch)
        stacked = directions[start:stop].reshape(-1, dim).T  # (D, b·k_out)
        product = augmented_product(train_features, stacked)  # (n, b·k_out)
        product = product.reshape(n, stop - start, num_outputs)
        scores[start:stop] = np.einsum("ibc,ic->bi", product, residuals)  # (b, n)
    return scores
