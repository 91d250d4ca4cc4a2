"""An XGBoost booster written exactly as features + linear head, z(x) = Θ†φ̃(x) (docs/math.md §7).

* ``tree_margins`` (default): φ(x)[j] is the leaf value tree j gives x; Θ† has a 1 where
  tree j serves class c. D = T (trees used).
* ``leaf_onehot``: φ(x) is the one-hot indicator of the leaf x reaches in every tree; Θ†
  holds the leaf values. D = total number of leaves; each tree's columns sum to 1, so the
  head's Hessian is singular and needs damping.

In both, the bias is the booster's base margin, and Θ†φ̃(x) equals
``booster.predict(DMatrix(x), output_margin=True, iteration_range=(0, best_iteration + 1))``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xgboost as xgb

from representer.adapters.xgboost_checks import (
    BoosterLimits,
    check_model_document,
    parse_model_bytes,
)
from representer.adapters.xgboost_trees import TreeTable
from representer.errors import InvalidInputError
from representer.head import LinearHead
from rps.spec import Embedding  # how the trees become φ(x); the spec's choices

__all__ = ["BoosterEmbedding", "Embedding", "load_booster"]

_MODEL_SUFFIXES = (".json", ".ubj")
_XGBOOST_LOCATION = re.compile(r"^\[[^\]]*\]\s+\S+:\d+:\s*")  # "[12:00:00] /src/c_api.cc:1532: "


@dataclass(frozen=True, eq=False)
class BoosterEmbedding:
    """A booster as a feature map plus a linear head. Build it with ``from_booster``.

    Attributes
    ----------
    booster : xgboost.Booster
        A private copy of the booster the embedding was built from.
    embedding : Embedding
    trees : TreeTable
        The trees used (best_iteration respected), their classes and leaf values.
    head : LinearHead
        Θ† = [W, b]: weights (k_out, D) float64, bias (k_out,) = base margin.
    feature_dim : int
        D, the width of φ(x).
    leaf_columns : ndarray of shape (N,), int64
        ``leaf_onehot`` only: the feature column of every node position of ``trees``
        (``TreeTable.node_offsets``); -1 at internal nodes. Empty for ``tree_margins``.
    """

    booster: xgb.Booster = field(repr=False)
    embedding: Embedding
    trees: TreeTable
    head: LinearHead = field(repr=False)
    feature_dim: int
    leaf_columns: np.ndarray = field(repr=False)

    @classmethod
    def from_booster(
        cls,
        booster: xgb.Booster,
        *,
        embedding: Embedding = Embedding.TREE_MARGINS,
        limits: BoosterLimits | None = None,
    ) -> BoosterEmbedding:
        """Write ``booster`` as features + linear head.

        Parameters
        ----------
        booster : xgboost.Booster
            A trained ``gbtree`` booster with objective binary:logistic (k_out = 1),
            multi:softprob or multi:softmax (k_out = k).
        embedding : Embedding, default TREE_MARGINS
        limits : BoosterLimits, optional
            Size limits of the structural check every booster passes first.

        Returns
        -------
        BoosterEmbedding
            Deterministic: the same model (e.g. reloaded from its saved file) gives the
            same head and the same features.
        """
        try:
            embedding = Embedding(embedding)
        except ValueError:
            choices = [choice.value for choice in Embedding]
            raise InvalidInputError(
                f"embedding must be one of {choices}, got {embedding!r}", argument="embedding"
            ) from None
        trees = TreeTable.from_booster(booster, limits=limits)
        if embedding == Embedding.TREE_MARGINS:
            leaf_columns = np.empty(0, dtype=np.int64)
            head = _tree_margins_head(trees)
        else:
            leaf_columns = _leaf_columns(trees)
            head = _leaf_onehot_head(trees, leaf_columns)
        return cls(
            booster=booster.copy(),
            embedding=embedding,
            trees=trees,
            head=head,
            feature_dim=head.feature_dim,
            leaf_columns=leaf_columns,
        )

    def leaf_ids(self, inputs: object) -> np.ndarray:
        """The leaf node id each used tree sends every row to, shape (n, T) int64."""
        leaves, _ = self._leaves(inputs)
        return leaves

    def _leaves(self, inputs: object) -> tuple[np.ndarray, np.ndarray]:
        """Leaf ids (n, T) and their positions in the tree table's node arrays (n, T)."""
        matrix = self._dmatrix(inputs)
        leaves = self.booster.predict(
            matrix, pred_leaf=True, iteration_range=(0, self.trees.num_rounds)
        )
        leaves = np.asarray(leaves, dtype=np.int64).reshape(matrix.num_row(), self.trees.num_trees)
        return leaves, self.trees.node_positions(leaves)  # every id a reachable leaf

    def transform(self, inputs: object) -> np.ndarray:
        """φ(x) for raw rows.

        Parameters
        ----------
        inputs : ndarray of shape (n, p), pandas DataFrame, or xgboost.DMatrix
            Raw feature rows, as the booster was trained on (NaN = missing).

        Returns
        -------
        ndarray of shape (n, D), float32
            Leaf values (``tree_margins``, D = T) or leaf indicators (``leaf_onehot``).
        """
        leaves, positions = self._leaves(inputs)  # (n, T) each
        if self.embedding == Embedding.TREE_MARGINS:
            return self.trees.leaf_values[positions].astype(np.float32)  # (n, T)
        columns = self.leaf_columns[positions]  # (n, T)
        features = np.zeros((leaves.shape[0], self.feature_dim), dtype=np.float32)  # (n, D)
        np.put_along_axis(features, columns, 1.0, axis=1)
        return features

    def margin(self, inputs: object) -> np.ndarray:
        """Θ†φ̃(x), shape (n, k_out) float64: the booster's output margin."""
        return self.head.logits(self.transform(inputs))

    def _dmatrix(self, inputs: object) -> xgb.DMatrix:
        """Validate raw rows and wrap them for the booster."""
        if isinstance(inputs, xgb.DMatrix):
            matrix = inputs
        elif hasattr(inputs, "columns") and hasattr(inputs, "dtypes"):  # a pandas DataFrame
            matrix = _checked(lambda: xgb.DMatrix(inputs, enable_categorical=True))
        else:
            rows = np.asarray(inputs)
            if rows.ndim != 2 or not (np.issubdtype(rows.dtype, np.number) or rows.dtype == bool):
                raise InvalidInputError(
                    f"inputs must be a numeric 2-d array (n, p), got shape {rows.shape} dtype {rows.dtype}",
                    argument="inputs",
                )
            matrix = _checked(
                lambda: xgb.DMatrix(
                    rows,
                    feature_names=self.booster.feature_names,
                    feature_types=self.booster.feature_types,
                    enable_categorical=True,
                )
            )
        if matrix.num_row() == 0:
            raise InvalidInputError("inputs hold no rows", argument="inputs")
        if matrix.num_col() != self.trees.num_features:
            raise InvalidInputError(
                f"inputs have {matrix.num_col()} columns, the booster expects {self.trees.num_features}",
                argument="inputs",
            )
        return matrix


