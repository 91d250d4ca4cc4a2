"""One engine pass for the rows of several requests, split back into per-request answers.

The batcher (``app.explain.batcher``) hands ``score_items`` every waiting item of one
(model, version, method). The rows are stacked into one ``representer.explain`` call: the
engine groups them by target class, so each class's data is read once per pass. Each item
gets exactly what a pass of its own would give: its rows, its targets, and its top-k
(a longer best-first list cut to k is the same list; ties are broken by index).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from app.core.metrics import EXPLAIN_ENGINE_SECONDS
from representer import Explanation, FittedState, InvalidInputError, explain

__all__ = ["ScoringItem", "score_items"]

Target = str | int


@dataclass(frozen=True)
class ScoringItem:
    """One request's share of a pass.

    Attributes
    ----------
    rows : ndarray of shape (m, d), float
        The φ rows to explain.
    targets : list of length m
        Per row, ``"predicted"`` or a class index.
    top_k : int
        Positive and negative points per row (already clamped to n).
    """

    rows: np.ndarray
    targets: list[Target]
    top_k: int


def score_items(
    state: FittedState,
    train_features: np.ndarray,
    items: Sequence[ScoringItem],
    *,
    scoring_slots: threading.BoundedSemaphore,
) -> list[list[Explanation] | BaseException]:
    """One outcome per item, in order: its explanations, or the error of its own rows.

    A pass that fails on some row (a submitted row whose contributions overflow, say) is
    retried item by item, so one bad request never fails the others that shared its pass.
    """
    rows = np.vstack([item.rows for item in items])  # (Σm, d)
    targets = [target for item in items for target in item.targets]
    top_k = max(item.top_k for item in items)
    try:
        with scoring_slots:
            started = time.perf_counter()
            explanations = explain(state, train_features, rows, target=targets, top_k=top_k)
            EXPLAIN_ENGINE_SECONDS.observe(time.perf_counter() - started)
    except InvalidInputError as error:
        if len(items) == 1:
            return [error]
        return [
            score_items(state, train_features, [item], scoring_slots=scoring_slots)[0]
            for item in items
        ]
    outcomes: list[list[Explanation] | BaseException] = []
    start = 0
    for item in items:
        stop = start + item.rows.shape[0]
        outcomes.append(
            [_first(explanation, item.top_k) for explanation in explanations[start:stop]]
        )
        start = stop
    return outcomes


def _first(explanation: Explanation, top_k: int) -> Explanation:
    """The explanation with its best-first positive and negative lists cut to ``top_k``."""
    return replace(
        explanation,
        positive_indices=explanation.positive_indices[:top_k],
        positive_contributions=explanation.positive_contributions[:top_k],
        negative_indices=explanation.negative_indices[:top_k],
        negative_contributions=explanation.negative_contributions[:top_k],
    )
