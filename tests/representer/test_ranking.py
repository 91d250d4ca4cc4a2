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
