"""Review, then refit: test accuracy after correcting the top x% of each ranking, through the API.

For every task and seed of ``experiments.label_rankings`` (the same trained problem, read
from its cache): an embedded ``rps serve`` (``experiments.backends.ServiceBackend``) gets
the noisy model registered once per ranking (a linear head over the stored features; for
German Credit the XGBoost tree embedding and its head, which is what a refit trains on).
Then, cumulatively at 10, 20 and 40% checked, the next points of the ranking (read with
``GET /debug/suspicious``) are reviewed with ``PUT /models/{id}/reviews/{train_id}``, as a
person who checks them would: ``relabel`` to the true label where the label was flipped,
``keep`` elsewhere; ``POST /models/{id}/refit`` then registers the refit model, whose
``diagnostics.refit_test_accuracy_after`` is the point of the curve. 0% is a refit with no
review (the head refit on the noisy labels); ``random`` reviews in a random order.

``nice python -m experiments.review_refit [--tasks ...] [--seeds 3]`` writes
``results/review_refit.json``, the figure ``figures/review_refit.png`` and its section of
experiments/RESULTS.md (``experiments.report`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from experiments.label_rankings import TASKS, Problem, load_problem
from experiments.settings import REPO_ROOT

__all__ = ["main", "review_refit_curve"]

FRACTIONS = (0.0, 0.1, 0.2, 0.4)
RANKINGS = ("default", "confidence", "cleanlab", "influence", "random")
"""``default``: ``method`` omitted (the answer names the ranking); ``random``: a random order."""
OUTPUT = REPO_ROOT / "experiments" / "results" / "review_refit.json"
FIGURE = REPO_ROOT / "experiments" / "figures" / "review_refit.png"
RESULTS_MD = REPO_ROOT / "experiments" / "RESULTS.md"
SECTION_START, SECTION_END = "<!-- review-refit -->", "<!-- /review-refit -->"
READY_TIMEOUT_S = 900.0
REFIT_MIN_S = 900.0
"""``RPS_LABEL_REFIT_MIN_S`` of the embedded server."""


def _register(client: Any, problem: Problem, name: str) -> str:
    model = client.register_linear(
        problem.head.weights,
        problem.head.bias,
        problem.features,
        problem.noisy,
        test_features=problem.test_features,
        test_labels=problem.test_labels,
        name=name,
        methods=["influence"],
        class_names=[str(k) for k in range(problem.head.num_classes)],
    )
    client.wait_ready(model.id, timeout=READY_TIMEOUT_S, progress=False)
    return model.id


def _refit_accuracy(client: Any, model_id: str) -> tuple[float, float]:
    """(test accuracy of the source head, of the head refit on the reviews)."""
    refit = client.refit(model_id)
    ready = client.wait_ready(refit["id"], timeout=READY_TIMEOUT_S, progress=False)
    diagnostics = ready.diagnostics or {}
    return diagnostics["refit_test_accuracy_before"], diagnostics["refit_test_accuracy_after"]


def _order(client: Any, model_id: str, ranking: str, n: int, seed: int) -> tuple[np.ndarray, str]:
    if ranking == "random":
        return np.random.default_rng(seed).permutation(n), "random"
    method = None if ranking == "default" else ranking
    first = client.suspicious(model_id, method=method, limit=1)
    items = client.iter_suspicious(model_id, method=method)
    return np.asarray([item.train_index for item in items], dtype=np.int64), first.method


def review_refit_curve(client: Any, problem: Problem, *, task: str, seed: int) -> dict:
    """Test accuracy after review + refit at every fraction, for every ranking."""
    n = len(problem.noisy)
    curves: dict[str, list[float]] = {}
    named: dict[str, str] = {}
    before, refit_noisy = math.nan, math.nan
    for position, ranking in enumerate(RANKINGS):
        model_id = _register(client, problem, f"{task} seed {seed} {ranking}")
        if position == 0:  # 0%: the head refit on the noisy labels (no review), once
            before, refit_noisy = _refit_accuracy(client, model_id)
        order, named[ranking] = _order(client, model_id, ranking, n, seed)
        accuracies, reviewed = [refit_noisy], 0
        for fraction in FRACTIONS[1:]:
            upto = int(round(fraction * n))
            for index in order[reviewed:upto]:
                if problem.flipped[index]:
                    client.review(model_id, str(index), "relabel", label=int(problem.clean[index]))
                else:
                    client.review(model_id, str(index), "keep")
            reviewed = upto
            accuracies.append(_refit_accuracy(client, model_id)[1])
        curves[ranking] = accuracies
        client.delete_model(model_id)
    clean = _clean_refit_accuracy(problem)
    return {
        "task": task,
        "seed": seed,
        "fractions": list(FRACTIONS),
        "source_accuracy": before,
        "clean_refit_accuracy": clean,
        "curves": curves,
        "method_named": named,
    }


def _clean_refit_accuracy(problem: Problem) -> float:
    """The ceiling: the same refit on the true labels (engine, for reference)."""
    from representer.likelihood import predicted_class_from_logits
    from representer.logistic import fit_logistic_head

    head = fit_logistic_head(problem.features, problem.clean, num_classes=problem.head.num_classes)
    predicted = predicted_class_from_logits(head.logits(problem.test_features))
    return float(np.mean(predicted == problem.test_labels))


def summarise(runs: list[dict]) -> dict[str, dict[str, list[float]]]:
    """task -> ranking -> mean test accuracy at each fraction (plus source / clean rows)."""
    result: dict[str, dict[str, list[float]]] = {}
    for task in TASKS:
        chosen = [run for run in runs if run["task"] == task]
        if not chosen:
            continue
        rows = {
            name: np.mean([run["curves"][name] for run in chosen], axis=0).tolist()
            for name in RANKINGS
        }
        rows["source head (no refit)"] = [float(np.mean([r["source_accuracy"] for r in chosen]))]
        rows["refit on the true labels"] = [
            float(np.mean([r["clean_refit_accuracy"] for r in chosen]))
        ]
        result[task] = rows
    return result


def plot(summary: dict[str, dict[str, list[float]]], path: Path = FIGURE) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(summary), figsize=(4 * len(summary), 3.6), squeeze=False)
    x = 100 * np.asarray(FRACTIONS)
    for axis, (task, rows) in zip(axes[0], summary.items(), strict=True):
        for name in RANKINGS:  # the default drawn on top, dashed: it often equals another
            style = {"ls": "--", "lw": 2.5, "zorder": 3} if name == "default" else {}
            axis.plot(x, rows[name], marker="o", markersize=3, label=name, **style)
        axis.axhline(
            rows["refit on the true labels"][0], color="k", ls=":", lw=1, label="true labels"
        )
        axis.set(
            title=task, xlabel="training data reviewed (%)", ylabel="test accuracy after refit"
        )
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def section_markdown(payload: dict) -> list[str]:
    summary, runs = payload["summary"], payload["runs"]
    named = {f"{r['task']} {r['seed']}": r["method_named"]["default"] for r in runs}
    lines = [
        SECTION_START,
        "## Review, then refit (`python -m experiments.review_refit`, through the API)",
        "",
        "The trained noisy problems of `experiments.label_rankings` (20% flipped), registered "
        "with an embedded `rps serve`; the top x% of each ranking reviewed with `PUT "
        "/models/{id}/reviews/{train_id}` (`relabel` to the true label where it was flipped, "
        "`keep` elsewhere), then `POST /models/{id}/refit`: test accuracy of the refit head "
        "(`diagnostics.refit_test_accuracy_after`; an L2-penalised logistic head over the stored "
        "features, for German Credit over the tree embedding). `default` omits `method` (the "
        f"service named: {', '.join(f'{k}: `{v}`' for k, v in named.items())}). Seeds: "
        f"{sorted({r['seed'] for r in runs})}. The server ran with `RPS_LABEL_REFIT_MIN_S` = "
        f"{REFIT_MIN_S:.0f} (the default 60 s skipped the refits of the digits head here). Load "
        f"average at the end: {payload['load_average']}.",
        "",
        "| task | ranking | " + " | ".join(f"{int(100 * f)}%" for f in FRACTIONS) + " |",
        "|---|---|" + "---|" * len(FRACTIONS),
    ]
    for task, rows in summary.items():
        for name, values in rows.items():
            cells = [f"{value:.3f}" for value in values] + [""] * (len(FRACTIONS) - len(values))
            lines.append(f"| {task} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "![review, then refit](figures/review_refit.png)", "", SECTION_END]
    return lines


def write_section(payload: dict, path: Path = RESULTS_MD) -> None:
    """Put the section into ``path``, replacing an earlier one."""
    text = path.read_text() if path.exists() else ""
    if SECTION_START in text:
        head, rest = text.split(SECTION_START, 1)
        tail = rest.split(SECTION_END, 1)[1] if SECTION_END in rest else ""
        text = head.rstrip("\n") + "\n\n" + tail.lstrip("\n")
    path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(section_markdown(payload)) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.review_refit", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[3])
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args(argv)
    from experiments.backends import ServiceBackend

    # The refit budget's estimate (every fit at max_iter) skipped the out-of-fold rankings of
    # the 10-class digits head at the default 60 s floor on this loaded machine; the curve
    # needs every ranking, so the embedded server gets a larger floor.
    os.environ.setdefault("RPS_LABEL_REFIT_MIN_S", str(REFIT_MIN_S))
    runs: list[dict] = []
    if os.path.exists(args.output):  # resume: keep finished (task, seed) pairs
        runs = json.loads(Path(args.output).read_text())["runs"]
    done = {(run["task"], run["seed"]) for run in runs}
    backend = ServiceBackend()
    try:
        for task in args.tasks:
            for seed in args.seeds:
                if (task, seed) in done:
                    continue
                started = time.perf_counter()
                problem = load_problem(task, seed)
                runs.append(review_refit_curve(backend.client, problem, task=task, seed=seed))
                runs[-1]["seconds"] = time.perf_counter() - started
                print(f"{task} seed {seed}: {runs[-1]['seconds']:.0f} s", flush=True)
                Path(args.output).write_text(json.dumps({"runs": runs}))
    finally:
        backend.close()
    summary = summarise(runs)
    payload = {
        "runs": runs,
        "summary": summary,
        "load_average": [round(value, 1) for value in os.getloadavg()],
    }
    Path(args.output).write_text(json.dumps(payload, indent=1))
    plot(summary)
    write_section(payload)
    print("\n".join(section_markdown(payload)))


if __name__ == "__main__":
    main()
