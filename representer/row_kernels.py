"""Few-row products X Wᵀ that read a large float32 W once, compiled for this CPU (numba).

A shared query pass multiplies one class's materialised weights W[c] (n×D float32, larger
than the caches) by the b test rows that target it; b is 1 to 4 for most classes of a
mixed batch. Reading W from memory is the cost, so the ideal product costs about the same
for every small b. The BLAS kernels torch has are far from it on these shapes (n=50,000,
D=513, one thread, AMD Zen 5; ms, median of 15, W not in the caches): oneDNN 3.4 for one
row but 6.4-6.9 for two to four, MKL 4.2 for two and 6.0-6.6 for three or four.

The kernels here keep an R×b block of dot products φ_r·x_j in vector registers (R rows of W
against every x_j, summed over D), so each row of W is loaded from memory once and
multiplied by all b rows while it sits in L1; LLVM vectorises the sum over D. Measured as
above: 3.0-3.3 ms for one row, 3.5-3.6 for two, 3.8-3.9 for three, 4.5 for four. They
accumulate in float32, as the BLAS kernels do, in a different order (values agree to
float32 rounding).

A product runs on as many threads as the caller's pass may use (``torch.get_num_threads()``:
``RPS_QUERY_THREADS`` in an API process, every core in a job), each thread reading its own
range of W's rows: one core does not saturate the memory bus (n=50,000, D=513, one row, 2
cores: 10.2-11.2 ms on one thread, 6.0-7.2 on two). The kernels release the interpreter
lock (``nogil``) and the threads are plain Python threads of this module; numba's own
thread pool is never started, since it loads the system's OpenMP runtime beside torch's and
changes how many threads oneDNN uses.

numba compiles a kernel the first time a row count is used (0.2-0.4 s each) for the CPU
it runs on (AVX-512 where there is one); without numba, ``FEW_ROWS_KERNELS`` is False and
callers use torch's products.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import torch

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; platforms without a wheel
    numba = None  # type: ignore[assignment]

__all__ = [
    "FEW_ROWS_KERNELS",
    "MAX_KERNEL_ROWS",
    "MIN_ROWS_PER_THREAD",
    "compile_kernels",
    "few_rows_product",
    "grouped_rows_product",
    "row_ranges",
]

FEW_ROWS_KERNELS = numba is not None
"""Whether ``few_rows_product`` can run (numba is importable)."""
MAX_KERNEL_ROWS = 4
"""The largest b with a kernel: from five rows on oneDNN's GEMM is faster (7.4 ms for eight
rows, 9.2 for sixteen, where a register-blocked kernel took 6.3-8.8 and 9.4-11.6)."""
_BLOCK_ROWS = {1: 8, 2: 8, 3: 8, 4: 6}
"""R, the rows of W a kernel holds at once for b test rows: R·b accumulators of 16 floats,
at most 24 of the 32 AVX-512 registers (measured best of R in 4, 6, 8, 12, 16)."""
_ALL_BLOCKS = 24
"""A multiple of every R in ``_BLOCK_ROWS``: thread ranges that start on it start on whole
register blocks whatever the group's row count."""
MIN_ROWS_PER_THREAD = 8_192
"""Rows of W below which a thread is not worth starting work on: 8,192 rows of D=513 take
about 0.3-1 ms to read, handing a range to a thread tens of microseconds."""
_COMPILE_LOCK = threading.Lock()
_POOL_LOCK = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None
"""(process id, pool): a pool inherited through fork has no threads, so a child makes its own."""


