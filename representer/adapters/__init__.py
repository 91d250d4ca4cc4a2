"""Adapters that turn a trained model into "features + linear head" (docs/math.md §1, §7).

* ``extract_features`` / ``head_from_linear``: a torch network whose last layer is an
  ``nn.Linear``; φ(x) is that Linear's input.
* ``BoosterEmbedding``: an XGBoost booster written exactly as Θ†φ̃(x) (``tree_margins``
  or ``leaf_onehot``, docs/math.md §7); ``load_booster`` reads a saved .json / .ubj model.
"""

from representer.adapters.torch_module import extract_features, head_from_linear, linear_layer_names
from representer.adapters.xgboost_booster import BoosterEmbedding, Embedding, load_booster
from representer.adapters.xgboost_checks import BoosterLimits
from representer.adapters.xgboost_trees import Objective, TreeTable

__all__ = [
    "BoosterEmbedding",
    "BoosterLimits",
    "Embedding",
    "Objective",
    "TreeTable",
    "extract_features",
    "head_from_linear",
    "linear_layer_names",
    "load_booster",
]
