"""The computing half of the precompute: arrays in, one new result directory out.

Nothing here touches the database. Files are named through ``models_store.ModelFiles``.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models_store import ArtifactStore, ModelFiles, ModelKind, ResultFiles
from representer import (
    DEFAULT_CG_TOLERANCE,
    DEFAULT_MEMORY_BUDGET_BYTES,
    FittedState,
    InfluenceConfig,
    L2Config,
    LinearHead,
    LJEConfig,
    Method,
    fit,
)
from representer.likelihood import predicted_class_from_logits

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
    test_predicted_class : ndarray of shape (m,), int64, or None
        The registered head's prediction for each stored test point (None without a test set).
    """

    directory: Path
    train_labels: np.ndarray
    predicted_class: np.ndarray
    self_scores: dict[Method, np.ndarray]
    diagnostics: dict[str, float]
    test_predicted_class: np.ndarray | None = None


def method_config(
    spec: dict[str, Any], method: Method, *, ceiling: int
) -> LJEConfig | L2Config | InfluenceConfig:
    """The engine config of ``method`` from a stored spec, within the memory ``ceiling``."""
    if method is Method.LJE:
        options = spec.get("lje", {})
        return LJEConfig(
            lr=options.get("lr", 0.01),
            damping=options.get("damping", 0.0),
            weight_layout=options.get("weight_layout", "auto"),
            hessian=options.get("hessian", "auto"),
            cg_tolerance=options.get("cg_tolerance", DEFAULT_CG_TOLERANCE),
            memory_budget_bytes=_budget(options, ceiling),
        )
    if method is Method.L2:
        return L2Config(lam=spec.get("l2", {}).get("lambda", 0.003))
    options = spec.get("influence", {})
    return InfluenceConfig(
        damping=options.get("damping", 0.0),
        hessian=options.get("hessian", "auto"),
        cg_tolerance=options.get("cg_tolerance", DEFAULT_CG_TOLERANCE),
        memory_budget_bytes=_budget(options, ceiling),
    )


def _budget(options: dict[str, Any], ceiling: int) -> int:
    """The spec's memory_budget_bytes, never above the operator's ceiling."""
    return min(options.get("memory_budget_bytes") or ceiling, ceiling)


def _linear_features(files: ModelFiles, result: ResultFiles) -> LinearHead:
    weights = np.load(files.input("weights.npy"))
    bias_path = files.input("bias.npy")
    bias = np.load(bias_path) if bias_path.exists() else np.zeros(weights.shape[0])
    files.store.link_or_copy(files.input("train_features.npy"), result.train_features)
    if files.input("test_features.npy").exists():
        files.store.link_or_copy(files.input("test_features.npy"), result.test_features)
    return LinearHead(weights, bias)


def _booster_features(files: ModelFiles, result: ResultFiles, spec: dict[str, Any]) -> LinearHead:
    embedding = files.load_embedding(spec)
    train_inputs = files.store.load_array(files.input("train_inputs.npy"))
    files.store.save_array(
        result.train_features,
        embedding.transform(np.asarray(train_inputs)).astype(np.float32),
    )
    if files.input("test_inputs.npy").exists():
        test_inputs = np.asarray(files.store.load_array(files.input("test_inputs.npy")))
        files.store.save_array(
            result.test_features, embedding.transform(test_inputs).astype(np.float32)
        )
    return embedding.head


def _test_predictions(head: LinearHead, result: ResultFiles) -> np.ndarray | None:
    """The head's predicted class of every stored test point, shape (m,) int64, or None."""
    test_features = result.load_optional(result.test_features)
    if test_features is None or len(test_features) == 0:
        return None
    predicted = [  # in blocks: a large memory-mapped test set is never read whole
        predicted_class_from_logits(head.logits(test_features[start : start + 4096]))
        for start in range(0, len(test_features), 4096)
    ]
    return np.concatenate(predicted).astype(np.int64)


def compute_result(
    store: ArtifactStore,
    inputs: ModelInputs,
    *,
    device: str,
    progress: Callable[[float], None],
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
) -> PrecomputeResult:
    """Compute φ (XGBoost), fit every method, and write a new result directory."""
    files = ModelFiles(store, inputs.model_id)
    if not files.inputs.is_dir():
        raise FileNotFoundError(
            f"the inputs of model {inputs.model_id} are gone (deleted while queued?)"
        )
    result = files.new_result()
    try:
        return _compute_into(
            files,
            inputs,
            result,
            device=device,
            progress=progress,
            memory_budget_bytes=memory_budget_bytes,
        )
    except BaseException:
        shutil.rmtree(result.directory, ignore_errors=True)
        raise


def _compute_into(
    files: ModelFiles,
    inputs: ModelInputs,
    result: ResultFiles,
    *,
    device: str,
    progress: Callable[[float], None],
    memory_budget_bytes: int,
) -> PrecomputeResult:
    store = files.store
    if inputs.kind is ModelKind.LINEAR:
        head = _linear_features(files, result)
    else:
        head = _booster_features(files, result, inputs.spec)
    store.save_array(result.head_weights, head.weights)
    store.save_array(result.head_bias, head.bias)
    for source, target in (
        (files.input("test_ids.json"), result.test_ids),
        (files.input("test_labels.npy"), result.test_labels),
    ):
        if source.exists():
            store.link_or_copy(source, target)
    train_features = store.load_array(result.train_features)
    train_labels = np.load(files.input("train_labels.npy"))
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
            config=method_config(inputs.spec, method, ceiling=memory_budget_bytes),
            device=device,
            progress=report,
        )
        state.save(result.method_dir(method.value))
        states[method] = state
    primary = states.get(Method.LJE) or states[inputs.methods[0]]
    return PrecomputeResult(
        directory=result.directory,
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
        test_predicted_class=_test_predictions(head, result),
    )
