"""Label-error rankings on synthetic data with known flips, and the logistic refit."""

from __future__ import annotations

import numpy as np
import pytest

from representer import LinearHead
from representer.label_errors import (
    SIMULATED_DRAWS,
    AdaptiveView,
    LabelRanking,
    choose_ranking,
    label_rankings,
    percentile_ranks,
    simulated_flips_found,
)
from representer.logistic import (
    RefitConfig,
    class_probabilities,
    fit_logistic_head,
    out_of_fold_probabilities,
)

CHECKED = 0.2
PROBABILITY_TOLERANCE = 1e-4


def noisy_problem(*, k: int, n: int = 600, d: int = 6, flip: float = 0.2, seed: int = 0):
    """Gaussian classes, a head fit on the noisy labels, and which labels were flipped."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.5, size=(k, d))
    clean = rng.integers(0, k, size=n)
    features = centres[clean] + rng.normal(size=(n, d))
    flipped = rng.random(n) < flip
    noisy = clean.copy()
    noisy[flipped] = (clean[flipped] + rng.integers(1, k, size=flipped.sum())) % k
    head = fit_logistic_head(features, noisy, num_classes=k)
    return features, clean, noisy, flipped, head


def found_fraction(scores: np.ndarray, flipped: np.ndarray, checked: float) -> float:
    order = np.argsort(-scores, kind="stable")[: int(round(checked * len(scores)))]
    return float(flipped[order].sum() / flipped.sum())


@pytest.mark.parametrize("k", [2, 4])
def test_rankings_find_the_flips_and_suggest_the_true_label(k):
    features, clean, noisy, flipped, head = noisy_problem(k=k)
    result = label_rankings(head, features, noisy)
    assert set(result.rankings) == set(LabelRanking) and result.skipped == {}
    chance = CHECKED  # a random order finds this fraction at CHECKED
    for ranking, values in result.rankings.items():
        assert values.scores.shape == (len(noisy),), ranking
        assert found_fraction(values.scores, flipped, CHECKED) > 3 * chance, ranking
        # The suggestion is never the given label, and is the true one for most flips.
        assert np.all(values.suggested_label != noisy), ranking
        agreement = np.mean(values.suggested_label[flipped] == clean[flipped])
        assert agreement > 2 / k if k > 2 else agreement == 1.0, ranking
        probability = values.label_error_probability
        assert np.all((probability >= 0) & (probability <= 1)), ranking
        assert probability[flipped].mean() > probability[~flipped].mean() + 0.2, ranking


def test_confidence_is_one_minus_the_heads_probability_of_the_label():
    features, _, noisy, _, head = noisy_problem(k=3, n=200)
    result = label_rankings(head, features, noisy, budget_s=0.0)
    expected = 1 - class_probabilities(head, features)[np.arange(len(noisy)), noisy]
    np.testing.assert_allclose(result.rankings[LabelRanking.CONFIDENCE].scores, expected)


def test_refits_over_the_budget_are_skipped_with_the_reason():
    features, _, noisy, _, head = noisy_problem(k=3, n=200)
    result = label_rankings(head, features, noisy, budget_s=0.0)
    assert set(result.rankings) == {LabelRanking.CONFIDENCE}
    for ranking in (
        LabelRanking.CONFIDENCE_OOF,
        LabelRanking.CLEANLAB,
        LabelRanking.FUSION,
        LabelRanking.ADAPTIVE,
    ):
        assert "refit budget of 0.0 s" in result.skipped[ranking]
    assert choose_ranking(set(result.rankings)) is LabelRanking.CONFIDENCE


def test_a_class_smaller_than_the_folds_skips_the_refits():
    features, _, noisy, _, head = noisy_problem(k=3, n=200)
    noisy = noisy.copy()
    rare = np.flatnonzero(noisy == 2)
    noisy[rare[3:]] = 0  # class 2 keeps 3 points < 5 folds
    result = label_rankings(head, features, noisy)
    assert "fewer than 5 training points" in result.skipped[LabelRanking.CLEANLAB]


def test_logistic_head_matches_scikit_learn_on_standardised_features():
    from sklearn.linear_model import LogisticRegression

    features, _, noisy, _, _ = noisy_problem(k=3, n=300)
    config = RefitConfig(max_iter=1000)
    head = fit_logistic_head(features, noisy, num_classes=3, config=config)
    standardised = (features - features.mean(axis=0)) / features.std(axis=0)
    reference = LogisticRegression(C=1.0 / config.l2, max_iter=5000, tol=1e-10)
    reference.fit(standardised, noisy)
    np.testing.assert_allclose(
        class_probabilities(head, features),
        reference.predict_proba(standardised),
        atol=PROBABILITY_TOLERANCE,
    )


def test_binary_refit_is_a_one_logit_head():
    features, _, noisy, _, _ = noisy_problem(k=2, n=200)
    head = fit_logistic_head(features, noisy, num_classes=2)
    assert isinstance(head, LinearHead) and head.num_outputs == 1


def test_out_of_fold_probabilities_differ_from_in_sample_on_flips():
    features, _, noisy, flipped, _ = noisy_problem(k=3, n=300)
    weak = RefitConfig(l2=1.0)  # the pull of one point shrinks as α grows
    head = fit_logistic_head(features, noisy, num_classes=3, config=weak)
    in_sample = class_probabilities(head, features)[np.arange(300), noisy]
    out_of_fold = out_of_fold_probabilities(features, noisy, num_classes=3, config=weak)
    out_of_fold = out_of_fold[np.arange(300), noisy]
    # A flipped point pulls the in-sample head toward its wrong label; held out, it cannot.
    assert np.mean(out_of_fold[flipped]) < np.mean(in_sample[flipped])


def test_adaptive_takes_the_view_whose_model_finds_more_simulated_test_flips():
    features, clean, noisy, _, _ = noisy_problem(k=3, n=400, seed=1)
    test_features, test_labels = features[:100], clean[:100]
    good = fit_logistic_head(features, clean, num_classes=3)
    bad = LinearHead(-good.weights, -good.bias)  # ranks the test flips last, a refit first
    for head, view, source in (
        (good, AdaptiveView.IN_SAMPLE, LabelRanking.CONFIDENCE),
        (bad, AdaptiveView.OUT_OF_FOLD, LabelRanking.CONFIDENCE_OOF),
    ):
        result = label_rankings(
            head, features, noisy, test_features=test_features, test_labels=test_labels
        )
        assert result.adaptive_view is view
        assert set(result.test_log_loss) == {"head", "refit"}
        found = result.simulated_found
        assert set(found) == {"head", "refit", "difference_sd"}
        assert (found["head"] > found["refit"]) is (view is AdaptiveView.IN_SAMPLE)
        adaptive = result.rankings[LabelRanking.ADAPTIVE]
        np.testing.assert_array_equal(adaptive.scores, result.rankings[source].scores)
        np.testing.assert_array_equal(
            adaptive.suggested_label, result.rankings[source].suggested_label
        )


def test_adaptive_without_test_labels_is_in_sample_confidence():
    features, _, noisy, _, head = noisy_problem(k=2, n=200)
    result = label_rankings(head, features, noisy)
    assert result.adaptive_view is AdaptiveView.NO_TEST_LABELS and result.test_log_loss == {}
    np.testing.assert_array_equal(
        result.rankings[LabelRanking.ADAPTIVE].scores,
        result.rankings[LabelRanking.CONFIDENCE].scores,
    )


def test_adaptive_blends_the_views_when_neither_model_predicts_the_test_labels_better():
    features, clean, noisy, _, head = noisy_problem(k=3, n=300, seed=2)
    # The head is the refit itself: the same simulated flips found, so neither view is preferred.
    result = label_rankings(
        head, features, noisy, test_features=features[:50], test_labels=clean[:50]
    )
    assert result.adaptive_view is AdaptiveView.BLEND
    inside = result.rankings[LabelRanking.CONFIDENCE]
    outside = result.rankings[LabelRanking.CONFIDENCE_OOF]
    adaptive = result.rankings[LabelRanking.ADAPTIVE]
    expected = (percentile_ranks(inside.scores) + percentile_ranks(outside.scores)) / 2
    np.testing.assert_allclose(adaptive.scores, expected)
    np.testing.assert_allclose(
        adaptive.label_error_probability,
        (inside.label_error_probability + outside.label_error_probability) / 2,
    )
    assert np.all(adaptive.suggested_label != noisy)


def test_simulated_flips_found_by_a_perfect_and_by_a_reversed_model():
    labels = np.arange(50) % 2
    perfect = np.eye(2)[labels] * 0.98 + 0.01  # (50, 2), P(true label) = 0.99
    found = simulated_flips_found(perfect, labels)
    assert found.shape == (SIMULATED_DRAWS,)
    # 10 flips among 50: all in the first 10 (20%) checked, half of them in the first 5 (10%).
    np.testing.assert_allclose(found, (0.5 + 1.0) / 2)
    np.testing.assert_allclose(simulated_flips_found(perfect[:, ::-1], labels), 0.0)


def test_percentile_ranks_order_the_scores_from_zero_to_one():
    np.testing.assert_allclose(percentile_ranks(np.array([0.3, 0.1, 0.9])), [0.5, 0.0, 1.0])
