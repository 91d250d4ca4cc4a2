"""Which label-error ranking finds the most flipped labels? (engine, in-process)

For every task (German Credit / XGBoost, CIFAR car-horse / ResNet, IMDB / Bi-LSTM, all in
quick-mode sizes, and scikit-learn's digits / multinomial logistic regression) and seed:
flip 20% of the training labels (multi-class: to a uniformly chosen other class), train the
model on the noisy labels, and rank the training points by every ranking the service
offers (``lje``, ``l2``, ``influence`` self-scores; ``confidence``, ``confidence_oof``,
``cleanlab``, ``fusion``, ``adaptive`` from ``representer.label_errors``, the code the
worker runs, given the task's test set as the service stores it). Each (task, seed) trains
once; the trained problem is cached (``results/label_problems/``) and reused by every
ranking and by ``experiments.review_refit``.
Reported: the fraction of the flips found among the first 10 / 20 / 40% checked.

Seeds 0-2 choose the default ranking (best mean found-fraction at 10% and 20% over the
tasks) and fit the calibration of ``label_error_probability`` (a logistic regression of
"flipped" on the score, pooled over tasks); seeds 3-5 report.

``nice python -m experiments.label_rankings [--tasks ...] [--seeds 0 1 2 3 4 5]`` keeps the
per-point scores in ``results/label_rankings.json`` (large, not committed; reruns resume
from it), writes the tables to ``results/label_rankings_summary.json`` and their section into
experiments/RESULTS.md (``experiments.report`` keeps that section when it regenerates the
report).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import representer
from experiments.noise import flip_labels, found_curve
from experiments.settings import LJE_LR_DEBUGGING, REPO_ROOT, Mode, TaskName, run_settings
from representer.label_errors import (
    CALIBRATION,
    DEFAULT_RANKING,
    FUSION_IN_SAMPLE_WEIGHT,
    SIMULATED_DRAWS,
    SIMULATED_FLIP_FRACTION,
    LabelRanking,
    fusion_scores,
    label_rankings,
)

__all__ = ["main", "rank_task_seed"]

FRACTIONS = np.array([0.1, 0.2, 0.4])
FLIP_FRACTION = 0.2
TASKS = ("german", "cifar", "imdb", "digits")
METHODS = (representer.Method.LJE, representer.Method.L2, representer.Method.INFLUENCE)
RANKINGS = tuple(method.value for method in METHODS) + tuple(r.value for r in LabelRanking)
SELECTION_SEEDS = (0, 1, 2)
REPORT_SEEDS = (3, 4, 5)
FUSION_WEIGHTS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)
"""Candidates for ``fusion``'s in-sample weight w, chosen on the selection seeds."""
PROBLEMS = REPO_ROOT / "experiments" / "results" / "label_problems"
"""Cached trained problems, ``{task}_{seed}.npz`` (large, not committed)."""
OUTPUT = REPO_ROOT / "experiments" / "results" / "label_rankings.json"
SUMMARY = REPO_ROOT / "experiments" / "results" / "label_rankings_summary.json"
RESULTS_MD = REPO_ROOT / "experiments" / "RESULTS.md"
RESULTS_FULL_MD = REPO_ROOT / "experiments" / "RESULTS_FULL.md"
FULL_OUTPUT = REPO_ROOT / "experiments" / "results" / "full" / "label_rankings.json"
FULL_SUMMARY = REPO_ROOT / "experiments" / "results" / "full" / "label_rankings_summary.json"
SECTION_START, SECTION_END = "<!-- label-rankings -->", "<!-- /label-rankings -->"


@dataclass(frozen=True)
class Problem:
    """A trained head over stored features, with noisy labels and which were flipped."""

    head: representer.LinearHead
    features: np.ndarray  # (n, d) float32
    noisy: np.ndarray  # (n,) int64
    flipped: np.ndarray  # (n,) bool
    clean: np.ndarray  # (n,) int64, the labels before flipping
    test_features: np.ndarray  # (m, d) float32
    test_labels: np.ndarray  # (m,) int64

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            weights=self.head.weights,
            bias=self.head.bias,
            features=self.features,
            noisy=self.noisy,
            flipped=self.flipped,
            clean=self.clean,
            test_features=self.test_features,
            test_labels=self.test_labels,
        )

    @classmethod
    def load(cls, path: Path) -> Problem:
        with np.load(path) as stored:
            head = representer.LinearHead(stored["weights"], stored["bias"])
            return cls(
                head,
                stored["features"],
                stored["noisy"],
                stored["flipped"],
                stored["clean"],
                stored["test_features"],
                stored["test_labels"],
            )


