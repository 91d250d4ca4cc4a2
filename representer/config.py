"""Choices and per-method settings, as small frozen dataclasses (docs/math.md §2-§4).

The defaults of the settings a user can choose are the spec's (``rps.spec.DEFAULT_SPEC``);
only engine-side limits (memory budget, iteration caps) are defined here. A config field with
the name of a spec field receives it (``rps.spec.engine_settings``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import Enum

from representer.errors import InvalidInputError
from rps.spec import DEFAULT_SPEC, HessianMode, Method, ModelSpec, WeightLayout, engine_settings

__all__ = [
    "Method",
    "WeightLayout",
    "HessianMode",
    "LJEConfig",
    "L2Config",
    "InfluenceConfig",
    "MethodConfig",
    "default_config",
    "engine_config",
]

DEFAULT_MEMORY_BUDGET_BYTES = 8 * 1024**3
DEFAULT_CG_TOLERANCE = DEFAULT_SPEC.lje.cg_tolerance
"""Relative residual ‖b − Hx‖/‖b‖ at which PCG stops (the spec's default; docs/math.md §10.3)."""


# Method, WeightLayout and HessianMode are the spec's enums (rps.spec), so the API, the
# worker and the engine share one list of choices.
#
# WeightLayout is chosen by measurement: ``benchmarks/engine_bench.py`` measured (n=50,000,
# d=512, k=10, float32 features, 2 shared cores) one explain query at 4.6x one streaming f32
# pass over the features in the kernel form (its GEMM has k columns) and 1.0x with
# materialised weights, which cost 2.2x the precompute flops (3.2x the time: 156 s vs 49 s)
# and k·n·D·4 bytes (983 MiB). Queries dominate a service's life, so ``AUTO`` materialises
# for k_out >= 3 when the weights fit ``memory_budget_bytes`` and keeps the kernel form
# otherwise (binary heads: the kernel query is already one matvec, 1.0x).


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

    lr: float = DEFAULT_SPEC.lje.lr
    """Step size γ of the single gradient-ascent step Θ* = Θ† + γ ḡ(Θ†)."""
    damping: float = DEFAULT_SPEC.lje.damping
    """δ added to the Hessian's diagonal (H + δI); raise it when the solve is singular."""
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES
    """Refuse problems whose exact Hessian (plus its factor) would need more than this."""
    weight_layout: WeightLayout = DEFAULT_SPEC.lje.weight_layout
    """Kernel form or materialised per-class weights (see ``WeightLayout``)."""
    hessian: HessianMode = DEFAULT_SPEC.lje.hessian
    """Dense inverse or per-class blocks + PCG (see ``HessianMode``)."""
    cg_tolerance: float = DEFAULT_SPEC.lje.cg_tolerance
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

    lam: float = DEFAULT_SPEC.l2.lam
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

    damping: float = DEFAULT_SPEC.influence.damping
    """δ added to the Hessian's diagonal (H† + δI); raise it when the solve is singular."""
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES
    """Refuse problems whose exact Hessian (plus its factor) would need more than this."""
    hessian: HessianMode = DEFAULT_SPEC.influence.hessian
    """Dense inverse or per-class blocks + PCG (see ``HessianMode``)."""
    cg_tolerance: float = DEFAULT_SPEC.influence.cg_tolerance
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


def engine_config(spec: ModelSpec, method: Method, *, ceiling: int) -> MethodConfig:
    """The config of ``method`` from a model spec: every setting named like a config field.

    ``memory_budget_bytes`` is the spec's (when set) but never above ``ceiling``, the
    operator's ``RPS_MEMORY_BUDGET_BYTES``.
    """
    config = {Method.LJE: LJEConfig, Method.L2: L2Config, Method.INFLUENCE: InfluenceConfig}[
        Method(method)
    ]
    settings = engine_settings(spec.method_settings(method), [f.name for f in fields(config)])
    if "memory_budget_bytes" in {f.name for f in fields(config)}:
        requested = settings.get("memory_budget_bytes")
        settings["memory_budget_bytes"] = min(requested or ceiling, ceiling)
    return config(**settings)
