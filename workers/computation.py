"""The computing half of the precompute: arrays in, one new result directory out.

Nothing here touches the database. The result directory (see ``app.explain.loader``)::

    train_features.npy (n, d) float32    test_features.npy (m, d) float32    test_ids.json
    test_labels.npy (m,)                 head_weights.npy, head_bias.npy     <method>/ (FittedState)
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models_store import ArtifactStore, ModelKind
from representer import FittedState, InfluenceConfig, L2Config, LinearHead, LJEConfig, Method, fit
from representer.adapters.xgboost_checks import BoosterLimits

__all__ = ["ModelInputs", "PrecomputeResult", "compute_result", "method_config"]


@dataclass(frozen=True)
class ModelInputs:
    """What the job needs from the model row (a detached snapshot)."""

    model_id: str
    kind: ModelKind
    methods: tuple[Method, ...]
    spec: dict[str, Any]


@dataclass(frozen=True)
class PrecomputeResult:
    """A written result directory and the per-point numbers the database gets.

    Attributes
    ----------
    train_labels : ndarray of shape (n,), int64
    predicted_class : ndarray of shape (n,), int64
    self_scores : mapping of Method to ndarray of shape (n,), float
    """

    directory: Path
    train_labels: np.ndarray
    predicted_class: np.ndarray
    self_scores: dict[Method, np.ndarray]
    diagnostics: dict[str, float]


def method_config(spec: dict[str, Any], method: Method) -> LJEConfig | L2Config | InfluenceConfig:
    """The engine config of ``method`` from a stored spec."""
    if method is Method.LJE:
        options = spec.get("lje", {})
        return LJEConfig(
            lr=options.get("lr", 0.01),
            damping=options.get("damping", 0.0),
            weight_layout=options.get("weight_layout", "auto"),
        )
    if method is Method.L2:
        return L2Config(lam=spec.get("l2", {}).get("lambda", 0.003))
    return InfluenceConfig(damping=spec.get("influence", {}).get("damping", 0.0))


def _linear_features(store: ArtifactStore, inputs: ModelInputs, result: Path) -> LinearHead:
    source = store.inputs_dir(inputs.model_id)
    weights = np.load(source / "weights.npy")
    bias = (
        np.load(source / "bias.npy")
        if (source / "bias.npy").exists()
        else np.zeros(weights.shape[0])
    )
    store.link_or_copy(source / "train_features.npy", result / "train_features.npy")
    if (source / "test_features.npy").exists():
        store.link_or_copy(source / "test_features.npy", result / "test_features.npy")
    return LinearHead(weights, bias)


def _booster_features(
    store: ArtifactStore, inputs: ModelInputs, result: Path, limits: BoosterLimits | None
) -> LinearHead:
    from representer.adapters import BoosterEmbedding, Embedding, load_booster

    source = store.inputs_dir(inputs.model_id)
    booster_path = next(path for path in source.iterdir() if path.stem == "booster")
    embedding_name = Embedding(inputs.spec.get("xgboost", {}).get("embedding", "tree_margins"))
    embedding = BoosterEmbedding.from_booster(
        load_booster(booster_path, limits=limits), embedding=embedding_name, limits=limits
    )
    train_inputs = store.load_array(source / "train_inputs.npy")
    store.save_array(
        result / "train_features.npy",
        embedding.transform(np.asarray(train_inputs)).astype(np.float32),
    )
    if (source / "test_inputs.npy").exists():
        test_inputs = np.asarray(store.load_array(source / "test_inputs.npy"))
        store.save_array(
            result / "test_features.npy", embedding.transform(test_inputs).astype(np.float32)
        )
    return embedding.head


def compute_result(
    store: ArtifactStore,
    inputs: ModelInputs,
    *,
    device: str,
    progress: Callable[[float], None],
    booster_limits: BoosterLimits | None = None,
) -> PrecomputeResult:
    """Compute φ (XGBoost), fit every method, and write a new result directory."""
    if not store.inputs_dir(inputs.model_id).is_dir():
        raise FileNotFoundError(
            f"the inputs of model {inputs.model_id} are gone (deleted while queued?)"
        )
    result = store.new_result_dir(inputs.model_id)
    try:
        return _compute_into(
            store, inputs, result, device=device, progress=progress, booster_limits=booster_limits
        )
    except BaseException:
        shutil.rmtree(result, ignore_errors=True)
        raise


def _compute_into(
    store: ArtifactStore,
    inputs: ModelInputs,
    result: Path,
    *,
    device: str,
    progress: Callable[[float], None],
    booster_limits: BoosterLimits | None,
) -> PrecomputeResult:
    source = store.inputs_dir(inputs.model_id)
    head = (
        _linear_features(store, inputs, result)
        if inputs.kind is ModelKind.LINEAR
        else _booster_features(store, inputs, result, booster_limits)
    )
    store.save_array(result / "head_weights.npy", head.weights)
    store.save_array(result / "head_bias.npy", head.bias)
    for name in ("test_ids.json", "test_labels.npy"):
        if (source / name).exists():
            store.link_or_copy(source / name, result / name)
    train_features = store.load_array(result / "train_features.npy")
    train_labels = np.load(source / "train_labels.npy")
    states: dict[Method, FittedState] = {}
    share = 1.0 / len(inputs.methods)
    for position, method in enumerate(inputs.methods):

        def report(fraction: float, position: int = position) -> None:
            progress(min(1.0, (position + min(max(fraction, 0.0), 1.0)) * share))

        state = fit(
            head,
            train_features,
            train_labels,
            method=method,
            config=method_config(inputs.spec, method),
            device=device,
            progress=report,
        )
        state.save(result / method.value)
        states[method] = state
    primary = states.get(Method.LJE) or states[inputs.methods[0]]
    return PrecomputeResult(
        directory=result,
        train_labels=train_labels.astype(np.int64),
        predicted_class=np.asarray(primary.train_predicted_class, dtype=np.int64),
        self_scores={
            method: np.asarray(state.self_scores, dtype=np.float64)
            for method, state in states.items()
        },
        diagnostics={
            key: float(value)
            for key, value in primary.diagnostics.items()
            if isinstance(value, (int, float)) and math.isfinite(value)
        },
    )
