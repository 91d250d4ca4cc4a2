"""Label-error rankings of the training points, from the head, the features and the labels.

Each ranking orders the training points by a ``score`` (larger = more likely mislabelled)
and gives every point a ``suggested_label`` (the most probable class other than the given
one) and a ``label_error_probability`` in [0, 1]:

* ``confidence``: 1 − P(y_i | φ_i) under the user's head (in-sample self-confidence).
* ``confidence_oof``: 1 − P(y_i | φ_i) under heads refit on the other K−1 folds of the
  stored features (``representer.logistic``): the point's own label did not pull it.
* ``cleanlab``: confident learning (Northcutt et al.) through the ``cleanlab`` library on
  the out-of-fold probabilities: the points it flags first, then the others; within each
  group by out-of-fold self-confidence (score = flagged + 1 − P_oof(y_i)).
* ``fusion``: the ensemble of both views, 1 − (w · P(y_i) + (1 − w) · P_oof(y_i)): in-sample
  confidence sees what the network learnt from the point, out-of-fold confidence sees
  whether the other points agree. The weight w (``FUSION_IN_SAMPLE_WEIGHT``) was chosen on
  seeds 0-2 of the experiments as the one whose worst shortfall against the better of
  ``confidence`` and ``cleanlab`` (any task, 10% or 20% checked) is smallest.
* ``adaptive`` (the default): the view whose model finds more flipped labels on the stored
  test set. The user's head and a head refit on all the training features (the model
  behind the out-of-fold view) are both asked the question the ranking answers, on data
  neither was trained on: ``SIMULATED_DRAWS`` times, ``SIMULATED_FLIP_FRACTION`` of the test
  labels are flipped (to another class drawn uniformly), the test points are ranked by
  1 − P(given label) under each model, and the flips found among the first 10% and 20% are
  counted. If the mean difference (head − refit) over the draws is at least its standard
  deviation over the draws, the better model's view is taken (``confidence`` or
  ``confidence_oof``); within it, the score is the mean of the two views' percentile ranks.
  Without test labels it is ``confidence``. No fixed blend works everywhere: the in-sample
  view wins where the user's head ranks better than a refit on its features (German Credit's
  XGBoost, whose tree embedding a refit overfits; digits; the CIFAR ResNet trained for 12
  epochs), the out-of-fold view where the refit ranks better (the CIFAR ResNet trained for 4
  epochs, whose head is undertrained; IMDB at 10,000 reviews). The test log-loss of the two
  models, the earlier criterion, is still reported: it preferred the refit on full-size
  CIFAR, where the head's own confidence finds more flips.

``label_error_probability`` = sigmoid(a + b · score) with (a, b) per ranking fitted by
logistic regression on the flipped labels of ``python -m experiments.label_rankings``
(seeds 0-2, 20% of the labels flipped; see experiments/RESULTS.md). It is calibrated for
data with a noise rate like the experiments' 20%; read it as a relative likelihood
elsewhere. ``adaptive`` gives the probability of the view it took (a blend: the mean of
the two views' probabilities).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from representer.head import LinearHead
from representer.logistic import (
    RefitConfig,
    RefitTimeout,
    class_probabilities,
    estimate_refit_seconds,
    fit_logistic_head,
    out_of_fold_probabilities,
)

__all__ = [
    "LabelRanking",
    "LabelScores",
    "LabelRankings",
    "DEFAULT_RANKING",
    "CALIBRATION",
    "label_rankings",
    "scores_from_probabilities",
    "fusion_scores",
    "FUSION_IN_SAMPLE_WEIGHT",
    "choose_ranking",
    "AdaptiveView",
    "choose_view",
    "SIMULATED_FLIP_FRACTION",
    "SIMULATED_DRAWS",
    "SIMULATED_CHECKED",
    "simulated_flips_found",
    "percentile_ranks",
]


class LabelRanking(str, Enum):
    """The label-error rankings computed at precompute."""

    CONFIDENCE = "confidence"
    CONFIDENCE_OOF = "confidence_oof"
    CLEANLAB = "cleanlab"
    FUSION = "fusion"
    ADAPTIVE = "adaptive"


class AdaptiveView(str, Enum):
    """Which view ``adaptive`` took, and why."""

    IN_SAMPLE = "in_sample"
    """The user's head finds more simulated test flips than the refit, by at least the
    standard deviation of the difference over the draws."""
    OUT_OF_FOLD = "out_of_fold"
    """The refit head finds more simulated test flips, by at least that margin."""
    BLEND = "blend"
    """Within the margin: the mean of both views' percentile ranks."""
    NO_TEST_LABELS = "no_test_labels"
    """No labelled test set to compare on: the in-sample view."""