def few_rows_product(
    weights: np.ndarray, rows: np.ndarray, *, threads: int | None = None
) -> np.ndarray:
    """rows @ weightsᵀ, reading ``weights`` once.

    Parameters
    ----------
    weights : ndarray of shape (n, D), float32, C-contiguous (may be a read-only memmap)
    rows : ndarray of shape (b, D), float32, 1 <= b <= MAX_KERNEL_ROWS
    threads : int, optional
        Threads that share the rows of ``weights`` (default ``torch.get_num_threads()``);
        fewer when a thread would get under ``MIN_ROWS_PER_THREAD`` rows. The answer does
        not depend on it: every value is one row's dot product, summed in the same order.

    Returns
    -------
    ndarray of shape (b, n), float32.
    """
    count, n = rows.shape[0], weights.shape[0]
    out = np.empty((count, n), dtype=np.float32)  # (b, n)
    rows = np.ascontiguousarray(rows)
    kernel = _kernel(count)
    first, *others = row_ranges(n, threads or torch.get_num_threads(), multiple=_BLOCK_ROWS[count])
    pending = [_thread_pool().submit(kernel, weights, rows, out, *span) for span in others]
    kernel(weights, rows, out, *first)  # the calling thread takes the first range
    for future in pending:
        future.result()
    return out


def grouped_rows_product(
    weights: np.ndarray,
    rows: np.ndarray,
    group_classes: np.ndarray,
    group_starts: np.ndarray,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """``few_rows_product`` of several groups of rows, each against its own class's weights,
    in one call: group g's rows ``rows[group_starts[g]:group_starts[g + 1]]`` (1 to
    ``MAX_KERNEL_ROWS`` of them) times ``weights[group_classes[g]]ᵀ``.

    A mixed query pass has one such group per target class. One call for all of them hands
    work to the helper threads once per pass, and the interpreter lock is let go and taken
    back once per thread, not once per class: in an API process other threads hold that
    lock in short bursts, and each return of a kernel waited for one. Each thread takes the
    same rows of W in every class, so the values equal ``few_rows_product``'s bit for bit.

    Parameters
    ----------
    weights : ndarray of shape (k, n, D), float32, C-contiguous (may be a read-only memmap)
    rows : ndarray of shape (m, D), float32, ordered by group
    group_classes : ndarray of shape (G,), int64, each in 0..k-1
    group_starts : ndarray of shape (G + 1,), int64
        Increasing from 0 to m, consecutive starts 1 to ``MAX_KERNEL_ROWS`` apart.
    threads : int, optional
        As in ``few_rows_product``.

    Returns
    -------
    ndarray of shape (m, n), float32.
    """
    n = weights.shape[1]
    out = np.empty((rows.shape[0], n), dtype=np.float32)  # (m, n)
    rows = np.ascontiguousarray(rows)
    driver = _grouped_driver()
    spans = row_ranges(n, threads or torch.get_num_threads(), multiple=_ALL_BLOCKS)
    first, *others = spans
    arguments = (weights, rows, out, group_classes, group_starts)
    pending = [_thread_pool().submit(driver, *arguments, *span) for span in others]
    driver(*arguments, *first)
    for future in pending:
        future.result()
    return out


def row_ranges(n: int, threads: int, *, multiple: int) -> list[tuple[int, int]]:
    """[start, stop) ranges covering 0..n, one per thread, each at least
    ``MIN_ROWS_PER_THREAD`` rows (so at least one range), starts on multiples of
    ``multiple`` (whole register blocks)."""
    parts = min(threads, n // MIN_ROWS_PER_THREAD)
    if parts <= 1:
        return [(0, n)]
    step = -(-n // parts)  # ceil(n / parts)
    step += -step % multiple
    starts = list(range(0, n, step))
    if n - starts[-1] < MIN_ROWS_PER_THREAD:  # rounding to whole blocks left a short tail
        starts.pop()
    return [(start, stop) for start, stop in zip(starts, [*starts[1:], n], strict=True)]


def _thread_pool() -> ThreadPoolExecutor:
    """This process's pool of helper threads for ``few_rows_product``."""
    global _pool
    with _POOL_LOCK:
        if _pool is None or _pool[0] != os.getpid():
            workers = max(1, (os.cpu_count() or 1) - 1)
            _pool = (os.getpid(), ThreadPoolExecutor(workers, thread_name_prefix="rps-rows"))
        return _pool[1]


def compile_kernels() -> None:
    """Compile every row count's kernel and the grouped driver now (2-4 s in all), so that
    no query waits for one; a no-op without numba or when they are compiled."""
    if not FEW_ROWS_KERNELS:
        return
    weights = np.zeros((16, 8), dtype=np.float32)
    for count in range(1, MAX_KERNEL_ROWS + 1):
        few_rows_product(weights, np.zeros((count, 8), dtype=np.float32))
    grouped_rows_product(
        np.zeros((1, 16, 8), dtype=np.float32),
        np.zeros((1, 8), dtype=np.float32),
        np.zeros(1, dtype=np.int64),
        np.array([0, 1], dtype=np.int64),
    )


@functools.cache
def _grouped_driver() -> Callable[..., None]:
    """driver(weights (k, n, D), rows (m, D), out (m, n), group_classes, group_starts, start,
    stop): each group's kernel on rows start..stop of its class's weights."""
    if numba is None:
        raise RuntimeError("grouped_rows_product needs numba (FEW_ROWS_KERNELS is False)")
    namespace: dict[str, Any] = {f"kernel_{count}": _kernel(count) for count in _BLOCK_ROWS}
    body = [
        "def driver(weights, rows, out, group_classes, group_starts, start, stop):",
        "    for group in range(group_classes.shape[0]):",
        "        lo, hi = group_starts[group], group_starts[group + 1]",
        "        chosen = weights[group_classes[group]]",
    ]
    for count in _BLOCK_ROWS:
        keyword = "if" if count == 1 else "elif"
        body += [
            f"        {keyword} hi - lo == {count}:",
            f"            kernel_{count}(chosen, rows[lo:hi], out[lo:hi], start, stop)",
        ]
    with _COMPILE_LOCK:
        exec("\n".join(body), namespace)  # the template above, no input
        compiled = numba.njit(boundscheck=False, nogil=True)(namespace["driver"])
    return cast(Callable[..., None], compiled)


@functools.cache
def _kernel(count: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], None]:
    """The compiled kernel for ``count`` test rows (compiled once per process)."""
    if numba is None:
        raise RuntimeError("few_rows_product needs numba (FEW_ROWS_KERNELS is False)")
    with _COMPILE_LOCK:
        namespace: dict[str, Any] = {"np": np}
        exec(_kernel_source(_BLOCK_ROWS[count], count), namespace)  # the template above, no input
        compiled = numba.njit(fastmath=True, boundscheck=False, nogil=True)(namespace["kernel"])
        return cast(Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], None], compiled)


