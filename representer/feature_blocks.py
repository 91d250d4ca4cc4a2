"""Row blocks of Φ̃ = [Φ, 1] without ever building the augmented n×D array.

The training features arrive as an (n, d) array, often a read-only float32 memmap.
The precompute walks them in row blocks converted to float64 (one copy per block);
queries apply Φ̃ v = Φ v[:d] + v[d] in the features' own floating dtype.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch

from representer.onednn import ONEDNN_LINEAR, linear_nt
from representer.row_kernels import FEW_ROWS_KERNELS, MAX_KERNEL_ROWS, few_rows_product

__all__ = [
    "float32_product_t",
    "augmented_row_blocks",
    "rows_per_block",
    "augmented_product",
    "block_tensor",
    "float32_tensor",
]

BLOCK_BYTES = 256 * 1024**2
"""Soft cap on the temporary arrays one row block creates."""


def rows_per_block(bytes_per_row: int, *, block_bytes: int = BLOCK_BYTES) -> int:
    """How many rows fit a block of ``block_bytes`` (at least 64)."""
    return max(64, int(block_bytes // max(1, bytes_per_row)))


def augmented_row_blocks(
    train_features: np.ndarray, *, block_rows: int, device: torch.device
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(rows, Φ̃[rows])`` in float64 on ``device``.

    Parameters
    ----------
    train_features : ndarray of shape (n, d), real
    block_rows : int
    device : torch.device

    Yields
    ------
    rows : slice
    block : Tensor of shape (len(rows), d + 1), float64, last column all ones.
    """
    n, d = train_features.shape
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        block = torch.empty((stop - start, d + 1), dtype=torch.float64)
        block_view = block.numpy()
        block_view[:, :d] = train_features[start:stop]
        block_view[:, d] = 1.0
        yield slice(start, stop), block.to(device)


def block_tensor(
    values: np.ndarray, rows: slice, *, dtype: np.dtype, device: torch.device
) -> torch.Tensor:
    """``values[rows]`` as a tensor on ``device``, from a writable copy of that block only.

    ``values`` may be a read-only memmap (stored labels); ``torch.as_tensor`` on it would
    warn that the array is not writable, and copying the whole array is not needed.
    """
    return torch.from_numpy(np.array(values[rows], dtype=dtype)).to(device)


def augmented_product(train_features: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Φ̃ V = Φ V[:d] + V[d], computed in the features' floating dtype.

    Float32 features are multiplied in place (a read-only memmap is only read, never
    copied): up to ``MAX_KERNEL_ROWS`` columns by the compiled few-row kernels
    (``representer.row_kernels``), which read Φ once for all of them, and otherwise by
    oneDNN's product (``representer.onednn``) where this PyTorch has it. NumPy's BLAS does
    not use AVX-512 on this project's AMD Zen 5 machine (n=50,000, d=512, one thread: 18.2 ms
    against oneDNN's 8.7 for 10 columns, 131 against 67 for 160); for one column NumPy's
    GEMV took 3.8 ms a query, oneDNN's 4.3.

    Parameters
    ----------
    train_features : ndarray of shape (n, d), float32 or float64 (others go via float64)
    vectors : ndarray of shape (d + 1, q), float64

    Returns
    -------
    ndarray of shape (n, q), float64.
    """
    product_t = float32_product_t(train_features, vectors)  # (q, n) float32, or None
    if product_t is not None:
        product = np.asarray(product_t.T, dtype=np.float64)  # (n, q)
    else:
        compute_dtype = np.float32 if train_features.dtype == np.float32 else np.float64
        weights = np.ascontiguousarray(vectors[: train_features.shape[1]], dtype=compute_dtype)
        product = np.asarray(np.matmul(train_features, weights), dtype=np.float64)  # (n, q)
    product += vectors[-1]
    return product


def float32_product_t(train_features: np.ndarray, vectors: np.ndarray) -> np.ndarray | None:
    """(Φ V[:d])ᵀ in float32, without the bias row V[d], by the kernels ``augmented_product``
    describes; None when Φ is not float32 or neither kernel is available.

    Parameters
    ----------
    train_features : ndarray of shape (n, d)
    vectors : ndarray of shape (d + 1, q), float64

    Returns
    -------
    ndarray of shape (q, n), float32 (possibly a transposed view), or None.
    """
    few_columns = vectors.shape[1] <= MAX_KERNEL_ROWS and FEW_ROWS_KERNELS
    if train_features.dtype != np.float32 or not (few_columns or ONEDNN_LINEAR is not None):
        return None
    d = train_features.shape[1]
    features = float32_tensor(train_features)  # (n, d), Φ itself
    weights_t = np.ascontiguousarray(vectors[:d].T, dtype=np.float32)  # (q, d)
    if few_columns:  # Φ read once for all q columns; .numpy() is a writable view
        return few_rows_product(features.numpy(), weights_t)  # (q, n)
    return linear_nt(features, torch.from_numpy(weights_t)).numpy().T  # (q, n)


def float32_tensor(array: np.ndarray) -> torch.Tensor:
    """``array`` as a float32 CPU tensor, without a copy when it is C-contiguous float32.

    Stored arrays arrive as read-only memmaps; they are only read, so torch's warning that
    the array is not writable does not apply and is silenced here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
