"""Structural checks of an XGBoost model document, before any native code touches it.

XGBoost's own loader trusts the trees it reads: a split on feature 2,000,000,000 crashes
prediction (SIGSEGV), a child pointing back at the root makes every walk endless. So a
model document (the ``.json`` / ``.ubj`` file, or ``save_raw`` of an in-memory booster)
is checked here first:

* every tree is a finite binary tree: child ids in range, no node with two parents, the
  root nobody's child, so the walk from the root ends; depth and total node count under
  ``BoosterLimits``;
* every array of a tree has ``num_nodes`` entries; split features lie in
  ``0..num_feature-1``; thresholds and leaf values are finite as float32;
* categorical splits point inside the ``categories`` array; the per-model lists
  (``tree_info``, ``iteration_indptr``) agree with the trees.

Each failure is an ``InvalidInputError`` whose ``argument`` names the place, e.g.
``booster.trees[3].split_indices``.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from representer.errors import InvalidInputError

__all__ = ["BoosterLimits", "CheckedTree", "check_model_document", "parse_model_bytes"]

_NO_CHILD = -1
_NODE_ARRAYS_INT = ("left_children", "right_children", "split_indices")
_NODE_ARRAYS_FLOAT = ("split_conditions",)
_NODE_ARRAYS_OPTIONAL = ("parents", "split_type", "default_left", "base_weights", "loss_changes", "sum_hessian")  # fmt: skip
_INTEGER_KEYS = frozenset(_NODE_ARRAYS_INT) | {"parents", "split_type", "default_left"}
_CATEGORY_ARRAYS = ("categories", "categories_nodes", "categories_segments", "categories_sizes")
_MAX_CATEGORY = 1 << 24  # XGBoost keeps category codes exact in float32
_MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class BoosterLimits:
    """How large a booster may be (the service sets these from ``RPS_BOOSTER_*``).

    The defaults hold the largest model the service documents: 1,000 rounds of 10 classes
    with trees of depth 8 is 5.1 M nodes at most; typical boosters are far smaller.
    """

    max_nodes: int = 6_000_000
    """Nodes of all trees together (every node costs ~100 bytes of JSON and 40 of tables)."""
    max_depth: int = 64
    """Edges from a root to its deepest leaf (XGBoost's own max_depth is usually <= 20)."""
    max_features: int = 100_000
    """``num_feature``: prediction allocates a row of this width per thread."""
    max_classes: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_nodes", "max_depth", "max_features", "max_classes"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"{name} must be >= 1", argument=name)


@dataclass(frozen=True)
class CheckedTree:
    """One checked tree: the nodes reachable from its root.

    Attributes
    ----------
    num_nodes : int
        Length of the tree's arrays (pruned nodes included).
    is_leaf : ndarray of shape (num_nodes,), bool
        Reachable leaves (the node ids ``pred_leaf`` can return).
    leaf_values : ndarray of shape (num_nodes,), float64
        Leaf values at reachable leaves, 0 elsewhere.
    """

    num_nodes: int
    is_leaf: np.ndarray
    leaf_values: np.ndarray


def _fail(place: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"{place}: {message}", argument=place)


def _integer(value: Any, place: str, *, low: int, high: int) -> int:
    """An integer (or its decimal string, as XGBoost writes parameters) in ``low..high``."""
    text = str(value).strip()
    if isinstance(value, bool) or not (len(text) <= 20 and text.lstrip("-").isdigit()):
        raise _fail(place, f"must be an integer, got {text[:40]!r}")
    number = int(text)
    if not low <= number <= high:
        raise _fail(place, f"must lie in {low}..{high}, got {number}")
    return number


def _array(container: dict, key: str, place: str, dtype: type) -> np.ndarray:
    """``container[key]`` as a 1-d numeric array, refusing strings, objects and overflow."""
    value = container.get(key)
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, list):
        if not all(type(item) in (int, float) for item in value):
            raise _fail(f"{place}.{key}", "must be an array of numbers")
        exact = dtype is int and all(type(item) is int for item in value)
        try:  # floats stay floats, so 0.5 is refused below instead of truncated
            array = np.asarray(value, dtype=np.int64 if exact else np.float64)
        except OverflowError:
            raise _fail(f"{place}.{key}", "holds an integer beyond 64 bits") from None
    else:
        raise _fail(f"{place}.{key}", "is missing or not an array")
    if array.ndim != 1 or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise _fail(f"{place}.{key}", "must be an array of numbers")
    if dtype is int:
        if np.issubdtype(array.dtype, np.floating):
            if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
                raise _fail(f"{place}.{key}", "must hold integers")
            if array.size and np.max(np.abs(array)) > 2**62:
                raise _fail(f"{place}.{key}", "holds an integer beyond 64 bits")
        return array.astype(np.int64)
    return array.astype(np.float64)


