"""Label flipping and the detection metrics of the data-debugging experiment."""

from __future__ import annotations

import numpy as np

__all__ = ["correct_checked", "flip_labels", "found_curve"]


def flip_labels(labels: np.ndarray, *, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``round(fraction * n)`` binary labels chosen uniformly at random.

    Parameters
    ----------
    labels : ndarray of shape (n,), int64 in {0, 1}
    fraction : float in [0, 1]
    seed : int

    Returns
    -------
    noisy_labels : ndarray of shape (n,), int64
    flipped : ndarray of shape (n,), bool
        True where the label was flipped.
    """
    rng = np.random.default_rng(seed)
    n_flip = int(round(fraction * len(labels)))
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[rng.choice(len(labels), size=n_flip, replace=False)] = True
    noisy = np.where(flipped, 1 - labels, labels).astype(np.int64)
    return noisy, flipped


def _checked_counts(n_train: int, fractions: np.ndarray) -> np.ndarray:
    return np.rint(fractions * n_train).astype(np.int64)


def found_curve(ranking: np.ndarray, flipped: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Fraction of the flipped labels among the first ``fraction * n`` ranked points.

    Parameters
    ----------
    ranking : ndarray of shape (n,), int64
        Training indices, most suspicious first (a permutation of 0..n-1).
    flipped : ndarray of shape (n,), bool
    fractions : ndarray of shape (m,), float in [0, 1]

    Returns
    -------
    ndarray of shape (m,), float64 in [0, 1]
    """
    ranking = np.asarray(ranking, dtype=np.int64)
    if sorted(ranking.tolist()) != list(range(len(flipped))):
        raise ValueError(f"ranking must be a permutation of 0..{len(flipped) - 1}")
    hits = np.concatenate([[0], np.cumsum(flipped[ranking])])  # (n + 1,)
    return hits[_checked_counts(len(flipped), fractions)] / max(int(flipped.sum()), 1)


def correct_checked(
    noisy_labels: np.ndarray, clean_labels: np.ndarray, ranking: np.ndarray, *, fraction: float
) -> np.ndarray:
    """Labels after a person checked the first ``fraction * n`` ranked points and fixed them.

    Returns an int64 array of shape (n,): the clean label at checked points, the noisy
    label elsewhere.
    """
    checked = np.asarray(ranking)[: _checked_counts(len(ranking), np.array([fraction]))[0]]
    corrected = noisy_labels.copy()
    corrected[checked] = clean_labels[checked]
    return corrected
