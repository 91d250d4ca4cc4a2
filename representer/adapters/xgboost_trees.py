"""The parts of a trained XGBoost booster that make it a linear model (docs/math.md §7).

A booster's margin is base_margin[c] + Σ_{trees j serving class c} leaf value of x in tree j.
``TreeTable.from_booster`` reads exactly what that sum needs from the booster's own JSON
model and configuration: which trees are used, which class each serves, every leaf's value,
and the base margin. Everything is read, nothing is fitted, so the result is deterministic.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import xgboost as xgb

from representer.adapters.xgboost_checks import (
    BoosterLimits,
    check_model_document,
    parse_model_bytes,
)
from representer.errors import InvalidInputError

__all__ = ["Objective", "TreeTable", "parse_base_score"]

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)", re.IGNORECASE)


class Objective(str, Enum):
    """The booster objectives whose margin is the logit of a head we can explain."""

    BINARY_LOGISTIC = "binary:logistic"  # one logit, p = σ(margin): k_out = 1
    MULTI_SOFTPROB = "multi:softprob"  # k logits, P = softmax(margin): k_out = k
    MULTI_SOFTMAX = "multi:softmax"  # same margin as softprob; predicts the argmax


def parse_base_score(text: str) -> np.ndarray:
    """Parse XGBoost's ``base_score`` config string: ``"0.5"``, ``"5E-1"``, ``"[5E-1]"``, ``"[a,b,c]"``.

    Returns
    -------
    ndarray of shape (m,), float64
        The m >= 1 numbers in the string, in order.
    """
    values = np.array([float(token) for token in _NUMBER.findall(str(text))], dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise InvalidInputError(
            f"cannot read the booster's base_score {text!r}", argument="booster"
        )
    return values


@dataclass(frozen=True)
class TreeTable:
    """The trees a booster's margin uses, as flat arrays over the nodes that exist.

    Node ``i`` of tree ``j`` sits at position ``node_offsets[j] + i`` of the node arrays, so
    the tables cost one entry per node (not trees x the largest tree).

    Attributes
    ----------
    objective : Objective
    num_outputs : int
        k_out: 1 for binary:logistic, k for multi-class.
    num_features : int
        p, the width of the raw input rows.
    num_rounds : int
        Boosting rounds used: ``best_iteration + 1`` when early stopping set it, else all.
    base_margin : ndarray of shape (k_out,), float64
        The margin before any tree (logit(base_score) for binary:logistic).
    tree_groups : ndarray of shape (T,), int64
        The output row each used tree adds to (class j mod k for one tree per class and round).
    node_offsets : ndarray of shape (T + 1,), int64
        Where each tree's nodes start in the node arrays; the last entry is N.
    is_leaf : ndarray of shape (N,), bool
        True at the (tree, node id) positions that are reachable leaves (``pred_leaf`` ids).
    leaf_values : ndarray of shape (N,), float64
        Each leaf's value (already shrunk by the learning rate); 0 at internal nodes.
    """

    objective: Objective
    num_outputs: int
    num_features: int
    num_rounds: int
    base_margin: np.ndarray = field(repr=False)
    tree_groups: np.ndarray = field(repr=False)
    node_offsets: np.ndarray = field(repr=False)
    is_leaf: np.ndarray = field(repr=False)
    leaf_values: np.ndarray = field(repr=False)

    @property
    def num_trees(self) -> int:
        """T, the number of trees the margin uses."""
        return int(self.tree_groups.shape[0])

    def node_positions(self, leaves: np.ndarray) -> np.ndarray:
        """Positions in the node arrays of per-tree node ids.

        Parameters
        ----------
        leaves : ndarray of shape (n, T), int64
            A node id of every used tree per row (``pred_leaf``).

        Returns
        -------
        ndarray of shape (n, T), int64

        Raises
        ------
        InvalidInputError
            When an id is not a reachable leaf of its tree.
        """
        sizes = np.diff(self.node_offsets)  # (T,)
        if np.any((leaves < 0) | (leaves >= sizes)):
            raise InvalidInputError(
                "the booster sent rows to node ids its trees do not have", argument="booster"
            )
        positions = self.node_offsets[:-1] + leaves  # (n, T)
        if not np.all(self.is_leaf[positions]):
            raise InvalidInputError(
                "the booster sent rows to nodes its JSON model does not mark as leaves",
                argument="booster",
            )
        return positions

    @classmethod
    def from_booster(
        cls, booster: xgb.Booster, *, limits: BoosterLimits | None = None
    ) -> TreeTable:
        """Check (``xgboost_checks``) and read the tree table of a trained ``gbtree`` booster."""
        if not isinstance(booster, xgb.Booster):
            raise InvalidInputError(
                f"booster must be an xgboost.Booster, got {type(booster).__name__}",
                argument="booster",
            )
        model = parse_model_bytes(bytes(booster.save_raw(raw_format="json")))
        num_features, checked = check_model_document(model, limits=limits)
        config = json.loads(booster.save_config())["learner"]
        objective = _objective(config)
        model_param = config["learner_model_param"]
        num_outputs = (
            int(model_param.get("num_class", "0")) if objective != Objective.BINARY_LOGISTIC else 1
        )
        trees_model = model["learner"]["gradient_booster"]["model"]
        num_rounds, num_used = _rounds_and_trees_used(booster, trees_model, num_outputs)
        used = checked[:num_used]
        return cls(
            objective=objective,
            num_outputs=num_outputs,
            num_features=num_features,
            num_rounds=num_rounds,
            base_margin=_base_margin(model_param["base_score"], objective, num_outputs),
            tree_groups=np.asarray(trees_model["tree_info"][:num_used], dtype=np.int64),
            node_offsets=np.concatenate([[0], np.cumsum([tree.num_nodes for tree in used])]).astype(
                np.int64
            ),
            is_leaf=np.concatenate([tree.is_leaf for tree in used]),
            leaf_values=np.concatenate([tree.leaf_values for tree in used]),
        )


def _objective(config: dict) -> Objective:
    booster_kind = config["gradient_booster"].get("name")
    if booster_kind != "gbtree":
        raise InvalidInputError(
            f"only tree boosters (booster='gbtree') are supported, got booster={booster_kind!r}",
            argument="booster",
        )
    name = config["objective"]["name"]
    try:
        return Objective(name)
    except ValueError:
        supported = ", ".join(objective.value for objective in Objective)
        raise InvalidInputError(
            f"booster objective {name!r} is not supported; supported: {supported}",
            argument="booster",
        ) from None


def _rounds_and_trees_used(
    booster: xgb.Booster, trees_model: dict, num_outputs: int
) -> tuple[int, int]:
    """Boosting rounds used (best_iteration + 1 when set) and how many leading trees they hold."""
    num_trees = len(trees_model["trees"])
    total_rounds = booster.num_boosted_rounds()
    if num_trees == 0 or total_rounds == 0:
        raise InvalidInputError("the booster holds no trees: train it first", argument="booster")
    best_iteration = booster.attr("best_iteration")
    num_rounds = (
        total_rounds if best_iteration is None else min(int(best_iteration) + 1, total_rounds)
    )
    indptr = trees_model.get("iteration_indptr")
    if indptr and len(indptr) == total_rounds + 1:
        num_used = int(indptr[num_rounds])
    else:  # older models: every round holds the same number of trees
        num_used = num_trees // total_rounds * num_rounds
    groups = np.asarray(trees_model["tree_info"][:num_used])
    if np.any(groups < 0) or np.any(groups >= num_outputs):
        raise InvalidInputError(
            f"the booster's trees serve output groups {sorted(set(groups.tolist()))}, "
            f"but the objective has {num_outputs} output(s)",
            argument="booster",
        )
    return num_rounds, num_used


def _base_margin(base_score: str, objective: Objective, num_outputs: int) -> np.ndarray:
    """The margin before any tree, shape (k_out,) float64."""
    values = parse_base_score(base_score)
    if values.size == 1:
        values = np.repeat(values, num_outputs)
    if values.size != num_outputs:
        raise InvalidInputError(
            f"the booster's base_score has {values.size} values for {num_outputs} outputs",
            argument="booster",
        )
    if objective != Objective.BINARY_LOGISTIC:
        return values  # softmax objectives store the base score as a margin already
    (probability,) = values
    if not 0.0 < probability < 1.0:
        raise InvalidInputError(
            f"binary:logistic base_score must lie in (0, 1), got {probability}", argument="booster"
        )
    return np.array([math.log(probability) - math.log1p(-probability)])
