"""The linear head z(x) = W φ(x) + b that every method explains (docs/math.md §1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from representer.errors import InvalidInputError

__all__ = ["LinearHead"]


@dataclass(frozen=True)
class LinearHead:
    """A trained linear head.

    Attributes
    ----------
    weights : ndarray of shape (k_out, d), float64
        One row per output. ``k_out == 1`` is a binary sigmoid head (labels 0/1);
        ``k_out >= 2`` is a softmax head over ``k_out`` classes.
    bias : ndarray of shape (k_out,), float64
        The last column of Θ in docs/math.md's notation Θ = [W, b].
    """

    weights: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        weights = np.asarray(self.weights)
        if weights.ndim != 2 or weights.shape[0] < 1 or weights.shape[1] < 1:
            raise InvalidInputError(
                f"weights must be a 2-d array of shape (k, d), got shape {weights.shape}",
                argument="weights",
            )
        if not np.issubdtype(weights.dtype, np.number) or np.iscomplexobj(weights):
            raise InvalidInputError(
                f"weights must be real numbers, got dtype {weights.dtype}", argument="weights"
            )
        bias = np.zeros(weights.shape[0]) if self.bias is None else np.asarray(self.bias)
        if bias.shape != (weights.shape[0],):
            raise InvalidInputError(
                f"bias must have shape ({weights.shape[0]},) to match weights, got {bias.shape}",
                argument="bias",
            )
        if not np.issubdtype(bias.dtype, np.number) or np.iscomplexobj(bias):
            raise InvalidInputError(
                f"bias must be real numbers, got dtype {bias.dtype}", argument="bias"
            )
        for name, array in (("weights", weights), ("bias", bias)):
            if not np.all(np.isfinite(array)):
                raise InvalidInputError(f"{name} holds NaN or infinite values", argument=name)
        object.__setattr__(self, "weights", weights.astype(np.float64, copy=False))
        object.__setattr__(self, "bias", bias.astype(np.float64, copy=False))

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> LinearHead:
        """Split Θ (k_out, d + 1), bias in the last column, into a head."""
        theta = np.asarray(theta, dtype=np.float64)
        return cls(weights=theta[:, :-1], bias=theta[:, -1])

    @property
    def is_binary(self) -> bool:
        """True for a one-logit sigmoid head."""
        return self.weights.shape[0] == 1

    @property
    def num_classes(self) -> int:
        """Number of classes: 2 for a binary head, k_out otherwise."""
        return 2 if self.is_binary else self.weights.shape[0]

    @property
    def num_outputs(self) -> int:
        """k_out: rows of Θ (1 for binary)."""
        return self.weights.shape[0]

    @property
    def feature_dim(self) -> int:
        """d: the width of φ(x), without the bias column."""
        return self.weights.shape[1]

    @property
    def theta(self) -> np.ndarray:
        """Θ = [W, b], shape (k_out, d + 1), float64."""
        return np.hstack([self.weights, self.bias[:, None]])

    def logits(self, features: np.ndarray) -> np.ndarray:
        """z = φ Wᵀ + b, shape (n, k_out) float64, for features of shape (n, d)."""
        return np.asarray(features, dtype=np.float64) @ self.weights.T + self.bias
