"""Materialised RPS-LJE weights (docs/math.md §2.4): W_i[c] = (1/n)(Θ*_c − Σ_c' r*_ic' B_cc' φ̃_i).

With W stored as (k_out, n, D) float32, the contribution of every training point to test
point t toward class c is one matrix-vector product W[c] φ̃_t. Building W costs one
(b, k·D) x (k·D, k·D) GEMM per row block (2 n (kD)² flops in all) and gives the
self-contributions for free. ``WeightLayout`` says when this beats the kernel form.
"""

from __future__ import annotations

import numpy as np
import torch

from representer.config import LJEConfig, WeightLayout
from representer.errors import MemoryLimitError
from representer.feature_blocks import (
    augmented_row_blocks,
    block_tensor,
    float32_tensor,
    rows_per_block,
)
from representer.hessian import FACTOR_COPIES
from representer.onednn import ONEDNN_LINEAR as _ONEDNN_MATMUL
from representer.onednn import linear_nt
from representer.progress import ProgressCallback
from representer.row_kernels import FEW_ROWS_KERNELS as _FEW_ROWS
from representer.row_kernels import MAX_KERNEL_ROWS, few_rows_product, grouped_rows_product

__all__ = [
    "MATERIALISE_MIN_OUTPUTS",
    "choose_layout",
    "materialise_weights",
    "materialised_contributions",
]

MATERIALISE_MIN_OUTPUTS = 3
"""AUTO materialises from this many outputs on: below it the kernel GEMM has at most two
columns and costs about one pass over the features already (binary: exactly one)."""
PRODUCT_BYTES = 256 * 1024**2
"""Cap on the (n, m) float32 product of one query batch."""


def choose_layout(config: LJEConfig, *, n: int, num_outputs: int, dim: int) -> WeightLayout:
    """KERNEL or MATERIALISED for this problem; raises if MATERIALISED is forced and cannot fit."""
    weight_bytes = num_outputs * n * dim * 4
    hessian_bytes = FACTOR_COPIES * (num_outputs * dim) ** 2 * 8
    fits = weight_bytes + hessian_bytes <= config.memory_budget_bytes
    if config.weight_layout is WeightLayout.MATERIALISED:
        if not fits:
            raise MemoryLimitError(
                f"materialised weights need {weight_bytes / 1024**2:.0f} MiB (+{hessian_bytes / 1024**2:.0f} MiB "
                f"for the Hessian), more than memory_budget_bytes={config.memory_budget_bytes}; "
                "use weight_layout='kernel' or raise memory_budget_bytes",
                argument="memory_budget_bytes",
            )
        return WeightLayout.MATERIALISED
    if (
        config.weight_layout is WeightLayout.AUTO
        and fits
        and num_outputs >= MATERIALISE_MIN_OUTPUTS
    ):
        return WeightLayout.MATERIALISED
    return WeightLayout.KERNEL