def load_booster(path: str | Path, *, limits: BoosterLimits | None = None) -> xgb.Booster:
    """Load a booster saved with ``booster.save_model`` as ``.json`` or ``.ubj``.

    Pickles and every other format are refused: they can run code when loaded. The file is
    parsed and checked in Python first (``xgboost_checks``: finite acyclic trees, feature
    indices, sizes within ``limits``); only then does XGBoost read the same bytes.
    """
    path = Path(path)
    if path.suffix.lower() not in _MODEL_SUFFIXES:
        raise InvalidInputError(
            f"booster file {path.name!r} must be an XGBoost model saved as .json or .ubj",
            argument="booster",
        )
    if not path.is_file():
        raise InvalidInputError(f"booster file {str(path)!r} does not exist", argument="booster")
    data = path.read_bytes()
    check_model_document(parse_model_bytes(data), limits=limits)
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgb.core.XGBoostError as error:
        raise InvalidInputError(
            f"cannot read booster file {path.name!r}: {_reason(error)}", argument="booster"
        ) from None
    return booster


def _checked(make_matrix) -> xgb.DMatrix:
    try:
        return make_matrix()
    except (xgb.core.XGBoostError, ValueError, TypeError) as error:
        raise InvalidInputError(
            f"inputs cannot be read by the booster: {_reason(error)}", argument="inputs"
        ) from None


def _tree_margins_head(trees: TreeTable) -> LinearHead:
    """W[c, j] = 1 where tree j serves class c, shape (k_out, T)."""
    weights = np.zeros((trees.num_outputs, trees.num_trees), dtype=np.float64)
    weights[trees.tree_groups, np.arange(trees.num_trees)] = 1.0
    return LinearHead(weights=weights, bias=trees.base_margin)


def _leaf_columns(trees: TreeTable) -> np.ndarray:
    """Column of every node position, trees in order, leaf ids ascending; -1 elsewhere, (N,)."""
    columns = np.full(trees.is_leaf.shape, -1, dtype=np.int64)  # (N,)
    columns[trees.is_leaf] = np.arange(int(trees.is_leaf.sum()))  # tree, then node id
    return columns


def _leaf_onehot_head(trees: TreeTable, leaf_columns: np.ndarray) -> LinearHead:
    """W[c, column of (j, leaf)] = leaf value when tree j serves class c, shape (k_out, D)."""
    leaf_positions = np.flatnonzero(trees.is_leaf)  # (D,), in column order
    tree_of_leaf = np.searchsorted(trees.node_offsets, leaf_positions, side="right") - 1  # (D,)
    weights = np.zeros((trees.num_outputs, leaf_positions.size), dtype=np.float64)
    weights[trees.tree_groups[tree_of_leaf], leaf_columns[leaf_positions]] = trees.leaf_values[
        leaf_positions
    ]
    return LinearHead(weights=weights, bias=trees.base_margin)


def _reason(error: Exception) -> str:
    """XGBoost's message without its native stack trace and source location."""
    lines = str(error).split("\nStack trace:", 1)[0].strip().splitlines()
    return _XGBOOST_LOCATION.sub("", lines[0]) if lines else type(error).__name__
