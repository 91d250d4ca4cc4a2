"""Top-k selection with a deterministic order (docs/math.md §5, §6)."""

from __future__ import annotations

import numpy as np

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

    One ``argpartition`` over the whole (m, n) block serves every row whose k-th value has
    no tie outside the partition (the usual case); rows with such ties take the exact
    per-row path.

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
    keyed = -values if largest else values  # (m, n)
    candidates = np.argpartition(keyed, count - 1, axis=1)[:, :count]  # (m, count)
    chosen = np.take_along_axis(keyed, candidates, axis=1)  # (m, count)
    threshold = chosen.max(axis=1, keepdims=True)  # (m, 1)
    tied_outside = (keyed <= threshold).sum(axis=1) > count  # (m,)
    order = np.lexsort((candidates, chosen), axis=1)  # by value, then by index
    result = np.take_along_axis(candidates, order, axis=1).astype(np.int64)
    for row in np.flatnonzero(tied_outside):
        result[row] = top_indices(values[row], count, largest=largest)
    return result
