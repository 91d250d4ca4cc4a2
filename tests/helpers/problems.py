"""Every synthetic problem of the tests and benchmarks, and float64 reference maths (docs/math.md):

* ``make_problem``: labels drawn from a known softmax model, head fitted exactly (engine tests);
* ``linear_problem``: a random head and labels from its logits, 5 % flipped (service tests);
* ``make_linear_problem``: Gaussian clusters and a head trained by gradient descent
  (integration tests, which compare the service with the engine);
* ``sampled_head_problem``, ``memmapped_problem``, ``clustered_problem``: benchmark sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def sampled_head_problem(
    *, n_train: int, n_test: int, dim: int, num_classes: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """A head with labels drawn from its own probabilities (so it fits the data).

    ``num_classes == 2`` gives a binary sigmoid head (one logit), more a softmax head.
    """
    rng = np.random.default_rng(seed)
    total = n_train + n_test
    features = rng.standard_normal((total, dim), dtype=np.float32)  # (n + m, d)
    num_outputs = 1 if num_classes == 2 else num_classes
    weights = rng.standard_normal((num_outputs, dim)) / np.sqrt(dim) * 3.0  # (k_out, d)
    bias = np.full(num_outputs, 0.1)
    logits = features @ weights.T + bias  # (n + m, k_out)
    if num_outputs == 1:
        labels = (rng.random(total) < 1.0 / (1.0 + np.exp(-logits[:, 0]))).astype(np.int64)
    else:
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        cumulative = probabilities.cumsum(axis=1)  # (n + m, k)
        labels = np.minimum(
            (cumulative < rng.random((total, 1))).sum(axis=1), num_classes - 1
        ).astype(np.int64)
    return {
        "weights": weights,
        "bias": bias,
        "train_features": features[:n_train],
        "train_labels": labels[:n_train],
        "test_features": features[n_train:],
        "test_labels": labels[n_train:],
    }


def memmapped_problem(
    *, n: int, d: int, k: int, directory: Path, seed: int = 0
) -> tuple[np.memmap, np.ndarray, LinearHead]:
    """Float32 features (a read-only memmap), labels from a noisy softmax, a perturbed head."""
    rng = np.random.default_rng(seed)
    outputs = 1 if k == 2 else k
    true_weights = rng.normal(size=(outputs, d)) / np.sqrt(d)
    path = directory / "features.f32"
    writer = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, d))
    labels = np.empty(n, dtype=np.int64)
    for start in range(0, n, 20_000):
        block = rng.normal(size=(min(20_000, n - start), d)) * rng.uniform(0.5, 2.0, size=d)
        writer[start : start + len(block)] = block
        logits = 2.0 * block @ true_weights.T
        if outputs == 1:
            labels[start : start + len(block)] = rng.random(len(block)) < 1 / (
                1 + np.exp(-logits[:, 0])
            )
        else:
            noisy = logits + rng.gumbel(size=logits.shape)
            labels[start : start + len(block)] = noisy.argmax(axis=1)
    writer.flush()
    del writer
    head = LinearHead(
        weights=2.0 * true_weights + 0.05 * rng.normal(size=true_weights.shape),
        bias=np.zeros(outputs),
    )
    return np.memmap(path, dtype=np.float32, mode="r", shape=(n, d)), labels, head


def clustered_problem(
    *,
    n_train: int,
    n_test: int,
    dim: int,
    num_classes: int,
    separation: float = 2.0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Class centres plus unit Gaussian noise, with the head of the generating model.

    The head is the posterior of equal-prior isotropic Gaussian classes (what logistic
    regression converges to on such data): W_c = μ_c, b_c = −‖μ_c‖²/2, so its probabilities
    are peaked as in real classifiers and about ``separation`` sets how peaked. Features are
    float32 (as the service stores them).
    """
    rng = np.random.default_rng(seed)
    total = n_train + n_test
    centres = separation * rng.standard_normal((num_classes, dim)) / np.sqrt(dim) * 2.0
    labels = rng.integers(0, num_classes, total).astype(np.int64)  # (n + m,)
    features = (centres[labels] + rng.standard_normal((total, dim))).astype(np.float32)
    weights = centres.astype(np.float64)  # (k, d)
    bias = -0.5 * (centres**2).sum(axis=1)  # (k,)
    return {
        "weights": weights,
        "bias": bias,
        "train_features": features[:n_train],
        "train_labels": labels[:n_train],
        "test_features": features[n_train:],
        "test_labels": labels[n_train:],
    }


