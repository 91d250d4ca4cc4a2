"""Top-k selection with a deterministic order (MATH.md §5, §6)."""

from __future__ import annotations

import numpy as np

__all__ = ["top_indices"]


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