def _flip_multiclass(labels: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[
        rng.choice(len(labels), size=int(round(FLIP_FRACTION * len(labels))), replace=False)
    ] = True
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, k, size=flipped.sum())) % k
    return noisy.astype(np.int64), flipped


def _digits(seed: int) -> Problem:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    inputs, labels = load_digits(return_X_y=True)
    # A fixed stratified 80/20 split: the rankings use the training part, the
    # review-then-refit curve measures accuracy on the held-out part.
    train_rows, test_rows = train_test_split(
        np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels
    )
    alive = inputs[train_rows].std(axis=0) > 0  # constant pixels: a singular head Hessian
    features = (inputs[:, alive] / 16.0).astype(np.float32)
    labels = labels.astype(np.int64)
    clean = labels[train_rows]
    noisy, flipped = _flip_multiclass(clean, 10, seed)
    model = LogisticRegression(C=1.0, max_iter=1000).fit(features[train_rows], noisy)
    head = representer.LinearHead(model.coef_, model.intercept_)
    return Problem(
        head,
        features[train_rows],
        noisy,
        flipped,
        clean,
        features[test_rows],
        labels[test_rows],
    )


def _paper_task(name: str, seed: int, mode: Mode) -> Problem:
    import torch

    from experiments.data import load_task
    from experiments.tasks import build_task
    from experiments.tasks.base import LinearRegistration
    from representer.adapters import BoosterEmbedding

    settings = run_settings(TaskName(name), mode)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    task = build_task(load_task(settings), settings, device=device)
    noisy, flipped = flip_labels(task.data.train_labels, fraction=FLIP_FRACTION, seed=seed)
    model = task.fit(noisy, seed=seed)
    registration = task.registration(model)
    clean, test_labels = task.data.train_labels, task.data.test_labels
    if isinstance(registration, LinearRegistration):
        return Problem(
            registration.head,
            registration.train_features,
            noisy,
            flipped,
            clean,
            registration.test_features,
            test_labels,
        )
    embedding = BoosterEmbedding.from_booster(model)
    features = embedding.transform(task.data.train_inputs).astype(np.float32)
    test_features = embedding.transform(task.data.test_inputs).astype(np.float32)
    return Problem(embedding.head, features, noisy, flipped, clean, test_features, test_labels)


def load_problem(
    task: str, seed: int, *, mode: Mode = Mode.QUICK, cache: Path = PROBLEMS
) -> Problem:
    """The trained (task, seed) problem, from ``cache`` when it was built before (one
    training per seed, reused by every ranking and by the review-then-refit curve).
    Digits is the same in both modes."""
    suffix = "" if Mode(mode) is Mode.QUICK or task == "digits" else "_full"
    path = cache / f"{task}{suffix}_{seed}.npz"
    if path.exists():
        return Problem.load(path)
    problem = _digits(seed) if task == "digits" else _paper_task(task, seed, Mode(mode))
    problem.save(path)
    return problem


def rank_task_seed(
    task: str, seed: int, *, mode: Mode = Mode.QUICK, method_scores: dict | None = None
) -> dict:
    """Scores of every ranking and the flips for one (task, seed); JSON-ready lists.

    ``method_scores``: the ``lje`` / ``l2`` / ``influence`` scores of an earlier run of the
    same cached problem, kept as they are (only the label rankings are recomputed)."""
    started = time.perf_counter()
    problem = load_problem(task, seed, mode=mode)
    scores: dict[str, list[float]] = {}
    for method in METHODS if method_scores is None else ():
        config = (
            representer.LJEConfig(lr=LJE_LR_DEBUGGING) if method is representer.Method.LJE else None
        )
        state = representer.fit(
            problem.head, problem.features, problem.noisy, method=method, config=config
        )
        scores[method.value] = np.asarray(state.self_scores, dtype=np.float64).tolist()
    if method_scores is not None:
        scores.update({method.value: method_scores[method.value] for method in METHODS})
    computed = label_rankings(
        problem.head,
        problem.features,
        problem.noisy,
        test_features=problem.test_features,
        test_labels=problem.test_labels,
    )
    for ranking, values in computed.rankings.items():
        scores[ranking.value] = values.scores.tolist()
    return {
        "task": task,
        "seed": seed,
        "n_train": len(problem.noisy),
        "flipped": problem.flipped.tolist(),
        "scores": scores,
        "adaptive_view": computed.adaptive_view.value if computed.adaptive_view else None,
        "test_log_loss": computed.test_log_loss,
        "simulated_found": computed.simulated_found,
        "seconds": time.perf_counter() - started,
    }


