"""representer: exact RPS-LJE, RPS-l2 and last-layer influence for linear heads.

Pure computation on arrays; no HTTP, SQL or queues. The mathematics is
``docs/math.md``; symbols in the code follow it.

Typical use::

    head = LinearHead(weights, bias)                      # (k, d), (k,)
    state = fit(head, train_features, train_labels, method=Method.LJE)
    [explanation] = explain(state, train_features, test_features[:1], top_k=10)
"""

from representer.config import (
    DEFAULT_CG_TOLERANCE,
    DEFAULT_MEMORY_BUDGET_BYTES,
    HessianMode,
    InfluenceConfig,
    L2Config,
    LJEConfig,
    Method,
    MethodConfig,
    WeightLayout,
    default_config,
    engine_config,
)
from representer.errors import (
    InvalidInputError,
    MemoryLimitError,
    RepresenterError,
    SingularSystemError,
)
from representer.explanation import Explanation, SolverReport
from representer.fitting import fit
from representer.head import LinearHead
from representer.hessian_solver import check_capacity
from representer.query import contributions, explain
from representer.state import FittedState

__all__ = [
    "DEFAULT_CG_TOLERANCE",
    "DEFAULT_MEMORY_BUDGET_BYTES",
    "Explanation",
    "FittedState",
    "HessianMode",
    "InfluenceConfig",
    "InvalidInputError",
    "L2Config",
    "LJEConfig",
    "LinearHead",
    "MemoryLimitError",
    "Method",
    "MethodConfig",
    "RepresenterError",
    "SingularSystemError",
    "SolverReport",
    "WeightLayout",
    "check_capacity",
    "contributions",
    "default_config",
    "engine_config",
    "explain",
    "fit",
]
