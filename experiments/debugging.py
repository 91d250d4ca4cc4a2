"""Data debugging (paper Fig. 4): how many flipped labels does each ranking find?

For each seed: flip labels, train on them, register the model with the three methods,
read each method's full ranking from ``GET /debug/suspicious``, add the random and
cleanlab rankings, then for every 5% of the training data checked record the fraction
of flipped labels found and (at the retraining checkpoints) the test accuracy after
retraining on the partly corrected labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from experiments.backends import Backend, ModelSpec
from experiments.baselines import cleanlab_ranking, random_ranking
from experiments.noise import correct_checked, flip_labels, found_curve
from experiments.settings import LJE_LR_DEBUGGING, RunSettings
from experiments.tasks.base import RetrainScope, Task, accuracy

__all__ = ["SERVICE_METHODS", "RANKINGS", "run_debugging", "summarise"]

SERVICE_METHODS = ("lje", "l2", "influence")
RANKINGS = SERVICE_METHODS + ("cleanlab", "random")


def _rankings(
    task: Task,
    backend: Backend,
    settings: RunSettings,
    noisy: np.ndarray,
    *,
    seed: int,
    registration: Any,
) -> dict[str, np.ndarray]:
    spec = ModelSpec(
        name=f"{settings.task.value}-debug-seed{seed}",
        labels=noisy,
        test_labels=task.data.test_labels,
        methods=SERVICE_METHODS,
        lje={"lr": LJE_LR_DEBUGGING},
        class_names=task.data.class_names,
    )
    handle = backend.register(registration, spec)
    rankings = {
        method: backend.suspicious_ranking(handle, method=method) for method in SERVICE_METHODS
    }
    probabilities = task.out_of_fold_probabilities(
        noisy, seed=seed, folds=settings.debug.cv_folds, registration=registration
    )
    rankings["cleanlab"] = cleanlab_ranking(noisy, probabilities)
    rankings["random"] = random_ranking(len(noisy), seed=seed)
    return rankings


def _accuracy_curves(
    task: Task,
    settings: RunSettings,
    rankings: dict[str, np.ndarray],
    noisy: np.ndarray,
    *,
    seed: int,
    registration: Any,
) -> dict[str, list[float]]:
    scope = RetrainScope.MODEL if settings.debug.retrain_whole_model else RetrainScope.HEAD
    clean = task.data.train_labels
    cache: dict[bytes, float] = {}
    curves: dict[str, list[float]] = {name: [] for name in rankings}
    jobs = [
        (name, fraction) for fraction in settings.debug.retrain_checkpoints for name in rankings
    ]
    for name, fraction in tqdm(jobs, desc=f"retrain seed {seed}", leave=False):
        labels = correct_checked(noisy, clean, rankings[name], fraction=fraction)
        key = labels.tobytes()
        if key not in cache:  # 0% checked is the same model for every ranking
            cache[key] = task.retrain_accuracy(
                labels, seed=seed, registration=registration, scope=scope
            )
        curves[name].append(cache[key])
    return curves


def _one_seed(task: Task, backend: Backend, settings: RunSettings, seed: int) -> dict[str, Any]:
    noisy, flipped = flip_labels(
        task.data.train_labels, fraction=settings.debug.flip_fraction, seed=seed
    )
    model = task.fit(noisy, seed=seed)
    registration = task.registration(model)
    rankings = _rankings(task, backend, settings, noisy, seed=seed, registration=registration)
    fractions = _fractions(settings)
    return {
        "seed": seed,
        "noisy_model_test_accuracy": accuracy(
            task.test_probabilities(model), task.data.test_labels
        ),
        "dropped_dead_features": getattr(registration, "dropped_features", 0),
        "found": {
            name: found_curve(ranking, flipped, fractions).tolist()
            for name, ranking in rankings.items()
        },
        "accuracy": _accuracy_curves(
            task, settings, rankings, noisy, seed=seed, registration=registration
        ),
    }


def _fractions(settings: RunSettings) -> np.ndarray:
    steps = int(round(1.0 / settings.debug.check_step))
    return np.round(np.linspace(0.0, 1.0, steps + 1), 4)


def summarise(runs: list[dict[str, Any]], names: tuple[str, ...] = RANKINGS) -> dict[str, Any]:
    """Mean and standard deviation over seeds of every curve."""
    summary: dict[str, Any] = {}
    for curve in ("found", "accuracy"):
        summary[curve] = {
            name: {
                "mean": np.mean([run[curve][name] for run in runs], axis=0).tolist(),
                "std": np.std([run[curve][name] for run in runs], axis=0).tolist(),
            }
            for name in names
        }
    return summary


def run_debugging(task: Task, backend: Backend, settings: RunSettings) -> dict[str, Any]:
    """The whole Fig. 4 experiment for one task; a JSON-ready dict."""
    runs = [
        _one_seed(task, backend, settings, seed)
        for seed in tqdm(settings.debug.seeds, desc="debugging seeds")
    ]
    return {
        "flip_fraction": settings.debug.flip_fraction,
        "fractions_checked": _fractions(settings).tolist(),
        "retrain_checkpoints": list(settings.debug.retrain_checkpoints),
        "retrain_scope": "whole model"
        if settings.debug.retrain_whole_model
        else "logistic head on frozen features",
        "lje_lr": LJE_LR_DEBUGGING,
        "seeds": list(settings.debug.seeds),
        "runs": runs,
        "summary": summarise(runs),
    }