def found(run: dict, ranking: str) -> np.ndarray:
    """Fraction of the flips among the first 10 / 20 / 40% by ``ranking``, shape (3,)."""
    order = np.argsort(-np.asarray(run["scores"][ranking]), kind="stable")
    return found_curve(order, np.asarray(run["flipped"]), FRACTIONS)


def seeds_used(runs: list[dict], seeds: tuple[int, ...]) -> dict[str, list[int]]:
    """task -> the seeds of ``seeds`` that ran (what each row of ``table`` averages)."""
    return {
        task: sorted(run["seed"] for run in runs if run["task"] == task and run["seed"] in seeds)
        for task in sorted({run["task"] for run in runs}, key=TASKS.index)
        if any(run["task"] == task and run["seed"] in seeds for run in runs)
    }


def table(runs: list[dict], seeds: tuple[int, ...]) -> dict[str, dict[str, list[float]]]:
    """task -> ranking -> mean found fraction at 10 / 20 / 40% over ``seeds``."""
    result: dict[str, dict[str, list[float]]] = {}
    for task in sorted({run["task"] for run in runs}, key=TASKS.index):
        chosen = [run for run in runs if run["task"] == task and run["seed"] in seeds]
        if chosen:
            result[task] = {
                name: np.mean([found(run, name) for run in chosen], axis=0).tolist()
                for name in RANKINGS
            }
    return result


def shortfall(rows: dict[str, dict[str, list[float]]], name: str) -> float:
    """The largest amount by which ``name`` finds fewer flips than the better of
    ``confidence`` and ``cleanlab`` (any task, 10% or 20% checked); negative: it is ahead."""
    return max(
        max(by_name["confidence"][i], by_name["cleanlab"][i]) - by_name[name][i]
        for by_name in rows.values()
        for i in (0, 1)
    )


def choose_default(selection: dict[str, dict[str, list[float]]]) -> str:
    """The label ranking with the smallest worst shortfall against the better of
    ``confidence`` and ``cleanlab``; ties by the mean found-fraction at 10% and 20%."""
    return min(
        (ranking.value for ranking in LabelRanking),
        key=lambda name: (
            round(shortfall(selection, name), 6),
            -np.mean([selection[t][name][:2] for t in selection]),
        ),
    )


def with_fusion_weight(runs: list[dict], weight: float) -> list[dict]:
    """The runs with ``fusion`` recomputed for in-sample weight ``weight`` (engine formula)."""
    updated = []
    for run in runs:
        in_sample = 1.0 - np.asarray(run["scores"]["confidence"])
        out_of_fold = 1.0 - np.asarray(run["scores"]["confidence_oof"])
        fused = fusion_scores(in_sample, out_of_fold, weight).tolist()
        updated.append({**run, "scores": {**run["scores"], "fusion": fused}})
    return updated


def choose_fusion_weight(runs: list[dict]) -> float:
    """The w of FUSION_WEIGHTS with the smallest worst shortfall on the selection seeds."""
    return min(
        FUSION_WEIGHTS,
        key=lambda w: shortfall(table(with_fusion_weight(runs, w), SELECTION_SEEDS), "fusion"),
    )


def calibration(runs: list[dict], seeds: tuple[int, ...]) -> dict[str, tuple[float, float]]:
    """(a, b) of P(flipped) = sigmoid(a + b · score) per label ranking, pooled over tasks."""
    from sklearn.linear_model import LogisticRegression

    chosen = [run for run in runs if run["seed"] in seeds]
    fitted = {}
    for ranking in LabelRanking:
        if ranking is LabelRanking.ADAPTIVE:  # takes its view's calibration
            continue
        scores = np.concatenate([run["scores"][ranking.value] for run in chosen])[:, None]
        flipped = np.concatenate([run["flipped"] for run in chosen])
        model = LogisticRegression(C=1e6, max_iter=1000).fit(scores, flipped)
        fitted[ranking.value] = (
            round(float(model.intercept_[0]), 3),
            round(float(model.coef_[0, 0]), 3),
        )
    return fitted


