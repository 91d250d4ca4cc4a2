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
