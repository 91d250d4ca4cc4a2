"""Command line: ``python -m experiments.run EXPERIMENT --task TASK --mode MODE``.

EXPERIMENT is ``debugging`` (Fig. 4), ``explanations`` (Figs. 1, 3b, 5 and Tables 1-2:
class-level overlap, stability, readable explanations) or ``all``. Results go to
``experiments/results/<mode>/<task>.json`` (merged per experiment), figures to
``experiments/figures/<mode>/``, and the report is regenerated from every JSON present:
``experiments/RESULTS.md`` (quick) or ``experiments/RESULTS_FULL.md`` (full).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from experiments.backends import BackendKind, open_backend
from experiments.data import load_task
from experiments.settings import DATA_DIR, REPO_ROOT, Mode, TaskName, run_settings
from experiments.tasks import build_task

__all__ = ["main", "run_task"]

EXPERIMENTS_DIR = REPO_ROOT / "experiments"
EXPERIMENTS = ("debugging", "explanations")


def output_paths(mode: Mode, root: Path = EXPERIMENTS_DIR) -> tuple[Path, Path, Path]:
    """(results directory, figures directory, report file) of ``mode``."""
    report = root / ("RESULTS.md" if mode is Mode.QUICK else "RESULTS_FULL.md")
    return root / "results" / mode.value, root / "figures" / mode.value, report


def _environment(device: str, backend: BackendKind) -> dict[str, Any]:
    return {
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "backend": backend.value,
    }


def run_task(
    task_name: TaskName,
    mode: Mode,
    experiments: tuple[str, ...],
    *,
    backend_kind: BackendKind,
    root: Path = EXPERIMENTS_DIR,
    data_dir: Path = DATA_DIR,
    retrain_whole_model: bool | None = None,
) -> dict[str, Any]:
    """Run ``experiments`` for one task; merge into its JSON file; return the merged dict.

    ``retrain_whole_model`` overrides the mode's choice (True: retrain the network from
    scratch at every debugging checkpoint, affordable on a GPU).
    """
    from experiments.debugging import run_debugging
    from experiments.explanations import run_explanations

    settings = run_settings(task_name, mode)
    if retrain_whole_model is not None:
        settings = replace(
            settings, debug=replace(settings.debug, retrain_whole_model=retrain_whole_model)
        )
    device = "cuda" if mode is Mode.FULL and torch.cuda.is_available() else "cpu"
    results_dir, _, _ = output_paths(mode, root)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{task_name.value}.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    task = build_task(load_task(settings, data_dir=data_dir), settings, device=device)
    backend = open_backend(backend_kind)
    try:
        for experiment in experiments:
            started = time.perf_counter()
            runner = run_debugging if experiment == "debugging" else run_explanations
            merged[experiment] = runner(task, backend, settings)
            merged[experiment]["seconds"] = round(time.perf_counter() - started, 1)
    finally:
        backend.close()
    merged.update(
        {
            "task": task_name.value,
            "mode": mode.value,
            "description": task.description,
            "n_train": task.data.n_train,
            "n_test": len(task.data.test_labels),
            "class_names": list(task.data.class_names),
            "environment": _environment(device, backend_kind),
            "settings": {
                "epochs": settings.epochs,
                "retrain_epochs": settings.retrain_epochs,
                "points_per_class": settings.points_per_class,
            },
        }
    )
    path.write_text(json.dumps(merged, indent=1, allow_nan=False))
    return merged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("experiment", choices=(*EXPERIMENTS, "all"))
    parser.add_argument(
        "--task", choices=[task.value for task in TaskName] + ["all"], default="all"
    )
    parser.add_argument("--mode", choices=[mode.value for mode in Mode], default="quick")
    parser.add_argument(
        "--backend",
        choices=[kind.value for kind in BackendKind],
        default="service",
        help="service: a running `rps serve` through the client (default); "
        "engine: representer.fit/explain in-process (fallback)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--no-report", action="store_true", help="do not regenerate the markdown report"
    )
    parser.add_argument(
        "--retrain-whole-model",
        action="store_true",
        help="debugging: retrain the networks from scratch at every checkpoint (GPU)",
    )
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    mode = Mode(arguments.mode)
    tasks = list(TaskName) if arguments.task == "all" else [TaskName(arguments.task)]
    experiments = EXPERIMENTS if arguments.experiment == "all" else (arguments.experiment,)
    for task_name in tasks:
        run_task(
            task_name,
            mode,
            experiments,
            backend_kind=BackendKind(arguments.backend),
            retrain_whole_model=True if arguments.retrain_whole_model else None,
        )
    if not arguments.no_report:
        from experiments.report import write_report

        print(f"report: {write_report(mode)}")


if __name__ == "__main__":
    main()
