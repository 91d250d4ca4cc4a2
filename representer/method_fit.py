"""What a method's precompute hands back to ``fit`` (which adds sizes and settings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["MethodFit", "relative_shift"]


@dataclass(frozen=True)
class MethodFit:
    """The arrays, diagnostics and method-specific meta of one precompute.

    Attributes
    ----------
    arrays : dict of str to ndarray
        Always ``theta_dagger``, ``self_scores`` (n,) float32, ``train_predicted_class`` (n,) int64.
    diagnostics : dict of str to float
        ``train_accuracy``, ``mean_abs_residual``, ``theta_shift`` and the method's own.
    meta : dict of str to JSON scalars
        Choices made during the precompute (e.g. the LJE weight layout).
    """

    arrays: dict[str, np.ndarray]
    diagnostics: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)


def relative_shift(theta: np.ndarray, theta_dagger: np.ndarray) -> float:
    """‖Θ − Θ†‖_F / ‖Θ†‖_F (the absolute shift when Θ† = 0)."""
    shift = float(np.linalg.norm(theta - theta_dagger))
    reference = float(np.linalg.norm(theta_dagger))
    return shift / reference if reference > 0 else shift
