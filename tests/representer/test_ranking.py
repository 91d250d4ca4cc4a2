"""Top-k order: best first, ties broken by the lower index."""

import numpy as np
import pytest

from representer.ranking import top_indices, top_indices_rows


def test_largest_and_smallest_with_ties():
    values = np.array([0.5, 2.0, -1.0, 2.0, 0.0, -1.0, 3.0])
    np.testing.assert_array_equal(top_indices(values, 3, largest=True), [6, 1, 3])
    np.testing.assert_array_equal(top_indices(values, 2, largest=False), [2, 5])
    np.testing.assert_array_equal(top_indices(values, 2, largest=True), [6, 1])


def test_matches_a_full_sort():
    values = np.random.default_rng(0).normal(size=1000)
    np.testing.assert_array_equal(top_indices(values, 17, largest=True), np.argsort(-values)[:17])
    np.testing.assert_array_equal(top_indices(values, 5000, largest=False), np.argsort(values))


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("count", [1, 3, 7, 50])
def test_rows_at_once_equal_row_by_row_with_and_without_ties(largest, count):
    rng = np.random.default_rng(count)
    smooth = rng.normal(size=(6, 40))
    tied = rng.integers(0, 4, size=(5, 40)).astype(float)  # many ties at every threshold
    values = np.vstack([smooth, tied])  # (11, 40)
    together = top_indices_rows(values, count, largest=largest)
    assert together.shape == (11, min(count, 40))
    for row in range(values.shape[0]):
        np.testing.assert_array_equal(
            together[row], top_indices(values[row], count, largest=largest)
        )


@pytest.mark.parametrize("largest", [True, False])
def test_rows_at_once_with_non_finite_values_equal_row_by_row(largest):
    rng = np.random.default_rng(3)
    values = rng.normal(size=(6, 200))
    values[0, 5] = np.nan
    values[1, [7, 9]] = np.inf
    values[2, 11] = -np.inf
    values[3, :] = 1.0  # every value tied
    together = top_indices_rows(values, 10, largest=largest)
    for row in range(values.shape[0]):
        np.testing.assert_array_equal(together[row], top_indices(values[row], 10, largest=largest))


def test_rows_at_once_on_a_query_sized_block():
    values = np.random.default_rng(4).normal(size=(16, 50_000))
    values[5, 100:120] = values[5].max()  # a tie at the top, wider than k
    for largest in (True, False):
        together = top_indices_rows(values, 10, largest=largest)
        for row in range(values.shape[0]):
            np.testing.assert_array_equal(
                together[row], top_indices(values[row], 10, largest=largest)
            )


@pytest.mark.parametrize("largest", [True, False])
def test_a_tie_at_the_boundary_keeps_the_lower_indices(largest):
    sign = 1.0 if largest else -1.0
    values = sign * np.array(
        [[5.0, 1.0, 3.0, 4.0, 3.0, 0.0, 3.0], [5.0, 1.0, 3.0, 4.0, 2.0, 0.0, 6.0]]
    )
    together = top_indices_rows(values, 3, largest=largest)
    np.testing.assert_array_equal(together[0], [0, 3, 2])  # 3.0 at 2, 4 and 6: index 2 wins
    np.testing.assert_array_equal(together[1], [6, 0, 3])  # no tie: the fast path
    for row in range(2):
        np.testing.assert_array_equal(together[row], top_indices(values[row], 3, largest=largest))


@pytest.mark.parametrize("largest", [True, False])
def test_the_chunk_prefilter_finds_the_best_wherever_they_sit(largest):
    """Rows long enough for the prefilter (n = 60,001: 117 chunks and a tail of 97 values):
    the best values clustered in one chunk, spread over many, in the tail, tied across
    chunks at the boundary (more tied chunks than picks), next to a NaN or an infinity;
    every row equals the exact path."""
    rng = np.random.default_rng(5)
    sign = 1.0 if largest else -1.0
    values = rng.normal(size=(9, 60_001))
    values[0, 1000:1012] = sign * 10.0 + np.arange(12)  # all best in one chunk
    values[1, ::5000] = sign * (10.0 + np.arange(13))  # one best value in each of 13 chunks
    values[2, -20:] = sign * 10.0 + np.arange(20)  # the best in the tail
    values[3, [7, 600, 1300, 2000, 9000, 20000]] = sign * 10.0  # tied at the boundary
    values[3, [50, 700, 1400, 30000, 40000, 50000, 59999]] = sign * 20.0
    values[4, 3] = np.nan
    values[4, 5:15] = sign * 10.0  # the best share a chunk with a NaN
    values[5, 100] = sign * np.inf
    values[5, 200:210] = -sign * np.inf
    values[6, :] = 1.0  # every value tied
    values[7, 512:1024] = sign * 10.0  # one whole chunk tied at the top
    values[8, 30_000 + 512 * np.arange(9)] = sign * 20.0  # 9 best, then a tie over 5 chunks
    values[8, [59_000, 45_000, 9000, 2000, 7]] = sign * 10.0
    for count in (1, 10, 20):
        together = top_indices_rows(values, count, largest=largest)
        for row in range(values.shape[0]):
            np.testing.assert_array_equal(
                together[row], top_indices(values[row], count, largest=largest), err_msg=f"{row}"
            )
