"""Why RPS-LJE's debugging curve sits where it does on German Credit (engine, not service).

For the binary head, LJE's self-score is |θ*·φ̃_i − r*_i φ̃_iᵀH*⁻¹φ̃_i| / n (docs/math.md §2, §6):
a residual times a leverage q_i = φ̃_iᵀH⁻¹φ̃_i, plus the point's own logit. This command
ranks the same noisy boosters by each part, and by LJE with Hessian damping, to show
which part limits the curve. It runs ``representer`` in-process (the service offers no
per-part scores), so its numbers are labelled "engine" in the report.

``python -m experiments.leverage [--seeds 10]`` writes ``results/full/german_leverage.json``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import representer
from experiments.data import load_task
from experiments.noise import flip_labels, found_curve
from experiments.run import output_paths
from experiments.settings import LJE_LR_DEBUGGING, Mode, TaskName, run_settings
from experiments.tasks import build_task
from representer.adapters import BoosterEmbedding

__all__ = ["main", "score_parts"]

FRACTIONS = np.array([0.1, 0.2, 0.4])
DAMPING_SCALES = (0.0, 0.01, 0.1, 1.0)
"""Damping δ as a multiple of the mean squared feature value."""


def score_parts(
    head: representer.LinearHead, features: np.ndarray, labels: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-point parts of the binary self-score at Θ† (LJE's lr 1e-5 step is negligible), each (n,)."""
    augmented = np.hstack([features.astype(np.float64), np.ones((len(features), 1))])  # (n, D)
    logits = augmented @ head.theta[0]  # (n,)
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    residuals = probabilities - labels  # (n,)
    hessian = (
        (augmented * (probabilities * (1 - probabilities))[:, None]).T @ augmented / len(labels)
    )  # (D, D)
    leverage = np.einsum("ij,ji->i", augmented, np.linalg.solve(hessian, augmented.T))  # (n,)
    return {
        "|residual| x leverage": np.abs(residuals) * leverage,
        "|own logit|": np.abs(logits),
        "|residual| alone": np.abs(residuals),
        "residual² x leverage (influence)": residuals**2 * leverage,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.leverage", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seeds", type=int, default=10)
    seeds = parser.parse_args(argv).seeds
    settings = run_settings(TaskName.GERMAN, Mode.FULL)
    task = build_task(load_task(settings), settings)
    curves: dict[str, list[np.ndarray]] = {}
    for seed in range(seeds):
        noisy, flipped = flip_labels(
            task.data.train_labels, fraction=settings.debug.flip_fraction, seed=seed
        )
        embedding = BoosterEmbedding.from_booster(task.fit(noisy, seed=seed))
        features = embedding.transform(task.data.train_inputs)
        scores = score_parts(embedding.head, features, noisy)
        scale = float(np.mean(features.astype(np.float64) ** 2))
        for factor in DAMPING_SCALES:
            config = representer.LJEConfig(lr=LJE_LR_DEBUGGING, damping=factor * scale)
            state = representer.fit(
                embedding.head, features, noisy, method=representer.Method.LJE, config=config
            )
            scores[f"LJE, damping {factor:g} x mean(φ²)"] = np.asarray(
                state.self_scores, dtype=np.float64
            )
        for name, score in scores.items():
            curves.setdefault(name, []).append(
                found_curve(np.argsort(-score, kind="stable"), flipped, FRACTIONS)
            )
    summary = {name: np.mean(values, axis=0).round(4).tolist() for name, values in curves.items()}
    results_dir, _, _ = output_paths(Mode.FULL)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "german_leverage.json"
    path.write_text(
        json.dumps(
            {"fractions_checked": FRACTIONS.tolist(), "seeds": seeds, "found": summary}, indent=1
        )
    )
    for name, values in summary.items():
        print(f"{name:40s} {values}")


if __name__ == "__main__":
    main()
