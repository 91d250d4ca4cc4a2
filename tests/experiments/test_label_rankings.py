"""The label-ranking experiment's bookkeeping: tables, the default's choice, the criterion."""

import numpy as np

from experiments.label_rankings import RANKINGS, choose_default, criterion, table


def fake_run(task: str, seed: int, *, best: str) -> dict:
    """A run of 100 points whose first 20 are flipped; ``best`` ranks them first."""
    flipped = np.zeros(100, dtype=bool)
    flipped[:20] = True
    scores = {
        name: np.random.default_rng([seed, position]).random(100).tolist()
        for position, name in enumerate(RANKINGS)
    }
    scores[best] = np.where(flipped, 2.0, 0.0).tolist()
    cleanlab = np.where(flipped, 1.0, 0.0)
    cleanlab[20:25] = 1.5  # five clean points ranked before the flips
    scores["cleanlab"] = cleanlab.tolist()
    return {"task": task, "seed": seed, "flipped": flipped.tolist(), "scores": scores}


def test_the_default_is_the_best_measured_label_ranking_and_the_criterion_sees_it():
    runs = [fake_run(task, seed, best="fusion") for task in ("german", "digits") for seed in (0, 1)]
    rows = table(runs, (0, 1))
    assert rows["german"]["fusion"][1] == 1.0  # all flips within the first 20%
    assert choose_default(rows) == "fusion"
    verdict = criterion(rows, "fusion")
    assert verdict["at_least_as_good_everywhere"] is True
    assert {"german 10%", "german 20%", "digits 10%"} <= set(verdict["strictly_better_at"])
    assert criterion(rows, "confidence_oof")["at_least_as_good_everywhere"] is False
