"""Rankings that do not come from the service: random order and cleanlab."""

from __future__ import annotations

import numpy as np
from cleanlab.filter import find_label_issues

__all__ = ["cleanlab_ranking", "random_ranking"]


def random_ranking(n_train: int, *, seed: int) -> np.ndarray:
    """A uniformly random order of 0..n-1, shape (n,) int64."""
    return np.random.default_rng(seed).permutation(n_train).astype(np.int64)


def cleanlab_ranking(labels: np.ndarray, out_of_fold_probabilities: np.ndarray) -> np.ndarray:
    """Every training index, most suspicious first, as cleanlab sees it.

    cleanlab's ``find_label_issues`` (confident learning, ranked by self-confidence) gives
    the points it flags; the rest follow in order of increasing self-confidence
    (probability of the observed label), so the ranking covers all n points.

    Parameters
    ----------
    labels : ndarray of shape (n,), int64
        The observed (noisy) labels.
    out_of_fold_probabilities : ndarray of shape (n, k), float
        Predicted class probabilities for each point from a model that did not train on it.

    Returns
    -------
    ndarray of shape (n,), int64
    """
    probabilities = np.clip(np.asarray(out_of_fold_probabilities, dtype=np.float64), 1e-12, 1.0)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    flagged = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
    self_confidence = probabilities[np.arange(len(labels)), labels]
    rest = np.setdiff1d(np.arange(len(labels)), flagged)
    rest = rest[np.argsort(self_confidence[rest], kind="stable")]
    return np.concatenate([np.asarray(flagged, dtype=np.int64), rest.astype(np.int64)])
