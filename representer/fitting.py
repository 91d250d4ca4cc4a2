"""``fit``: the precompute entry point (validates, then dispatches to the method modules)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from representer.config import Method, MethodConfig
from representer.errors import SingularSystemError
from representer.head import LinearHead
from representer.influence import fit_influence
from representer.l2 import fit_l2
from representer.lje import fit_lje
from representer.method_fit import MethodFit
from representer.state import FittedState
from representer.validation import (
    check_config,
    check_device,
    check_features,
    check_head,
    check_labels,
    check_method,
    check_progress,
)

__all__ = ["fit"]

# Each takes its own config type, hence Callable[..., MethodFit].
_FITTERS: dict[Method, Callable[..., MethodFit]] = {
    Method.LJE: fit_lje,
    Method.L2: fit_l2,
    Method.INFLUENCE: fit_influence,
}


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
        φ(x_i), the head's input for every training point (n >= 2). A float32 memmap is
        read block by block and never copied whole; it is not part of the state.
    train_labels : array of shape (n,), int
        Observed labels in 0..num_classes-1 (binary: 0/1).
    method : Method
    config : LJEConfig | L2Config | InfluenceConfig, optional
        Defaults to ``default_config(method)``.
    device : str
        ``"cpu"`` or ``"cuda"``/``"cuda:N"`` for the dense linear algebra.
    progress : callable taking a float in [0, 1], optional
        Called as the precompute advances.

    Returns
    -------
    FittedState
        Arrays of the method (see ``fit_lje``, ``fit_l2``, ``fit_influence``), always
        with ``theta_dagger``, ``self_scores`` and ``train_predicted_class``; meta with
        sizes, the config's fields and ``diagnostics``.

    Raises
    ------
    InvalidInputError
        A bad argument (named in ``.argument``).
    SingularSystemError
        The Hessian system cannot be factorised; raise ``damping``.
    MemoryLimitError
        The exact Hessian would exceed ``memory_budget_bytes``.
    """
    head = check_head(head)
    method = check_method(method)
    config = check_config(method, config)
    torch_device = check_device(device)
    check_progress(progress)
    features = check_features(
        train_features, argument="train_features", feature_dim=head.feature_dim, min_rows=2
    )
    labels = check_labels(train_labels, num_rows=features.shape[0], num_classes=head.num_classes)
    result = _FITTERS[method](
        head, features, labels, config, device=torch_device, progress=progress
    )
    for name, array in result.arrays.items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise SingularSystemError(
                f"the precompute produced non-finite values in {name!r}; raise `damping`",
                argument="damping",
            )
    meta = {
        "num_classes": head.num_classes,
        "num_outputs": head.num_outputs,
        "feature_dim": head.feature_dim,
        "n_train": int(features.shape[0]),
        **{name: getattr(value, "value", value) for name, value in asdict(config).items()},
        **result.meta,
        "diagnostics": result.diagnostics,
    }
    if progress is not None:
        progress(1.0)
    return FittedState(method=method, arrays=result.arrays, meta=meta)
