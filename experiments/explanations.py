"""Explanation experiments on a model trained on clean labels.

* individual vs class-level (paper Figs. 1b, 5): for test points of the same predicted
  class, mean pairwise Jaccard overlap of their top-5 positive lists, per method;
* stability (Figs. 1a, 3b): overlap of top-10 lists across LJE learning rates and across
  RPS-l2 λ values (one registration per setting);
* readable explanations (Tables 1-2): the top-3 positive points of three test points per
  method, with the records the service sent back.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from experiments.backends import Backend, ExplainedPoint, ModelSpec
from experiments.settings import LJE_LR_EXPLANATION, STABILITY_LAMBDAS, STABILITY_LRS, RunSettings
from experiments.tasks.base import Registration, Task

__all__ = ["jaccard", "run_explanations", "sample_test_points", "top_k_overlap"]

METHODS = ("lje", "l2", "influence")
CLASS_LEVEL_K = 5
STABILITY_K = 10
READABLE_K = 3
READABLE_POINTS = 3
SAMPLE_SEED = 7


def jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two index lists (as sets)."""
    a, b = set(np.asarray(first).tolist()), set(np.asarray(second).tolist())
    return len(a & b) / len(a | b) if a | b else 1.0


def top_k_overlap(first: np.ndarray, second: np.ndarray) -> float:
    """|A ∩ B| / k of two top-k lists of equal length k."""
    return len(set(np.asarray(first).tolist()) & set(np.asarray(second).tolist())) / max(
        len(first), 1
    )


def sample_test_points(
    predicted: np.ndarray, *, per_class: int, seed: int = SAMPLE_SEED
) -> np.ndarray:
    """Up to ``per_class`` test indices of each predicted class, shape (<= 2 * per_class,) int64."""
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(members, size=min(per_class, len(members)), replace=False)
        for members in (np.flatnonzero(predicted == label) for label in np.unique(predicted))
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _class_level(explained: dict[str, list[ExplainedPoint]]) -> dict[str, Any]:
    """Mean pairwise Jaccard of top-5 lists within each predicted class, per method."""
    result = {}
    for method, points in explained.items():
        per_class = {}
        for label in sorted({point.predicted_class for point in points}):
            lists = [
                point.positive_indices[:CLASS_LEVEL_K]
                for point in points
                if point.predicted_class == label
            ]
            pairs = [jaccard(a, b) for a, b in combinations(lists, 2)]
            if pairs:
                per_class[str(label)] = float(np.mean(pairs))
        result[method] = {"per_class": per_class, "mean": float(np.mean(list(per_class.values())))}
    return result


def _explain_all(
    backend: Backend, handle: str, points: np.ndarray, *, method: str, k: int
) -> list[ExplainedPoint]:
    return [backend.explain(handle, int(index), method=method, k=k) for index in points]


def _stability(
    task: Task,
    backend: Backend,
    registration: Registration,
    settings: RunSettings,
    points: np.ndarray,
) -> dict[str, Any]:
    """Top-10 overlap matrices across LJE learning rates and across l2 λ values."""
    sweeps = {"lje": ("lr", STABILITY_LRS), "l2": ("lambda", STABILITY_LAMBDAS)}
    result: dict[str, Any] = {}
    for method, (parameter, values) in sweeps.items():
        lists = []
        for value in tqdm(values, desc=f"stability {method}", leave=False):
            spec = ModelSpec(
                name=f"{settings.task.value}-stability-{method}-{value:g}",
                labels=task.data.train_labels,
                test_labels=task.data.test_labels,
                methods=(method,),
                **{method: {parameter: value}},
                class_names=task.data.class_names,
            )
            handle = backend.register(registration, spec)
            lists.append(
                [
                    point.positive_indices
                    for point in _explain_all(backend, handle, points, method=method, k=STABILITY_K)
                ]
            )
        matrix = [
            [
                float(
                    np.mean([top_k_overlap(a, b) for a, b in zip(lists[i], lists[j], strict=False)])
                )
                for j in range(len(values))
            ]
            for i in range(len(values))
        ]
        off_diagonal = [
            matrix[i][j] for i in range(len(values)) for j in range(len(values)) if i != j
        ]
        result[method] = {
            "parameter": parameter,
            "values": list(values),
            "overlap": matrix,
            "mean_off_diagonal": float(np.mean(off_diagonal)),
        }
    return result


def _readable(
    explained: dict[str, list[ExplainedPoint]], task: Task, points: np.ndarray
) -> list[dict[str, Any]]:
    """Three test points (alternating predicted classes) with each method's top-3 and records."""
    first = explained["lje"]
    by_class: dict[int, list[int]] = {}
    for position, point in enumerate(first):
        by_class.setdefault(point.predicted_class, []).append(position)
    order = [position for group in zip(*by_class.values(), strict=False) for position in group]
    order += [position for position in range(len(first)) if position not in order]
    tables = []
    for position in order[:READABLE_POINTS]:
        test_index = int(points[position])
        tables.append(
            {
                "test_index": test_index,
                "test_label": int(task.data.test_labels[test_index]),
                "test_record": task.data.test_records[test_index],
                "predicted_class": first[position].predicted_class,
                "methods": {
                    method: [
                        {
                            "train_index": int(index),
                            "label": label,
                            "contribution": float(value),
                            "record": record,
                        }
                        for index, label, value, record in zip(
                            explained[method][position].positive_indices[:READABLE_K],
                            explained[method][position].positive_labels[:READABLE_K],
                            explained[method][position].positive_contributions[:READABLE_K],
                            explained[method][position].positive_records[:READABLE_K],
                            strict=False,
                        )
                    ]
                    for method in METHODS
                },
            }
        )
    return tables


def run_explanations(
    task: Task, backend: Backend, settings: RunSettings, *, seed: int = 0
) -> dict[str, Any]:
    """Train on clean labels, register once with all methods, run the three experiments."""
    model = task.fit(task.data.train_labels, seed=seed)
    registration = task.registration(model)
    predicted = (task.test_probabilities(model) > 0.5).astype(np.int64)
    points = sample_test_points(predicted, per_class=settings.points_per_class)
    spec = ModelSpec(
        name=f"{settings.task.value}-explain",
        labels=task.data.train_labels,
        test_labels=task.data.test_labels,
        methods=METHODS,
        lje={"lr": LJE_LR_EXPLANATION},
        class_names=task.data.class_names,
        train_records=task.data.train_records,
        test_records=task.data.test_records,
    )
    handle = backend.register(registration, spec)
    explained = {
        method: _explain_all(
            backend, handle, points, method=method, k=max(CLASS_LEVEL_K, READABLE_K)
        )
        for method in tqdm(METHODS, desc="explain", leave=False)
    }
    clean_accuracy = float(np.mean(predicted == task.data.test_labels))
    return {
        "clean_model_test_accuracy": clean_accuracy,
        "dropped_dead_features": getattr(registration, "dropped_features", 0),
        "test_points": points.tolist(),
        "lje_lr": LJE_LR_EXPLANATION,
        "class_level_jaccard_top5": _class_level(explained),
        "mean_abs_residual_lje": float(
            np.mean([abs(point.residual) for point in explained["lje"]])
        ),
        "stability_top10": _stability(task, backend, registration, settings, points),
        "readable": _readable(explained, task, points),
    }
