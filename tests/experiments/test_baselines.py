"""cleanlab and random rankings."""

import numpy as np

from experiments.baselines import cleanlab_ranking, random_ranking
from experiments.explanations import jaccard, sample_test_points, top_k_overlap

EXACT = 1e-12


def test_random_ranking_is_a_seeded_permutation():
    ranking = random_ranking(50, seed=1)
    assert sorted(ranking.tolist()) == list(range(50))
    assert np.array_equal(ranking, random_ranking(50, seed=1))


def test_cleanlab_ranks_confidently_wrong_labels_first_and_covers_every_point():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=200)
    confidence = rng.uniform(0.7, 0.95, size=200)
    probabilities = np.where(
        labels[:, None] == np.arange(2), confidence[:, None], 1 - confidence[:, None]
    )
    wrong = np.array([5, 17, 42, 99])
    labels[wrong] = 1 - labels[wrong]  # the model disagrees confidently with these labels
    ranking = cleanlab_ranking(labels, probabilities)
    assert sorted(ranking.tolist()) == list(range(200))
    assert set(ranking[:4].tolist()) == set(wrong.tolist())


def test_overlap_measures_on_known_sets():
    assert abs(jaccard(np.array([1, 2, 3]), np.array([2, 3, 4])) - 0.5) < EXACT
    assert abs(top_k_overlap(np.array([1, 2, 3, 4]), np.array([4, 3, 9, 8])) - 0.5) < EXACT


def test_sample_test_points_takes_each_predicted_class():
    predicted = np.array([0] * 30 + [1] * 4)
    points = sample_test_points(predicted, per_class=5)
    assert (predicted[points] == 0).sum() == 5 and (predicted[points] == 1).sum() == 4


def test_dead_feature_columns_are_dropped_without_changing_any_logit():
    from experiments.tasks.base import without_dead_features
    from representer import LinearHead

    rng = np.random.default_rng(2)
    train, test = (
        rng.normal(size=(30, 5)).astype(np.float32),
        rng.normal(size=(7, 5)).astype(np.float32),
    )
    train[:, 3] = 0.0
    test[:, 3] = 0.0
    train[:, 1] = 0.0  # zero on train only: kept, the test logits depend on it
    head = LinearHead(rng.normal(size=(1, 5)), np.array([0.3]))
    registration = without_dead_features(head, train, test)
    assert registration.dropped_features == 1 and registration.train_features.shape == (30, 4)
    np.testing.assert_allclose(
        registration.head.logits(registration.test_features), head.logits(test), atol=1e-6
    )
    np.testing.assert_allclose(
        registration.head.logits(registration.train_features), head.logits(train), atol=1e-6
    )
