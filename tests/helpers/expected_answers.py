"""What the service must answer, computed in the test process by the engine itself.

The integration tests register problems built here, then compare every contribution the
service returns over HTTP with ``representer``'s own for the same head, features and method.
"""

from __future__ import annotations

import numpy as np

import representer

# The service runs the same engine code on the same float32 features; what differs is the
# process (BLAS thread count, summation order), so agreement is close to float32 precision.
CONTRIBUTION_RTOL = 1e-4
CONTRIBUTION_ATOL_FRACTION = 1e-5  # of the largest |contribution| of that test point
LOGIT_ATOL = 1e-4


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
