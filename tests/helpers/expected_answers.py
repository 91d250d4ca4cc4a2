"""What the service must answer, computed in the test process by the engine itself.

The integration tests register problems built here, then compare every contribution the
service returns over HTTP with ``representer``'s own for the same head, features and method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import representer

# The service runs the same engine code on the same float32 features; what differs is the
# process (BLAS thread count, summation order), so agreement is close to float32 precision.
CONTRIBUTION_RTOL = 1e-4
CONTRIBUTION_ATOL_FRACTION = 1e-5  # of the largest |contribution| of that test point
LOGIT_ATOL = 1e-4


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
    def head(self) -> representer.LinearHead:
        return representer.LinearHead(self.weights, self.bias)


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


def head_accuracy(head, features, labels) -> float:
    """Fraction of rows of ``features`` (n, d) whose predicted class equals ``labels`` (n,)."""
    logits = head.logits(features)  # (n, k_out)
    predicted = (logits[:, 0] > 0).astype(np.int64) if head.is_binary else logits.argmax(axis=1)
    return float(np.mean(predicted == labels))


def fitted_states(
    head, train_features, train_labels, methods
) -> dict[str, representer.FittedState]:
    """``representer.fit`` for each method with its default settings (what the spec asks)."""
    return {
        method: representer.fit(
            head, train_features, train_labels, method=representer.Method(method)
        )
        for method in methods
    }


def assert_explanation_matches(body: dict, state, train_features, test_row, *, k: int) -> None:
    """The service's explanation body equals the engine's for one test row of shape (d,)."""
    target = int(body["target_class"])
    [expected] = representer.contributions(
        state, train_features, np.asarray(test_row)[None, :], target_classes=[target]
    )  # (n,)
    atol = CONTRIBUTION_ATOL_FRACTION * float(np.abs(expected).max()) + 1e-12
    for side in ("positive", "negative"):
        items = body[side]
        assert 0 < len(items) <= k
        got = np.array([item["contribution"] for item in items])
        indices = np.array([item["train_index"] for item in items])
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, expected[indices], rtol=CONTRIBUTION_RTOL, atol=atol)
        # the returned points are the k largest (positive) / smallest (negative), best first
        ranked = np.sort(expected)[::-1] if side == "positive" else np.sort(expected)
        np.testing.assert_allclose(got, ranked[: len(items)], rtol=CONTRIBUTION_RTOL, atol=atol)
        assert [item["rank"] for item in items] == list(range(1, len(items) + 1))
    decomposition = body["decomposition"]
    np.testing.assert_allclose(
        decomposition["sum_of_contributions"],
        expected.sum(),
        rtol=CONTRIBUTION_RTOL,
        atol=atol * np.sqrt(expected.size),
    )
    # and the engine's own top-k explanation of the same row says the same
    [engine] = representer.explain(
        state,
        train_features,
        np.asarray(test_row)[None, :],
        target=[target],
        top_k=len(body["positive"]),
    )
    np.testing.assert_allclose(
        [item["contribution"] for item in body["positive"]],
        engine.positive_contributions,
        rtol=CONTRIBUTION_RTOL,
        atol=atol,
    )
    np.testing.assert_allclose(
        [item["contribution"] for item in body["negative"]],
        engine.negative_contributions[: len(body["negative"])],
        rtol=CONTRIBUTION_RTOL,
        atol=atol,
    )
    np.testing.assert_allclose(
        decomposition["model_output"], engine.model_output, rtol=CONTRIBUTION_RTOL, atol=atol
    )
    np.testing.assert_allclose(
        decomposition["residual"],
        engine.residual,
        rtol=CONTRIBUTION_RTOL,
        atol=atol * np.sqrt(expected.size),
    )


def assert_prediction_matches(body: dict, head, test_row) -> None:
    """The logits the service reports are the head's on ``test_row`` (d,)."""
    np.testing.assert_allclose(
        body["prediction"]["logits"],
        head.logits(np.asarray(test_row)[None, :])[0],
        atol=LOGIT_ATOL,
        rtol=1e-5,
    )


def assert_suspicious_matches(body: dict, state, *, n_train: int) -> None:
    """Ranked by the engine's self-scores, most suspicious first, totals right."""
    assert body["total"] == n_train
    items = body["items"]
    assert items, "the suspicious list is empty"
    scores = np.array([item["score"] for item in items])
    indices = np.array([item["train_index"] for item in items])
    expected = np.asarray(state.self_scores, dtype=np.float64)
    atol = CONTRIBUTION_ATOL_FRACTION * float(np.abs(expected).max()) + 1e-12
    np.testing.assert_allclose(scores, expected[indices], rtol=CONTRIBUTION_RTOL, atol=atol)
    np.testing.assert_allclose(
        scores, np.sort(expected)[::-1][: len(items)], rtol=CONTRIBUTION_RTOL, atol=atol
    )
    assert np.all(np.diff(scores) <= atol)