def _walk(left: np.ndarray, right: np.ndarray, place: str, *, max_depth: int) -> np.ndarray:
    """Reachable mask of a tree whose children were checked to form a forest (shape (N,) bool)."""
    reached = np.zeros(left.shape, dtype=bool)
    frontier = np.array([0], dtype=np.int64)
    depth = 0
    while frontier.size:
        reached[frontier] = True
        inner = frontier[left[frontier] != _NO_CHILD]
        if inner.size and depth == max_depth:
            raise _fail(f"{place}.left_children", f"the tree is deeper than {max_depth} levels")
        frontier = np.concatenate([left[inner], right[inner]])
        depth += 1
    return reached


def _check_children(left: np.ndarray, right: np.ndarray, place: str) -> None:
    """Both children or none, ids in 1..N-1, and no node the child of two: a forest rooted at 0."""
    size = left.size
    if np.any((left == _NO_CHILD) != (right == _NO_CHILD)):
        node = int(np.flatnonzero((left == _NO_CHILD) != (right == _NO_CHILD))[0])
        raise _fail(f"{place}.right_children", f"node {node} has one child; need two or none")
    for key, children in (("left_children", left), ("right_children", right)):
        bad = (children != _NO_CHILD) & ((children < 1) | (children >= size))
        if np.any(bad):
            node = int(np.flatnonzero(bad)[0])
            raise _fail(
                f"{place}.{key}",
                f"node {node} points at {int(children[node])}; children must be node ids "
                f"1..{size - 1} (0 is the root, so a child 0 is a cycle)",
            )
    children = np.concatenate([left[left != _NO_CHILD], right[right != _NO_CHILD]])
    counts = np.bincount(children, minlength=size)
    if np.any(counts > 1):
        node = int(np.flatnonzero(counts > 1)[0])
        raise _fail(f"{place}.left_children", f"node {node} is the child of two nodes (not a tree)")


def _check_tree(
    tree: Any, place: str, *, num_feature: int, limits: BoosterLimits, nodes_left: int
) -> CheckedTree:
    if not isinstance(tree, dict):
        raise _fail(place, "must be an object")
    params = tree.get("tree_param")
    if not isinstance(params, dict):
        raise _fail(f"{place}.tree_param", "is missing or not an object")
    size = _integer(params.get("num_nodes"), f"{place}.tree_param.num_nodes", low=1, high=2**62)  # fmt: skip
    if size > nodes_left:
        raise _fail(
            f"{place}.tree_param.num_nodes",
            f"the trees hold more than {limits.max_nodes} nodes (RPS_BOOSTER_MAX_NODES)",
        )
    if _integer(params.get("size_leaf_vector", "1"), f"{place}.tree_param.size_leaf_vector", low=0, high=1 << 20) > 1:  # fmt: skip
        raise _fail(
            f"{place}.tree_param.size_leaf_vector",
            "vector-leaf trees (multi_strategy='multi_output_tree') are not supported",
        )
    arrays = {key: _array(tree, key, place, int) for key in _NODE_ARRAYS_INT}
    arrays.update({key: _array(tree, key, place, float) for key in _NODE_ARRAYS_FLOAT})
    for key in _NODE_ARRAYS_OPTIONAL:
        if key in tree:
            arrays[key] = _array(tree, key, place, int if key in _INTEGER_KEYS else float)
    for key, array in arrays.items():
        if array.size != size:
            raise _fail(f"{place}.{key}", f"has {array.size} entries for num_nodes = {size}")
    left, right = arrays["left_children"], arrays["right_children"]
    _check_children(left, right, place)
    reached = _walk(left, right, place, max_depth=limits.max_depth)
    is_leaf = reached & (left == _NO_CHILD)
    inner = reached & (left != _NO_CHILD)
    features = arrays["split_indices"]
    bad = inner & ((features < 0) | (features >= num_feature))
    if np.any(bad):
        node = int(np.flatnonzero(bad)[0])
        raise _fail(
            f"{place}.split_indices",
            f"node {node} splits on feature {int(features[node])}; the booster has "
            f"num_feature = {num_feature} (features 0..{num_feature - 1})",
        )
    values = arrays["split_conditions"]
    with np.errstate(over="ignore"):
        finite = np.isfinite(values.astype(np.float32))
    if np.any(reached & ~finite):
        node = int(np.flatnonzero(reached & ~finite)[0])
        kind = "leaf value" if is_leaf[node] else "threshold"
        raise _fail(f"{place}.split_conditions", f"node {node} has a non-finite {kind}")
    for key in ("split_type", "default_left"):
        if key in arrays and np.any(reached & ((arrays[key] < 0) | (arrays[key] > 1))):
            raise _fail(f"{place}.{key}", "must hold 0 or 1")
    _check_categories(tree, place, size=size, inner=inner, arrays=arrays)
    return CheckedTree(
        num_nodes=size,
        is_leaf=is_leaf,
        leaf_values=np.where(is_leaf, values, 0.0),
    )


