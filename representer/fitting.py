"""``fit``: the precompute entry point (dispatches to the method modules).

PLACEHOLDER written by the lead to fix the signature; the engine author replaces the body.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from representer.config import Method, MethodConfig
from representer.head import LinearHead
from representer.state import FittedState

__all__ = ["fit"]


def fit(
    head: LinearHead,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    *,
    method: Method | str = Method.LJE,
    config: MethodConfig | None = None,
    device: str = "cpu",
    progress: Callable[[float], None] | None = None,
) -> FittedState:
    """Precompute everything of ``method`` that does not depend on the test point.

    Parameters
    ----------
    head : LinearHead
        The trained head Θ† (k_out, d) + bias.
    train_features : array of shape (n, d), float
        φ(x_i), the head's input for every training point.
    train_labels : array of shape (n,), int
        Observed labels in 0..num_classes-1 (binary: 0/1).
    method : Method
    config : LJEConfig | L2Config | InfluenceConfig, optional
        Defaults to ``default_config(method)``.
    device : str
        ``"cpu"`` or ``"cuda"``/``"cuda:N"`` for the dense linear algebra.
    progress : callable taking a float in [0, 1], optional
        Called as the precompute advances.
    """
    raise NotImplementedError("engine author: implement")
