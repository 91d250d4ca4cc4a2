"""The Hessian, its exact J⊗C solve and singularity handling (MATH.md §1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import approx_fprime

from representer import LinearHead, LJEConfig, SingularSystemError, fit
from representer.hessian import factorize_hessian
from representer.training_pass import run_training_pass
from tests.helpers.problems import brute_hessian, mean_gradient, probabilities, targets

FD_GRADIENT_RTOL = 1e-6
"""Central-difference-free approx_fprime (forward, step 1e-7) against the analytic gradient."""
FD_HESSIAN_RTOL = 1e-5
SOLVE_ATOL = 1e-10


def mean_loss(theta_flat, features, labels, num_outputs):
    theta = theta_flat.reshape(num_outputs, -1)
    probs = probabilities(theta, features)
    if num_outputs == 1:
        p = probs[:, 0]
        return -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    return -np.mean(np.log(probs[np.arange(len(labels)), labels]))


def training_pass(problem, theta):
    return run_training_pass(
        problem.train_features,
        problem.train_labels,
        theta,
        device=torch.device("cpu"),
        with_hessian=True,
        progress=lambda fraction: None,
    )


def test_gradient_matches_finite_differences(problem):
    theta = problem.perturbed_head.theta
    result = training_pass(problem, theta)
    numeric = approx_fprime(
        theta.reshape(-1),
        mean_loss,
        1e-7,
        problem.train_features,
        problem.train_labels,
        problem.num_outputs,
    )
    np.testing.assert_allclose(
        result.mean_gradient.numpy().reshape(-1), numeric, rtol=FD_GRADIENT_RTOL, atol=1e-7
    )
    residuals = probabilities(theta, problem.train_features) - targets(
        problem.train_labels, problem.num_outputs
    )
    np.testing.assert_allclose(result.residuals, residuals, atol=1e-15)


def test_hessian_matches_finite_differences_of_the_gradient(problem):
    theta = problem.perturbed_head.theta
    hessian = training_pass(problem, theta).hessian.numpy()
    x, y = problem.train_features, problem.train_labels
    numeric = np.stack(
        [
            approx_fprime(
                theta.reshape(-1),
                lambda flat, j=j: mean_gradient(flat.reshape(theta.shape), x, y).reshape(-1)[j],
                1e-7,
            )
            for j in range(theta.size)
        ]
    )
    np.testing.assert_allclose(hessian, numeric, rtol=FD_HESSIAN_RTOL, atol=1e-7)
    np.testing.assert_allclose(hessian, brute_hessian(theta, x), atol=1e-14)
    np.testing.assert_array_equal(hessian, hessian.T)


def test_coupled_solve_equals_pseudo_inverse_on_zero_class_sum(multiclass_problem):
    problem = multiclass_problem
    theta = problem.perturbed_head.theta
    result = training_pass(problem, theta)
    pinv = np.linalg.pinv(brute_hessian(theta, problem.train_features), rcond=1e-12)
    factor = factorize_hessian(
        result.hessian.clone(), num_outputs=3, damping=0.0, second_moment=result.second_moment
    )
    rng = np.random.default_rng(3)
    rhs = rng.normal(size=(4, 3, theta.shape[1]))
    rhs -= rhs.mean(axis=1, keepdims=True)  # zero class-sum
    rhs = rhs.reshape(4, -1)
    np.testing.assert_allclose(
        factor.solve(torch.as_tensor(rhs)).numpy(), rhs @ pinv, atol=SOLVE_ATOL
    )
    whitened = factor.whiten(torch.as_tensor(rhs)).numpy()
    np.testing.assert_allclose(
        (whitened**2).sum(axis=1), np.einsum("ij,jk,ik->i", rhs, pinv, rhs), rtol=1e-9
    )
    inverse = factor.inverse().numpy()
    np.testing.assert_array_equal(inverse, inverse.T)
    np.testing.assert_allclose(rhs @ inverse, rhs @ pinv, atol=SOLVE_ATOL)


def test_duplicate_feature_is_singular_and_damping_fixes_it(problem):
    features = np.hstack([problem.train_features, problem.train_features[:, :1]])
    weights = np.hstack([problem.perturbed_head.weights, np.zeros((problem.num_outputs, 1))])
    head = LinearHead(weights=weights, bias=problem.perturbed_head.bias)
    with pytest.raises(SingularSystemError) as error:
        fit(head, features, problem.train_labels)
    assert error.value.argument == "damping" and "damping" in str(error.value)
    state = fit(head, features, problem.train_labels, config=LJEConfig(damping=1e-3))
    assert all(np.isfinite(array).all() for array in state.arrays.values())


def test_dead_feature_is_singular(binary_problem):
    problem = binary_problem
    features = problem.train_features.copy()
    features[:, 2] = 0.0
    with pytest.raises(SingularSystemError):
        fit(problem.perturbed_head, features, problem.train_labels)
