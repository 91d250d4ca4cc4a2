"""The files of one model: where the uploads and a precompute's results live, and how to open them.

The API (query path) and the workers (precompute) both go through these two objects, so the
layout is written down once::

    models/<model_id>/inputs/              ModelFiles.inputs: what the user uploaded (validated)
        train_features.npy | train_inputs.npy, train_labels.npy, weights.npy, bias.npy,
        booster.json | booster.ubj, test_*.npy, test_ids.json, test_records.json
    models/<model_id>/results/<run>/       ResultFiles: one precompute run
        train_features.npy (n, d) float32      test_features.npy (m, d) float32, optional
        test_ids.json, test_labels.npy (m,) int64, optional
        head_weights.npy (k_out, d), head_bias.npy (k_out,)
        <method>/                              one ``representer.FittedState`` per method
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models_store.artifacts import ArtifactStore
from rps.spec import ModelSpec

if TYPE_CHECKING:
    from representer.adapters import BoosterEmbedding, BoosterLimits

__all__ = ["ModelFiles", "ResultFiles"]


@dataclass(frozen=True)
class ResultFiles:
    """The files of one precompute run of a model (a ``results/<run>`` directory)."""

    directory: Path

    @property
    def train_features(self) -> Path:
        return self.directory / "train_features.npy"

    @property
    def test_features(self) -> Path:
        return self.directory / "test_features.npy"

    @property
    def test_ids(self) -> Path:
        return self.directory / "test_ids.json"

    @property
    def test_labels(self) -> Path:
        return self.directory / "test_labels.npy"

    @property
    def head_weights(self) -> Path:
        return self.directory / "head_weights.npy"

    @property
    def head_bias(self) -> Path:
        return self.directory / "head_bias.npy"

    def method_dir(self, method: str) -> Path:
        """Where the ``FittedState`` of ``method`` (its value, e.g. ``"lje"``) is saved."""
        return self.directory / method

    def load_test_ids(self) -> list[str]:
        """The stored test ids in row order (empty when the model has no test set)."""
        return list(ArtifactStore.load_json(self.test_ids)) if self.test_ids.exists() else []

    def load_optional(self, path: Path, *, mmap: bool = True) -> np.ndarray | None:
        """The array at ``path`` (one of this run's files), or None when the run has none."""
        return ArtifactStore.load_array(path, mmap=mmap) if path.exists() else None


class ModelFiles:
    """Every file of one model in an :class:`ArtifactStore`."""

    def __init__(self, store: ArtifactStore, model_id: str) -> None:
        self.store = store
        self.model_id = model_id

    @property
    def directory(self) -> Path:
        return self.store.model_dir(self.model_id)

    @property
    def inputs(self) -> Path:
        """The validated uploads."""
        return self.store.inputs_dir(self.model_id)

    def input(self, name: str) -> Path:
        """The uploaded file ``name`` (e.g. ``"train_labels.npy"``); it may not exist."""
        return self.inputs / name

    def new_result(self) -> ResultFiles:
        """A fresh, empty run directory for one precompute."""
        return ResultFiles(self.store.new_result_dir(self.model_id))

    @staticmethod
    def result(result_dir: str | Path) -> ResultFiles:
        """The published run a model row points at (``Model.result_dir``)."""
        return ResultFiles(Path(result_dir))

    def booster_path(self) -> Path:
        """The uploaded XGBoost model (``booster.json`` or ``booster.ubj``)."""
        for path in sorted(self.inputs.glob("booster.*")):
            return path
        raise FileNotFoundError(f"model {self.model_id} has no stored booster")

    def load_embedding(
        self, spec: ModelSpec | dict[str, Any], *, limits: BoosterLimits | None = None
    ) -> BoosterEmbedding:
        """The tree embedding φ of an XGBoost model, as its spec's ``xgboost.embedding`` says.

        The stored booster passes the structural check (``limits``) again before XGBoost
        reads it: files stored by an older version never reach native code unchecked.
        """
        from representer.adapters import BoosterEmbedding, load_booster

        if not isinstance(spec, ModelSpec):
            spec = ModelSpec.from_json(spec)
        return BoosterEmbedding.from_booster(
            load_booster(self.booster_path(), limits=limits),
            embedding=spec.xgboost.embedding,
            limits=limits,
        )
