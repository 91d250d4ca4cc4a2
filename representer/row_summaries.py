"""What an explanation keeps of its row of contributions, in one compiled pass (numba).

``explain`` needs, for every row of the (m, n) contributions: the top-k largest and the
top-k smallest values (best first, ties by the lower index: docs/math.md §5, §6), the row's
sum, and whether every value is finite. ``ranking.top_indices_rows`` and NumPy get them in
about forty PyTorch and NumPy calls, and each call lets go of the interpreter lock and
takes it back. In an API process the other threads (HTTP, the database, JSON) hold that
lock in short bursts, so each return waited for one: with three threads doing Python work
a third of the time, a pass of eight points took 118 ms against 54 ms alone (n=50,000,
d=512, one thread). ``summarise_rows`` does all of it in one call that runs without the
lock: one scan of each row, in index order, keeps the k best values seen so far on each
side in a sorted list, and a later value enters only when it is strictly better than the
k-th, so among equal values the lower index stays first. That is the same order as
``ranking.top_indices``, exactly, ties included.

The scan costs about a nanosecond a value (the comparison with the k-th rarely holds);
it stays on the pass's own thread: 16 rows of n=50,000 take about 0.8 ms, and a helper
thread would first have to take the interpreter lock from the request threads.
numba compiles it on first use (about 0.5 s; ``compile_summaries`` does it up front).
Without numba, ``summarise_rows`` uses the PyTorch/NumPy path, with the same answers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np

from representer.ranking import top_indices_rows

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; platforms without a wheel
    numba = None  # type: ignore[assignment]

__all__ = ["RowSummaries", "compile_summaries", "summarise_rows"]


class RowSummaries(NamedTuple):
    """Per row of an (m, n) block of contributions.

    Attributes
    ----------
    positives : ndarray of shape (m, count), int64
        Indices of the largest values, best first, ties by the lower index.
    negatives : ndarray of shape (m, count), int64
        Indices of the smallest values, best first, ties by the lower index.
    sums : ndarray of shape (m,), float64
    finite : ndarray of shape (m,), bool
        Whether every value of the row is finite; the other fields of a row that is not
        are unspecified.
    """

    positives: np.ndarray
    negatives: np.ndarray
    sums: np.ndarray
    finite: np.ndarray


def summarise_rows(values: np.ndarray, count: int) -> RowSummaries:
    """The ``count`` largest and smallest of every row, its sum and its finiteness.

    Parameters
    ----------
    values : ndarray of shape (m, n), float64
    count : int, at least 1
        Clamped to n.

    Returns
    -------
    RowSummaries, with (m, min(count, n)) index arrays.
    """
    m, n = values.shape
    count = min(count, n)
    if m == 0:
        nothing = np.empty((0, count), dtype=np.int64)
        return RowSummaries(nothing, nothing.copy(), np.empty(0), np.empty(0, dtype=np.bool_))
    if numba is None or count == 0:
        return _summaries_without_numba(values, count)
    positives = np.zeros((m, count), dtype=np.int64)
    negatives = np.zeros((m, count), dtype=np.int64)
    sums = np.empty(m)
    finite = np.empty(m, dtype=np.bool_)
    _kernel()(np.ascontiguousarray(values, dtype=np.float64), positives, negatives, sums, finite)
    return RowSummaries(positives, negatives, sums, finite)


def compile_summaries() -> None:
    """Compile ``summarise_rows``' kernel now, so that no query waits for it; a no-op
    without numba or when it is compiled."""
    if numba is not None:
        summarise_rows(np.zeros((1, 2)), 1)


def _summaries_without_numba(values: np.ndarray, count: int) -> RowSummaries:
    return RowSummaries(
        top_indices_rows(values, count, largest=True),
        top_indices_rows(values, count, largest=False),
        values.sum(axis=1),
        np.isfinite(values).all(axis=1),
    )


@functools.cache
def _kernel() -> Callable[..., None]:
    """The compiled scan (once per process)."""
    jit = numba.njit(nogil=True, boundscheck=False)
    keep = jit(_keep_if_better)

    def scan_rows(values, positives, negatives, sums, finite):  # pragma: no cover - compiled
        """Fill positives, negatives (m, count), sums and finite (m,) from values (m, n).

        ``high`` holds the largest values seen so far and ``low`` the negated smallest, best
        first, with their indices in ``positives``/``negatives``; both start at −∞, which
        every finite value beats (a row with a non-finite value is only flagged).
        """
        m, n = values.shape
        last = positives.shape[1] - 1
        high = np.empty(last + 1)
        low = np.empty(last + 1)
        for row in range(m):
            high[:] = -np.inf
            low[:] = -np.inf
            row_positives, row_negatives = positives[row], negatives[row]
            total = 0.0
            all_finite = True
            for index in range(n):
                value = values[row, index]
                total += value
                if not np.isfinite(value):
                    all_finite = False
                if value > high[last]:  # rare: the test stays in the loop, the insert does not
                    keep(high, row_positives, value, index)
                if -value > low[last]:
                    keep(low, row_negatives, -value, index)
            sums[row] = total
            finite[row] = all_finite

    return cast(Callable[..., None], jit(scan_rows))


def _keep_if_better(
    best: Any, indices: Any, value: float, index: int
) -> None:  # pragma: no cover - runs compiled; its answers are tested against ranking
    """Insert ``value`` (at ``index``) into ``best`` (sorted, largest first), dropping the
    last; the caller checked that ``value`` is strictly larger than it. A value equal to one
    held came later, so has a higher index, and stays behind it."""
    place = best.shape[0] - 1
    while place > 0 and best[place - 1] < value:
        best[place] = best[place - 1]
        indices[place] = indices[place - 1]
        place -= 1
    best[place] = value
    indices[place] = index