SIMULATED_FLIP_FRACTION = 0.2
"""Share of the test labels ``adaptive`` flips to compare the two models (the experiments'
noise rate, which the calibration also assumes)."""
SIMULATED_DRAWS = 20
"""Independent flip draws (seeds 0..19, so the choice is deterministic)."""
SIMULATED_CHECKED = (0.1, 0.2)
"""Shares of the test set checked; the comparison uses the mean of the flips found at each."""


FUSION_IN_SAMPLE_WEIGHT = 0.7
"""w of ``fusion`` (experiments.label_rankings, seeds 0-2)."""

DEFAULT_RANKING = LabelRanking.ADAPTIVE
"""The ranking ``/debug/suspicious`` answers when no method is named (chosen by
experiments.label_rankings on seeds 0-2; see experiments/RESULTS.md)."""

FALLBACK_ORDER = (
    LabelRanking.ADAPTIVE,
    LabelRanking.FUSION,
    LabelRanking.CLEANLAB,
    LabelRanking.CONFIDENCE_OOF,
    LabelRanking.CONFIDENCE,
)

CALIBRATION: dict[LabelRanking, tuple[float, float]] = {
    LabelRanking.CONFIDENCE: (-5.625, 8.653),
    LabelRanking.CONFIDENCE_OOF: (-3.868, 5.074),
    LabelRanking.CLEANLAB: (-2.877, 2.002),
    LabelRanking.FUSION: (-5.192, 7.855),
}
"""(a, b) of label_error_probability = sigmoid(a + b · score), per ranking (``adaptive``
takes its view's): logistic
regression of "flipped" on the score, pooled over German Credit, CIFAR car/horse, IMDB and
digits, seeds 0-2, 20% flipped (experiments.label_rankings; experiments/RESULTS.md)."""

DEFAULT_REFIT_MEMORY_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class LabelScores:
    """One ranking's numbers for every training point.

    Attributes
    ----------
    scores : ndarray of shape (n,), float64
        Larger = more likely mislabelled.
    suggested_label : ndarray of shape (n,), int64
    label_error_probability : ndarray of shape (n,), float64 in [0, 1]
    """

    scores: np.ndarray
    suggested_label: np.ndarray
    label_error_probability: np.ndarray


@dataclass(frozen=True)
class LabelRankings:
    """What ``label_rankings`` computed, and why any ranking was skipped."""

    rankings: dict[LabelRanking, LabelScores]
    skipped: dict[LabelRanking, str] = field(default_factory=dict)
    refit_seconds: float = 0.0
    adaptive_view: AdaptiveView | None = None
    """The view ``adaptive`` took (None: not computed)."""
    test_log_loss: dict[str, float] = field(default_factory=dict)
    """Mean test log-loss of the ``head`` and of the ``refit`` head, when compared."""
    simulated_found: dict[str, float] = field(default_factory=dict)
    """``adaptive``'s comparison: mean share of simulated test flips found by the ``head``
    and the ``refit``, and ``difference_sd`` (see ``choose_view``)."""


def calibrated_probability(ranking: LabelRanking, scores: np.ndarray) -> np.ndarray:
    """sigmoid(a + b · score), shape (n,) float64 in [0, 1]."""
    a, b = CALIBRATION[ranking]
    return 1.0 / (1.0 + np.exp(-(a + b * np.asarray(scores, dtype=np.float64))))


