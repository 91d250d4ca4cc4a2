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

from representer.errors import InvalidInputError

__all__ = ["Objective", "TreeTable", "parse_base_score"]

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)", re.IGNORECASE)
_NO_CHILD = -1  # left_children value of a leaf node


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
    """The trees a booster's margin uses, as arrays.

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
    is_leaf : ndarray of shape (T, max_nodes), bool
        True at the node ids that are leaves (``pred_leaf`` returns these ids).
    leaf_values : ndarray of shape (T, max_nodes), float64
        Each leaf's value (already shrunk by the learning rate); 0 at internal nodes.
    """

    objective: Objective
    num_outputs: int
    num_features: int
    num_rounds: int
    base_margin: np.ndarray = field(repr=False)
    tree_groups: np.ndarray = field(repr=False)
    is_leaf: np.ndarray = field(repr=False)
    leaf_values: np.ndarray = field(repr=False)

    @property
    def num_trees(self) -> int:
        """T, the number of trees the margin uses."""
        return int(self.tree_groups.shape[0])

    @classmethod
    def from_booster(cls, booster: xgb.Booster) -> TreeTable:
        """Read the tree table of a trained ``gbtree`` booster (see the class docstring)."""
        if not isinstance(booster, xgb.Booster):
            raise InvalidInputError(
                f"booster must be an xgboost.Booster, got {type(booster).__name__}",
                argument="booster",
            )
        config = json.loads(booster.save_config())["learner"]
        model = json.loads(booster.save_raw(raw_format="json"))["learner"]
        objective = _objective(config)
        model_param = config["learner_model_param"]
        if int(model_param.get("num_target", "1")) > 1:
            raise InvalidInputError("multi-target boosters are not supported", argument="booster")
        num_outputs = (
            int(model_param.get("num_class", "0")) if objective != Objective.BINARY_LOGISTIC else 1
        )
        trees_model = model["gradient_booster"]["model"]
        num_rounds, num_used = _rounds_and_trees_used(booster, trees_model, num_outputs)
        trees = trees_model["trees"][:num_used]
        is_leaf, leaf_values = _leaf_tables(trees)
        return cls(
            objective=objective,
            num_outputs=num_outputs,
            num_features=int(model_param["num_feature"]),
            num_rounds=num_rounds,
            base_margin=_base_margin(model_param["base_score"], objective, num_outputs),
            tree_groups=np.asarray(trees_model["tree_info"][:num_used], dtype=np.int64),
            is_leaf=is_leaf,
            leaf_values=leaf_values,
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


def _leaf_tables(trees: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(T, max_nodes) leaf mask and leaf values from the JSON trees."""
    max_nodes = max(len(tree["left_children"]) for tree in trees)
    is_leaf = np.zeros((len(trees), max_nodes), dtype=bool)
    leaf_values = np.zeros((len(trees), max_nodes), dtype=np.float64)
    for index, tree in enumerate(trees):
        if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise InvalidInputError(
                "vector-leaf trees (multi_strategy='multi_output_tree') are not supported",
                argument="booster",
            )
        left = np.asarray(tree["left_children"], dtype=np.int64)
        leaves = (left == _NO_CHILD) & _reachable(
            left, np.asarray(tree["right_children"], dtype=np.int64)
        )
        values = np.asarray(tree["split_conditions"], dtype=np.float64)
        is_leaf[index, : leaves.size] = leaves
        leaf_values[index, : leaves.size] = np.where(leaves, values, 0.0)
    if not np.all(np.isfinite(leaf_values)):
        raise InvalidInputError("the booster holds NaN or infinite leaf values", argument="booster")
    return is_leaf, leaf_values


def _reachable(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Nodes reachable from the root (pruned, deleted nodes are not), shape (num_nodes,) bool."""
    reached = np.zeros(left.shape, dtype=bool)
    frontier = np.array([0], dtype=np.int64)
    while frontier.size:
        reached[frontier] = True
        children = np.concatenate([left[frontier], right[frontier]])
        frontier = children[children != _NO_CHILD]
    return reached


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