def materialise_weights(
    train_features: np.ndarray,
    own_class: np.ndarray,
    theta_star: np.ndarray,
    residuals_star: np.ndarray,
    inverse: torch.Tensor,
    *,
    progress: ProgressCallback,
) -> tuple[np.ndarray, np.ndarray]:
    """W (k_out, n, D) float32 and the self-contributions W_i[ỹ_i]·φ̃_i (n,) float64.

    Parameters
    ----------
    train_features : ndarray of shape (n, d)
    own_class : ndarray of shape (n,), int64
        ỹ_i (binary: 0, the logit's row).
    theta_star : ndarray of shape (k_out, D), float64
    residuals_star : ndarray of shape (n, k_out), float64
    inverse : Tensor of shape (k_out·D, k_out·D), float64
    """
    n = train_features.shape[0]
    num_outputs, dim = theta_star.shape
    device = inverse.device
    theta_star_t = torch.as_tensor(theta_star, device=device)
    residuals_t = torch.as_tensor(residuals_star, device=device)
    weights = np.empty((num_outputs, n, dim), dtype=np.float32)
    self_contribution = np.empty(n)
    block_rows = rows_per_block(8 * num_outputs * dim * 3)
    for rows, block in augmented_row_blocks(train_features, block_rows=block_rows, device=device):
        count = block.shape[0]
        gradients = (residuals_t[rows][:, :, None] * block[:, None, :]).reshape(
            count, -1
        )  # G*_i (b, k·D)
        hessian_terms = (gradients @ inverse).reshape(
            count, num_outputs, dim
        )  # rows of mat(M g_i) (b, k, D)
        block_weights = (theta_star_t[None] - hessian_terms) / n  # (b, k, D)
        block_class = block_tensor(
            own_class, rows, dtype=np.dtype(np.int64), device=device
        )  # ỹ_i (b,)
        own_weights = block_weights[torch.arange(count, device=device), block_class]  # (b, D)
        self_contribution[rows] = (own_weights * block).sum(dim=1).cpu().numpy()
        weights[:, rows, :] = block_weights.permute(1, 0, 2).to(torch.float32).cpu().numpy()
        progress(rows.stop / n)
    return weights, self_contribution


