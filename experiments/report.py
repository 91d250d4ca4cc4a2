"""The markdown report, generated from the JSON results of one mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.plots import LABELS, plot_debugging, plot_image_explanations, plot_stability
from experiments.settings import Mode, TaskName

__all__ = ["write_report"]

TARGETS = {"german": (0.15, 0.26, 0.49), "cifar": (0.18, 0.35, 0.60)}
"""The issue's full-mode targets for LJE's fraction found at 10/20/40% checked."""
REPORT_FRACTIONS = (0.1, 0.2, 0.4)
TITLES = {
    "german": "German Credit / XGBoost",
    "cifar": "CIFAR-10 car vs horse / ResNet",
    "imdb": "IMDB / Bi-LSTM",
}


def _found_table(debugging: dict[str, Any], task: str) -> list[str]:
    fractions = debugging["fractions_checked"]
    columns = [
        fractions.index(min(fractions, key=lambda value: abs(value - wanted)))
        for wanted in REPORT_FRACTIONS
    ]
    lines = ["| ranking | found @10% | found @20% | found @40% |", "|---|---|---|---|"]
    for name, curve in debugging["summary"]["found"].items():
        cells = [f"{curve['mean'][column]:.3f} ± {curve['std'][column]:.3f}" for column in columns]
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    if task in TARGETS:
        lines.append(
            "| *target for LJE (full mode)* | "
            + " | ".join(f"≥ {value}" for value in TARGETS[task])
            + " |"
        )
    return lines


def _accuracy_table(debugging: dict[str, Any]) -> list[str]:
    checkpoints = debugging["retrain_checkpoints"]
    lines = [
        "| ranking | " + " | ".join(f"acc @{100 * value:.0f}%" for value in checkpoints) + " |",
        "|---|" + "---|" * len(checkpoints),
    ]
    for name, curve in debugging["summary"]["accuracy"].items():
        lines.append(
            f"| {LABELS[name]} | " + " | ".join(f"{value:.3f}" for value in curve["mean"]) + " |"
        )
    return lines


def _explanation_lines(explanations: dict[str, Any]) -> list[str]:
    class_level = explanations["class_level_jaccard_top5"]
    stability = explanations["stability_top10"]
    lines = [
        f"Model trained on clean labels: test accuracy {explanations['clean_model_test_accuracy']:.3f}; "
        f"{len(explanations['test_points'])} test points; LJE lr {explanations['lje_lr']:g}; "
        f"mean |residual| of LJE {explanations['mean_abs_residual_lje']:.3g}.",
        "",
        "| method | mean pairwise Jaccard of top-5 (same predicted class) | per class |",
        "|---|---|---|",
    ]
    for method, values in class_level.items():
        per_class = ", ".join(
            f"{label}: {value:.2f}" for label, value in values["per_class"].items()
        )
        lines.append(f"| {LABELS[method]} | {values['mean']:.3f} | {per_class} |")
    lines += ["", "| sweep | values | mean top-10 overlap between settings |", "|---|---|---|"]
    for method, sweep in stability.items():
        values = ", ".join(f"{value:g}" for value in sweep["values"])
        lines.append(
            f"| {LABELS[method]} {sweep['parameter']} | {values} | {sweep['mean_off_diagonal']:.3f} |"
        )
    return lines


def _record_text(record: Any, task: str) -> str:
    if not isinstance(record, dict):
        return "(no record)"
    if task == "imdb":
        return f"“{record.get('text', '')[:160]}…”"
    if task == "german":
        keys = (
            "existingchecking",
            "duration",
            "credithistory",
            "purpose",
            "creditamount",
            "savings",
            "age",
        )
        return "; ".join(f"{key} {record.get(key)}" for key in keys)
    return f"image #{record.get('index')}"


def _readable_lines(explanations: dict[str, Any], task: str, class_names: list[str]) -> list[str]:
    lines = []
    for table in explanations["readable"]:
        lines += [
            "",
            f"**Test point {table['test_index']}** (label {class_names[table['test_label']]}, "
            f"predicted {class_names[table['predicted_class']]}): {_record_text(table['test_record'], task)}",
            "",
            "| method | rank | train point | label | contribution | record |",
            "|---|---|---|---|---|---|",
        ]
        for method, points in table["methods"].items():
            for rank, point in enumerate(points, start=1):
                lines.append(
                    f"| {LABELS[method]} | {rank} | {point['train_index']} | {class_names[point['label']]} | "
                    f"{point['contribution']:.3g} | {_record_text(point['record'], task)} |"
                )
    return lines


def _task_section(result: dict[str, Any], figures: Path, report_dir: Path) -> list[str]:
    task = result["task"]
    environment = result["environment"]
    lines = [
        f"## {TITLES[task]}",
        "",
        f"{result['description']}. n_train = {result['n_train']}, n_test = {result['n_test']}; "
        f"ran on {environment['device']} ({environment['torch_threads']} torch thread(s), "
        f"{environment['cpu_count']} cores), backend: **{environment['backend']}**.",
        "",
    ]
    if "debugging" in result:
        debugging = result["debugging"]
        figure = plot_debugging(
            debugging, title=TITLES[task], path=figures / f"{task}_debugging.png"
        )
        lines += [
            f"### Data debugging ({int(100 * debugging['flip_fraction'])}% flipped, seeds {debugging['seeds']}, "
            f"LJE lr {debugging['lje_lr']:g}, {debugging['seconds']} s)",
            "",
            f"![debugging]({figure.relative_to(report_dir)})",
            "",
            *_found_table(debugging, task),
            "",
            f"Test accuracy after retraining ({debugging['retrain_scope']}) on labels corrected up to each "
            "checkpoint (mean over seeds):",
            "",
            *_accuracy_table(debugging),
            "",
        ]
    if "explanations" in result:
        explanations = result["explanations"]
        stability = plot_stability(
            explanations["stability_top10"],
            title=TITLES[task],
            path=figures / f"{task}_stability.png",
        )
        lines += [
            f"### Individual vs class-level explanations, stability ({explanations['seconds']} s)",
            "",
            *_explanation_lines(explanations),
            "",
            f"![stability]({stability.relative_to(report_dir)})",
            "",
            "### Readable explanations (top-3 positive points per method)",
        ]
        if task == "cifar":
            grid = plot_image_explanations(
                explanations["readable"],
                tuple(result["class_names"]),
                path=figures / "cifar_explanations.png",
            )
            lines += ["", f"![explanations]({grid.relative_to(report_dir)})"]
        lines += _readable_lines(explanations, task, result["class_names"]) + [""]
    return lines


def _leverage_section(path: Path) -> list[str]:
    """The German Credit score-part analysis of ``experiments.leverage`` (engine)."""
    if not path.exists():
        return []
    analysis = json.loads(path.read_text())
    lines = [
        "## What limits LJE's debugging curve on German Credit (engine, `python -m experiments.leverage`)",
        "",
        f"Same flips and boosters as above ({analysis['seeds']} seeds), ranked by each part of the binary "
        "self-score |θ*·φ̃_i − r_i φ̃_iᵀH⁻¹φ̃_i|/n and by LJE with Hessian damping:",
        "",
        "| ranking score | found @10% | found @20% | found @40% |",
        "|---|---|---|---|",
    ]
    for name, values in analysis["found"].items():
        escaped = name.replace("|", "\\|")
        lines.append(f"| {escaped} | " + " | ".join(f"{value:.3f}" for value in values) + " |")
    return lines + [""]


def write_report(mode: Mode, *, root: Path | None = None) -> Path:
    """Regenerate the report (and its figures) of ``mode`` from the JSON results present."""
    from experiments.run import EXPERIMENTS_DIR, output_paths

    root = root or EXPERIMENTS_DIR
    results_dir, figures, report = output_paths(Mode(mode), root)
    figures.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# RPS-LJE paper experiments, {Mode(mode).value} mode",
        "",
        f"Numbers from `python -m experiments.run all --task <task> --mode {Mode(mode).value}` "
        f"(JSON in `results/{Mode(mode).value}/`), report and figures generated from them; see "
        "experiments/README.md for the setup, the deviations from the paper and the findings.",
        "",
    ]
    for task in TaskName:
        path = results_dir / f"{task.value}.json"
        if path.exists():
            lines += _task_section(json.loads(path.read_text()), figures, report.parent)
    lines += _leverage_section(results_dir / "german_leverage.json")
    report.write_text("\n".join(lines) + "\n")
    if root == EXPERIMENTS_DIR:
        from experiments import review_refit
        from experiments.label_rankings import FULL_SUMMARY, SUMMARY, write_section

        summary = SUMMARY if Mode(mode) is Mode.QUICK else FULL_SUMMARY
        if summary.exists():  # the label-ranking section has its own command; keep it
            write_section(json.loads(summary.read_text()), report)
        if Mode(mode) is Mode.QUICK and review_refit.OUTPUT.exists():  # so has this curve
            payload = json.loads(review_refit.OUTPUT.read_text())
            if "summary" in payload:
                review_refit.write_section(payload, report)
    return report