def criterion(report: dict[str, dict[str, list[float]]], default: str) -> dict[str, object]:
    """The issue's test: >= max(confidence, cleanlab) on every task at 10% and 20% checked,
    and > both on at least one (task, fraction)."""
    ties_or_better, strictly_better = True, []
    for task, rows in report.items():
        for position, fraction in enumerate(("10%", "20%")):
            best = max(rows["confidence"][position], rows["cleanlab"][position])
            ties_or_better &= rows[default][position] >= best - 1e-12
            if rows[default][position] > best + 1e-12:
                strictly_better.append(f"{task} {fraction}")
    return {"at_least_as_good_everywhere": ties_or_better, "strictly_better_at": strictly_better}


def markdown(rows: dict[str, dict[str, list[float]]], default: str) -> str:
    lines = ["| task | ranking | 10% | 20% | 40% |", "|---|---|---|---|---|"]
    for task, by_name in rows.items():
        for name in RANKINGS:
            mark = " (default)" if name == default else ""
            values = " | ".join(f"{value:.3f}" for value in by_name[name])
            lines.append(f"| {task} | {name}{mark} | {values} |")
    return "\n".join(lines)


def section_markdown(summary: dict) -> list[str]:
    """The RESULTS.md section of a summary (between the section markers)."""
    verdict = summary["criterion_on_report_seeds"] or {}
    met = verdict.get("at_least_as_good_everywhere") and verdict.get("strictly_better_at")
    lines = [
        SECTION_START,
        "## Label-error rankings (`python -m experiments.label_rankings`, engine)",
        "",
        "20% of the training labels flipped (digits: to another class chosen uniformly), the "
        "model trained on the noisy labels, every ranking computed by the code the worker runs "
        "(`representer.label_errors`, `representer.fit`). Fraction of the flipped labels found "
        "among the first 10 / 20 / 40% of the training points checked, mean over seeds. "
        f"Mode: {summary.get('mode', 'quick')}. German Credit (XGBoost, n=800), CIFAR car/horse "
        f"(ResNet, n={_size('cifar', summary)}), IMDB (Bi-LSTM, n={_size('imdb', summary)}), "
        "scikit-learn digits (multinomial logistic regression on "
        "the pixels, n=1437: a fixed stratified 80/20 split, the other 360 images are its test "
        "set). Networks trained with one torch thread. "
        f"Tasks measured: {', '.join(summary['report'] or summary['selection'])}. "
        f"Load average (2 cores) at the end of the run: {summary['load_average']}. "
        + summary.get("note", ""),
        "",
        f"**Default (`method` omitted): `{summary['default']}`** (the service's "
        "`representer.label_errors.DEFAULT_RANKING`): on seeds 0-2, the label ranking whose "
        "worst shortfall against the better of `confidence` and `cleanlab` (any task, 10% or "
        "20% checked) is smallest"
        + _chosen_sentence(summary)
        + " `fusion` = 1 − (w · P(label) + (1 − w) · "
        f"P_oof(label)) with w = {summary['fusion_in_sample_weight']}" + _fusion_sentence(summary),
        "",
        "The issue's criterion on seeds 3-5 (at least as good as the better of `confidence` and "
        "`cleanlab` on every task at 10% and 20%, better than both somewhere): "
        + ("**met**" if met else "**not met**")
        + f" (at least as good everywhere: {verdict.get('at_least_as_good_everywhere')}; "
        f"better than both at: {', '.join(verdict.get('strictly_better_at') or []) or 'nowhere'}).",
        "",
        _adaptive_sentence(summary),
        "",
        "`label_error_probability` = sigmoid(a + b · score), (a, b) "
        + (
            "of the engine (fitted on the quick-mode seeds 0-2): "
            if summary.get("calibration_source") == "engine"
            else "fitted by logistic regression of 'flipped' on the score over every task of "
            "this run's seeds 0-2"
            + (
                " (the service keeps the quick-mode fit, `representer.label_errors.CALIBRATION`): "
                if summary.get("mode") == Mode.FULL.value
                else ": "
            )
        )
        + ", ".join(f"`{name}` ({a}, {b})" for name, (a, b) in summary["calibration"].items())
        + ".",
        "",
    ]
    for title, key in (("Report, seeds 3-5", "report"), ("Selection, seeds 0-2", "selection")):
        if summary.get(key):
            used = summary.get("seeds_used", {}).get(key)
            seeds = (
                " Seeds per task: "
                + "; ".join(f"{task} {list(s)}" for task, s in used.items())
                + "."
                if used
                else ""
            )
            lines += [f"### {title}", "", *([seeds.strip(), ""] if seeds else [])]
            lines += [markdown(summary[key], summary["default"]), ""]
    return [*lines, SECTION_END]


