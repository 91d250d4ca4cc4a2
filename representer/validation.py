"""Checks at the public boundary (``fit``, ``contributions``, ``explain``).

Every check raises ``InvalidInputError`` whose message shows the bad value and whose
``argument`` names the argument; inner code then trusts its arrays.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch

from representer.config import (
    InfluenceConfig,
    L2Config,
    LJEConfig,
    Method,
    MethodConfig,
    default_config,
)
from representer.errors import InvalidInputError
from representer.head import LinearHead
from representer.state import FittedState

__all__ = [
    "check_class_array",
    "check_config",
    "check_device",
    "check_features",
    "check_head",
    "check_labels",
    "check_method",
    "check_progress",
    "check_state",
    "check_top_k",
]

FINITE_SCAN_ROWS = 16384
"""Rows scanned for NaN/inf at a time."""
_CONFIG_TYPES = {Method.LJE: LJEConfig, Method.L2: L2Config, Method.INFLUENCE: InfluenceConfig}


def check_head(head: Any) -> LinearHead:
    """``head`` must be a ``LinearHead``."""
    if not isinstance(head, LinearHead):
        raise InvalidInputError(
            f"head must be a LinearHead, got {type(head).__name__}", argument="head"
        )
    return head


def check_method(method: Any) -> Method:
    """``method`` must name a ``Method``."""
    try:
        return Method(method)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in Method)
        raise InvalidInputError(
            f"method must be one of {choices}, got {method!r}", argument="method"
        ) from None


def check_config(method: Method, config: Any) -> MethodConfig:
    """``config`` must be None or the config dataclass of ``method``."""
    if config is None:
        return default_config(method)
    expected = _CONFIG_TYPES[method]
    if not isinstance(config, expected):
        raise InvalidInputError(
            f"config for method {method.value!r} must be a {expected.__name__}, got {type(config).__name__}",
            argument="config",
        )
    return cast(MethodConfig, config)  # isinstance checked the dataclass above


def check_device(device: Any) -> torch.device:
    """``device`` must be "cpu" or an available "cuda[:N]"."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidInputError(
            f"device must be 'cpu' or 'cuda[:N]', got {device!r}", argument="device"
        ) from None
    if parsed.type not in ("cpu", "cuda"):
        raise InvalidInputError(
            f"device must be 'cpu' or 'cuda[:N]', got {device!r}", argument="device"
        )
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(
            f"device {device!r} requested but CUDA is not available", argument="device"
        )
    if (
        parsed.type == "cuda"
        and parsed.index is not None
        and parsed.index >= torch.cuda.device_count()
    ):
        raise InvalidInputError(
            f"device {device!r} requested but only {torch.cuda.device_count()} CUDA devices exist",
            argument="device",
        )
    return parsed


def check_progress(progress: Any) -> None:
    """``progress`` must be None or callable."""
    if progress is not None and not callable(progress):
        raise InvalidInputError(
            f"progress must be callable, got {type(progress).__name__}", argument="progress"
        )


def _is_real(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)


def check_features(
    features: Any,
    *,
    argument: str,
    feature_dim: int,
    num_rows: int | None = None,
    min_rows: int = 1,
    check_finite: bool = True,
) -> np.ndarray:
    """A real (rows, feature_dim) array; returned without copying (memmaps stay memmaps).

    Parameters
    ----------
    features : array-like of shape (rows, d)
    argument : str
        The argument's name for error messages.
    feature_dim : int
        d expected by the head.
    num_rows : int, optional
        Required number of rows.
    min_rows : int
    check_finite : bool
        Scan every value for NaN/inf (a full pass).
    """
    array = features if isinstance(features, np.ndarray) else np.asarray(features)
    if array.ndim != 2:
        raise InvalidInputError(
            f"{argument} must be a 2-d array (rows, {feature_dim}), got shape {array.shape}",
            argument=argument,
        )
    if not _is_real(array):
        raise InvalidInputError(
            f"{argument} must hold real numbers, got dtype {array.dtype}", argument=argument
        )
    if array.shape[1] != feature_dim:
        raise InvalidInputError(
            f"{argument} has {array.shape[1]} columns but the head expects d={feature_dim}",
            argument=argument,
        )
    if num_rows is not None and array.shape[0] != num_rows:
        raise InvalidInputError(
            f"{argument} has {array.shape[0]} rows but {num_rows} are expected", argument=argument
        )
    if array.shape[0] < min_rows:
        raise InvalidInputError(
            f"{argument} needs at least {min_rows} rows, got {array.shape[0]}", argument=argument
        )
    if check_finite and np.issubdtype(array.dtype, np.floating):
        for start in range(0, array.shape[0], FINITE_SCAN_ROWS):  # bounded temporaries on memmaps
            block = array[start : start + FINITE_SCAN_ROWS]
            if not np.isfinite(block).all():
                row = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                raise InvalidInputError(
                    f"{argument} holds NaN or infinite values (row {row})", argument=argument
                )
    return array


def check_class_array(values: Any, *, argument: str, length: int, num_classes: int) -> np.ndarray:
    """Integer class indices of shape (length,) in 0..num_classes-1, as int64."""
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != length:
        raise InvalidInputError(
            f"{argument} must have shape ({length},), got {array.shape}", argument=argument
        )
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise InvalidInputError(
            f"{argument} must hold integers, got dtype {array.dtype}", argument=argument
        )
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        bad = array[(array < 0) | (array >= num_classes)][0]
        raise InvalidInputError(
            f"{argument} must lie in 0..{num_classes - 1}, got {int(bad)}", argument=argument
        )
    return array.astype(np.int64, copy=False)


def check_labels(train_labels: Any, *, num_rows: int, num_classes: int) -> np.ndarray:
    """Training labels (n,) in 0..num_classes-1 as int64."""
    return check_class_array(
        train_labels, argument="train_labels", length=num_rows, num_classes=num_classes
    )


def check_top_k(top_k: Any) -> int:
    """``top_k`` must be an int >= 1."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InvalidInputError(f"top_k must be an integer >= 1, got {top_k!r}", argument="top_k")
    return int(top_k)


def check_state(state: Any) -> FittedState:
    """``state`` must be a ``FittedState`` carrying the sizes queries need."""
    if not isinstance(state, FittedState):
        raise InvalidInputError(
            f"state must be a FittedState, got {type(state).__name__}", argument="state"
        )
    missing = [
        key
        for key in ("num_classes", "num_outputs", "feature_dim", "n_train")
        if key not in state.meta
    ]
    if missing or "theta_dagger" not in state.arrays:
        raise InvalidInputError(
            f"state is incomplete (missing {missing or ['theta_dagger']})", argument="state"
        )
    return state
