"""The paper's three tasks behind one interface (``Task``)."""

from experiments.data import TaskData
from experiments.settings import RunSettings, TaskName
from experiments.tasks.base import (
    LinearRegistration,
    Registration,
    RetrainScope,
    Task,
    XGBoostRegistration,
)

__all__ = [
    "LinearRegistration",
    "Registration",
    "RetrainScope",
    "Task",
    "XGBoostRegistration",
    "build_task",
]


def build_task(data: TaskData, settings: RunSettings, *, device: str = "cpu") -> Task:
    """The task object of ``settings.task`` over ``data``."""
    if settings.task is TaskName.GERMAN:
        from experiments.tasks.german import GermanXGBoost

        return GermanXGBoost(data)
    from experiments.tasks.neural import cifar_task, imdb_task

    build = cifar_task if settings.task is TaskName.CIFAR else imdb_task
    return build(
        data, epochs=settings.epochs, retrain_epochs=settings.retrain_epochs, device=device
    )
