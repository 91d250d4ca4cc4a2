"""The exact Hessian as a matrix-free product, and batched preconditioned CG (docs/math.md §10).

For V (k, D): mat(H vec V) = (1/n) Σ_i A_i V φ̃_i φ̃_iᵀ with A_i = diag(P_i) − P_i P_iᵀ, i.e.
Z = Φ̃ Vᵀ (n, k), Z'_i = P_i ⊙ Z_i − P_i (P_iᵀ Z_i), then Z'ᵀ Φ̃ / n: two GEMMs streamed over
row blocks of Φ̃, never anything of size (kD)². Several right-hand sides share the GEMMs
(their V are stacked as columns). PCG runs on the zero class-sum subspace S (the range of
H), each right-hand side stopping at its own tolerance.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from representer.errors import SingularSystemError
from representer.feature_blocks import (
    augmented_row_blocks,
    block_tensor,
    float32_tensor,
    rows_per_block,
)
from representer.onednn import ONEDNN_LINEAR, linear_nt

__all__ = [
    "ClassPairs",
    "GroupedProduct",
    "SampledLogits",
    "HessianProduct",
    "LeftOutProduct",
    "augmented_rows",
    "product_nt",
    "PCGResult",
    "class_support",
    "refined_support",
    "support_threshold",
    "project",
    "solve_pcg",
    "MAX_CG_ITERATIONS",
    "SUPPORT_RTOL",
]

MAX_CG_ITERATIONS = 500
"""PCG gives up (and reports the residual it reached) after this many iterations."""
SUPPORT_RTOL = 1e-8
"""Pair (i, c) leaves the sums when P_ic ≤ SUPPORT_RTOL · mean_i(1 − max_c P_ic) / k: all
dropped pairs together then carry at most this fraction of the curvature mass
Σ_i (1 − max_c P_ic), far below any cg_tolerance. Confident rows lose most pairs."""
SPARSE_FILL = 0.25
"""A row block takes the sparse product when at most this fraction of its (i, c) is kept."""
FEATURE_CACHE_BYTES = 1024**3
"""Largest float64 copy of Φ̃ a solve holds in memory (n=50,000, D=1025: 410 MB)."""
SUPPORT_BLOCKINGS = 3
"""Ways of cutting the rows into blocks whose supports a product keeps cached."""
PRODUCT_BLOCK_BYTES = 4 * 1024**2
"""Rows of Φ̃ one dense product step multiplies: both GEMMs of a step read the same rows, so
they stay in the cache for the second (one 256 MB block read the features from memory twice)."""
PAIR_BYTES = 64 * 1024**2
"""Cap on the gathered (pairs, D) temporaries of the sparse product."""
ONEDNN_MIN_OUTPUTS = 512
"""The second GEMM of a left-out product (Wᵀ Φ, q·k rows out) goes through oneDNN
(``product_nt``) from this many rows: it needs transposed copies of both operands, which cost
more than oneDNN saves on few rows (one thread, Zen 5: k=100, 0.24 s a product with MKL's
and 0.39 s with oneDNN's; k=1,000, 1.8 s and 1.4 s). The first GEMM always takes it, and
the second too where Φᵀ is kept (``TRANSPOSED_FEATURES``)."""
TRANSPOSED_FEATURES = True
"""A left-out product keeps Φᵀ (d, n) in float32 (n·d·4 bytes; k=100, n=50,000, d=768:
154 MB) so that its second GEMM, Wᵀ Φ, goes through oneDNN without transposing Φ at every
product (one thread, Zen 5, (100 × 28,000) @ (28,000 × 768): 21 ms against MKL's 45 ms)."""
FLOAT32_MIN_TOLERANCE = 1e-8
"""The left-out part of a refined solve (``LeftOutProduct``) multiplies in float32 when the
cg_tolerance is at least this: its result is small (the left-out pairs carry little curvature),
so float32's relative error in it is far below the tolerance. Tighter tolerances use float64."""


def project(directions: torch.Tensor) -> torch.Tensor:
    """Π V: subtract the class mean, so every column sums to zero over classes.

    Parameters
    ----------
    directions : Tensor of shape (q, k, D)

    Returns
    -------
    Tensor of shape (q, k, D), a new tensor.
    """
    return directions - directions.mean(dim=1, keepdim=True)


def support_threshold(probabilities: np.ndarray) -> float:
    """SUPPORT_RTOL · mean_i(1 − max_c P_ic) / k for P of shape (n, k) (may be a memmap)."""
    n, num_classes = probabilities.shape
    total = 0.0
    step = rows_per_block(8 * num_classes * 2)
    for start in range(0, n, step):
        block = torch.from_numpy(np.array(probabilities[start : start + step], dtype=np.float64))
        total += float(_off_top(block).sum())
    return SUPPORT_RTOL * total / n / num_classes


def _off_top(probabilities: torch.Tensor) -> torch.Tensor:
    """P with each row's largest entry set to 0 (its row sums are 1 − max P, no cancellation)."""
    off_top = probabilities.clone()
    off_top[torch.arange(probabilities.shape[0]), probabilities.argmax(dim=1)] = 0.0
    return off_top


def class_support(probabilities: torch.Tensor, threshold: float) -> torch.Tensor:
    """Which (i, c) carry curvature: P_ic > ``threshold`` (``support_threshold``), or c the top.

    Parameters
    ----------
    probabilities : Tensor of shape (b, k), float64
    threshold : float

    Returns
    -------
    Tensor of shape (b, k), bool.
    """
    keep = probabilities > threshold
    keep[torch.arange(probabilities.shape[0]), probabilities.argmax(dim=1)] = True
    return keep


def refined_support(
    probabilities: torch.Tensor, threshold: float, *, keep_top: bool
) -> torch.Tensor:
    """The pairs of a refined solve's sparse operator H̃: ``class_support`` at ``threshold``,
    less the rows that only keep their top class and whose top weight P_it(1 − P_it) is at
    most ``threshold`` (unless ``keep_top``).

    Such a confident row carries curvature of the order of its off-top mass, no more than
    the pairs already left out; kept, it would make H̃ read the row on every inner
    iteration (k=100, n=50,000, separation 3: 41,940 rows of 50,000). ``LeftOutProduct``
    multiplies it instead.

    Parameters
    ----------
    probabilities : Tensor of shape (b, k), float64
    threshold : float
    keep_top : bool

    Returns
    -------
    Tensor of shape (b, k), bool.
    """
    keep = class_support(probabilities, threshold)
    if not keep_top:
        rows = torch.arange(probabilities.shape[0])
        top = probabilities.argmax(dim=1)
        weight = probabilities[rows, top] * (1.0 - probabilities[rows, top])  # (b,)
        light = (keep.sum(dim=1) == 1) & (weight <= threshold)
        keep[rows[light], top[light]] = False
    return keep


@dataclass(frozen=True)
class HessianProduct:
    """V ↦ mat((H + δI) vec V) on the live features, for stacks of V.

    Attributes
    ----------
    train_features : ndarray of shape (n, d), real (may be a read-only memmap)
    probabilities : ndarray of shape (n, k), float64
        P_i at the Θ where H is taken.
    damping : float
        δ >= 0.
    live : Tensor of shape (D,), bool
        Features that are not zero on every training row; H is zero on the others, whose
        entries the product (and every right-hand side) keeps at zero (the pseudo-inverse).
    """

    train_features: np.ndarray
    probabilities: np.ndarray
    damping: float
    live: torch.Tensor
    threshold: float
    """P_ic at or below which (i, c) is left out (``support_threshold``)."""
    supports: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = field(
        default_factory=dict, compare=False, repr=False
    )
    """Per row block (first, last row): the kept pairs (i, c, P_ic), or None (dense block)."""
    feature_blocks: list[tuple[slice, torch.Tensor]] | None = field(
        default=None, compare=False, repr=False
    )
    """Φ̃ in float64 row blocks, held for the iterations of one solve (``in_memory``)."""

    def in_memory(self, device: torch.device) -> HessianProduct:
        """This product over Φ̃ converted once to float64 (when it fits FEATURE_CACHE_BYTES).

        A solve multiplies by H tens of times; converting the float32 features every time
        costs about as much as the GEMMs themselves.
        """
        n, d = self.train_features.shape
        if self.feature_blocks is not None or n * (d + 1) * 8 > FEATURE_CACHE_BYTES:
            return self
        block_rows = rows_per_block(8 * (d + 1 + 12 * self.probabilities.shape[1]))
        blocks = list(
            augmented_row_blocks(self.train_features, block_rows=block_rows, device=device)
        )
        return replace(self, feature_blocks=blocks)

    def support(
        self, rows: slice, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The kept (i − rows.start, c, P_ic) of a row block, or None when most are kept.

        Cached per block; the cache holds at most ``SUPPORT_BLOCKINGS`` ways of cutting the
        rows (the block size depends on how many systems a product serves).
        """
        key = (rows.start, rows.stop)
        if key not in self.supports:
            blocks_per_cut = -(-self.train_features.shape[0] // (rows.stop - rows.start))
            if len(self.supports) >= SUPPORT_BLOCKINGS * blocks_per_cut:
                self.supports.clear()
            probabilities = block_tensor(
                self.probabilities, rows, dtype=np.dtype(np.float64), device=device
            )
            keep = class_support(probabilities, self.threshold)  # (b, k)
            if float(keep.float().mean()) > SPARSE_FILL:
                self.supports[key] = None
            else:
                local, classes = torch.nonzero(keep, as_tuple=True)
                self.supports[key] = (local, classes, probabilities[local, classes])
        return self.supports[key]

    def __call__(self, directions: torch.Tensor) -> torch.Tensor:
        """mat((H + δI) vec V) for every V.

        Parameters
        ----------
        directions : Tensor of shape (q, k, D), float64

        Returns
        -------
        Tensor of shape (q, k, D), float64; zero class-sum when damping is 0.
        """
        q, num_classes, dim = directions.shape
        device = directions.device
        n = self.train_features.shape[0]
        stacked = directions.reshape(q * num_classes, dim)  # (q·k, D)
        product = torch.zeros_like(stacked)  # (q·k, D)
        block_rows = rows_per_block(8 * (dim + 3 * q * num_classes))
        for rows, block in self.feature_blocks or augmented_row_blocks(
            self.train_features, block_rows=block_rows, device=device
        ):
            pairs = self.support(rows, device)
            if pairs is not None:
                _sparse_product(block, directions, pairs, product.view(q, num_classes, dim))
                continue
            probabilities = block_tensor(
                self.probabilities, rows, dtype=np.dtype(np.float64), device=device
            )[:, None, :]  # (b, 1, k)
            step = rows_per_block(8 * (dim + 3 * q * num_classes), block_bytes=PRODUCT_BLOCK_BYTES)
            for first in range(0, block.shape[0], step):
                part = block[first : first + step]  # (p, D), still in cache for the second GEMM
                logits = (part @ stacked.T).reshape(-1, q, num_classes)  # Z (p, q, k)
                kept = probabilities[first : first + step]  # (p, 1, k)
                weighted = kept * logits  # P_i ⊙ Z_i (p, q, k)
                weighted -= kept * weighted.sum(dim=2, keepdim=True)  # − P_i (P_iᵀ Z_i)
                product.addmm_(weighted.reshape(-1, q * num_classes).T, part)  # Z'ᵀ Φ̃ (q·k, D)
        product /= n
        if self.damping:
            product += self.damping * stacked
        result = product.reshape(q, num_classes, dim)
        result[:, :, ~self.live] = 0.0
        return result


def _sparse_product(
    block: torch.Tensor,
    directions: torch.Tensor,
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    product: torch.Tensor,
) -> None:
    """Add Σ_i A_i V φ̃_i φ̃_iᵀ over a row block, from its kept pairs only, into ``product``.

    Parameters
    ----------
    block : Tensor of shape (b, D), float64
    directions : Tensor of shape (q, k, D), float64
    pairs : (i, c, P_ic), three Tensors of shape (s,)
    product : Tensor of shape (q, k, D), float64, updated in place
    """
    local, classes, kept = pairs
    q, _, dim = directions.shape
    step = max(1, PAIR_BYTES // (8 * dim * (q + 1)))
    weighted = torch.empty((q, local.shape[0]), dtype=block.dtype, device=block.device)
    for start in range(0, local.shape[0], step):
        part = slice(start, start + step)
        features = block[local[part]]  # (p, D)
        logits = torch.einsum("qpd,pd->qp", directions[:, classes[part]], features)  # Z_ic
        weighted[:, part] = kept[part] * logits  # P_ic Z_ic (q, p)
    row_sums = torch.zeros((q, block.shape[0]), dtype=block.dtype, device=block.device)
    row_sums.index_add_(1, local, weighted)  # P_iᵀ Z_i (q, b)
    weighted -= kept * row_sums[:, local]  # Z'_ic (q, s)
    for start in range(0, local.shape[0], step):
        part = slice(start, start + step)
        features = block[local[part]]  # (p, D)
        product.index_add_(1, classes[part], weighted[:, part, None] * features[None])


GATHER_ROWS = 8192
"""Rows of one class gathered for one GEMM (block sums, self-score forms, grouped products)."""


@dataclass(frozen=True)
class ClassPairs:
    """Kept pairs (i, c) grouped by class: rows ascending within each class.

    Attributes
    ----------
    rows, classes : ndarray of shape (s,), int64
    values : ndarray of shape (s,), float64
        P_ic of each pair.
    starts : ndarray of shape (k + 1,), int64
        Class c's pairs are ``[starts[c], starts[c + 1])``.
    """

    rows: np.ndarray
    classes: np.ndarray
    values: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, probabilities: np.ndarray, keep: Callable[[np.ndarray], np.ndarray]) -> ClassPairs:
        """The pairs where ``keep(P block)`` (a (b, k) bool mask), P read in row blocks."""
        n, num_classes = probabilities.shape
        rows, classes, values = [], [], []
        step = rows_per_block(8 * num_classes * 4)
        for start in range(0, n, step):
            block = np.asarray(probabilities[start : start + step], dtype=np.float64)
            local, chosen = np.nonzero(keep(block))
            rows.append(local + start)
            classes.append(chosen)
            values.append(block[local, chosen])
        all_classes = np.concatenate(classes).astype(np.int64)
        order = np.argsort(all_classes, kind="stable")  # rows stay ascending per class
        return cls(
            rows=np.concatenate(rows).astype(np.int64)[order],
            classes=all_classes[order],
            values=np.concatenate(values)[order],
            starts=np.searchsorted(all_classes[order], np.arange(num_classes + 1)),
        )

    def of_class(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, P_ic) of class c."""
        part = slice(int(self.starts[c]), int(self.starts[c + 1]))
        return self.rows[part], self.values[part]


def augmented_rows(
    train_features: np.ndarray,
    rows: np.ndarray,
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Φ̃[rows] (ascending row indices) as a (len(rows), D) tensor, last column ones."""
    d = train_features.shape[1]
    block = torch.empty((rows.size, d + 1), dtype=dtype)
    view = block.numpy()
    view[:, :d] = train_features[rows]
    view[:, d] = 1.0
    return block.to(device)


@dataclass(frozen=True)
class SampledLogits:
    """z_ic = φ̃_iᵀ V_c at the kept pairs only, from Φ read once in row order.

    One sampled matrix product (``torch.sparse.sampled_addmm``) over the pairs' pattern, a
    CSR (n, k) matrix, reads each training row once and multiplies it by the kept classes'
    V_c, which stay in the cache; the class-grouped GEMMs read a copy of the row per kept
    pair instead (k=1,000, n=50,000: 265,000 pairs, about 5 copies of Φ). The bias column
    of Φ̃ is added per pair.

    Attributes
    ----------
    features : Tensor of shape (n, d), float32
        Φ itself, without a copy when it is a float32 array (e.g. the read-only memmap).
    pattern : sparse CSR Tensor of shape (n, k), float32, all values 0
        The kept pairs, rows ascending, classes ascending within a row.
    classes : Tensor of shape (s,), int64
        The class of each pair in pattern (row) order.
    to_class_order : Tensor of shape (s,), int64
        Where each pair of pattern order sits in ``ClassPairs`` (class) order.
    """

    features: torch.Tensor
    pattern: torch.Tensor
    classes: torch.Tensor
    to_class_order: torch.Tensor

    @classmethod
    def of(
        cls, train_features: np.ndarray, pairs: ClassPairs, by_row: np.ndarray, device: torch.device
    ) -> SampledLogits:
        """The pattern of ``pairs``; ``by_row`` their class-order positions sorted by row."""
        n = train_features.shape[0]
        rows, classes = pairs.rows[by_row], pairs.classes[by_row]
        row_starts = np.searchsorted(rows, np.arange(n + 1))
        with warnings.catch_warnings():  # the features are only read; CSR is "beta" in torch
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            pattern = torch.sparse_csr_tensor(
                torch.from_numpy(row_starts.astype(np.int64)),
                torch.from_numpy(classes),
                torch.zeros(classes.size, dtype=torch.float32),
                size=(n, pairs.starts.size - 1),
                device=device,
                check_invariants=True,
            )
            features = torch.from_numpy(np.asarray(train_features)).to(device)
        return cls(
            features=features,
            pattern=pattern,
            classes=torch.from_numpy(classes).to(device),
            to_class_order=torch.from_numpy(by_row.astype(np.int64)).to(device),
        )

    def __call__(self, directions: torch.Tensor, *, out: torch.Tensor) -> None:
        """Write z (class order) of every system into ``out``.

        Parameters
        ----------
        directions : Tensor of shape (q, k, D), float32
        out : Tensor of shape (s, q), float32
        """
        d = self.features.shape[1]
        for system in range(directions.shape[0]):
            weights = directions[system]  # (k, D)
            logits = torch.sparse.sampled_addmm(
                self.pattern, self.features, weights[:, :d].T, beta=0.0
            ).values()  # φ_iᵀ V_c[:d] (s,)
            logits += weights[self.classes, d]  # + the bias column
            out[self.to_class_order, system] = logits


@dataclass(frozen=True)
class GroupedProduct:
    """V ↦ mat(H̃ vec V) over the kept ``pairs`` only, grouped by class (no damping, not in S).

    For each class c with kept rows I_c: z = Φ̃[I_c] V_c (one GEMM), then the row sums
    P_iᵀ z_i over each row's kept pairs, w = P ⊙ z − P ⊙ (row sum), and Φ̃[I_c]ᵀ w into row c:
    4·s·D flops for s kept pairs. ``cache`` holds every Φ̃[I_c] gathered once (float32: half
    the memory, for the inner solves of ``refined_solve``); without it the rows are gathered
    from ``source`` (float64 row blocks of Φ̃, e.g. ``HessianProduct.in_memory``) per call.

    Attributes
    ----------
    pairs : ClassPairs
    n : int
    live : Tensor of shape (D,), bool
    cache : list of k Tensors (n_c, D), or None
    source : Tensor of shape (n, D), float64, or None
    """

    pairs: ClassPairs
    n: int
    live: torch.Tensor
    cache: list[torch.Tensor] | None = None
    source: torch.Tensor | np.ndarray | None = None
    """Φ̃ (n, D) float64 in memory, or Φ (n, d) itself (rows gathered and augmented per call)."""
    float64: bool = False
    """Multiply the cached rows in float64 (exact when the features are float32 themselves)."""
    sampled: SampledLogits | None = None
    """The first GEMMs as one sampled product over Φ read row by row (float32 features)."""
    cached_chunks: list[tuple[int, int, int, torch.Tensor]] = field(
        default_factory=list, init=False, compare=False, repr=False
    )
    """(c, first pair, last pair, the cached rows of those pairs) of every chunk, built once by
    ``cached`` (float32 products: no slicing and chunk list per product, 0.7 ms of 10 at
    k=100)."""

    @classmethod
    def cached(
        cls, train_features: np.ndarray, pairs: ClassPairs, live: torch.Tensor
    ) -> GroupedProduct:
        """Φ̃[I_c] of every class gathered once, in float32, in one sequential pass over Φ."""
        n, d = train_features.shape
        gathered = torch.empty((pairs.rows.size, d + 1), dtype=torch.float32)
        gathered[:, d] = 1.0
        by_row = np.argsort(pairs.rows, kind="stable")  # pair positions in row order
        sorted_rows = pairs.rows[by_row]
        step = rows_per_block(4 * (d + 1))
        for start in range(0, n, step):
            low, high = np.searchsorted(sorted_rows, [start, start + step])
            if high == low:
                continue
            block = np.asarray(train_features[start : start + step], dtype=np.float32)
            positions = torch.from_numpy(by_row[low:high])
            local = torch.from_numpy(sorted_rows[low:high] - start)
            gathered[positions, :d] = torch.from_numpy(block)[local]
        gathered = gathered.to(live.device)
        cache = [
            gathered[int(pairs.starts[c]) : int(pairs.starts[c + 1])]
            for c in range(pairs.starts.size - 1)
        ]
        sampled = None
        if train_features.dtype == np.float32:
            sampled = SampledLogits.of(train_features, pairs, by_row, live.device)
        product = cls(pairs, n, live, cache=cache, sampled=sampled)
        product.cached_chunks.extend(
            (c, first, last, cache[c][part]) for c, first, last, part in product.chunks()
        )
        return product

    def rows_of(self, c: int, part: slice) -> torch.Tensor:
        """Φ̃ of class c's kept pairs ``part``."""
        if self.cache is not None:
            return self.cache[c][part].double() if self.float64 else self.cache[c][part]
        rows = self.pairs.of_class(c)[0][part]
        if isinstance(self.source, torch.Tensor):
            return self.source.index_select(0, torch.as_tensor(rows, device=self.source.device))
        assert self.source is not None
        return augmented_rows(self.source, rows, device=self.live.device)

    def chunks(self) -> list[tuple[int, int, int, slice]]:
        """(class c, first pair, last pair, ``part`` of c's rows) of every chunk of at most
        ``GATHER_ROWS`` pairs, classes without pairs skipped."""
        starts = self.pairs.starts
        return [
            (
                c,
                first,
                min(int(starts[c + 1]), first + GATHER_ROWS),
                slice(
                    first - int(starts[c]),
                    min(int(starts[c + 1]), first + GATHER_ROWS) - int(starts[c]),
                ),
            )
            for c in range(starts.size - 1)
            for first in range(int(starts[c]), int(starts[c + 1]), GATHER_ROWS)
        ]

    def multiplied_chunks(self) -> Iterator[tuple[int, int, int, torch.Tensor]]:
        """(c, first pair, last pair, Φ̃ of those pairs in the product's dtype) of every chunk,
        gathered one chunk at a time where they are not cached in float32."""
        if self.cached_chunks and not self.float64:
            return iter(self.cached_chunks)
        return ((c, first, last, self.rows_of(c, part)) for c, first, last, part in self.chunks())

    def __call__(self, directions: torch.Tensor) -> torch.Tensor:
        """mat(H̃ vec V) for a stack (q, k, D) float64; shape (q, k, D), float64.

        Each chunk's GEMM writes into one buffer of the multiplication dtype, converted to
        float64 once (not per class: k=1,000 makes 2,000 GEMMs a product).
        """
        q, num_classes, dim = directions.shape
        device = directions.device
        dtype = torch.float32 if self.cache is not None and not self.float64 else torch.float64
        values = torch.as_tensor(self.pairs.values, device=device)  # P of the pairs (s,)
        rows = torch.as_tensor(self.pairs.rows, device=device)
        cast = directions.to(dtype)
        logits = torch.empty((values.shape[0], q), dtype=dtype, device=device)
        if self.sampled is not None and dtype == torch.float32:
            self.sampled(cast, out=logits)  # z
        else:
            for c, first, last, rows_c in self.multiplied_chunks():
                torch.matmul(rows_c, cast[:, c, :].T, out=logits[first:last])
        weighted = values[:, None] * logits.double()  # P_ic z_ic (s, q)
        row_sums = torch.zeros((self.n, q), dtype=torch.float64, device=device)
        row_sums.index_add_(0, rows, weighted)  # P_iᵀ z_i over kept pairs (n, q)
        weighted -= values[:, None] * row_sums[rows]  # Z'_ic (s, q)
        weighted_t = weighted.to(dtype).T  # (q, s)
        product = torch.zeros((q, num_classes, dim), dtype=dtype, device=device)
        for c, first, last, rows_c in self.multiplied_chunks():
            product[:, c, :].addmm_(weighted_t[:, first:last], rows_c)
        result = product.double() / self.n
        result[:, :, ~self.live] = 0.0
        return result


@dataclass(frozen=True)
class LeftOutProduct:
    """V ↦ mat((H − H̃) vec V): what the pairs a sparse ``HessianProduct`` leaves out add.

    With K_i the classes row i keeps (``class_support`` at ``threshold``), P^k = P ⊙ 1_K and
    P^o = P − P^k, A_i − Ã_i applied to z = Z_i is P^o ⊙ z − P^o (Pᵀz) − P^k (P^oᵀ z): every
    term carries a left-out P_ic, so the product is small and float32 (``float32``) keeps its
    error far below the solve's tolerance. Streams Φ in row blocks in the features' own dtype
    (no float64 copy); two dense GEMMs of n·k·D per call. The weights P^o of every row block
    (n·k values in the product's dtype) and its kept pairs are worked out at the first call
    and kept (``weights``): the elementwise passes over the (b, k) blocks then run in that
    dtype, and P^k only where it is not zero (a few pairs a row). In float32 both GEMMs take
    oneDNN, the second over Φᵀ kept per row block (``transposed``, n·d floats).

    Attributes
    ----------
    train_features : ndarray of shape (n, d), real
    probabilities : ndarray of shape (n, k), float64
    threshold : float
        The sparse operator's ``threshold``; pairs at or below it (not the top) are left out.
    live : Tensor of shape (D,), bool
    float32 : bool
    keep_top : bool
        Whether every row's top pair is kept (``refined_support``).
    """

    train_features: np.ndarray
    probabilities: np.ndarray
    threshold: float
    live: torch.Tensor
    float32: bool
    keep_top: bool = True
    weights: dict[tuple[int, int], tuple[torch.Tensor, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    """Per row block (first, last row): P^o (b, k), the kept pairs (i − first, c, P^k_ic), and
    the rows without kept pairs (i − first, top class)."""
    transposed: dict[tuple[int, int], torch.Tensor] = field(
        default_factory=dict, compare=False, repr=False
    )
    """Per row block of one cut (rows a block, first row): Φ[rows]ᵀ (d, b), contiguous
    float32, for the second GEMM by oneDNN (``TRANSPOSED_FEATURES``)."""

    def block_weights(
        self, rows: slice, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, ...]:
        """P^o of a row block (b, k), its kept pairs (local rows, classes, P_ic) in ``dtype``,
        and its rows without kept pairs (local rows, top classes)."""
        key = (rows.start, rows.stop)
        if key not in self.weights:
            probabilities = block_tensor(
                self.probabilities, rows, dtype=np.dtype(np.float64), device=device
            )  # (b, k)
            keep = refined_support(probabilities, self.threshold, keep_top=self.keep_top)
            local, classes = torch.nonzero(keep, as_tuple=True)  # (s,)
            unkept = torch.nonzero(~keep.any(dim=1)).flatten()  # (r,)
            self.weights[key] = (
                probabilities.masked_fill(keep, 0.0).to(dtype),  # P^o
                local,
                classes,
                probabilities[local, classes].to(dtype),  # P^k where it is not zero
                unkept,
                probabilities[unkept].argmax(dim=1),
            )
        return self.weights[key]

    def features(self, rows: slice, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Φ[rows] (b, d) in ``dtype``: a view of float32 features (the memmap's pages, no
        copy: a fresh 40 MB block faulted its pages in at every product), else a copy."""
        if self.train_features.dtype == np.float32 and dtype == torch.float32:
            return float32_tensor(self.train_features[rows]).to(device)
        return block_tensor(
            self.train_features, rows, dtype=np.dtype(dtype_name(dtype)), device=device
        )

    def transposed_block(self, rows: slice, block: torch.Tensor, cut: int) -> torch.Tensor | None:
        """Φ[rows]ᵀ (d, b) contiguous, kept for one ``cut`` (rows a block) at a time, or None
        where the second GEMM does not take oneDNN with it (float64, no oneDNN, or
        ``TRANSPOSED_FEATURES`` off)."""
        if (
            not TRANSPOSED_FEATURES
            or block.dtype != torch.float32
            or block.device.type != "cpu"
            or ONEDNN_LINEAR is None
        ):
            return None
        key = (cut, rows.start)
        transposed = self.transposed.get(key)
        if transposed is None:
            if any(kept_cut != cut for kept_cut, _ in list(self.transposed)):
                self.transposed.clear()  # another number of systems, another cut
            transposed = self.transposed[key] = block.T.contiguous()
        return transposed  # a local: another thread's cut may clear the dict meanwhile

    def __call__(
        self, directions: torch.Tensor, *, logits_out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """mat((H − H̃) vec V) for a stack (q, k, D) float64; shape (q, k, D), float64.

        ``logits_out`` (n, q, k), when given, receives Φ V[:, :, :d]ᵀ of every row as
        multiplied here (``product_nt``, in the product's dtype), without the bias column
        V[:, :, d], which a reader adds in float64: the scores of the final pass are
        Σ_c r_ic z_ic.
        """
        q, num_classes, dim = directions.shape
        device = directions.device
        n, d = self.train_features.shape
        dtype = torch.float32 if self.float32 else torch.float64
        stacked = directions.reshape(q * num_classes, dim).to(dtype)  # (q·k, D)
        weights, bias_t = stacked[:, :d].contiguous(), stacked[:, d]  # (q·k, d), (q·k,)
        product = torch.zeros((q * num_classes, dim), dtype=torch.float64, device=device)
        block_rows = rows_per_block(8 * (d + 4 * q * num_classes))
        for start in range(0, n, block_rows):
            rows = slice(start, min(n, start + block_rows))
            block = self.features(rows, dtype, device)  # Φ rows (b, d)
            left, local, classes, kept, unkept, unkept_top = self.block_weights(rows, dtype, device)
            logits = product_nt(block, weights).reshape(-1, q, num_classes)  # Φ V[:, :d]ᵀ
            if logits_out is not None:
                logits_out[rows] = logits
            logits += bias_t.reshape(q, num_classes)  # Z (b, q, k)
            if unkept.numel():  # A_i z = A_i (z − z_it 1): no cancellation when P_it ≈ 1
                logits[unkept] -= logits[unkept, :, unkept_top][:, :, None]
            weighted = left[:, None, :] * logits  # P^o ⊙ z (b, q, k)
            left_sums = weighted.sum(dim=2)  # P^oᵀ z (b, q)
            full_sums = left_sums.index_add(
                0, local, kept[:, None] * logits[local, :, classes]
            )  # Pᵀz = P^oᵀz + P^kᵀz (b, q)
            weighted.addcmul_(left[:, None, :], full_sums[:, :, None], value=-1.0)  # − P^o (Pᵀz)
            weighted[local, :, classes] -= kept[:, None] * left_sums[local]  # − P^k (P^oᵀz)
            weighted_t = weighted.reshape(-1, q * num_classes).T  # (q·k, b)
            transposed = self.transposed_block(rows, block, block_rows)
            if transposed is not None:  # oneDNN over the kept Φᵀ: one transposed copy
                product[:, :d] += linear_nt(weighted_t.contiguous(), transposed).double()
            elif q * num_classes >= ONEDNN_MIN_OUTPUTS:
                product[:, :d] += product_nt(weighted_t, block.T).to(torch.float64)
            else:  # MKL: no transposed copies
                product[:, :d] += (weighted_t @ block).to(torch.float64)
            product[:, d] += weighted_t.sum(dim=1).to(torch.float64)
        product /= n
        result = product.reshape(q, num_classes, dim)
        result[:, :, ~self.live] = 0.0
        return result


def product_nt(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """left @ rightᵀ for left (a, c) and right (b, c); shape (a, b), their dtype.

    Float32 on the CPU goes through oneDNN where torch has it (``representer.onednn``): on
    an AMD Zen 5 core (one thread) its single-precision GEMM took 59 ms for
    (6,670 × 1,024) @ (1,024 × 1,000) against 137 ms for MKL's (which does not use AVX-512
    there), with a rounding error of 8.6e-7 of the largest entry against 3.9e-7. Other
    dtypes and devices take ``@``.
    """
    if (
        left.device.type != "cpu"
        or left.dtype != torch.float32
        or right.dtype != torch.float32
        or ONEDNN_LINEAR is None
    ):
        return left @ right.T
    return linear_nt(left.contiguous(), right.contiguous())


def dtype_name(dtype: torch.dtype) -> str:
    """The NumPy name of a torch floating dtype."""
    return "float32" if dtype is torch.float32 else "float64"


@dataclass(frozen=True)
class PCGResult:
    """Solutions of a batch of systems and how far each got.

    Attributes
    ----------
    solution : Tensor of shape (q, k, D), float64
    iterations : ndarray of shape (q,), int64
    relative_residual : ndarray of shape (q,), float64
        ‖b − (H + δI) x‖ / ‖b‖ recomputed from x after the last iteration (0 for b = 0).
    """

    solution: torch.Tensor
    iterations: np.ndarray
    relative_residual: np.ndarray
    train_logits: torch.Tensor | None = None
    """Φ X_j[:, :d]ᵀ of every solution (Z_j = Φ̃ X_jᵀ without its bias column), shape (n, q, k),
    as the last exact residual of a refined solve multiplied it (``LeftOutProduct``); None
    where no solve kept them."""


def _dot(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Per-system inner product ⟨L_j, R_j⟩ of (q, k, D) stacks, shape (q,)."""
    return (left * right).sum(dim=(1, 2))


def solve_pcg(
    product: Callable[[torch.Tensor], torch.Tensor],
    precondition: Callable[[torch.Tensor], torch.Tensor],
    right_hand_sides: torch.Tensor,
    *,
    tolerance: float | torch.Tensor,
    max_iterations: int = MAX_CG_ITERATIONS,
) -> PCGResult:
    """Solve (H + δI) x_j = Π b_j on S for every j by preconditioned CG.

    Every system stops at its own relative residual ``tolerance``; the products of the
    systems still running share their GEMMs.

    Parameters
    ----------
    product : callable (q, k, D) -> (q, k, D)
        The operator (``HessianProduct``); symmetric positive definite on S.
    precondition : callable (q, k, D) -> (q, k, D)
        M⁻¹, symmetric positive definite on S and mapping into S.
    right_hand_sides : Tensor of shape (q, k, D), float64
        Projected onto S here.
    tolerance : float, or Tensor of shape (q,)
        Stop system j when ‖r_j‖/‖b_j‖ <= tolerance (tolerance[j]).

    Raises
    ------
    SingularSystemError
        A search direction of zero or negative curvature: H is singular on S.
    """
    rhs = project(right_hand_sides)
    q = rhs.shape[0]
    rhs_norm = rhs.flatten(1).norm(dim=1)  # (q,)
    solution = torch.zeros_like(rhs)
    residual = rhs.clone()
    iterations = np.zeros(q, dtype=np.int64)
    tolerances = torch.as_tensor(tolerance, dtype=torch.float64, device=rhs.device).expand(q)
    active = torch.nonzero(rhs_norm > 0).flatten()
    if active.numel():
        preconditioned = precondition(residual[active])
        direction = preconditioned.clone()
        residual_dot = _dot(residual[active], preconditioned)  # ⟨r, z⟩ (a,)
    for _ in range(max_iterations):
        if active.numel() == 0:
            break
        curved = product(direction)  # (a, k, D)
        curvature = _dot(direction, curved)  # (a,)
        if not bool((curvature > 0).all()) or not bool(torch.isfinite(curvature).all()):
            raise SingularSystemError(
                "the Hessian is singular on the zero class-sum subspace (a PCG direction "
                "has zero curvature); raise `damping`",
                argument="damping",
            )
        step = residual_dot / curvature  # α (a,)
        solution[active] += step[:, None, None] * direction
        residual[active] -= step[:, None, None] * curved
        iterations[active.cpu().numpy()] += 1
        reached = residual[active].flatten(1).norm(dim=1) / rhs_norm[active]  # (a,)
        running = reached > tolerances[active]
        if not bool(running.any()):
            break
        active, direction, residual_dot = (
            active[running],
            direction[running],
            residual_dot[running],
        )
        preconditioned = precondition(residual[active])
        new_dot = _dot(residual[active], preconditioned)
        direction = preconditioned + (new_dot / residual_dot)[:, None, None] * direction
        residual_dot = new_dot
    true_residual = rhs - product(solution) if q else rhs
    norms = true_residual.flatten(1).norm(dim=1)
    relative = torch.where(rhs_norm > 0, norms / rhs_norm.clamp_min(1e-300), 0.0)
    return PCGResult(
        solution=solution, iterations=iterations, relative_residual=relative.cpu().numpy()
    )