def _adaptive_sentence(summary: dict) -> str:
    views = summary.get("adaptive_views", {})
    return (
        "`adaptive`: the view whose model finds more flipped labels on the stored test set. "
        f"{SIMULATED_DRAWS} times, {SIMULATED_FLIP_FRACTION:.0%} of the test labels are flipped "
        "(seeds 0-19; to another class drawn uniformly), the test points ranked by 1 − P(given "
        "label) under the registered head (the `confidence` view) and under a logistic head "
        "refit on all the training features (the `confidence_oof` view), and the flips found "
        "among the first 10% and 20% counted; the better model's view is taken when the mean "
        "difference is at least its standard deviation over the draws, otherwise the mean of "
        "both views' percentile ranks (`blend`). The view it took, per task and seed (simulated "
        "flips found by the head / the refit, ± the standard deviation of the difference; test "
        "log-loss of the head / the refit): "
        + ", ".join(
            f"{key}: {view}"
            + _evidence(
                summary["simulated_found"].get(key), summary.get("test_log_loss", {}).get(key)
            )
            for key, view in views.items()
        )
        + "."
    )


def _evidence(found: dict | None, losses: dict | None) -> str:
    parts = []
    if found and "head" in found:
        parts.append(f"{found['head']:.3f} / {found['refit']:.3f} ± {found['difference_sd']:.3f}")
    if losses and "head" in losses and "refit" in losses:
        parts.append(f"{losses['head']:.3f} / {losses['refit']:.3f}")
    return f" ({'; '.join(parts)})" if parts else ""


def _fusion_sentence(summary: dict) -> str:
    chosen = summary["fusion_weight_chosen_on_selection_seeds"]
    engine = "the engine's weight, chosen on the quick-mode seeds 0-2 by the same rule"
    if chosen is None:
        return f", {engine} (this run has no selection seeds)."
    if chosen == summary["fusion_in_sample_weight"]:
        return f", {engine}; this run's seeds 0-2 choose it too from {list(FUSION_WEIGHTS)}."
    return f", {engine}; this run's seeds 0-2 would choose {chosen} from {list(FUSION_WEIGHTS)}."


def _chosen_sentence(summary: dict) -> str:
    chosen = summary["chosen_on_selection_seeds"]
    if chosen is None:
        return " (chosen on the quick-mode seeds 0-2; this run has no selection seeds)."
    if chosen == summary["default"]:
        return f"; this run's seeds 0-2 choose it too (`{chosen}`)."
    return f"; this run's seeds 0-2 would choose `{chosen}`, not the service's default."


def _size(task: str, summary: dict) -> str:
    n_train = run_settings(TaskName(task), Mode(summary.get("mode", "quick"))).n_train
    return "all" if n_train is None else str(n_train)


def write_section(summary: dict, path: Path = RESULTS_MD) -> None:
    """Put the section into ``path``, replacing an earlier one."""
    text = path.read_text() if path.exists() else ""
    section = "\n".join(section_markdown(summary))
    if SECTION_START in text and SECTION_END in text.split(SECTION_START, 1)[1]:
        head, rest = text.split(SECTION_START, 1)
        tail = rest.split(SECTION_END, 1)[1]
        path.write_text(head + section + tail)  # in place: the other sections keep their order
        return
    if SECTION_START in text:  # a section without its end marker: drop it, append anew
        text = text.split(SECTION_START, 1)[0]
    path.write_text(text.rstrip("\n") + "\n\n" + section + "\n")


