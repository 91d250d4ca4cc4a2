"""The computing half of the precompute: arrays in, one new result directory out.

Nothing here touches the database. Files are named through ``models_store.ModelFiles``.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models_store import ArtifactStore, Model, ModelFiles, ModelKind, ResultFiles
from representer import (
    DEFAULT_MEMORY_BUDGET_BYTES,
    FittedState,
    InfluenceConfig,
    L2Config,
    LinearHead,
    LJEConfig,
    Method,
    engine_config,
    fit,
)
from representer.adapters.xgboost_checks import BoosterLimits
from representer.label_errors import LabelRanking, LabelScores, choose_ranking, label_rankings
from representer.likelihood import predicted_class_from_logits
from representer.logistic import fit_logistic_head
from rps.spec import ModelSpec

__all__ = ["ModelInputs", "PrecomputeResult", "RefitBudget", "compute_result", "method_config"]


@dataclass(frozen=True)
class RefitBudget:
    """Seconds the label rankings' head refits may take: max(min_s, share x methods' time).

    A head served by per-class blocks (``hessian_used`` "blocks", a large head) gets the share
    alone: the floor would otherwise add a minute to heads whose precompute takes seconds
    (issue 9's targets, e.g. n=50,000, d=512, k=10 ready in 10 s).
    """

    min_s: float = 60.0
    share: float = 0.5

    def seconds(self, methods_seconds: float, *, blocks: bool = False) -> float:
        if blocks:
            return self.share * methods_seconds
        return max(self.min_s, self.share * methods_seconds)


@dataclass(frozen=True)
class ModelInputs:
    """What the job needs from the model row (a detached snapshot)."""

    model_id: str
    kind: ModelKind
    methods: tuple[Method, ...]
    spec: ModelSpec
    refit: bool = False
    """A refit on reviewed labels (``Model.parent_id`` set): the head is refit first."""

    @classmethod
    def of(cls, model: Model) -> ModelInputs:
        """The inputs of a model row: its stored spec read back through ``rps.spec``."""
        return cls(
            model_id=model.id,
            kind=ModelKind(model.kind),
            methods=tuple(Method(name) for name in model.methods),
            spec=ModelSpec.from_json(model.spec),
            refit=model.parent_id is not None,
        )


@dataclass(frozen=True)
class PrecomputeResult:
    """A written result directory and the per-point numbers the database gets.

    Attributes
    ----------
    train_labels : ndarray of shape (n,), int64
    predicted_class : ndarray of shape (n,), int64
    self_scores : mapping of Method to ndarray of shape (n,), float
    label_scores : mapping of ranking name (methods and label rankings) to LabelScores
        Score, suggested label and label-error probability of every point; the methods'
        entries carry their self-scores with the default label ranking's suggestions.
    rankings : mapping of label-ranking name to {"status": "ready" | "skipped", "reason"}
    test_predicted_class : ndarray of shape (m,), int64, or None
        The registered head's prediction for each stored test point (None without a test set).
    """

    directory: Path
    train_labels: np.ndarray
    predicted_class: np.ndarray
    self_scores: dict[Method, np.ndarray]
    diagnostics: dict[str, float]
    label_scores: dict[str, LabelScores]
    rankings: dict[str, dict[str, Any]]
    test_predicted_class: np.ndarray | None = None


def method_config(
    spec: ModelSpec, method: Method, *, ceiling: int
) -> LJEConfig | L2Config | InfluenceConfig:
    """The engine config of ``method`` from the stored spec, within the memory ``ceiling``."""
    return engine_config(spec, method, ceiling=ceiling)


def _linear_features(files: ModelFiles, result: ResultFiles) -> LinearHead:
    weights = np.load(files.input("weights.npy"))
    bias_path = files.input("bias.npy")
    bias = np.load(bias_path) if bias_path.exists() else np.zeros(weights.shape[0])
    files.store.link_or_copy(files.input("train_features.npy"), result.train_features)
    if files.input("test_features.npy").exists():
        files.store.link_or_copy(files.input("test_features.npy"), result.test_features)
    return LinearHead(weights, bias)


def _booster_features(
    files: ModelFiles, result: ResultFiles, spec: ModelSpec, limits: BoosterLimits | None
) -> LinearHead:
    embedding = files.load_embedding(spec, limits=limits)
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
    refit_budget: RefitBudget | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    booster_limits: BoosterLimits | None = None,
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
            refit_budget=refit_budget or RefitBudget(),
            memory_budget_bytes=memory_budget_bytes,
            booster_limits=booster_limits,
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
    refit_budget: RefitBudget,
    memory_budget_bytes: int,
    booster_limits: BoosterLimits | None,
) -> PrecomputeResult:
    store = files.store
    if inputs.kind is ModelKind.LINEAR:
        head = _linear_features(files, result)
    else:
        head = _booster_features(files, result, inputs.spec, booster_limits)
    refit_diagnostics: dict[str, float] = {}
    if inputs.refit:
        head, refit_diagnostics = _refit_head(files, result, head)
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
    methods_started = time.perf_counter()
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
    self_scores = {
        method: np.asarray(state.self_scores, dtype=np.float64) for method, state in states.items()
    }
    label_scores, rankings = _label_rankings(
        head,
        train_features,
        train_labels,
        self_scores,
        test_features=result.load_optional(result.test_features),
        test_labels=result.load_optional(result.test_labels),
        budget_s=refit_budget.seconds(
            time.perf_counter() - methods_started,
            blocks=any(state.meta.get("hessian_used") == "blocks" for state in states.values()),
        ),
    )
    return PrecomputeResult(
        directory=result.directory,
        train_labels=train_labels.astype(np.int64),
        predicted_class=np.asarray(primary.train_predicted_class, dtype=np.int64),
        self_scores=self_scores,
        label_scores=label_scores,
        rankings=rankings,
        diagnostics={
            **{
                key: float(value)
                for key, value in primary.diagnostics.items()
                if isinstance(value, (int, float)) and math.isfinite(value)
            },
            **refit_diagnostics,
        },
        test_predicted_class=_test_predictions(head, result),
    )


def _refit_head(
    files: ModelFiles, result: ResultFiles, source_head: LinearHead
) -> tuple[LinearHead, dict[str, float]]:
    """The head refit on the stored (reviewed) labels, and the stored test set's accuracy
    under the source head and under the refit one (when the test set has labels)."""
    train_features = files.store.load_array(result.train_features)
    train_labels = np.load(files.input("train_labels.npy"))
    head = fit_logistic_head(train_features, train_labels, num_classes=source_head.num_classes)
    test_features = result.load_optional(files.input("test_features.npy"))
    labels_path = files.input("test_labels.npy")
    if test_features is None or len(test_features) == 0 or not labels_path.exists():
        return head, {}
    test_labels = np.load(labels_path)
    before, after = (
        float(np.mean(predicted_class_from_logits(candidate.logits(test_features)) == test_labels))
        for candidate in (source_head, head)
    )
    return head, {
        "refit_test_accuracy_before": before,
        "refit_test_accuracy_after": after,
        "refit_test_accuracy_change": after - before,
    }


def _label_rankings(
    head: LinearHead,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    self_scores: dict[Method, np.ndarray],
    *,
    test_features: np.ndarray | None,
    test_labels: np.ndarray | None,
    budget_s: float,
) -> tuple[dict[str, LabelScores], dict[str, dict[str, Any]]]:
    """The label rankings, plus the methods' self-scores with the default's suggestions.

    ``adaptive``'s status also names the view it took and the simulated test flips and test log-losses behind it."""
    computed = label_rankings(
        head,
        train_features,
        train_labels,
        test_features=test_features,
        test_labels=test_labels,
        budget_s=budget_s,
    )
    scores: dict[str, LabelScores] = {
        ranking.value: values for ranking, values in computed.rankings.items()
    }
    reference = computed.rankings[choose_ranking(set(computed.rankings))]
    for method, values in self_scores.items():
        scores[method.value] = LabelScores(
            scores=values,
            suggested_label=reference.suggested_label,
            label_error_probability=reference.label_error_probability,
        )
    rankings: dict[str, dict[str, Any]] = {}
    for ranking in LabelRanking:
        if ranking in computed.rankings:
            rankings[ranking.value] = {"status": "ready"}
            if ranking is LabelRanking.ADAPTIVE and computed.adaptive_view is not None:
                rankings[ranking.value]["view"] = computed.adaptive_view.value
                rankings[ranking.value]["test_log_loss"] = computed.test_log_loss
                rankings[ranking.value]["simulated_flips_found"] = computed.simulated_found
        else:
            reason = computed.skipped.get(ranking, "not computed")
            rankings[ranking.value] = {"status": "skipped", "reason": reason}
    return scores, rankings
