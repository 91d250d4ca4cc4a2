"""Hostile XGBoost model documents: a small real booster's JSON with one thing broken.

``HOSTILE_TREES`` maps a case name to (how to break the document, the field the 422 must
name). The cases are the crashes and blow-ups found by probing (a split on feature
2,000,000,000: SIGSEGV in XGBoost; a child pointing at the root: an endless walk) and their
cousins (other arrays, other trees, other numbers).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xgboost as xgb

__all__ = [
    "HOSTILE_TREES",
    "NUM_FEATURES",
    "booster_document",
    "document_bytes",
    "chain_tree",
    "patch_ubj_split_index",
    "trees_of",
]

NUM_FEATURES = 4
_ROOT_PARENT = 2147483647


def booster_document(*, rounds: int = 3, seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
    """A trained binary booster's JSON document (depth <= 2, 4 features) and its data."""
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(60, NUM_FEATURES)).astype(np.float32)
    labels = (inputs[:, 0] + rng.normal(size=60) > 0).astype(np.int64)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "nthread": 1, "seed": seed},
        xgb.DMatrix(inputs, label=labels),
        num_boost_round=rounds,
    )
    document = json.loads(bytes(booster.save_raw(raw_format="json")))
    return document, {"train_inputs": inputs, "train_labels": labels, "test_inputs": inputs[:3]}


def document_bytes(document: dict, suffix: str = ".json") -> bytes:
    """The document as a model file XGBoost wrote (``.json``, or ``.ubj`` through XGBoost)."""
    text = json.dumps(document).encode()
    if suffix == ".json":
        return text
    booster = xgb.Booster()
    booster.load_model(bytearray(text))  # only for documents that are safe to load
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"model{suffix}"
        booster.save_model(str(path))
        return path.read_bytes()


def trees_of(document: dict) -> list[dict]:
    return document["learner"]["gradient_booster"]["model"]["trees"]


def chain_tree(depth: int, *, template: dict) -> dict:
    """A valid tree ``depth`` splits deep: node 2i splits, 2i+1 is a leaf, 2i+2 goes on."""
    size = 2 * depth + 1
    left = np.full(size, -1)
    right = np.full(size, -1)
    parents = np.full(size, _ROOT_PARENT)
    inner = np.arange(0, 2 * depth, 2)
    left[inner], right[inner] = inner + 1, inner + 2
    parents[inner + 1], parents[inner + 2] = inner, inner
    conditions = np.where(left == -1, 0.01, np.arange(size) / size)
    tree = dict(template)
    tree.update(
        left_children=left.tolist(),
        right_children=right.tolist(),
        parents=parents.tolist(),
        split_indices=[0] * size,
        split_conditions=conditions.tolist(),
        split_type=[0] * size,
        default_left=[1] * size,
        base_weights=conditions.tolist(),
        loss_changes=[0.0] * size,
        sum_hessian=[1.0] * size,
        tree_param={**template["tree_param"], "num_nodes": str(size)},
    )
    return tree


def patch_ubj_split_index(data: bytes, value: int) -> bytes:
    """A ``.ubj`` model with the first split feature of its first tree set to ``value``."""
    key = b"split_indices"
    at = data.index(key) + len(key)
    assert data[at : at + 3] == b"[$l", data[at : at + 3]  # a typed int32 array
    count_marker = data[at + 4 : at + 5]
    count_size = {b"i": 1, b"U": 1, b"I": 2, b"l": 4, b"L": 8}[count_marker]
    start = at + 5 + count_size
    return data[:start] + value.to_bytes(4, "big", signed=True) + data[start + 4 :]


def _set(tree_index: int, key: str, node: int, value) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        trees_of(document)[tree_index][key][node] = value

    return change


def _replace_tree(make: Callable[[dict], dict], tree_index: int = 0) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        trees = trees_of(document)
        trees[tree_index] = {**make(trees[tree_index]), "id": tree_index}

    return change


def _drop_last(key: str) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        trees_of(document)[1][key] = trees_of(document)[1][key][:-1]

    return change


def _learner(key: str, value) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        document["learner"]["learner_model_param"][key] = value

    return change


def _model(key: str, value) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        document["learner"]["gradient_booster"]["model"][key] = value

    return change


