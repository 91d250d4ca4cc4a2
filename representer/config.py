"""Choices and per-method settings, as small frozen dataclasses (docs/math.md §2-§4)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from representer.errors import InvalidInputError

__all__ = [
    "Method",
    "WeightLayout",
    "HessianMode",
    "LJEConfig",
    "L2Config",
    "InfluenceConfig",
    "MethodConfig",
    "default_config",
]

DEFAULT_MEMORY_BUDGET_BYTES = 8 * 1024**3
DEFAULT_CG_TOLERANCE = 1e-6
"""Relative residual ‖b − Hx‖/‖b‖ at which PCG stops (docs/math.md §10.3); float64 products reach
it in about 20 iterations on the benchmark heads and the rankings then equal dense ones."""


class Method(str, Enum):
    """The explanation methods the engine offers."""

    LJE = "lje"  # RPS-LJE, docs/math.md §2
    L2 = "l2"  # RPS-l2 (Yeh et al. 2018), docs/math.md §3
    INFLUENCE = "influence"  # last-layer influence function, docs/math.md §4


class WeightLayout(str, Enum):
    """How RPS-LJE keeps what a query needs (docs/math.md §2.4); chosen by measurement.

    ``benchmarks/engine_bench.py`` measured (n=50,000, d=512, k=10, float32 features,
    2 shared cores) one explain query at 4.6x one streaming f32 pass over the features in
    the kernel form (its GEMM has k columns) and 1.0x with materialised weights, which
    cost 2.2x the precompute flops (3.2x the time: 156 s vs 49 s) and k·n·D·4 bytes
    (983 MiB). Queries dominate a service's life, so ``AUTO`` materialises for
    k_out >= 3 when the weights fit ``memory_budget_bytes`` and keeps the kernel form
    otherwise (binary heads: the kernel query is already one matvec, 1.0x).
    """

    AUTO = "auto"
    KERNEL = "kernel"  # R* (n, k) and M: a query is one (n, D) x (D, k) GEMM
    MATERIALISED = "materialised"  # W (k, n, D) float32: a query is one (n, D) matvec


class HessianMode(str, Enum):
    """How H⁺ is applied (docs/math.md §10).

    ``DENSE`` factorises the (k_out·D)² Hessian once (queries are one product with its
    inverse); ``BLOCKS`` keeps k per-class D×D factors and solves every query by
    preconditioned conjugate gradients on the exact, matrix-free H (queries cost a few
    passes over the features, the precompute and the memory are about k times smaller).
    ``AUTO`` takes dense while its predicted precompute and memory are small
    (``hessian_solver.choose_hessian``) and blocks beyond; a binary head is always dense.
    """

    AUTO = "auto"
    DENSE = "dense"
    BLOCKS = "blocks"


def _parse_enum(enum: type[Enum], name: str, value: object) -> Enum:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in enum)
        raise InvalidInputError(
            f"{name} must be one of {choices}, got {value!r}", argument=name
        ) from None


def _check_tolerance(value: float) -> None:
    if not (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value < 1
    ):
        raise InvalidInputError(
            f"cg_tolerance must be a number in (0, 1), got {value!r}", argument="cg_tolerance"
        )


def _check_non_negative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise InvalidInputError(
            f"{name} must be a finite number >= 0, got {value!r}", argument=name
        )


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InvalidInputError(f"{name} must be a finite number > 0, got {value!r}", argument=name)


@dataclass(frozen=True)
class LJEConfig:
    """Settings of RPS-LJE (docs/math.md §2)."""

    lr: float = 0.01
    """Step size γ of the single gradient-ascent step Θ* = Θ† + γ ḡ(Θ†)."""
    damping: float = 0.0
    """δ added to the Hessian's diagonal (H + δI); raise it when the solve is singular."""
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES
    """Refuse problems whose exact Hessian (plus its factor) would need more than this."""
    weight_layout: WeightLayout = WeightLayout.AUTO
    """Kernel form or materialised per-class weights (see ``WeightLayout``)."""
    hessian: HessianMode = HessianMode.AUTO
    """Dense inverse or per-class blocks + PCG (see ``HessianMode``)."""
    cg_tolerance: float = DEFAULT_CG_TOLERANCE
    """Relative residual at which PCG stops (``hessian`` blocks only)."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "weight_layout", _parse_enum(WeightLayout, "weight_layout", self.weight_layout)
        )
        object.__setattr__(self, "hessian", _parse_enum(HessianMode, "hessian", self.hessian))
        _check_tolerance(self.cg_tolerance)
        if self.hessian is HessianMode.BLOCKS and self.weight_layout is WeightLayout.MATERIALISED:
            raise InvalidInputError(
                "weight_layout 'materialised' needs the dense inverse; use hessian 'dense' "
                "or weight_layout 'kernel'/'auto' with hessian 'blocks'",
                argument="weight_layout",
            )
        _check_non_negative("lr", self.lr)
        _check_non_negative("damping", self.damping)
        _check_positive("memory_budget_bytes", self.memory_budget_bytes)


@dataclass(frozen=True)
class L2Config:
    """Settings of RPS-l2 (docs/math.md §3)."""

    lam: float = 0.003
    """Weight λ of the ridge penalty λ‖Θ‖²_F in the fine-tuning objective."""
    max_iter: int = 1000
    """Iteration cap of the L-BFGS fine-tuning."""
    grad_reduction: float = 1e6
    """Stop once the gradient norm has fallen by this factor (docs/math.md asks >= 200)."""

    def __post_init__(self) -> None:
        _check_positive("lambda", self.lam)
        _check_positive("max_iter", self.max_iter)
        if not self.grad_reduction >= 200:
            raise InvalidInputError(
                f"grad_reduction must be >= 200, got {self.grad_reduction!r}",
                argument="grad_reduction",
            )


@dataclass(frozen=True)
class InfluenceConfig:
    """Settings of the last-layer influence function (docs/math.md §4)."""

    damping: float = 0.0
    """δ added to the Hessian's diagonal (H† + δI); raise it when the solve is singular."""
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES
    """Refuse problems whose exact Hessian (plus its factor) would need more than this."""
    hessian: HessianMode = HessianMode.AUTO
    """Dense inverse or per-class blocks + PCG (see ``HessianMode``)."""
    cg_tolerance: float = DEFAULT_CG_TOLERANCE
    """Relative residual at which PCG stops (``hessian`` blocks only)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hessian", _parse_enum(HessianMode, "hessian", self.hessian))
        _check_tolerance(self.cg_tolerance)
        _check_non_negative("damping", self.damping)
        _check_positive("memory_budget_bytes", self.memory_budget_bytes)


MethodConfig = LJEConfig | L2Config | InfluenceConfig


def default_config(method: Method) -> MethodConfig:
    """The default settings of ``method``."""
    return {Method.LJE: LJEConfig, Method.L2: L2Config, Method.INFLUENCE: InfluenceConfig}[
        Method(method)
    ]()
