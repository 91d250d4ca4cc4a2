"""RPS-l2 against MATH.md §3 and invariant 5."""

from __future__ import annotations

import numpy as np

from representer import L2Config, Method, contributions, explain, fit
from tests.helpers.problems import augment, probabilities

IDENTITY_RTOL = 1e-5
"""Σ α_i φ̃_iᵀ = Θ_λ holds to ‖gradient‖/(2λ) ≤ ‖Θ†‖/grad_reduction (1e6 by default)."""


def test_alpha_reproduces_theta_lambda(problem):
    state = fit(problem.mle_head, problem.train_features, problem.train_labels, method=Method.L2)
    alpha = state.arrays["alpha"]
    theta_lambda = state.arrays["theta_lambda"]
    np.testing.assert_allclose(
        alpha.T @ augment(problem.train_features),
        theta_lambda,
        rtol=IDENTITY_RTOL,
        atol=IDENTITY_RTOL,
    )
    assert state.diagnostics["grad_reduction_reached"] >= 200
    if problem.num_outputs > 1:
        np.testing.assert_allclose(alpha.sum(axis=1), 0.0, atol=1e-15)


def test_alpha_is_the_scaled_probability_gap(problem):
    lam = 0.01
    state = fit(
        problem.perturbed_head,
        problem.train_features,
        problem.train_labels,
        method=Method.L2,
        config=L2Config(lam=lam),
    )
    gap = probabilities(state.arrays["theta_lambda"], problem.train_features) - probabilities(
        problem.perturbed_head.theta, problem.train_features
    )
    np.testing.assert_allclose(
        state.arrays["alpha"],
        -gap / (2 * lam * len(problem.train_features)),
        rtol=1e-10,
        atol=1e-14,
    )


def test_contributions_sum_to_the_fine_tuned_output(problem):
    state = fit(
        problem.perturbed_head, problem.train_features, problem.train_labels, method=Method.L2
    )
    theta_lambda = state.arrays["theta_lambda"]
    m = len(problem.test_features)
    fine_tuned = augment(problem.test_features) @ theta_lambda.T  # (m, k_out)
    for target in range(state.meta["num_classes"]):
        values = contributions(
            state, problem.train_features, problem.test_features, target_classes=np.full(m, target)
        )
        expected = (
            fine_tuned[:, target]
            if problem.num_outputs > 1
            else (2 * target - 1) * fine_tuned[:, 0]
        )
        np.testing.assert_allclose(
            values.sum(axis=1), expected, rtol=IDENTITY_RTOL, atol=IDENTITY_RTOL
        )
    [explanation] = explain(state, problem.train_features, problem.test_features[:1])
    original = augment(problem.test_features[:1]) @ problem.perturbed_head.theta.T
    assert abs(explanation.residual) > 1e-6  # the fine-tuned output is not the model's (§3.3)
    assert np.isclose(
        explanation.model_output,
        original[0].max() if problem.num_outputs > 1 else abs(original[0, 0]),
    )


def test_contributions_are_alpha_times_feature_kernel(problem):
    state = fit(
        problem.perturbed_head, problem.train_features, problem.train_labels, method=Method.L2
    )
    alpha = state.arrays["alpha"]
    kernel = augment(problem.test_features) @ augment(problem.train_features).T  # (m, n)
    values = contributions(
        state,
        problem.train_features,
        problem.test_features,
        target_classes=np.ones(len(kernel), int),
    )
    column = 1 if problem.num_outputs > 1 else 0  # a binary head's class 1 is its single output
    np.testing.assert_allclose(values, alpha[:, column][None, :] * kernel, rtol=1e-12, atol=1e-15)


def test_self_scores_follow_footnote_five(problem):
    state = fit(
        problem.perturbed_head, problem.train_features, problem.train_labels, method=Method.L2
    )
    alpha = state.arrays["alpha"]
    own = problem.train_labels if problem.num_outputs > 1 else np.zeros_like(problem.train_labels)
    phi = augment(problem.train_features)
    expected = np.abs(alpha[np.arange(len(phi)), own]) * (phi * phi).sum(axis=1)
    np.testing.assert_allclose(state.self_scores, expected, rtol=1e-6)


def test_rankings_move_with_lambda(multiclass_problem):
    problem = multiclass_problem
    tops = []
    for lam in (1e-4, 1.0):
        state = fit(
            problem.perturbed_head,
            problem.train_features,
            problem.train_labels,
            method=Method.L2,
            config=L2Config(lam=lam),
        )
        values = contributions(
            state, problem.train_features, problem.test_features[:1], target_classes=[0]
        )[0]
        tops.append(np.argsort(-values)[:10])
    assert set(tops[0]) != set(tops[1])