def _check_categories(
    tree: dict, place: str, *, size: int, inner: np.ndarray, arrays: dict[str, np.ndarray]
) -> None:
    """Categorical splits: their category lists lie inside ``categories``, codes bounded."""
    split_type = arrays.get("split_type", np.zeros(size, dtype=np.int64))
    present = [key for key in _CATEGORY_ARRAYS if key in tree]
    categorical = inner & (split_type == 1)
    if not present and not np.any(categorical):
        return
    if len(present) != len(_CATEGORY_ARRAYS):
        raise _fail(f"{place}.categories", f"needs all of {', '.join(_CATEGORY_ARRAYS)}")
    categories, nodes, segments, sizes = (_array(tree, key, place, int) for key in _CATEGORY_ARRAYS)
    if not (nodes.size == segments.size == sizes.size):
        raise _fail(f"{place}.categories_nodes", "categories_nodes, _segments, _sizes differ in length")  # fmt: skip
    if np.any((nodes < 0) | (nodes >= size)) or np.any(np.diff(nodes) <= 0):
        raise _fail(f"{place}.categories_nodes", "must be increasing node ids of the tree")
    if np.any(segments < 0) or np.any(sizes < 0) or np.any(segments + sizes > categories.size):
        raise _fail(f"{place}.categories_segments", "a category list lies outside 'categories'")
    if np.any((categories < 0) | (categories >= _MAX_CATEGORY)):
        raise _fail(f"{place}.categories", f"category codes must lie in 0..{_MAX_CATEGORY - 1}")
    missing = np.setdiff1d(np.flatnonzero(categorical), nodes)
    if missing.size:
        raise _fail(f"{place}.categories_nodes", f"categorical node {int(missing[0])} has no category list")  # fmt: skip


def _objective_outputs(learner: dict, limits: BoosterLimits) -> int:
    """k_out from the objective and ``num_class`` (1 for binary:logistic)."""
    objective = learner.get("objective")
    name = objective.get("name") if isinstance(objective, dict) else None
    params = learner.get("learner_model_param")
    if not isinstance(params, dict):
        raise _fail("booster.learner_model_param", "is missing or not an object")
    if _integer(params.get("num_target", "1"), "booster.learner_model_param.num_target", low=0, high=1 << 20) > 1:  # fmt: skip
        raise _fail("booster.learner_model_param.num_target", "multi-target boosters are not supported")  # fmt: skip
    num_class = _integer(params.get("num_class", "0"), "booster.learner_model_param.num_class", low=0, high=limits.max_classes)  # fmt: skip
    if name in ("multi:softprob", "multi:softmax"):
        if num_class < 2:
            raise _fail("booster.learner_model_param.num_class", f"{name} needs num_class >= 2")
        return num_class
    return 1