def _refreshed(run: dict, mode: Mode) -> dict:
    """``run`` with its label rankings recomputed; ``seconds`` stays the original run's
    (training included), the recomputation's time is ``refresh_seconds``."""
    fresh = rank_task_seed(run["task"], run["seed"], mode=mode, method_scores=run["scores"])
    return {**fresh, "seconds": run["seconds"], "refresh_seconds": fresh["seconds"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.label_rankings", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[*SELECTION_SEEDS, *REPORT_SEEDS])
    parser.add_argument(
        "--mode",
        default=Mode.QUICK.value,
        choices=[mode.value for mode in Mode],
        help="quick: CIFAR 1000 / IMDB 1200 training points; full: CIFAR 10000 (all), IMDB "
        "10000, more epochs (experiments.settings); full writes under results/full/ and into "
        "RESULTS_FULL.md",
    )
    parser.add_argument("--output", default=None, help="per-point scores (default by mode)")
    parser.add_argument("--note", default="", help="a sentence for the RESULTS.md section")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: two threads on a loaded 2-core machine trained IMDB's "
        "Bi-LSTM about 4x slower, measured 3 s against 0.7 s per batch)",
    )
    parser.add_argument(
        "--refresh-label-rankings",
        action="store_true",
        help="recompute the label rankings of finished (task, seed) pairs from their cached "
        "problems, keeping the methods' scores",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    mode = Mode(args.mode)
    quick = mode is Mode.QUICK
    output = args.output or str(OUTPUT if quick else FULL_OUTPUT)
    summary_path = SUMMARY if quick else FULL_SUMMARY
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    if os.path.exists(output):  # resume: keep finished (task, seed) pairs
        with open(output) as handle:
            runs = json.load(handle)["runs"]
    if args.refresh_label_rankings:
        runs = [
            _refreshed(run, mode)
            if run["task"] in args.tasks and run["seed"] in args.seeds
            else run
            for run in runs
        ]
        with open(output, "w") as handle:  # the recomputed rankings are what later runs resume
            json.dump({"runs": runs}, handle)
    done = {(run["task"], run["seed"]) for run in runs}
    for task in args.tasks:
        for seed in args.seeds:
            if (task, seed) in done:
                continue
            runs.append(rank_task_seed(task, seed, mode=mode))
            print(f"{task} seed {seed}: {runs[-1]['seconds']:.0f} s", flush=True)
            with open(output, "w") as handle:
                json.dump({"runs": runs}, handle)
    chosen_runs = [run for run in runs if run["seed"] in SELECTION_SEEDS]
    # The tables show what the service computes: the engine's fusion weight. The weight this
    # run's seeds 0-2 would choose is reported beside it (and is how the engine's was chosen,
    # on the quick-mode seeds); without selection seeds the engine's calibration stands too.
    chosen_weight = choose_fusion_weight(runs) if chosen_runs else None
    weight = FUSION_IN_SAMPLE_WEIGHT
    if chosen_weight is not None and chosen_weight != weight:
        print(f"seeds 0-2 of this run choose fusion weight {chosen_weight} (engine: {weight})")
    runs = with_fusion_weight(runs, weight)
    selection, report = table(runs, SELECTION_SEEDS), table(runs, REPORT_SEEDS)
    chosen = choose_default(selection) if selection else None
    default = DEFAULT_RANKING.value  # what the service answers when no method is named
    if chosen is not None and chosen != default:
        print(f"seeds 0-2 of this run choose {chosen}; the engine's default is {default}")
    summary = {
        "mode": mode.value,
        "default": default,
        "chosen_on_selection_seeds": chosen,
        "fusion_in_sample_weight": weight,
        "fusion_weight_chosen_on_selection_seeds": chosen_weight,
        "calibration": (
            calibration(runs, SELECTION_SEEDS)
            if chosen_runs
            else {ranking.value: list(ab) for ranking, ab in CALIBRATION.items()}
        ),
        "calibration_source": "fitted on this run's seeds 0-2" if chosen_runs else "engine",
        "criterion_on_report_seeds": criterion(report, default) if report else None,
        "load_average": [round(value, 1) for value in os.getloadavg()],
        "seeds_used": {
            "selection": seeds_used(runs, SELECTION_SEEDS),
            "report": seeds_used(runs, REPORT_SEEDS),
        },
        "selection": selection,
        "report": report,
        "seconds": {f"{run['task']} {run['seed']}": round(run["seconds"]) for run in runs},
        "adaptive_views": {
            f"{run['task']} {run['seed']}": run.get("adaptive_view") for run in runs
        },
        "test_log_loss": {
            f"{run['task']} {run['seed']}": {
                name: round(value, 4) for name, value in (run.get("test_log_loss") or {}).items()
            }
            for run in runs
        },
        "simulated_found": {
            f"{run['task']} {run['seed']}": {
                name: round(value, 4) for name, value in (run.get("simulated_found") or {}).items()
            }
            for run in runs
        },
        "note": args.note,
    }
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=1))
    write_section(summary, RESULTS_MD if mode is Mode.QUICK else RESULTS_FULL_MD)
    print("\n".join(section_markdown(summary)))


if __name__ == "__main__":
    main()
