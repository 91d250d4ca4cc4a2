"""The query path's view of a ready model: its result arrays memory-mapped, in a small LRU.

The files are found through ``models_store.ModelFiles`` (the one place that knows the layout).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models_store import ArtifactStore, Model, ModelFiles
from representer import FittedState, LinearHead, Method

__all__ = ["LoadedModel", "ModelCache"]


@dataclass(frozen=True)
class LoadedModel:
    """Arrays of one published version of a model, ready for queries.

    Attributes
    ----------
    train_features : ndarray of shape (n, d), float32 (memory-mapped)
    test_features : ndarray of shape (m, d), float32, or None
    test_labels : ndarray of shape (m,), int64, or None
    """

    model_id: str
    version: int
    head: LinearHead
    states: dict[Method, FittedState]
    train_features: np.ndarray
    test_features: np.ndarray | None
    test_labels: np.ndarray | None
    test_index_by_id: dict[str, int]
    embedding: Any = field(default=None)  # representer.adapters BoosterEmbedding for xgboost

    def test_index(self, test_id: str) -> int | None:
        return self.test_index_by_id.get(test_id)


def load_model(store: ArtifactStore, model: Model, *, booster_limits: Any = None) -> LoadedModel:
    """Open the published result of ``model`` (which must be ready).

    An XGBoost model's booster is checked again (``BoosterLimits``) before XGBoost reads it.
    """
    if model.result_dir is None:
        raise ValueError(f"model {model.id} has no published result")
    files = ModelFiles(store, model.id)
    result = files.result(model.result_dir)
    test_labels = result.load_optional(result.test_labels, mmap=False)
    return LoadedModel(
        model_id=model.id,
        version=model.version,
        head=LinearHead(np.load(result.head_weights), np.load(result.head_bias)),
        states={Method(name): FittedState.load(result.method_dir(name)) for name in model.methods},
        train_features=store.load_array(result.train_features),
        test_features=result.load_optional(result.test_features),
        test_labels=test_labels,
        test_index_by_id={test_id: index for index, test_id in enumerate(result.load_test_ids())},
        embedding=(
            files.load_embedding(model.spec, limits=booster_limits)
            if model.kind == "xgboost"
            else None
        ),
    )


class ModelCache:
    """LRU of opened models keyed by (model id, version); thread-safe."""

    def __init__(self, store: ArtifactStore, *, capacity: int, booster_limits: Any = None) -> None:
        self._store = store
        self._booster_limits = booster_limits
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: Model) -> LoadedModel:
        """The opened arrays of ``model``'s current version (loaded on first use)."""
        key = (model.id, model.version)
        with self._lock:
            loaded = self._entries.get(key)
            if loaded is not None:
                self._entries.move_to_end(key)
                return loaded
        loaded = load_model(self._store, model, booster_limits=self._booster_limits)
        with self._lock:
            self._entries[key] = loaded
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return loaded

    def forget(self, model_id: str) -> None:
        """Drop every cached version of ``model_id`` (after a delete)."""
        with self._lock:
            for key in [key for key in self._entries if key[0] == model_id]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
