"""Which Hessian solver a head gets, and the block + PCG solver itself (docs/math.md §10).

``choose_hessian`` resolves ``HessianMode.AUTO``; ``BlockSystem`` bundles the matrix-free
product, the block preconditioner and the tolerance, is built at precompute
(``BlockSystem.fit``) and rebuilt from a stored state at query time
(``BlockSystem.from_arrays``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch

from representer.block_hessian import (
    BlockPreconditioner,
    block_bytes,
    block_thresholds,
    factor_blocks,
)
from representer.config import HessianMode, InfluenceConfig, LJEConfig, MethodConfig, WeightLayout
from representer.errors import MemoryLimitError
from representer.explanation import SolverReport
from representer.feature_blocks import block_tensor, float32_tensor, rows_per_block
from representer.hessian import FACTOR_COPIES, check_hessian_memory
from representer.kernel import kernel_scores
from representer.pcg import (
    FLOAT32_MIN_TOLERANCE,
    SPARSE_FILL,
    ClassPairs,
    GroupedProduct,
    HessianProduct,
    LeftOutProduct,
    PCGResult,
    augmented_rows,
    class_support,
    project,
    refined_support,
    solve_pcg,
    support_threshold,
)
from representer.progress import ProgressCallback
from representer.state import FittedState

__all__ = [
    "AUTO_DENSE_MAX_FLOPS",
    "BlockSystem",
    "blocks_memory_bytes",
    "check_capacity",
    "SolvedDirections",
    "SolvedVectors",
    "block_kernel_scores",
    "solve_with_state",
    "choose_hessian",
    "pcg_reports",
]

AUTO_DENSE_MAX_FLOPS = 5e12
"""AUTO keeps the dense Hessian while it fits the memory budget and its predicted precompute,
n·(kD)² to accumulate plus about 1.4·(kD)³ to factor and invert, stays below this.
``benchmarks/large_heads.py --case k10`` (n=50,000, d=512, k=10: 1.5e12 flops, 2 shared
cores at load 2-4) measured dense 63-106 s to precompute and 0.04-0.08 s a query, blocks
4.7-16 s and 1.6-8.4 s a query (21 PCG iterations; 7.5 s and 3.0 s with one thread): dense
pays for itself after about 20 queries, so AUTO stays dense up to a few times that size and
takes blocks where dense cannot fit."""
REFINE_THRESHOLD = 3e-6
"""A refined solve (``BlockSystem``) runs PCG on the sparse operator H̃ of the pairs with
P_ic > this (and each row's top class, ``refined_support``), and corrects with the exact
residual b − H x, whose left-out part ``LeftOutProduct`` adds densely: x ← x + H̃⁻¹(b − H x).
Each correction shrinks the error by ‖H̃⁻¹(H − H̃)‖; the stop is the exact relative residual,
as for plain PCG. A higher threshold makes H̃ cheaper and its corrections weaker: one thread,
δ = 1e-4, medians of 15 queries interleaved in one process, 1e-6 / 3e-6 / 1e-5 / 3e-5:
k=100 (n=50,000, d=768) 1.035 / 0.892 / 0.858 / 0.876 s (45-50 / 47-52 / 50-59 / 59-66
iterations), again 0.979 / 0.881 / 0.935 s; k=1,000 (n=10,000, d=256) 2.50 / 2.06 / 2.25 /
2.69 s (55-64 / 57-69 / 62-78 / 71-88 iterations)."""
REFINE_MAX_FILL = 0.1
"""Refine only where H̃ keeps at most this fraction of the pairs (else plain PCG on H)."""
REFINE_CACHE_BYTES = 2 * 1024**3
"""Largest float32 copy of the kept pairs' rows Φ̃[I_c] the inner solves keep (k=1,000,
d=1,024, n=50,000 at separation 3: 265,000 pairs, 1.1 GB); beyond it, plain PCG."""
INNER_MIN_TOLERANCE = 4e-5
"""No inner solve is asked for less than this; the exact residual of each correction then
takes the rest. Below it an inner solve buys little: it multiplies in float32 (cached rows),
and a correction's exact residual is no smaller than ‖(H − H̃)e‖, which on peaked heads is
6–9e-5 of ‖b‖ at REFINE_THRESHOLD 1e-6 (more at 3e-6). One thread, δ = 1e-4, 15 queries
interleaved in one process (load 2.8-3.0), floors 1e-5 / 4e-5 / 8e-5: k=100 (n=50,000,
d=768) 248 / 233 / 228 iterations over 5 test points, medians 0.967 / 0.921 / 0.936 s (an
earlier run, 1e-5 / 2e-5 / 4e-5: 0.922 / 0.889 / 0.829 s); k=1,000 (n=10,000, d=256) 311 / 287 /
276 iterations, 2.10 / 1.87 / 1.94 s."""
MAX_REFINEMENTS = 8
"""Corrections a refined solve makes before it finishes by plain PCG on the exact H."""
TRAIN_LOGITS_BYTES = 256 * 1024**2
"""A refined solve keeps Z_j = Φ̃ X_jᵀ (n, q, k) from its last exact residuals when they take at
most this much (k=1,000, n=50,000: one system, 200 MB in float32): the final pass then needs
no n·k·D GEMM of its own (``block_kernel_scores``)."""
SOLVED_VECTORS_BYTES = 256 * 1024**2
"""How much of recently solved H⁺b a state keeps for repeated queries (per method)."""
_SCRATCH_LOCK = threading.Lock()


def blocks_memory_bytes(n: int, num_classes: int, dim: int) -> int:
    """What the block solver holds: k float32 factors and a batch of block sums
    (``block_bytes``), P (n, k) float64 twice (the stored copy and a working one) and the
    float64 copy of Φ̃ a solve keeps (at most ``FEATURE_CACHE_BYTES``)."""
    from representer.pcg import FEATURE_CACHE_BYTES

    features = min(FEATURE_CACHE_BYTES, n * dim * 8)
    return block_bytes(num_classes, dim) + 2 * n * num_classes * 8 + features


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


def check_capacity(
    config: MethodConfig, *, n: int, num_outputs: int, feature_dim: int
) -> HessianMode | None:
    """The Hessian a head will get under ``config``, known from the shapes alone.

    Raises ``MemoryLimitError`` (naming ``memory_budget_bytes``) when no solver the config
    allows fits its ``memory_budget_bytes``; None for RPS-l2, which has no Hessian.
    """
    if not isinstance(config, (LJEConfig, InfluenceConfig)):
        return None
    mode = config.hessian
    if isinstance(config, LJEConfig) and config.weight_layout is WeightLayout.MATERIALISED:
        mode = HessianMode.DENSE
    return choose_hessian(
        mode,
        n=n,
        num_outputs=num_outputs,
        dim=feature_dim + 1,
        memory_budget_bytes=config.memory_budget_bytes,
    )


def pcg_reports(result: PCGResult) -> list[SolverReport]:
    """One ``SolverReport`` per system of ``result``."""
    return [
        SolverReport(name="pcg", iterations=int(iterations), relative_residual=float(residual))
        for iterations, residual in zip(
            result.iterations.tolist(), result.relative_residual.tolist(), strict=True
        )
    ]


class Refinement:
    """What a refined solve needs: the kept pairs (P_ic > ``threshold`` or the top), the
    left-out product, and (built at the first solve) the float32 rows of the kept pairs."""

    def __init__(
        self, train_features: np.ndarray, pairs: ClassPairs, left_out: LeftOutProduct
    ) -> None:
        self.train_features = train_features
        self.pairs = pairs
        self.left_out = left_out
        self._inner: GroupedProduct | None = None
        self._lock = threading.Lock()

    def inner(self) -> GroupedProduct:
        """H̃ over the cached float32 rows (gathered once per system)."""
        with self._lock:
            if self._inner is None:
                self._inner = GroupedProduct.cached(
                    self.train_features, self.pairs, self.left_out.live
                )
            return self._inner

    def exact_part(self, source: torch.Tensor | np.ndarray) -> GroupedProduct:
        """H̃ in float64: over the cached rows when the features are float32 (then the cache
        holds them exactly), else from ``source`` (Φ̃ in memory, or the features)."""
        if self.train_features.dtype == np.float32:
            return replace(self.inner(), float64=True)
        return GroupedProduct(
            self.pairs, self.train_features.shape[0], self.left_out.live, source=source
        )

    def over(self, train_features: np.ndarray) -> Refinement:
        return Refinement(
            train_features, self.pairs, replace(self.left_out, train_features=train_features)
        )


@dataclass(frozen=True)
class BlockSystem:
    """Solves (H + δI) x = Π b on the zero class-sum subspace by block-preconditioned CG.

    ``refined`` (set where the sparse operator H̃ keeps few pairs, ``REFINE_MAX_FILL``):
    PCG runs on H̃ and the exact residual corrects it (``REFINE_THRESHOLD``).
    """

    product: HessianProduct
    preconditioner: BlockPreconditioner
    tolerance: float
    block_thresholds: np.ndarray | None = None
    """Per class, the weights the block sums left out (``block_thresholds``); set by ``fit``."""
    refined: Refinement | None = None

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
        thresholds = block_thresholds(probabilities)
        preconditioner, live = factor_blocks(
            train_features,
            probabilities,
            damping=damping,
            thresholds=thresholds,
            device=device,
            progress=progress,
        )
        return cls.assemble(
            train_features,
            probabilities,
            preconditioner,
            live,
            damping=damping,
            tolerance=tolerance,
            block_thresholds=thresholds,
        )

    @classmethod
    def assemble(
        cls,
        train_features: np.ndarray,
        probabilities: np.ndarray,
        preconditioner: BlockPreconditioner,
        live: torch.Tensor,
        *,
        damping: float,
        tolerance: float,
        block_thresholds: np.ndarray | None = None,
    ) -> BlockSystem:
        """The system over factored blocks; refined where H̃ keeps at most REFINE_MAX_FILL."""
        threshold = support_threshold(probabilities)
        product = HessianProduct(train_features, probabilities, damping, live, threshold)
        refined = None
        threshold_refined = max(threshold, REFINE_THRESHOLD)
        dim = train_features.shape[1] + 1
        fill = support_fill(probabilities, threshold_refined)
        kept = fill * probabilities.shape[0] * probabilities.shape[1]
        if fill <= REFINE_MAX_FILL and kept * dim * 4 <= REFINE_CACHE_BYTES:
            keep_top = damping == 0.0  # δ > 0: H̃ + δI stays definite without light tops
            pairs = ClassPairs.of(
                probabilities,
                lambda block: refined_support(
                    torch.from_numpy(block), threshold_refined, keep_top=keep_top
                ).numpy(),
            )
            left_out = LeftOutProduct(
                train_features,
                probabilities,
                threshold_refined,
                live,
                float32=tolerance >= FLOAT32_MIN_TOLERANCE,
                keep_top=keep_top,
            )
            refined = Refinement(train_features, pairs, left_out)
        return cls(
            product=product,
            preconditioner=preconditioner,
            tolerance=tolerance,
            block_thresholds=block_thresholds,
            refined=refined,
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
        return cls.assemble(
            train_features,
            arrays["hessian_probabilities"],
            BlockPreconditioner.from_arrays(arrays, float32_tensor),
            torch.from_numpy(np.array(arrays["live_features"], dtype=np.bool_)),
            damping=damping,
            tolerance=tolerance,
        )

    def over(self, train_features: np.ndarray) -> BlockSystem:
        """The same system over another array of the same features (e.g. a fresh memmap)."""
        product = replace(self.product, train_features=train_features, supports={})
        refined = None if self.refined is None else self.refined.over(train_features)
        return replace(self, product=product, refined=refined)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The factors (``BlockPreconditioner.to_arrays``: ``block_cholesky`` (k_d, D, D)
        float32 and the low-rank blocks), ``hessian_probabilities`` (n, k) float64,
        ``live_features`` (D,) bool."""
        return {
            **self.preconditioner.to_arrays(),
            "hessian_probabilities": np.asarray(self.product.probabilities, dtype=np.float64),
            "live_features": self.product.live.cpu().numpy(),
        }

    def solve(self, right_hand_sides: torch.Tensor) -> PCGResult:
        """H⁺ Π b for every b of the stack (q, k, D) float64 (dead features zeroed first)."""
        device = self.preconditioner.cholesky.device
        rhs = right_hand_sides.to(device=device, dtype=torch.float64).clone()
        rhs[:, :, ~self.product.live] = 0.0
        if self.refined is not None:
            source: torch.Tensor | np.ndarray = self.product.train_features
            if source.dtype != np.float32:  # float32 features: the cached rows are exact
                blocks = self.product.in_memory(device).feature_blocks
                if blocks is not None:
                    source = torch.cat([block for _, block in blocks])
            return refined_solve(
                self.refined.inner(),
                self.refined.exact_part(source),
                self.refined.left_out,
                self.preconditioner,
                rhs,
                damping=self.product.damping,
                tolerance=self.tolerance,
            )
        product = self.product.in_memory(device)
        return solve_pcg(product, self.preconditioner, rhs, tolerance=self.tolerance)


