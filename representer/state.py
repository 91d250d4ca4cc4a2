"""The fitted state: everything a method needs that does not depend on the test point.

A ``FittedState`` is a bag of named numpy arrays plus a few JSON scalars. It is what the
precompute produces and what queries consume, and it round-trips through a directory of
``.npy`` files that can be opened memory-mapped (the service keeps them on disk).
The training features are *not* part of the state: callers keep one copy of them and
pass it to every query.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from representer.config import Method
from representer.errors import InvalidInputError

__all__ = ["FittedState"]

_META_FILE = "meta.json"


@dataclass(frozen=True)
class FittedState:
    """Result of ``representer.fit``.

    Attributes
    ----------
    method : Method
        Which method produced the state.
    arrays : mapping of str to ndarray
        The method's named arrays. Every method provides at least
        ``self_scores`` (n,) float32, the suspicious-label ranking score of docs/math.md §6
        (larger = more suspicious), and ``train_predicted_class`` (n,) int64.
        The rest are the method's own (Θ*, the Hessian factor, residuals, α, ...).
    meta : mapping of str to JSON scalars
        Sizes and settings: ``num_classes``, ``num_outputs``, ``feature_dim``,
        ``n_train``, the method's config fields, and ``diagnostics`` values
        (``train_accuracy``, ``mean_abs_residual``, ``theta_shift``).
    """

    method: Method
    arrays: Mapping[str, np.ndarray]
    meta: Mapping[str, Any] = field(default_factory=dict)
    scratch: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Query-time objects derived from the arrays (the block solver, recently solved
    vectors), built on first use and never saved."""

    @property
    def self_scores(self) -> np.ndarray:
        """Suspicious score of every training point, shape (n,), larger = more suspicious."""
        return self.arrays["self_scores"]

    @property
    def train_predicted_class(self) -> np.ndarray:
        """The head's predicted class for every training point, shape (n,) int64."""
        return self.arrays["train_predicted_class"]

    @property
    def diagnostics(self) -> dict[str, float]:
        """Small numbers worth showing a user (accuracy, residual size, Θ shift)."""
        return dict(self.meta.get("diagnostics", {}))

    def save(self, directory: str | Path) -> None:
        """Write one ``<name>.npy`` per array and ``meta.json`` into ``directory``.

        The directory is created; it must not already hold a state.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / _META_FILE).exists():
            raise InvalidInputError(
                f"{directory} already holds a fitted state", argument="directory"
            )
        for name, array in self.arrays.items():
            np.save(directory / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        meta = {"method": self.method.value, "array_names": sorted(self.arrays), **self.meta}
        (directory / _META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = True) -> FittedState:
        """Read a state written by ``save``; arrays are memory-mapped read-only by default."""
        directory = Path(directory)
        meta = json.loads((directory / _META_FILE).read_text())
        method = Method(meta.pop("method"))
        names = meta.pop("array_names")
        mode: Literal["r"] | None = "r" if mmap else None
        arrays = {
            name: np.load(directory / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
            for name in names
        }
        return cls(method=method, arrays=arrays, meta=meta)