def materialised_contributions(
    weights: np.ndarray, test_augmented: np.ndarray, rows_class: np.ndarray
) -> np.ndarray:
    """W[c_t] φ̃_t for every test row (before the binary class-0 sign flip).

    The rows of one class share one product W[c] · [φ̃_t …]: W[c] (n×D float32) is read
    once for all of them, which is what a batched query pass saves. Classes with at most
    ``MAX_KERNEL_ROWS`` rows (most classes of a mixed pass) are multiplied together in one
    ``grouped_rows_product`` call; a class with more rows takes ``class_product``, which
    picks the GEMM kernel for its number of rows.

    Parameters
    ----------
    weights : ndarray of shape (k_out, n, D), float32 (may be memory-mapped)
    test_augmented : ndarray of shape (m, D), float64
    rows_class : ndarray of shape (m,), int64
        Which row of W serves each test point.

    Returns
    -------
    ndarray of shape (m, n), float64.
    """
    n = weights.shape[1]
    m = test_augmented.shape[0]
    values = np.empty((m, n))
    test32 = test_augmented.astype(np.float32)  # (m, D)
    classes, counts = np.unique(rows_class, return_counts=True)
    few = (counts <= MAX_KERNEL_ROWS) & _FEW_ROWS  # (classes,) bool
    if few.any():
        # The writable view of W: numba compiles one signature for it (a read-only memmap
        # would be a second one, compiled on the first query).
        all_weights = float32_tensor(weights).numpy()  # (k_out, n, D), no copy
        order = np.concatenate([np.flatnonzero(rows_class == c) for c in classes[few]])
        starts = np.concatenate([[0], np.cumsum(counts[few])])  # (G + 1,)
        values[order] = grouped_rows_product(
            all_weights, test32[order], classes[few].astype(np.int64), starts.astype(np.int64)
        )
    batch = max(1, PRODUCT_BYTES // (4 * n))
    for c in classes[~few]:
        class_weights = float32_tensor(weights[c])  # (n, D), no copy
        members = np.flatnonzero(rows_class == c)
        for start in range(0, len(members), batch):
            chosen = members[start : start + batch]
            rows = torch.from_numpy(test32[chosen])  # (b, D)
            product = class_product(class_weights, rows)  # (b, n), often a transposed view
            if chosen[-1] - chosen[0] == len(chosen) - 1:  # consecutive rows: torch's copy
                torch.from_numpy(values[chosen[0] : chosen[-1] + 1]).copy_(product)  # threaded
            else:
                values[chosen] = product.numpy()
    return values


def class_product(class_weights: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """W[c] φ̃_t for b rows at once, shape (b, n), float32 (W[c] read once, never copied).

    Which kernel reads W[c] (n×D, row-major float32) fastest depends on b (n=50,000,
    D=513, one thread, this project's AMD Zen 5 machine, W not in the caches; ms):

    ======  ==============  ======  =====================
    b       ``row_kernels``  oneDNN  MKL (``torch.mm``)
    ======  ==============  ======  =====================
    1       3.0-3.3         3.4-3.6  6.6-7.6
    2       3.5-3.6         6.4-6.7  4.2
    3       3.8-3.9         6.4-6.6  6.0-6.6
    4       4.5             6.6-6.9  6.1-6.2
    16      (none)          9.2-9.3  17.4-17.7
    ======  ==============  ======  =====================

    (The ``row_kernels`` column is the register-blocked version those kernels had then; the
    row-by-row version that replaced it reads W at about the speed of memory on an AMD Zen
    4, where the blocked one read it at half that: figures in ``representer.row_kernels``.
    On that Zen 4, 16 rows through oneDNN took 9.5 ms a pass on two threads with W
    memory-mapped from its file, 6.6 ms with W in anonymous memory.)

    So: the compiled few-row kernels (``representer.row_kernels``, numba) up to
    ``MAX_KERNEL_ROWS`` rows, oneDNN's matmul (``representer.onednn``: the plain strided
    tensors, no reorder, no copy of W) from there on. Up to ``ONEDNN_TALL_MAX_ROWS`` rows
    oneDNN is asked for the tall product W[c] φ̃ᵀ (n, b), returned as its transposed view:
    on the Zen 4, two threads, W memory-mapped and not in the caches, 16 rows took 7.4 ms
    that way against 9.9-10.8 for φ̃ W[c]ᵀ (b, n) (5 rows 6.4 against 7.3-7.7, 32 rows
    13.7-13.9 against 13.7-15.1, 64 rows 24.4-25.2 against 21.5-22.5). Both use the
    pass's threads (the few-row kernels split W's rows among them). Without numba, oneDNN
    for one row and from ``ONEDNN_MIN_ROWS`` rows, MKL in between (its right operand is the
    transposed view of the rows: a row-major (D, b) copy took about 5x as long). All
    accumulate in float32; a row's value may differ by float32 rounding between kernels
    (about 1e-4 on values of order 10).

    Parameters
    ----------
    class_weights : Tensor of shape (n, D), float32, contiguous
    rows : Tensor of shape (b, D), float32

    Returns
    -------
    Tensor of shape (b, n), float32 (a transposed view for the tall product).
    """
    count = rows.shape[0]
    if _FEW_ROWS and count <= MAX_KERNEL_ROWS and class_weights.device.type == "cpu":
        return torch.from_numpy(few_rows_product(class_weights.numpy(), rows.numpy()))
    if _ONEDNN_MATMUL is not None and ONEDNN_MIN_ROWS <= count <= ONEDNN_TALL_MAX_ROWS:
        return linear_nt(class_weights, rows.contiguous()).T  # (n, b) product, (b, n) view
    if _ONEDNN_MATMUL is not None and (count == 1 or count >= ONEDNN_MIN_ROWS):
        return linear_nt(rows.contiguous(), class_weights)
    if count == 1:  # a GEMM, not a GEMV: MKL's GEMV read W at about half the speed
        rows = torch.cat([rows, torch.zeros_like(rows)])  # (2, D)
    return (class_weights @ rows.T)[:, :count].T  # (b, n)


ONEDNN_MIN_ROWS = 5
"""Without the few-row kernels: from this many rows of one class on, ``class_product`` uses
oneDNN (see there)."""
ONEDNN_TALL_MAX_ROWS = 32
"""Up to this many rows ``class_product`` asks oneDNN for the tall product W[c] φ̃ᵀ (n, b)
and returns its transposed view; from there on for φ̃ W[c]ᵀ (b, n) (see there)."""
