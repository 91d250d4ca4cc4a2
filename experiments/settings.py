"""Run modes, task names and per-task settings, as small frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

__all__ = [
    "DATA_DIR",
    "REPO_ROOT",
    "DebugSettings",
    "Mode",
    "RunSettings",
    "TaskName",
    "run_settings",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
"""The shared data sets, read in place (never copied into the repository)."""

LJE_LR_DEBUGGING = 1e-5
"""Paper appendix H: LJE learning rate for data debugging."""
LJE_LR_EXPLANATION = 1e-2
"""Paper appendix H: LJE learning rate for explanations."""
STABILITY_LRS = (5e-4, 1e-3, 5e-3, 1e-2)
STABILITY_LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2)


class Mode(str, Enum):
    """How much to run: ``quick`` (CI, subsets, minutes on 2 cores) or ``full`` (paper sizes)."""

    QUICK = "quick"
    FULL = "full"


class TaskName(str, Enum):
    """The paper's three tasks."""

    GERMAN = "german"  # German Credit, XGBoost, 30% flipped
    CIFAR = "cifar"  # CIFAR-10 automobile vs horse, small ResNet, 20% flipped
    IMDB = "imdb"  # IMDB sentiment, Bi-LSTM with embeddings from scratch, 20% flipped


@dataclass(frozen=True)
class DebugSettings:
    """Settings of the data-debugging experiment (paper Fig. 4)."""

    flip_fraction: float
    """Fraction of training labels flipped before training."""
    seeds: tuple[int, ...]
    """One repetition per seed (flip, training, random order)."""
    check_step: float = 0.05
    """The found-curve is evaluated every ``check_step`` of the training data."""
    retrain_checkpoints: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4)
    """Fractions checked at which the model is retrained on the partly corrected labels."""
    cv_folds: int = 5
    """Folds of the out-of-fold probabilities that cleanlab ranks."""
    retrain_whole_model: bool = True
    """True: retrain the whole model at each checkpoint; False: only a logistic-regression
    head on the noisy model's frozen features (quick mode of the torch tasks)."""


@dataclass(frozen=True)
class RunSettings:
    """Everything that depends on (task, mode)."""

    task: TaskName
    mode: Mode
    n_train: int | None
    """Training subset size (None = all)."""
    n_test: int | None
    """Test subset size (None = all)."""
    debug: DebugSettings
    points_per_class: int
    """Test points per predicted class for the overlap and stability experiments."""
    epochs: int
    """Training epochs of the torch models (unused by XGBoost)."""
    retrain_epochs: int
    """Epochs of the out-of-fold networks behind cleanlab (CIFAR) and of whole-model retraining."""


_CHECKPOINTS = tuple(round(0.05 * step, 2) for step in range(0, 21))


def run_settings(task: TaskName, mode: Mode) -> RunSettings:
    """The settings used for ``task`` in ``mode``; the report prints them."""
    task, mode = TaskName(task), Mode(mode)
    flip = 0.3 if task is TaskName.GERMAN else 0.2
    quick = mode is Mode.QUICK
    if task is TaskName.GERMAN:
        sizes, epochs = (None, None), (0, 0)
        seeds = (0, 1, 2) if quick else tuple(range(10))
    elif task is TaskName.CIFAR:
        sizes = (1000, 400) if quick else (None, None)
        epochs = (4, 3) if quick else (12, 12)
        seeds = (0, 1) if quick else (0, 1, 2)
    else:
        sizes = (1200, 400) if quick else (10000, 5000)  # 25k reviews: ~1 h per LSTM here
        epochs = (5, 3) if quick else (3, 3)
        seeds = (0, 1) if quick else (0, 1)
    return RunSettings(
        task=task,
        mode=mode,
        n_train=sizes[0],
        n_test=sizes[1],
        debug=DebugSettings(
            flip_fraction=flip,
            seeds=seeds,
            retrain_checkpoints=_CHECKPOINTS,
            cv_folds=5 if task is TaskName.GERMAN else 3,
            # A CPU cannot retrain a network from scratch at every checkpoint in time:
            # the torch tasks retrain a logistic head on the noisy model's features.
            retrain_whole_model=task is TaskName.GERMAN,
        ),
        points_per_class=10 if quick else 50,
        epochs=epochs[0],
        retrain_epochs=epochs[1],
    )
