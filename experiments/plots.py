"""Figures of the report (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_debugging", "plot_image_explanations", "plot_stability"]

LABELS = {
    "lje": "RPS-LJE",
    "l2": "RPS-l2",
    "influence": "Influence",
    "cleanlab": "cleanlab",
    "random": "random",
}
STYLES = {"lje": "C3-", "l2": "C0--", "influence": "C2-.", "cleanlab": "C4:", "random": "C7-"}


def _band(axis, x, curve: dict[str, Any], name: str) -> None:
    mean, std = np.asarray(curve["mean"]), np.asarray(curve["std"])
    axis.plot(x, mean, STYLES[name], label=LABELS[name], marker="o", markersize=3)
    axis.fill_between(x, mean - std, mean + std, color=STYLES[name][:2], alpha=0.12)


def plot_debugging(result: dict[str, Any], *, title: str, path: Path) -> Path:
    """Found-vs-checked and accuracy-vs-checked, mean ± std over seeds (paper Fig. 4)."""
    summary = result["summary"]
    figure, (found_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    checked = 100 * np.asarray(result["fractions_checked"])
    checkpoints = 100 * np.asarray(result["retrain_checkpoints"])
    for name in summary["found"]:
        _band(found_axis, checked, summary["found"][name], name)
        _band(accuracy_axis, checkpoints, summary["accuracy"][name], name)
    found_axis.set(
        xlabel="training data checked (%)",
        ylabel="fraction of flipped labels found",
        title="Flipped labels found",
    )
    accuracy_axis.set(
        xlabel="training data checked (%)",
        ylabel="test accuracy after retraining",
        title=f"Retrained ({result['retrain_scope']})",
    )
    found_axis.legend(loc="lower right")
    for axis in (found_axis, accuracy_axis):
        axis.grid(alpha=0.3)
    figure.suptitle(
        f"{title}: {int(100 * result['flip_fraction'])}% flipped, {len(result['seeds'])} seeds"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_stability(result: dict[str, Any], *, title: str, path: Path) -> Path:
    """Top-10 overlap heat maps across LJE learning rates and RPS-l2 λ values."""
    figure, axes = plt.subplots(1, 2, figsize=(9, 4))
    for axis, method in zip(axes, ("lje", "l2"), strict=False):
        sweep = result[method]
        matrix = np.asarray(sweep["overlap"])
        axis.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        ticks = [f"{value:g}" for value in sweep["values"]]
        axis.set_xticks(range(len(ticks)), ticks)
        axis.set_yticks(range(len(ticks)), ticks)
        for (row, column), value in np.ndenumerate(matrix):
            axis.text(
                column,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                color="w" if value < 0.6 else "k",
            )
        name = "learning rate" if method == "lje" else "λ"
        axis.set_title(f"{LABELS[method]}: top-10 overlap across {name}")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _decode(data_url: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(
        Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB")
    )


def plot_image_explanations(
    readable: list[dict[str, Any]], class_names: tuple[str, ...], *, path: Path
) -> Path:
    """One row per (test point, method): the test image, then its top-3 positive images.

    The training images are decoded from the records the service returned.
    """
    methods = list(readable[0]["methods"])
    rows = len(readable) * len(methods)
    figure, axes = plt.subplots(rows, 4, figsize=(6.4, 1.7 * rows))
    for block, table in enumerate(readable):
        for offset, method in enumerate(methods):
            row = axes[block * len(methods) + offset]
            row[0].imshow(_decode(table["test_record"]["image"]))
            row[0].set_title(
                f"test {table['test_index']} ({class_names[table['predicted_class']]})\n{LABELS[method]}",
                fontsize=7,
            )
            for column, point in enumerate(table["methods"][method], start=1):
                row[column].imshow(_decode(point["record"]["image"]))
                row[column].set_title(
                    f"#{point['train_index']} y={class_names[point['label']]}\n"
                    f"c={point['contribution']:.3g}",
                    fontsize=7,
                )
            for axis in row:
                axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