def linear_problem(
    *, n: int = 200, d: int = 8, k: int = 3, m: int = 6, seed: int = 0
) -> dict[str, np.ndarray]:
    """A small separable-ish problem with a trained-looking head (k=1: binary)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d))
    weights = rng.normal(size=(k, d))
    bias = rng.normal(size=k) * 0.1
    logits = features @ weights.T + bias
    labels = (
        (logits[:, 0] > 0).astype(np.int64) if k == 1 else logits.argmax(axis=1).astype(np.int64)
    )
    flip = rng.choice(n, size=n // 20, replace=False)  # a few wrong labels
    labels[flip] = (labels[flip] + 1) % (2 if k == 1 else k)
    test = rng.normal(size=(m, d))
    test_labels = rng.integers(0, 2 if k == 1 else k, size=m)
    return {
        "weights": weights,
        "bias": bias,
        "train_features": features,
        "train_labels": labels,
        "test_features": test,
        "test_labels": test_labels,
    }


@dataclass(frozen=True)
class LinearProblem:
    """A trained linear head and its data.

    Attributes
    ----------
    weights : ndarray of shape (k_out, d), float64
    bias : ndarray of shape (k_out,), float64
    train_features : ndarray of shape (n, d), float32
    train_labels : ndarray of shape (n,), int64
    test_features : ndarray of shape (m, d), float32
    test_labels : ndarray of shape (m,), int64
    """

    weights: np.ndarray
    bias: np.ndarray
    train_features: np.ndarray
    train_labels: np.ndarray
    test_features: np.ndarray
    test_labels: np.ndarray

    @property
    def head(self) -> LinearHead:
        return LinearHead(self.weights, self.bias)


def make_linear_problem(
    *, seed: int, n_train: int, n_test: int, dim: int, num_classes: int
) -> LinearProblem:
    """Gaussian clusters, 5 % of labels flipped, and a head trained on them.

    The head is trained by plain gradient descent on the cross-entropy: it fits the data
    well, as a user's would, without being an exact optimum. ``num_classes == 2`` gives a
    one-logit sigmoid head.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(num_classes, dim))
    labels = rng.integers(0, num_classes, size=n_train + n_test)
    features = (centres[labels] + rng.normal(size=(n_train + n_test, dim))).astype(np.float32)
    flipped = rng.random(labels.shape) < 0.05
    labels = np.where(flipped, (labels + 1) % num_classes, labels).astype(np.int64)
    weights, bias = _train_head(
        features[:n_train].astype(np.float64), labels[:n_train], num_classes
    )
    return LinearProblem(
        weights=weights,
        bias=bias,
        train_features=features[:n_train],
        train_labels=labels[:n_train],
        test_features=features[n_train:],
        test_labels=labels[n_train:],
    )


def _train_head(
    features: np.ndarray, labels: np.ndarray, num_classes: int, *, steps: int = 200, lr: float = 0.5
):
    n, dim = features.shape
    outputs = 1 if num_classes == 2 else num_classes
    weights = np.zeros((outputs, dim))
    bias = np.zeros(outputs)
    targets = labels[:, None].astype(np.float64) if outputs == 1 else np.eye(num_classes)[labels]
    for _ in range(steps):
        logits = features @ weights.T + bias  # (n, k_out)
        if outputs == 1:
            probabilities = 1.0 / (1.0 + np.exp(-logits))
        else:
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        error = (probabilities - targets) / n  # (n, k_out)
        weights -= lr * error.T @ features
        bias -= lr * error.sum(axis=0)
    return weights, bias
