"""Synthetic problems and float64 reference maths (MATH.md §1): features, labels drawn from a
known softmax model (so the maximum-likelihood head exists), and heads fitted to it exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from representer import LinearHead

NEWTON_GRADIENT_TOL = 1e-13
"""Gradient norm at which the reference Newton fit stops (exact MLE to float64)."""


@dataclass(frozen=True)
class Problem:
    """A synthetic classification problem with an exact maximum-likelihood head."""

    train_features: np.ndarray  # (n, d) float64
    train_labels: np.ndarray  # (n,) int64
    test_features: np.ndarray  # (m, d) float64
    mle_head: LinearHead
    perturbed_head: LinearHead  # MLE + noise: not a stationary point

    @property
    def num_outputs(self) -> int:
        return self.mle_head.num_outputs


def augment(features: np.ndarray) -> np.ndarray:
    """Φ̃ = [Φ, 1], shape (n, d + 1)."""
    return np.hstack([features, np.ones((features.shape[0], 1))])


def probabilities(theta: np.ndarray, features: np.ndarray) -> np.ndarray:
    """σ / softmax of Φ̃Θᵀ, shape (n, k_out), float64."""
    logits = augment(features) @ theta.T
    if theta.shape[0] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def targets(labels: np.ndarray, num_outputs: int) -> np.ndarray:
    """T with r = P − T, shape (n, k_out)."""
    if num_outputs == 1:
        return labels[:, None].astype(float)
    return np.eye(num_outputs)[labels]


def mean_gradient(theta: np.ndarray, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ḡ(Θ) = (1/n) Σ (P_i − T_i) φ̃_iᵀ, shape (k_out, D)."""
    residuals = probabilities(theta, features) - targets(labels, theta.shape[0])
    return residuals.T @ augment(features) / features.shape[0]


def brute_hessian(theta: np.ndarray, features: np.ndarray) -> np.ndarray:
    """H(Θ) = (1/n) Σ (diag P − P Pᵀ) ⊗ φ̃φ̃ᵀ by explicit Kronecker products."""
    probs = probabilities(theta, features)
    phi = augment(features)
    size = theta.size
    hessian = np.zeros((size, size))
    for p, x in zip(probs, phi, strict=False):
        curvature = (
            np.array([[p[0] * (1 - p[0])]]) if theta.shape[0] == 1 else np.diag(p) - np.outer(p, p)
        )
        hessian += np.kron(curvature, np.outer(x, x))
    return hessian / features.shape[0]


def newton_mle(features: np.ndarray, labels: np.ndarray, num_outputs: int) -> np.ndarray:
    """The maximum-likelihood Θ (k_out, D) by Newton steps with a pseudo-inverse."""
    theta = np.zeros((num_outputs, features.shape[1] + 1))
    for _ in range(100):
        gradient = mean_gradient(theta, features, labels)
        if np.linalg.norm(gradient) < NEWTON_GRADIENT_TOL:
            return theta
        step = np.linalg.pinv(brute_hessian(theta, features), rcond=1e-13) @ gradient.reshape(-1)
        theta = theta - step.reshape(theta.shape)
    raise AssertionError("reference Newton fit did not converge")


def make_problem(
    num_outputs: int, *, n: int = 120, d: int = 4, m: int = 5, seed: int = 0
) -> Problem:
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n, d))
    test = rng.normal(size=(m, d))
    true_theta = 0.8 * rng.normal(size=(num_outputs, d + 1))
    probs = probabilities(true_theta, train)
    if num_outputs == 1:
        labels = (rng.random(n) < probs[:, 0]).astype(np.int64)
    else:
        labels = np.array([rng.choice(num_outputs, p=p) for p in probs], dtype=np.int64)
    theta = newton_mle(train, labels, num_outputs)
    noisy = theta + 0.3 * rng.normal(size=theta.shape)
    return Problem(
        train_features=train,
        train_labels=labels,
        test_features=test,
        mle_head=LinearHead.from_theta(theta),
        perturbed_head=LinearHead.from_theta(noisy),
    )
