"""The compiled row summaries give ``ranking``'s top-k order exactly, ties included, with the
row sums and finiteness; the path without numba gives the same."""

import numpy as np
import pytest

from representer import row_summaries
from representer.ranking import top_indices
from representer.row_summaries import RowSummaries, summarise_rows

SUM_RTOL = 1e-12
"""Row sums: a sequential float64 sum against NumPy's pairwise one, rows of <= 50,000 values."""


def _assert_matches_ranking(summaries: RowSummaries, values: np.ndarray, count: int) -> None:
    for row in range(values.shape[0]):
        np.testing.assert_array_equal(
            summaries.positives[row], top_indices(values[row], count, largest=True)
        )
        np.testing.assert_array_equal(
            summaries.negatives[row], top_indices(values[row], count, largest=False)
        )
    np.testing.assert_allclose(summaries.sums, values.sum(axis=1), rtol=SUM_RTOL, atol=1e-12)
    np.testing.assert_array_equal(summaries.finite, np.isfinite(values).all(axis=1))


@pytest.mark.parametrize("count", [1, 3, 7, 40, 50])
def test_top_k_equals_ranking_with_and_without_ties(count):
    rng = np.random.default_rng(count)
    smooth = rng.normal(size=(6, 40))
    tied = rng.integers(0, 4, size=(5, 40)).astype(float)  # ties at every threshold
    constant = np.full((1, 40), 2.5)  # every value tied
    values = np.vstack([smooth, tied, constant])  # (12, 40)
    summaries = summarise_rows(values, count)
    assert summaries.positives.shape == summaries.negatives.shape == (12, min(count, 40))
    _assert_matches_ranking(summaries, values, count)


def test_a_query_sized_block_with_a_tie_wider_than_k():
    values = np.random.default_rng(4).normal(size=(16, 50_000))
    values[5, 100:120] = values[5].max()
    values[9, 3000:3030] = values[9].min()
    _assert_matches_ranking(summarise_rows(values, 10), values, 10)


def test_non_finite_rows_are_flagged():
    values = np.random.default_rng(5).normal(size=(5, 300))
    values[1, 17] = np.nan
    values[2, 0] = np.inf
    values[4, 299] = -np.inf
    summaries = summarise_rows(values, 10)
    np.testing.assert_array_equal(summaries.finite, [True, False, False, True, False])
    for row in (0, 3):  # the finite rows are answered as usual
        np.testing.assert_array_equal(
            summaries.positives[row], top_indices(values[row], 10, largest=True)
        )


def test_no_rows_and_float32_input():
    empty = summarise_rows(np.empty((0, 30)), 5)
    assert empty.positives.shape == (0, 5) and empty.sums.shape == (0,)
    values = np.random.default_rng(6).normal(size=(3, 64)).astype(np.float32)
    _assert_matches_ranking(summarise_rows(values, 4), values.astype(np.float64), 4)


def test_without_numba_the_answers_are_the_same(monkeypatch):
    values = np.random.default_rng(7).integers(0, 5, size=(8, 500)).astype(float)
    compiled = summarise_rows(values, 6)
    monkeypatch.setattr(row_summaries, "numba", None)
    fallback = summarise_rows(values, 6)
    np.testing.assert_array_equal(compiled.positives, fallback.positives)
    np.testing.assert_array_equal(compiled.negatives, fallback.negatives)
    np.testing.assert_allclose(compiled.sums, fallback.sums, rtol=SUM_RTOL)
    np.testing.assert_array_equal(compiled.finite, fallback.finite)