def _check_iterations(model: dict, num_trees: int, num_outputs: int) -> None:
    info = _array(model, "tree_info", "booster", int)
    if info.size != num_trees:
        raise _fail("booster.tree_info", f"has {info.size} entries for {num_trees} trees")
    if np.any((info < 0) | (info >= num_outputs)):
        raise _fail("booster.tree_info", f"output groups must lie in 0..{num_outputs - 1}")
    if "iteration_indptr" in model:
        indptr = _array(model, "iteration_indptr", "booster", int)
        if (
            indptr.size < 2
            or indptr[0] != 0
            or indptr[-1] != num_trees
            or np.any(np.diff(indptr) < 0)
        ):
            raise _fail(
                "booster.iteration_indptr",
                f"must rise from 0 to the number of trees ({num_trees})",
            )
    params = model.get("gbtree_model_param", {})
    if isinstance(params, dict) and "num_trees" in params:
        declared = _integer(params["num_trees"], "booster.gbtree_model_param.num_trees", low=0, high=num_trees)  # fmt: skip
        if declared != num_trees:
            raise _fail("booster.gbtree_model_param.num_trees", f"says {declared}, the model holds {num_trees} trees")  # fmt: skip
    if isinstance(params, dict) and "num_parallel_tree" in params:
        _integer(params["num_parallel_tree"], "booster.gbtree_model_param.num_parallel_tree", low=1, high=max(1, num_trees))  # fmt: skip


def _check_encoder(model: dict, num_feature: int) -> None:
    """The categorical encoder XGBoost >= 3.1 stores (``cats``): segments within its index."""
    cats = model.get("cats")
    if cats is None or (isinstance(cats, dict) and not cats.get("enc")):
        return
    if not isinstance(cats, dict) or not isinstance(cats.get("enc"), list):
        raise _fail("booster.cats", "must be an object with an 'enc' array")
    if len(cats["enc"]) != num_feature:
        raise _fail("booster.cats.enc", f"must have one entry per feature ({num_feature})")
    segments = _array(cats, "feature_segments", "booster.cats", int)
    index = _array(cats, "sorted_idx", "booster.cats", int)
    if (
        segments.size != num_feature + 1
        or segments[0] != 0
        or segments[-1] != index.size
        or np.any(np.diff(segments) < 0)
    ):
        raise _fail("booster.cats.feature_segments", "must rise from 0 to len(sorted_idx)")
    lengths = np.repeat(np.diff(segments), np.diff(segments))
    if np.any((index < 0) | (index >= lengths)):
        raise _fail("booster.cats.sorted_idx", "indexes outside its feature's categories")
    for position, entry in enumerate(cats["enc"]):
        values = entry.get("values") if isinstance(entry, dict) else None
        if not isinstance(values, (list, np.ndarray)):
            raise _fail(f"booster.cats.enc[{position}]", "must hold a 'values' array")
        count = len(values) if "offsets" not in entry else max(len(entry["offsets"]) - 1, 0)
        if count != segments[position + 1] - segments[position]:
            raise _fail(f"booster.cats.enc[{position}]", "disagrees with feature_segments")