HOSTILE_TREES: dict[str, tuple[Callable[[dict], None], str]] = {
    # split features outside 0..num_feature-1: XGBoost reads past the row (SIGSEGV)
    "split_index_2e9": (_set(0, "split_indices", 0, 2_000_000_000), "booster.trees[0].split_indices"),
    "split_index_num_feature": (_set(0, "split_indices", 0, NUM_FEATURES), "booster.trees[0].split_indices"),
    "split_index_negative": (_set(0, "split_indices", 0, -1), "booster.trees[0].split_indices"),
    "split_index_in_last_tree": (_set(2, "split_indices", 0, 2**31 - 2), "booster.trees[2].split_indices"),
    "split_index_float": (_set(0, "split_indices", 0, 0.5), "booster.trees[0].split_indices"),
    "split_index_string": (_set(0, "split_indices", 0, "0"), "booster.trees[0].split_indices"),
    "split_index_beyond_64_bits": (_set(0, "split_indices", 0, 2**70), "booster.trees[0].split_indices"),
    # children: cycles, shared children, out of range, one-sided
    "child_is_root": (_set(0, "left_children", 0, 0), "booster.trees[0].left_children"),
    "right_child_is_root": (_set(0, "right_children", 0, 0), "booster.trees[0].right_children"),
    "child_out_of_range": (_set(0, "left_children", 0, 10**6), "booster.trees[0].left_children"),
    "child_below_minus_one": (_set(0, "right_children", 0, -5), "booster.trees[0].right_children"),
    "both_children_same_node": (_set(0, "right_children", 0, 1), "booster.trees[0].left_children"),
    "one_sided_node": (_set(0, "right_children", 0, -1), "booster.trees[0].right_children"),
    # numbers
    "threshold_nan": (_set(0, "split_conditions", 0, float("nan")), "booster.trees[0].split_conditions"),
    "leaf_infinite": (_set(0, "split_conditions", 1, float("inf")), "booster.trees[0].split_conditions"),
    "leaf_beyond_float32": (_set(0, "split_conditions", 1, 1e39), "booster.trees[0].split_conditions"),
    "default_left_2": (_set(0, "default_left", 0, 2), "booster.trees[0].default_left"),
    # array lengths
    "short_split_indices": (_drop_last("split_indices"), "booster.trees[1].split_indices"),
    "short_right_children": (_drop_last("right_children"), "booster.trees[1].right_children"),
    "short_split_conditions": (_drop_last("split_conditions"), "booster.trees[1].split_conditions"),
    "num_nodes_zero": (
        lambda d: trees_of(d)[0]["tree_param"].update(num_nodes="0"),
        "booster.trees[0].tree_param.num_nodes",
    ),
    "left_children_not_array": (_set(0, "left_children", 0, [1]), "booster.trees[0].left_children"),
    # depth and size
    "chain_deeper_than_the_limit": (
        _replace_tree(lambda tree: chain_tree(65, template=tree)),
        "booster.trees[0].left_children",
    ),
    # categorical splits pointing outside their category list
    "category_segment_out_of_range": (
        lambda d: trees_of(d)[0].update(
            split_type=[1] + trees_of(d)[0]["split_type"][1:],
            categories=[1],
            categories_nodes=[0],
            categories_segments=[5],
            categories_sizes=[3],
        ),
        "booster.trees[0].categories_segments",
    ),
    "categorical_node_without_categories": (
        _set(0, "split_type", 0, 1),
        "booster.trees[0].categories_nodes",
    ),
    # the model around the trees
    "num_feature_2e9": (_learner("num_feature", "2000000000"), "booster.learner_model_param.num_feature"),
    "num_feature_text": (_learner("num_feature", "four"), "booster.learner_model_param.num_feature"),
    "tree_info_group_out_of_range": (_model("tree_info", [0, 7, 0]), "booster.tree_info"),
    "tree_info_short": (_model("tree_info", [0, 0]), "booster.tree_info"),
    "iteration_indptr_past_the_trees": (_model("iteration_indptr", [0, 1, 2, 9]), "booster.iteration_indptr"),
    "no_trees": (_model("trees", []), "booster.trees"),
}  # fmt: skip
