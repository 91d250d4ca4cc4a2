"""Top-k order: best first, ties broken by the lower index."""

import numpy as np

from representer.ranking import top_indices


def test_largest_and_smallest_with_ties():
    values = np.array([0.5, 2.0, -1.0, 2.0, 0.0, -1.0, 3.0])
    np.testing.assert_array_equal(top_indices(values, 3, largest=True), [6, 1, 3])
    np.testing.assert_array_equal(top_indices(values, 2, largest=False), [2, 5])
    np.testing.assert_array_equal(top_indices(values, 2, largest=True), [6, 1])


def test_matches_a_full_sort():
    values = np.random.default_rng(0).normal(size=1000)
    np.testing.assert_array_equal(top_indices(values, 17, largest=True), np.argsort(-values)[:17])
    np.testing.assert_array_equal(top_indices(values, 5000, largest=False), np.argsort(values))