def support_fill(probabilities: np.ndarray, threshold: float) -> float:
    """The fraction of pairs (i, c) that ``class_support`` keeps at ``threshold``."""
    n, num_classes = probabilities.shape
    kept = 0
    step = rows_per_block(8 * num_classes * 3)
    for start in range(0, n, step):
        block = torch.from_numpy(np.array(probabilities[start : start + step], dtype=np.float64))
        kept += int(class_support(block, threshold).sum())
    return kept / max(1, n * num_classes)


def refined_solve(
    inner: GroupedProduct,
    exact_part: GroupedProduct,
    left_out: LeftOutProduct,
    precondition: BlockPreconditioner,
    right_hand_sides: torch.Tensor,
    *,
    damping: float,
    tolerance: float,
) -> PCGResult:
    """H⁺ Π b by PCG on the sparse H̃, corrected by exact residuals (``REFINE_THRESHOLD``).

    x ← x + H̃⁻¹ r with r = Π b − (H̃ + δI + (H − H̃)) x: H̃⁻¹ r by PCG on ``inner`` (float32
    rows) to the accuracy the exact residual still needs (at least ``INNER_MIN_TOLERANCE``),
    r from ``exact_part`` (float64) and ``left_out``. A system whose exact residual stops
    falling by half a correction finishes by plain PCG on the exact H. ``iterations`` counts
    the PCG iterations and the exact products; ``relative_residual`` is exact.
    """
    rhs = project(right_hand_sides)
    q = rhs.shape[0]
    rhs_norm = rhs.flatten(1).norm(dim=1).clamp_min(1e-300)  # (q,)
    solution = torch.zeros_like(rhs)
    residual = rhs.clone()
    relative = (rhs.flatten(1).norm(dim=1) / rhs_norm).cpu().numpy()  # 1, or 0 for b = 0
    iterations = np.zeros(q, dtype=np.int64)

    n, num_classes = left_out.probabilities.shape
    dtype = torch.float32 if left_out.float32 else torch.float64
    keep_logits = n * q * num_classes * dtype.itemsize <= TRAIN_LOGITS_BYTES
    logits = (
        torch.zeros((n, q, num_classes), dtype=dtype, device=rhs.device) if keep_logits else None
    )  # Z_j = Φ̃ X_jᵀ at each system's last exact residual (X = 0: Z = 0)
    written = relative == 0  # systems whose logits hold their solution's (b = 0: X = 0)

    def truncated(directions: torch.Tensor) -> torch.Tensor:  # Π H̃ Π: H̃'s rows leave S
        return project(inner(directions) + damping * directions)

    def exact(directions: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Π (H + δI) V; with ``index``, the logits of systems ``index`` are kept."""
        if logits is None or index is None:
            left = left_out(directions)
        elif index.numel() == q:
            left = left_out(directions, logits_out=logits)
        else:
            part = logits.new_empty((n, *directions.shape[:2]))  # (n, a, k)
            left = left_out(directions, logits_out=part)
            logits[:, index] = part
        if logits is not None and index is not None:
            written[index.cpu().numpy()] = True
        return project(exact_part(directions) + left + damping * directions)

    for round_number in range(MAX_REFINEMENTS):
        active = np.flatnonzero(relative > tolerance)
        if active.size == 0:
            break
        index = torch.as_tensor(active, device=rhs.device)
        wanted = 0.5 * tolerance / torch.as_tensor(relative[active], device=rhs.device)
        solved = solve_pcg(
            truncated,
            precondition,
            residual[index],
            tolerance=wanted.clamp(min=INNER_MIN_TOLERANCE, max=0.5),
        )
        solution[index] += solved.solution
        # The first exact residual multiplies Z by oneDNN (``pcg.product_nt``): its corrections
        # rarely finish (the left-out part keeps the residual above the tolerance); a system
        # that does finish there has no logits kept, and its scores take their own pass.
        kept = index if round_number else None
        if kept is None:
            written[active] = False
        residual[index] = rhs[index] - exact(solution[index], kept)
        iterations[active] += solved.iterations + 1
        reached = (residual[index].flatten(1).norm(dim=1) / rhs_norm[index]).cpu().numpy()
        stalled = active[reached > 0.5 * relative[active]]
        relative[active] = reached
        if stalled.size:
            break
    active = np.flatnonzero(relative > tolerance)
    if active.size:  # finish on the exact operator
        index = torch.as_tensor(active, device=rhs.device)
        wanted = tolerance / torch.as_tensor(relative[active], device=rhs.device)
        solved = solve_pcg(exact, precondition, residual[index], tolerance=wanted.clamp(max=0.5))
        solution[index] += solved.solution
        residual[index] = rhs[index] - exact(solution[index], index)
        iterations[active] += solved.iterations + 1
        relative[active] = (residual[index].flatten(1).norm(dim=1) / rhs_norm[index]).cpu().numpy()
    return PCGResult(
        solution=solution,
        iterations=iterations,
        relative_residual=relative,
        train_logits=logits if written.all() else None,
    )


class SolvedVectors:
    """A bounded, thread-safe LRU of solved directions X = mat(H⁺ Π b) by query key."""

    def __init__(self, max_bytes: int = SOLVED_VECTORS_BYTES) -> None:
        self._entries: OrderedDict[Hashable, tuple[np.ndarray, SolverReport]] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[np.ndarray, SolverReport] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: Hashable, solution: np.ndarray, report: SolverReport) -> None:
        if solution.nbytes > self._max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = (solution, report)
            self._bytes += solution.nbytes
            while self._bytes > self._max_bytes:
                _, (evicted, _) = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes


def _state_solver(state: FittedState, train_features: np.ndarray) -> BlockSystem:
    """The block system of ``state`` over ``train_features`` (factors copied once per state)."""
    with _SCRATCH_LOCK:
        if "block_system" not in state.scratch:
            state.scratch["block_system"] = BlockSystem.from_arrays(
                state.arrays,
                train_features,
                damping=float(state.meta["damping"]),
                tolerance=float(state.meta["cg_tolerance"]),
            )
            state.scratch["solved_vectors"] = SolvedVectors()
        system: BlockSystem = state.scratch["block_system"]
    if system.product.train_features is not train_features:
        system = system.over(train_features)
    return system


@dataclass(frozen=True)
class SolvedDirections:
    """X_j = mat(H⁺ Π b_j) of a batch of queries, and how each was solved.

    Attributes
    ----------
    directions : ndarray of shape (m, k, D), float64
    reports : list of m ``SolverReport`` (a reused vector repeats its solve's report)
    train_logits : Tensor of shape (n, m, k), or None
        Φ X_j[:, :d]ᵀ as the refined solve's last exact residual multiplied it
        (``PCGResult.train_logits``); None unless every X_j was solved by this call.
    """

    directions: np.ndarray
    reports: list[SolverReport]
    train_logits: torch.Tensor | None = None


def solve_with_state(
    state: FittedState,
    train_features: np.ndarray,
    right_hand_sides: np.ndarray,
    keys: list[Hashable],
) -> SolvedDirections:
    """X_j = mat(H⁺ Π b_j) for every j by PCG, reusing vectors solved for the same key.

    Parameters
    ----------
    state : FittedState with block arrays
    train_features : ndarray of shape (n, d)
    right_hand_sides : ndarray of shape (m, k, D), float64
    keys : list of m hashables
        What determines b_j (target class and test row): equal keys, equal b.
    """
    system = _state_solver(state, train_features)
    solved: SolvedVectors = state.scratch["solved_vectors"]
    directions = np.empty(right_hand_sides.shape)
    reports: list[SolverReport | None] = [None] * len(keys)
    missing: dict[Hashable, list[int]] = {}
    for row, key in enumerate(keys):
        hit = solved.get(key)
        if hit is None:
            missing.setdefault(key, []).append(row)
        else:
            directions[row], reports[row] = hit
    train_logits = None
    if missing:
        firsts = [rows[0] for rows in missing.values()]
        result = system.solve(torch.from_numpy(right_hand_sides[firsts]))
        solutions = result.solution.cpu().numpy()
        for position, ((key, rows), report) in enumerate(
            zip(missing.items(), pcg_reports(result), strict=True)
        ):
            solved.put(key, solutions[position], report)
            for row in rows:
                directions[row], reports[row] = solutions[position], report
        if firsts == list(range(len(keys))):  # every row solved here, once
            train_logits = result.train_logits
    return SolvedDirections(
        directions, [report for report in reports if report is not None], train_logits
    )


def block_kernel_scores(
    state: FittedState,
    train_features: np.ndarray,
    residuals: np.ndarray,
    directions: np.ndarray,
    *,
    train_logits: torch.Tensor | None = None,
) -> np.ndarray:
    """s_i(t) = Σ_c r_ic φ̃_iᵀ X_t,c over the (i, c) that matter (``support_mask``).

    With peaked probabilities most r_ic are negligible (r_ic = P_ic off the label), so a
    row block whose kept pairs are few is scored pair by pair (m·s·D flops instead of
    m·n·k·D); a dense block takes the kernel GEMM, or, given ``train_logits`` (n, m, k), the
    φ_iᵀ X_t,c[:d] a refined solve already multiplied in the same float32
    (``SolvedDirections``): Σ_c r_ic z_ic with the bias column X_t,c[d] added in float64, as
    the kernel GEMM does, and no GEMM of its own.

    Parameters
    ----------
    state : FittedState with ``hessian_probabilities`` (n, k) at the residuals' Θ
    train_features : ndarray of shape (n, d)
    residuals : ndarray of shape (n, k), float64
    directions : ndarray of shape (m, k, D), float64

    Returns
    -------
    ndarray of shape (m, n), float64.
    """
    cpu = torch.device("cpu")
    n = train_features.shape[0]
    m, num_classes, dim = directions.shape
    scores = np.empty((m, n))
    if train_logits is not None and not (
        train_logits.dtype == torch.float64 or train_features.dtype == np.float32
    ):
        train_logits = None  # float64 features: the kernel GEMM multiplies in float64
    system = _state_solver(state, train_features)
    probabilities, threshold = system.product.probabilities, system.product.threshold
    directions_t = torch.from_numpy(np.ascontiguousarray(directions))
    block_rows = rows_per_block(8 * (dim + 4 * num_classes))
    for start in range(0, n, block_rows):
        rows = slice(start, min(n, start + block_rows))
        block_residuals = block_tensor(residuals, rows, dtype=np.dtype(np.float64), device=cpu)
        keep = class_support(
            block_tensor(probabilities, rows, dtype=np.dtype(np.float64), device=cpu), threshold
        ) | (block_residuals < 0)  # (b, k)
        if float(keep.float().mean()) > SPARSE_FILL and train_logits is not None:
            logits = train_logits[rows].to(device=cpu, dtype=torch.float64)  # Φ X[:d]ᵀ (b, m, k)
            logits += directions_t[None, :, :, -1]  # + X[d]: z_ic (b, m, k)
            scores[:, rows] = torch.einsum("bmk,bk->mb", logits, block_residuals).numpy()
        elif float(keep.float().mean()) > SPARSE_FILL:
            scores[:, rows] = kernel_scores(
                np.asarray(train_features[rows]), block_residuals.numpy(), directions
            )
        else:
            scores[:, rows] = _sparse_scores(
                train_features, rows, block_residuals, keep, directions_t
            ).numpy()
    return scores


def _sparse_scores(
    train_features: np.ndarray,
    rows: slice,
    residuals: torch.Tensor,
    keep: torch.Tensor,
    directions: torch.Tensor,
) -> torch.Tensor:
    """Σ_c r_ic φ̃_iᵀ X_c over the kept pairs of a row block (float64 rows), shape (m, b).

    Parameters
    ----------
    residuals : Tensor of shape (b, k), float64
    keep : Tensor of shape (b, k), bool
    directions : Tensor of shape (m, k, D), float64
    """
    m, _, dim = directions.shape
    local, classes = torch.nonzero(keep, as_tuple=True)  # (s,)
    block = augmented_rows(
        train_features, np.arange(rows.start, rows.stop), device=torch.device("cpu")
    )  # (b, D) float64
    values = torch.zeros((m, block.shape[0]), dtype=torch.float64)
    step = max(1, 64 * 1024**2 // (8 * dim * (m + 1)))
    for start in range(0, local.shape[0], step):
        part = slice(start, start + step)
        features = block[local[part]]  # (p, D)
        products = torch.einsum("mpd,pd->mp", directions[:, classes[part]], features)
        products *= residuals[local[part], classes[part]]  # r_ic φ̃_iᵀ X_c (m, p)
        values.index_add_(1, local[part], products)
    return values