def _kernel_source(block_rows: int, count: int) -> str:
    """Python source of a kernel(weights (n, D), rows (b, D), out (b, n), start, stop) that
    fills out[:, start:stop], with R×b named accumulators ``s{r}_{j}``: named scalars are
    what LLVM keeps in registers and vectorises over D (an accumulator array would live in
    memory)."""
    pairs = [(r, j) for r in range(block_rows) for j in range(count)]
    body = [
        "def kernel(weights, rows, out, start, stop):",
        "    dim = weights.shape[1]",
        f"    full = stop - (stop - start) % {block_rows}",
        f"    for i in range(start, full, {block_rows}):",
        "        " + " = ".join(f"s{r}_{j}" for r, j in pairs) + " = np.float32(0.0)",
        "        for d in range(dim):",
    ]
    body += [f"            x{j} = rows[{j}, d]" for j in range(count)]
    for r in range(block_rows):
        body.append(f"            w = weights[i + {r}, d]")
        body += [f"            s{r}_{j} += w * x{j}" for j in range(count)]
    body += [f"        out[{j}, i + {r}] = s{r}_{j}" for r, j in pairs]
    body += [
        "    for i in range(full, stop):  # the last (stop - start) mod R rows",
        f"        for j in range({count}):",
        "            total = np.float32(0.0)",
        "            for d in range(dim):",
        "                total += weights[i, d] * rows[j, d]",
        "            out[j, i] = total",
    ]
    return "\n".join(body)