def check_model_document(
    document: Any, *, limits: BoosterLimits | None = None
) -> tuple[int, list[CheckedTree]]:
    """Check a parsed XGBoost model document (see the module docstring).

    Returns
    -------
    num_feature : int
    trees : list of CheckedTree
        Every tree of the model, in order.
    """
    limits = limits or BoosterLimits()
    learner = document.get("learner") if isinstance(document, dict) else None
    if not isinstance(learner, dict):
        raise _fail("booster", "is not an XGBoost model document (no 'learner')")
    booster = learner.get("gradient_booster")
    if not isinstance(booster, dict) or booster.get("name") != "gbtree":
        name = booster.get("name") if isinstance(booster, dict) else None
        raise _fail(
            "booster.gradient_booster",
            f"only tree boosters (booster='gbtree') are supported, got booster={name!r}",
        )
    model = booster.get("model")
    if not isinstance(model, dict):
        raise _fail("booster.gradient_booster.model", "is missing or not an object")
    trees = model.get("trees")
    if not isinstance(trees, list) or not trees:
        raise _fail("booster.trees", "the booster holds no trees: train it first")
    if len(trees) > limits.max_nodes:
        raise _fail("booster.trees", f"more than {limits.max_nodes} nodes (RPS_BOOSTER_MAX_NODES)")
    params = learner.get("learner_model_param")
    num_feature = _integer(
        params.get("num_feature") if isinstance(params, dict) else None,
        "booster.learner_model_param.num_feature",
        low=1,
        high=limits.max_features,
    )
    num_outputs = _objective_outputs(learner, limits)
    for key in ("feature_names", "feature_types"):
        names = learner.get(key) or []
        if not isinstance(names, list) or len(names) not in (0, num_feature):
            raise _fail(f"booster.{key}", f"must be empty or hold {num_feature} strings")
        if not all(isinstance(name, str) and len(name) <= 1000 for name in names):
            raise _fail(f"booster.{key}", "must hold strings of at most 1000 characters")
    checked: list[CheckedTree] = []
    nodes_left = limits.max_nodes
    for index, tree in enumerate(trees):
        if nodes_left < 1:
            break
        checked.append(
            _check_tree(
                tree,
                f"booster.trees[{index}]",
                num_feature=num_feature,
                limits=limits,
                nodes_left=nodes_left,
            )
        )
        nodes_left -= checked[-1].num_nodes
    if len(checked) < len(trees):
        raise _fail(
            f"booster.trees[{len(checked)}]",
            f"the trees hold more than {limits.max_nodes} nodes (RPS_BOOSTER_MAX_NODES)",
        )
    _check_iterations(model, len(trees), num_outputs)
    _check_encoder(model, num_feature)
    _check_attributes(learner, num_rounds=len(trees))
    return num_feature, checked


def _check_attributes(learner: dict, *, num_rounds: int) -> None:
    attributes = learner.get("attributes", {})
    if not isinstance(attributes, dict):
        raise _fail("booster.attributes", "must be an object")
    if "best_iteration" in attributes:
        _integer(attributes["best_iteration"], "booster.attributes.best_iteration", low=0, high=max(num_rounds, 1) - 1)  # fmt: skip


def _tree_arrays(obj: dict) -> dict:
    """``json.loads`` object hook: a tree's long lists become arrays at once (low peak memory)."""
    if "left_children" in obj and "tree_param" in obj:
        for key in (*_NODE_ARRAYS_INT, *_NODE_ARRAYS_FLOAT, *_NODE_ARRAYS_OPTIONAL):
            value = obj.get(key)
            if not isinstance(value, list):
                continue
            integers = key in _INTEGER_KEYS
            kinds = (int,) if integers else (int, float)
            if all(type(item) in kinds for item in value):  # else left a list: the check names it
                with contextlib.suppress(OverflowError):
                    obj[key] = np.asarray(value, dtype=np.int64 if integers else np.float64)
    return obj


def parse_model_bytes(data: bytes) -> dict:
    """Parse a ``.json`` or ``.ubj`` XGBoost model file into a document (no native code).

    Raises
    ------
    InvalidInputError
        ``argument="booster"`` when the bytes are neither.
    """
    from representer.adapters.ubjson import UBJSONError, decode_ubjson

    if data[:1] == b"{" and data[1:2] in (b"L", b"l", b"I", b"U", b"i", b"}"):
        try:
            document = decode_ubjson(data, max_depth=_MAX_JSON_DEPTH)
        except UBJSONError as error:
            raise _fail("booster", f"not a valid UBJSON model: {error}") from None
    else:
        try:
            # NaN / Infinity tokens parse (XGBoost writes them); the checks then name the field
            document = json.loads(data.decode("utf-8"), object_hook=_tree_arrays)
        except (UnicodeDecodeError, ValueError) as error:
            raise _fail("booster", f"not a valid JSON model: {error}") from None
        except RecursionError:
            raise _fail("booster", "not a valid JSON model: nested too deeply") from None
    if not isinstance(document, dict):
        raise _fail("booster", "is not an XGBoost model document")
    return document
