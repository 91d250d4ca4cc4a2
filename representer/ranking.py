"""Top-k selection with a deterministic order (docs/math.md §5, §6)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["top_indices", "top_indices_rows"]


def top_indices(values: np.ndarray, count: int, *, largest: bool) -> np.ndarray:
    """Indices of the ``count`` largest (or smallest) values, best first, ties by index.

    Parameters
    ----------
    values : ndarray of shape (n,), float64
    count : int
        Clamped to n.
    largest : bool

    Returns
    -------
    ndarray of shape (min(count, n),), int64.
    """
    count = min(count, values.shape[0])
    keyed = -values if largest else values
    if count < values.shape[0]:
        candidates = np.argpartition(keyed, count - 1)[:count]
        # Values tied with the k-th one may sit outside the partition; include them all.
        threshold = keyed[candidates].max()
        candidates = np.flatnonzero(keyed <= threshold)
    else:
        candidates = np.arange(values.shape[0])
    order = np.lexsort((candidates, keyed[candidates]))[:count]
    return candidates[order].astype(np.int64)


def top_indices_rows(values: np.ndarray, count: int, *, largest: bool) -> np.ndarray:
    """``top_indices`` of every row at once, the same answer row by row.

    ``torch.topk`` picks each row's ``count + 1`` best values (about 0.04 ms a row of
    50,000 against 0.55 ms for ``np.argpartition``). Where the (count+1)-th is strictly
    worse than the count-th, the first ``count`` are exactly the values at least as good as
    the count-th, whichever order the selection returned them in, so sorting them by value,
    then index, is the answer. A row tied at that boundary, or with a non-finite value among
    those picked, takes the exact per-row path. (Comparing the count-th with every value of
    the row instead took 0.7 ms more for 16 rows of 50,000, both sides.)

    Parameters
    ----------
    values : ndarray of shape (m, n), float64
    count : int
        Clamped to n.
    largest : bool

    Returns
    -------
    ndarray of shape (m, min(count, n)), int64.
    """
    m, n = values.shape
    count = min(count, n)
    if m == 0 or count == n:
        return np.stack([top_indices(row, count, largest=largest) for row in values]).reshape(
            m, count
        )
    picked = torch.topk(
        torch.from_numpy(np.ascontiguousarray(values)), count + 1, dim=1, largest=largest
    )  # best first (m, count + 1)
    best = picked.values.numpy()  # (m, count + 1)
    kth, following = best[:, count - 1], best[:, count]  # (m,)
    separated = (following < kth) if largest else (following > kth)  # False for NaN
    exact_needed = ~separated | ~np.isfinite(best).all(axis=1)  # (m,)
    candidates = picked.indices.numpy()[:, :count].astype(np.int64)  # (m, count)
    keyed = -best[:, :count] if largest else best[:, :count]  # smaller is better
    order = np.lexsort((candidates, keyed), axis=1)  # by value, then by index
    result = np.take_along_axis(candidates, order, axis=1)
    for row in np.flatnonzero(exact_needed):
        result[row] = top_indices(values[row], count, largest=largest)
    return result