def _suggested(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The most probable class other than the given one, shape (n,) int64."""
    others = probabilities.copy()  # (n, k)
    others[np.arange(len(labels)), labels] = -np.inf
    return np.argmax(others, axis=1).astype(np.int64)


def _given(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return probabilities[np.arange(len(labels)), labels]  # (n,)


def cleanlab_flags(labels: np.ndarray, out_of_fold: np.ndarray) -> np.ndarray:
    """cleanlab's ``find_label_issues`` on out-of-fold probabilities, shape (n,) bool."""
    from cleanlab.filter import find_label_issues

    probabilities = np.clip(out_of_fold, 1e-12, 1.0)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    # n_jobs=1: cleanlab's multiprocessing would fork a threaded server or worker process.
    return np.asarray(find_label_issues(labels, probabilities, n_jobs=1), dtype=bool)


def scores_from_probabilities(
    in_sample: np.ndarray,
    out_of_fold: np.ndarray | None,
    labels: np.ndarray,
    *,
    flagged: np.ndarray | None = None,
) -> dict[LabelRanking, np.ndarray]:
    """The score of every ranking the inputs allow, each (n,) float64.

    in_sample, out_of_fold : (n, k) float64 class probabilities; labels (n,) int64;
    flagged : (n,) bool, cleanlab's label issues (no ``cleanlab`` ranking without it).
    """
    scores = {LabelRanking.CONFIDENCE: 1.0 - _given(in_sample, labels)}
    if out_of_fold is not None:
        oof_given = _given(out_of_fold, labels)  # (n,)
        scores[LabelRanking.CONFIDENCE_OOF] = 1.0 - oof_given
        scores[LabelRanking.FUSION] = fusion_scores(_given(in_sample, labels), oof_given)
        if flagged is not None:
            scores[LabelRanking.CLEANLAB] = flagged + (1.0 - oof_given)
    return scores


def fusion_scores(
    in_sample_given: np.ndarray,
    out_of_fold_given: np.ndarray,
    weight: float = FUSION_IN_SAMPLE_WEIGHT,
) -> np.ndarray:
    """1 − (w · P(y_i) + (1 − w) · P_oof(y_i)), shape (n,) float64, from the two (n,) arrays."""
    return 1.0 - (weight * in_sample_given + (1.0 - weight) * out_of_fold_given)


def _refit_skip_reason(
    features: np.ndarray, labels: np.ndarray, num_classes: int, config: RefitConfig, budget_s: float
) -> str | None:
    counts = np.bincount(labels, minlength=num_classes)
    if counts[counts > 0].min() < config.folds:
        return f"a class has fewer than {config.folds} training points, too few for {config.folds}-fold refits"
    needed = 2 * features.shape[0] * features.shape[1] * 8  # the float64 standardised copies
    if needed > DEFAULT_REFIT_MEMORY_BYTES:
        return f"the refits would need {needed / 2**30:.1f} GiB, over {DEFAULT_REFIT_MEMORY_BYTES / 2**30:.0f} GiB"
    estimate = estimate_refit_seconds(features, num_classes, config)
    if estimate > budget_s:
        return f"the {config.folds + 1} head refits were estimated at {estimate:.1f} s, over the refit budget of {budget_s:.1f} s"
    return None


def _mean_log_loss(head: LinearHead, features: np.ndarray, labels: np.ndarray) -> float:
    probabilities = class_probabilities(head, features)  # (m, k)
    return float(-np.mean(np.log(np.clip(_given(probabilities, labels), 1e-300, None))))


def simulated_flips_found(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per draw, the mean share of simulated flips found at ``SIMULATED_CHECKED``.

    probabilities : (m, k) class probabilities of one model on the test set;
    labels : (m,) int64 true test labels. Returns shape (SIMULATED_DRAWS,) float64.
    """
    m, k = probabilities.shape
    n_flips = max(int(np.rint(SIMULATED_FLIP_FRACTION * m)), 1)
    checked = np.rint(np.asarray(SIMULATED_CHECKED) * m).astype(np.int64)  # (2,)
    found = np.empty(SIMULATED_DRAWS, dtype=np.float64)
    for draw in range(SIMULATED_DRAWS):
        rng = np.random.default_rng(draw)
        flipped = np.zeros(m, dtype=bool)
        flipped[rng.choice(m, size=min(n_flips, m), replace=False)] = True
        given = labels.copy()
        given[flipped] = (labels[flipped] + rng.integers(1, k, size=int(flipped.sum()))) % k
        score = 1.0 - _given(probabilities, given)  # (m,)
        hits = np.concatenate([[0], np.cumsum(flipped[np.argsort(-score, kind="stable")])])
        found[draw] = float(np.mean(hits[checked])) / int(flipped.sum())
    return found


def choose_view(
    head: LinearHead,
    refit_head: LinearHead,
    test_features: np.ndarray | None,
    test_labels: np.ndarray | None,
) -> tuple[AdaptiveView, dict[str, float], dict[str, float]]:
    """``adaptive``'s view from the two heads' simulated flips found on the test set.

    test_features : (m, d) float or None; test_labels : (m,) int in 0..k-1 or None.
    Returns the view, the two mean test log-losses (``head``, ``refit``) and the simulated
    comparison (``head`` and ``refit``: mean share found; ``difference_sd``: the standard
    deviation of head − refit over the draws); both dicts empty without test labels.
    """
    if test_features is None or test_labels is None or len(test_labels) == 0:
        return AdaptiveView.NO_TEST_LABELS, {}, {}
    labels = np.asarray(test_labels, dtype=np.int64)
    losses = {
        "head": _mean_log_loss(head, test_features, labels),
        "refit": _mean_log_loss(refit_head, test_features, labels),
    }
    inside = simulated_flips_found(class_probabilities(head, test_features), labels)
    outside = simulated_flips_found(class_probabilities(refit_head, test_features), labels)
    difference = inside - outside  # (SIMULATED_DRAWS,)
    found = {
        "head": float(inside.mean()),
        "refit": float(outside.mean()),
        "difference_sd": float(difference.std()),
    }
    if abs(difference.mean()) < difference.std() or difference.mean() == 0:
        return AdaptiveView.BLEND, losses, found
    view = AdaptiveView.IN_SAMPLE if difference.mean() > 0 else AdaptiveView.OUT_OF_FOLD
    return view, losses, found


def percentile_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of every score in [0, 1] (0: the smallest), shape (n,) float64; ties by position."""
    order = np.argsort(scores, kind="stable")  # (n,)
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(len(scores)) / max(len(scores) - 1, 1)
    return ranks


def _adaptive(
    view: AdaptiveView,
    rankings: dict[LabelRanking, LabelScores],
    in_sample: np.ndarray,
    out_of_fold: np.ndarray,
    labels: np.ndarray,
) -> LabelScores:
    """``adaptive``'s numbers for ``view`` from the two views' rankings and (n, k) probabilities."""
    if view is AdaptiveView.OUT_OF_FOLD:
        return rankings[LabelRanking.CONFIDENCE_OOF]
    if view is not AdaptiveView.BLEND:
        return rankings[LabelRanking.CONFIDENCE]
    inside, outside = rankings[LabelRanking.CONFIDENCE], rankings[LabelRanking.CONFIDENCE_OOF]
    return LabelScores(
        scores=(percentile_ranks(inside.scores) + percentile_ranks(outside.scores)) / 2,
        suggested_label=_suggested((in_sample + out_of_fold) / 2, labels),
        label_error_probability=(inside.label_error_probability + outside.label_error_probability)
        / 2,
    )


def _usable_test_labels(
    test_features: np.ndarray | None, test_labels: np.ndarray | None, num_classes: int
) -> bool:
    if test_features is None or test_labels is None or len(test_labels) == 0:
        return False
    labels = np.asarray(test_labels)
    return len(labels) == len(test_features) and bool(
        np.all((labels >= 0) & (labels < num_classes))
    )


def label_rankings(
    head: LinearHead,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    *,
    test_features: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    budget_s: float = math.inf,
    config: RefitConfig | None = None,
) -> LabelRankings:
    """Every label-error ranking of the training points, refits bounded by ``budget_s``.

    Parameters
    ----------
    head : LinearHead
    train_features : array of shape (n, d), float
    train_labels : array of shape (n,), int in 0..num_classes-1 (already validated)
    test_features : array of shape (m, d), float, optional
    test_labels : array of shape (m,), int, optional
        The stored test set; with labels, ``adaptive`` compares the head and a refit on it.
    budget_s : float
        Seconds the refits (K folds and one on all rows) may take; over it (estimated
        first, then enforced as a deadline) the rankings that need them are skipped with
        the reason in ``skipped``.
    config : RefitConfig, optional
    """
    config = config or RefitConfig()
    labels = np.asarray(train_labels, dtype=np.int64)
    in_sample = class_probabilities(head, train_features)  # (n, k)
    out_of_fold, refit_head = None, None
    started = time.monotonic()
    reason = _refit_skip_reason(train_features, labels, head.num_classes, config, budget_s)
    if reason is None:
        try:
            out_of_fold = out_of_fold_probabilities(
                train_features,
                labels,
                num_classes=head.num_classes,
                config=config,
                deadline=started + budget_s,
            )
            if _usable_test_labels(test_features, test_labels, head.num_classes):
                refit_head = fit_logistic_head(
                    train_features,
                    labels,
                    num_classes=head.num_classes,
                    config=config,
                    deadline=started + budget_s,
                )
        except RefitTimeout:
            out_of_fold = None
            reason = f"the head refits passed the refit budget of {budget_s:.1f} s"
    flagged, cleanlab_reason = None, None
    if out_of_fold is not None:
        try:
            flagged = cleanlab_flags(labels, out_of_fold)
        except Exception as error:  # the library's own checks (e.g. tiny classes)
            cleanlab_reason = f"cleanlab failed: {type(error).__name__}: {error}"[:500]
    scores = scores_from_probabilities(in_sample, out_of_fold, labels, flagged=flagged)
    suggested_in = _suggested(in_sample, labels)
    suggested_oof = suggested_in if out_of_fold is None else _suggested(out_of_fold, labels)
    w = FUSION_IN_SAMPLE_WEIGHT
    fused = in_sample if out_of_fold is None else w * in_sample + (1 - w) * out_of_fold
    suggestion = {
        LabelRanking.CONFIDENCE: suggested_in,
        LabelRanking.CONFIDENCE_OOF: suggested_oof,
        LabelRanking.CLEANLAB: suggested_oof,
        LabelRanking.FUSION: _suggested(fused, labels),
    }
    rankings = {
        ranking: LabelScores(
            scores=score,
            suggested_label=suggestion[ranking],
            label_error_probability=calibrated_probability(ranking, score),
        )
        for ranking, score in scores.items()
    }
    view: AdaptiveView | None = None
    losses: dict[str, float] = {}
    found: dict[str, float] = {}
    if out_of_fold is not None:
        if refit_head is None:
            view = AdaptiveView.NO_TEST_LABELS
        else:
            view, losses, found = choose_view(head, refit_head, test_features, test_labels)
        rankings[LabelRanking.ADAPTIVE] = _adaptive(view, rankings, in_sample, out_of_fold, labels)
    skipped = {
        ranking: (
            cleanlab_reason if ranking is LabelRanking.CLEANLAB and reason is None else reason
        )
        or "not computed"
        for ranking in LabelRanking
        if ranking not in rankings
    }
    return LabelRankings(rankings, skipped, time.monotonic() - started, view, losses, found)


def choose_ranking(available: set[str] | set[LabelRanking]) -> LabelRanking:
    """The default ranking if it was computed, else the best computed one (FALLBACK_ORDER)."""
    names = {LabelRanking(name) for name in available}
    for ranking in FALLBACK_ORDER:
        if ranking in names:
            return ranking
    return LabelRanking.CONFIDENCE
