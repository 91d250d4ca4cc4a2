"""Label flipping and the found-curve on cases whose answer is known in closed form."""

import numpy as np
import pytest

from experiments.noise import correct_checked, flip_labels, found_curve

EXACT = 1e-12


def test_flip_labels_flips_exactly_the_requested_share_and_is_seeded():
    labels = np.tile([0, 1], 50)
    noisy, flipped = flip_labels(labels, fraction=0.3, seed=3)
    assert flipped.sum() == 30
    assert np.array_equal(noisy[flipped], 1 - labels[flipped])
    assert np.array_equal(noisy[~flipped], labels[~flipped])
    again, _ = flip_labels(labels, fraction=0.3, seed=3)
    other, _ = flip_labels(labels, fraction=0.3, seed=4)
    assert np.array_equal(noisy, again) and not np.array_equal(noisy, other)


def test_found_curve_of_a_perfect_and_of_a_worst_ranking():
    flipped = np.zeros(20, dtype=bool)
    flipped[[3, 7, 11, 15]] = True
    perfect = np.concatenate([np.flatnonzero(flipped), np.flatnonzero(~flipped)])
    fractions = np.array([0.0, 0.1, 0.2, 0.5, 1.0])
    np.testing.assert_allclose(
        found_curve(perfect, flipped, fractions), [0, 0.5, 1, 1, 1], atol=EXACT
    )
    worst = perfect[::-1]
    np.testing.assert_allclose(found_curve(worst, flipped, fractions), [0, 0, 0, 0, 1], atol=EXACT)


def test_found_curve_refuses_a_ranking_that_is_not_a_permutation():
    with pytest.raises(ValueError, match="permutation"):
        found_curve(np.array([0, 0, 1]), np.array([True, False, False]), np.array([0.5]))


def test_correct_checked_restores_only_the_checked_points():
    clean = np.array([0, 1, 0, 1, 0])
    noisy = np.array([1, 1, 1, 0, 0])
    ranking = np.array([2, 3, 0, 1, 4])
    corrected = correct_checked(noisy, clean, ranking, fraction=0.4)  # checks points 2 and 3
    assert corrected.tolist() == [1, 1, 0, 1, 0]
