"""RPS-LJE against MATH.md §2 and §8 (invariants 1-4, 8) and brute-force evaluations."""

from __future__ import annotations

import numpy as np
import pytest

from representer import LJEConfig, Method, WeightLayout, contributions, explain, fit
from tests.helpers.problems import (
    augment,
    brute_hessian,
    make_problem,
    mean_gradient,
    probabilities,
    targets,
)

IDENTITY_RTOL = {WeightLayout.KERNEL: 1e-9, WeightLayout.MATERIALISED: 2e-6}
"""Σ_i c_i(t) against the model output / Newton step: float64 round-off only in the kernel
form; the materialised weights are stored in float32 (relative error ~6e-8 each)."""
BRUTE_FORCE_ATOL = {WeightLayout.KERNEL: 1e-10, WeightLayout.MATERIALISED: 1e-7}
"""Fast contributions against an explicit pseudo-inverse (values ~1e-2)."""
FLOAT32_RTOL = 1e-4
"""MATH.md §8.4: float32 storage of the features against a float64 evaluation."""
LEARNING_RATES = (1e-5, 1e-4, 1e-3, 1e-2)
TOP_K_SHARED = 7
"""Invariant 8: most of the top-10 is shared across learning rates (mean overlap)."""


@pytest.fixture(
    params=[WeightLayout.KERNEL, WeightLayout.MATERIALISED], ids=["kernel", "materialised"]
)
def layout(request):
    return request.param


def lje_config(layout, **fields):
    return LJEConfig(weight_layout=layout, **fields)


def all_classes(problem, state, features):
    """Contributions toward every class, shape (num_classes, m, n)."""
    m = features.shape[0]
    num_classes = state.meta["num_classes"]
    return np.stack(
        [
            contributions(state, problem.train_features, features, target_classes=np.full(m, c))
            for c in range(num_classes)
        ]
    )


def class_scores(theta, features):
    """The score of every class, (num_classes, m): binary gives [−z, z]."""
    logits = augment(features) @ theta.T
    if theta.shape[0] == 1:
        return np.stack([-logits[:, 0], logits[:, 0]])
    return logits.T


def brute_lje(problem, head, lr):
    """c_i(t) by MATH.md §2.3 with numpy.linalg.pinv, shape (num_outputs, m, n)."""
    x, y = problem.train_features, problem.train_labels
    theta_star = head.theta + lr * mean_gradient(head.theta, x, y)
    pinv = np.linalg.pinv(brute_hessian(theta_star, x), rcond=1e-12)
    residuals = probabilities(theta_star, x) - targets(y, head.num_outputs)  # (n, k)
    gradients = residuals[:, :, None] * augment(x)[:, None, :]  # (n, k, D)
    steps = (gradients.reshape(len(x), -1) @ pinv).reshape(gradients.shape)  # mat(H⁺ vec G_i)
    phi_t = augment(problem.test_features)
    spread = phi_t @ theta_star.T  # (m, k)
    return (spread.T[:, :, None] - np.einsum("ikd,md->kmi", steps, phi_t)) / len(x)


@pytest.mark.parametrize("lr", [0.0, 1e-5, 1e-2, 0.1])
def test_sum_equals_model_output_at_maximum_likelihood(problem, lr, layout):
    state = fit(
        problem.mle_head,
        problem.train_features,
        problem.train_labels,
        config=lje_config(layout, lr=lr),
    )
    assert state.meta["weight_layout_used"] == layout.value
    totals = all_classes(problem, state, problem.test_features).sum(axis=2)  # (classes, m)
    expected = class_scores(problem.mle_head.theta, problem.test_features)
    tolerance = IDENTITY_RTOL[layout]
    np.testing.assert_allclose(totals, expected, rtol=tolerance, atol=tolerance)
    for explanation in explain(state, problem.train_features, problem.test_features):
        assert abs(explanation.residual) < tolerance * max(1.0, abs(explanation.model_output))


