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

    ``torch.topk`` picks each row's ``count`` candidates (about 0.07 ms a row of 50,000
    against 0.55 ms for ``np.argpartition``); a row whose k-th value is tied outside the
    candidates, or whose candidates hold a NaN, takes the exact per-row path. Otherwise the
    candidates are exactly the values at least as good as the k-th, whichever ``count`` of
    them the selection returned, so sorting them by value, then index, is the answer.

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
    rows = np.ascontiguousarray(values)  # (m, n)
    candidates = (
        torch.topk(torch.from_numpy(rows), count, dim=1, largest=largest, sorted=False)
        .indices.numpy()
        .astype(np.int64)
    )  # (m, count)
    chosen = np.take_along_axis(rows, candidates, axis=1)  # (m, count)
    keyed = -chosen if largest else chosen  # smaller is better (m, count)
    kth = chosen.min(axis=1, keepdims=True) if largest else chosen.max(axis=1, keepdims=True)
    as_good = (rows >= kth) if largest else (rows <= kth)  # (m, n)
    exact_needed = (as_good.sum(axis=1) > count) | ~np.isfinite(chosen).all(axis=1)  # (m,)
    order = np.lexsort((candidates, keyed), axis=1)  # by value, then by index
    result = np.take_along_axis(candidates, order, axis=1)
    for row in np.flatnonzero(exact_needed):
        result[row] = top_indices(values[row], count, largest=largest)
    return result
