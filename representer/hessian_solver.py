"""Which Hessian solver a head gets, and the block + PCG solver itself (docs/math.md §9).

``choose_hessian`` resolves ``HessianMode.AUTO``; ``BlockSystem`` bundles the matrix-free
product, the block preconditioner and the tolerance, is built at precompute
(``BlockSystem.fit``) and rebuilt from a stored state at query time
(``BlockSystem.from_arrays``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from representer.block_hessian import BlockPreconditioner, block_bytes, factor_blocks
from representer.config import HessianMode
from representer.errors import MemoryLimitError
from representer.explanation import SolverReport
from representer.hessian import FACTOR_COPIES, check_hessian_memory
from representer.pcg import HessianProduct, PCGResult, solve_pcg
from representer.progress import ProgressCallback

__all__ = [
    "AUTO_DENSE_MAX_FLOPS",
    "BlockSystem",
    "blocks_memory_bytes",
    "choose_hessian",
    "pcg_reports",
]

AUTO_DENSE_MAX_FLOPS = 2e11
"""AUTO keeps the dense Hessian while its predicted precompute, n·(kD)² to accumulate plus
about 1.4·(kD)³ to factor and invert, stays below this (tens of seconds on a shared core;
``benchmarks/large_heads.py`` measured n=50,000, d=512, k=10, 1.5e12 flops, several times
slower to precompute dense than with blocks). Dense queries are one product with M,
PCG queries a few passes over the features, so small heads stay dense."""


def blocks_memory_bytes(n: int, num_classes: int, dim: int) -> int:
    """What the block solver holds: k float32 factors, the block sums, P (n, k) float64."""
    return block_bytes(num_classes, dim) + num_classes * dim * dim * 8 + n * num_classes * 8


def _dense_flops(n: int, size: int) -> float:
    return float(n) * size * size + 1.4 * float(size) ** 3


def choose_hessian(
    mode: HessianMode, *, n: int, num_outputs: int, dim: int, memory_budget_bytes: int
) -> HessianMode:
    """DENSE or BLOCKS for this head; raises ``MemoryLimitError`` when the choice cannot fit.

    A binary head (one output) is one D×D system and always dense.
    """
    size = num_outputs * dim
    dense_fits = FACTOR_COPIES * size * size * 8 <= memory_budget_bytes
    if num_outputs == 1 or mode is HessianMode.DENSE:
        check_hessian_memory(num_outputs, dim, memory_budget_bytes=memory_budget_bytes)
        return HessianMode.DENSE
    if mode is HessianMode.AUTO and dense_fits and _dense_flops(n, size) <= AUTO_DENSE_MAX_FLOPS:
        return HessianMode.DENSE
    needed = blocks_memory_bytes(n, num_outputs, dim)
    if needed > memory_budget_bytes:
        raise MemoryLimitError(
            f"even the per-class Hessian blocks of a {num_outputs}x{dim} head with n={n} need "
            f"{needed / 1024**2:.0f} MiB, more than memory_budget_bytes={memory_budget_bytes} "
            f"({memory_budget_bytes / 1024**2:.0f} MiB); raise memory_budget_bytes",
            argument="memory_budget_bytes",
        )
    return HessianMode.BLOCKS


def pcg_reports(result: PCGResult) -> list[SolverReport]:
    """One ``SolverReport`` per system of ``result``."""
    return [
        SolverReport(name="pcg", iterations=int(iterations), relative_residual=float(residual))
        for iterations, residual in zip(
            result.iterations.tolist(), result.relative_residual.tolist(), strict=True
        )
    ]


@dataclass(frozen=True)
class BlockSystem:
    """Solves (H + δI) x = Π b on the zero class-sum subspace by block-preconditioned CG."""

    product: HessianProduct
    preconditioner: BlockPreconditioner
    tolerance: float

    @classmethod
    def fit(
        cls,
        train_features: np.ndarray,
        probabilities: np.ndarray,
        *,
        damping: float,
        tolerance: float,
        device: torch.device,
        progress: ProgressCallback,
    ) -> BlockSystem:
        """Factor the blocks of H at the probabilities P (n, k) float64."""
        cholesky, live = factor_blocks(
            train_features, probabilities, damping=damping, device=device, progress=progress
        )
        return cls(
            product=HessianProduct(train_features, probabilities, damping, live),
            preconditioner=BlockPreconditioner(cholesky),
            tolerance=tolerance,
        )

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        train_features: np.ndarray,
        *,
        damping: float,
        tolerance: float,
    ) -> BlockSystem:
        """Rebuild from the arrays ``to_arrays`` wrote (on the CPU)."""
        live = torch.from_numpy(np.array(arrays["live_features"], dtype=np.bool_))
        return cls(
            product=HessianProduct(train_features, arrays["hessian_probabilities"], damping, live),
            preconditioner=BlockPreconditioner(
                torch.from_numpy(np.array(arrays["block_cholesky"], dtype=np.float32))
            ),
            tolerance=tolerance,
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """``block_cholesky`` (k, D, D) float32, ``hessian_probabilities`` (n, k) float64,
        ``live_features`` (D,) bool."""
        return {
            "block_cholesky": self.preconditioner.cholesky.cpu().numpy(),
            "hessian_probabilities": np.asarray(self.product.probabilities, dtype=np.float64),
            "live_features": self.product.live.cpu().numpy(),
        }

    def solve(self, right_hand_sides: torch.Tensor) -> PCGResult:
        """H⁺ Π b for every b of the stack (q, k, D) float64 (dead features zeroed first)."""
        device = self.preconditioner.cholesky.device
        rhs = right_hand_sides.to(device=device, dtype=torch.float64).clone()
        rhs[:, :, ~self.product.live] = 0.0
        return solve_pcg(self.product, self.preconditioner, rhs, tolerance=self.tolerance)
