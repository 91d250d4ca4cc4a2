"""Last-layer influence against MATH.md §4 (invariant 6) and an explicit pseudo-inverse."""

from __future__ import annotations

import numpy as np

from representer import InfluenceConfig, Method, contributions, explain, fit
from tests.helpers.problems import augment, brute_hessian, probabilities, targets

BRUTE_FORCE_ATOL = 1e-10


def brute_influence(problem, head, target_classes):
    """I(i, t) = (1/n) g_tᵀ H†⁺ g_i with numpy.linalg.pinv, shape (m, n)."""
    x, y = problem.train_features, problem.train_labels
    n = len(x)
    pinv = np.linalg.pinv(brute_hessian(head.theta, x), rcond=1e-12)
    train_gradients = (
        (probabilities(head.theta, x) - targets(y, head.num_outputs))[:, :, None]
        * augment(x)[:, None, :]
    ).reshape(n, -1)
    test_probs = probabilities(head.theta, problem.test_features)
    test_gradients = (test_probs - targets(target_classes, head.num_outputs))[:, :, None] * augment(
        problem.test_features
    )[:, None, :]
    return (
        test_gradients.reshape(len(target_classes), -1) @ pinv @ train_gradients.T / n,
        train_gradients,
        pinv,
    )


def test_matches_explicit_pseudo_inverse(problem):
    head = problem.perturbed_head
    state = fit(head, problem.train_features, problem.train_labels, method=Method.INFLUENCE)
    m = len(problem.test_features)
    for target in range(state.meta["num_classes"]):
        target_classes = np.full(m, target)
        expected, train_gradients, pinv = brute_influence(problem, head, target_classes)
        values = contributions(
            state, problem.train_features, problem.test_features, target_classes=target_classes
        )
        np.testing.assert_allclose(values, expected, atol=BRUTE_FORCE_ATOL)
    self_influence = np.einsum("ij,jk,ik->i", train_gradients, pinv, train_gradients) / len(
        train_gradients
    )
    np.testing.assert_allclose(state.self_scores, self_influence, rtol=1e-5, atol=1e-9)


def test_self_influence_is_non_negative(problem):
    for head in (problem.mle_head, problem.perturbed_head):
        state = fit(head, problem.train_features, problem.train_labels, method=Method.INFLUENCE)
        assert state.self_scores.min() >= 0.0
        assert state.self_scores.max() > 0.0


def test_damping_shrinks_influence(problem):
    plain = fit(
        problem.perturbed_head,
        problem.train_features,
        problem.train_labels,
        method=Method.INFLUENCE,
    )
    damped = fit(
        problem.perturbed_head,
        problem.train_features,
        problem.train_labels,
        method=Method.INFLUENCE,
        config=InfluenceConfig(damping=1.0),
    )
    assert np.all(damped.self_scores <= plain.self_scores * (1 + 1e-6))


def test_explain_reports_the_most_helpful_points(problem):
    state = fit(
        problem.perturbed_head,
        problem.train_features,
        problem.train_labels,
        method=Method.INFLUENCE,
    )
    [explanation] = explain(state, problem.train_features, problem.test_features[:1], top_k=3)
    values = contributions(
        state,
        problem.train_features,
        problem.test_features[:1],
        target_classes=[explanation.target_class],
    )[0]
    np.testing.assert_array_equal(explanation.positive_indices, np.argsort(-values)[:3])
    assert explanation.positive_contributions[0] == values.max()