@pytest.mark.parametrize("lr", [1e-3, 0.5])
def test_sum_equals_newton_step_for_any_head(problem, lr, layout):
    x, y = problem.train_features, problem.train_labels
    head = problem.perturbed_head
    state = fit(head, x, y, config=lje_config(layout, lr=lr))
    tolerance = IDENTITY_RTOL[layout]
    theta_star = head.theta + lr * mean_gradient(head.theta, x, y)
    pinv = np.linalg.pinv(brute_hessian(theta_star, x), rcond=1e-12)
    newton = theta_star - (pinv @ mean_gradient(theta_star, x, y).reshape(-1)).reshape(
        theta_star.shape
    )
    totals = all_classes(problem, state, problem.test_features).sum(axis=2)
    np.testing.assert_allclose(
        totals, class_scores(newton, problem.test_features), rtol=tolerance, atol=tolerance
    )
    np.testing.assert_allclose(state.arrays["newton_theta"], newton, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("lr", [0.0, 1e-2])
def test_matches_explicit_pseudo_inverse(problem, lr, layout):
    head = problem.perturbed_head
    state = fit(
        head, problem.train_features, problem.train_labels, config=lje_config(layout, lr=lr)
    )
    expected = brute_lje(problem, head, lr)  # (k_out, m, n)
    if head.num_outputs == 1:
        expected = np.stack([-expected[0], expected[0]])
    np.testing.assert_allclose(
        all_classes(problem, state, problem.test_features), expected, atol=BRUTE_FORCE_ATOL[layout]
    )


def test_self_contributions_match_brute_force(problem, layout):
    x, y = problem.train_features, problem.train_labels
    head = problem.perturbed_head
    state = fit(head, x, y, config=lje_config(layout, lr=1e-2))
    own_class = y if head.num_outputs > 1 else np.ones_like(y)
    every = all_classes(problem, state, x)  # (classes, n, n)
    expected = every[own_class, np.arange(len(x)), np.arange(len(x))]
    np.testing.assert_allclose(state.arrays["self_contributions"], expected, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(state.self_scores, np.abs(expected), rtol=1e-5, atol=1e-8)
    assert state.self_scores.dtype == np.float32


def test_multiclass_hessian_term_sums_to_zero_and_class_mean_is_kept(multiclass_problem):
    problem = multiclass_problem
    head = problem.perturbed_head
    state = fit(
        head,
        problem.train_features,
        problem.train_labels,
        config=LJEConfig(lr=0.3, weight_layout="kernel"),
    )
    theta_star = state.arrays["theta_star"]
    np.testing.assert_allclose(theta_star.mean(axis=0), head.theta.mean(axis=0), atol=1e-14)
    per_class = all_classes(problem, state, problem.test_features)  # (k, m, n)
    spread = (augment(problem.test_features) @ theta_star.T).T / len(
        problem.train_features
    )  # (k, m)
    hessian_terms = per_class - spread[:, :, None]
    np.testing.assert_allclose(hessian_terms.sum(axis=0), 0.0, atol=1e-14)


def test_binary_class_zero_is_the_negated_logit_contribution(binary_problem):
    problem = binary_problem
    state = fit(problem.perturbed_head, problem.train_features, problem.train_labels)
    m = len(problem.test_features)
    toward_one = contributions(
        state, problem.train_features, problem.test_features, target_classes=np.ones(m, dtype=int)
    )
    toward_zero = contributions(
        state, problem.train_features, problem.test_features, target_classes=np.zeros(m, dtype=int)
    )
    np.testing.assert_array_equal(toward_zero, -toward_one)


def test_batch_invariance(problem, layout):
    state = fit(
        problem.perturbed_head,
        problem.train_features,
        problem.train_labels,
        config=lje_config(layout),
    )
    targets_ = np.arange(len(problem.test_features)) % state.meta["num_classes"]
    batch = contributions(
        state, problem.train_features, problem.test_features, target_classes=targets_
    )
    for row, target in enumerate(targets_):
        single = contributions(
            state,
            problem.train_features,
            problem.test_features[row : row + 1],
            target_classes=[target],
        )
        # float32 weights: a matvec and a GEMM round differently
        atol = 1e-15 if layout is WeightLayout.KERNEL else 1e-6 * np.abs(batch).max()
        np.testing.assert_allclose(single[0], batch[row], rtol=1e-12, atol=atol)


def test_float32_memmap_agrees_with_float64(problem, tmp_path, layout):
    x = problem.train_features
    path = tmp_path / "features.f32"
    writer = np.memmap(path, dtype=np.float32, mode="w+", shape=x.shape)
    writer[:] = x
    writer.flush()
    features32 = np.memmap(path, dtype=np.float32, mode="r", shape=x.shape)
    reference_state = fit(
        problem.perturbed_head,
        x.astype(np.float32).astype(np.float64),
        problem.train_labels,
        config=lje_config(WeightLayout.KERNEL),
    )
    state32 = fit(
        problem.perturbed_head, features32, problem.train_labels, config=lje_config(layout)
    )
    targets_ = np.zeros(len(problem.test_features), dtype=int)
    reference = contributions(
        reference_state,
        x.astype(np.float32).astype(np.float64),
        problem.test_features,
        target_classes=targets_,
    )
    value32 = contributions(state32, features32, problem.test_features, target_classes=targets_)
    scale = np.abs(reference).max()
    np.testing.assert_allclose(value32, reference, atol=FLOAT32_RTOL * scale)


def test_rankings_barely_move_with_learning_rate():
    problem = make_problem(4, n=400, d=6, m=6, seed=5)
    tops = []
    for lr in LEARNING_RATES:
        state = fit(
            problem.perturbed_head,
            problem.train_features,
            problem.train_labels,
            config=LJEConfig(lr=lr),
        )
        explanations = explain(state, problem.train_features, problem.test_features, top_k=10)
        tops.append([set(e.positive_indices) for e in explanations])
    for other in tops[1:]:
        overlaps = [
            len(first & later) for first, later in zip(tops[0], other, strict=False)
        ]  # per test point
        assert np.mean(overlaps) >= TOP_K_SHARED


def test_explanation_fields(problem):
    state = fit(
        problem.perturbed_head, problem.train_features, problem.train_labels, method=Method.LJE
    )
    [explanation] = explain(state, problem.train_features, problem.test_features[:1], top_k=5)
    values = contributions(
        state,
        problem.train_features,
        problem.test_features[:1],
        target_classes=[explanation.target_class],
    )[0]
    assert explanation.target_class == explanation.predicted_class
    np.testing.assert_array_equal(explanation.positive_indices, np.argsort(-values)[:5])
    np.testing.assert_array_equal(explanation.negative_indices, np.argsort(values)[:5])
    np.testing.assert_allclose(explanation.positive_contributions, np.sort(values)[::-1][:5])
    assert explanation.sum_of_contributions == pytest.approx(values.sum(), rel=1e-12)
    logits = problem.perturbed_head.logits(problem.test_features[:1])[0]
    np.testing.assert_allclose(explanation.logits, logits)
    np.testing.assert_allclose(
        explanation.probabilities,
        probabilities(problem.perturbed_head.theta, problem.test_features[:1])[0],
    )
    assert explanation.residual == pytest.approx(
        explanation.model_output - explanation.sum_of_contributions
    )


def test_materialised_and_kernel_layouts_agree(multiclass_problem):
    problem = multiclass_problem
    states = [
        fit(
            problem.perturbed_head,
            problem.train_features,
            problem.train_labels,
            config=lje_config(layout),
        )
        for layout in (WeightLayout.KERNEL, WeightLayout.MATERIALISED)
    ]
    assert "hessian_inverse" in states[0].arrays and "lje_weights" in states[1].arrays
    assert states[1].arrays["lje_weights"].dtype == np.float32
    kernel, materialised = (all_classes(problem, state, problem.test_features) for state in states)
    np.testing.assert_allclose(materialised, kernel, atol=1e-6 * np.abs(kernel).max())
    np.testing.assert_allclose(states[1].self_scores, states[0].self_scores, rtol=1e-6)


def test_auto_layout_materialises_only_multiclass_within_budget(binary_problem, multiclass_problem):
    binary = fit(
        binary_problem.perturbed_head, binary_problem.train_features, binary_problem.train_labels
    )
    assert binary.meta["weight_layout_used"] == "kernel"
    problem = multiclass_problem
    multi = fit(problem.perturbed_head, problem.train_features, problem.train_labels)
    assert multi.meta["weight_layout_used"] == "materialised"
    hessian_bytes = 2 * (3 * 5) ** 2 * 8
    tight = fit(
        problem.perturbed_head,
        problem.train_features,
        problem.train_labels,
        config=LJEConfig(memory_budget_bytes=hessian_bytes + 100),
    )
    assert tight.meta["weight_layout_used"] == "kernel"
