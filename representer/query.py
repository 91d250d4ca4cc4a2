"""Queries against a fitted state: contributions, top-k explanations.

PLACEHOLDER written by the lead to fix the signatures; the engine author replaces the bodies.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from representer.explanation import Explanation
from representer.state import FittedState

__all__ = ["contributions", "explain"]


def contributions(
    state: FittedState,
    train_features: np.ndarray,
    test_features: np.ndarray,
    *,
    target_classes: np.ndarray | Sequence[int],
) -> np.ndarray:
    """c_i(t) toward each test row's target class, shape (m, n) float64.

    train_features (n, d) float (may be a read-only memmap, float32); test_features (m, d);
    target_classes (m,) int in 0..num_classes-1. Binary class 0 is −c_i (MATH.md §5).
    """
    raise NotImplementedError("engine author: implement")


def explain(
    state: FittedState,
    train_features: np.ndarray,
    test_features: np.ndarray,
    *,
    target: Literal["predicted"] | int | np.ndarray | Sequence[int] = "predicted",
    top_k: int = 10,
) -> list[Explanation]:
    """One ``Explanation`` per row of test_features (m, d), in order."""
    raise NotImplementedError("engine author: implement")
