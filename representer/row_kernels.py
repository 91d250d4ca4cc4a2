"""Few-row products X Wᵀ that read a large float32 W once, compiled for this CPU (numba).

A shared query pass multiplies one class's materialised weights W[c] (n×D float32, larger
than the caches) by the b test rows that target it; b is 1 to 4 for most classes of a
mixed batch. Reading W from memory is the cost, so the ideal product costs about the same
for every small b. The BLAS kernels torch has are far from it on these shapes (n=50,000,
D=513, one thread, AMD Zen 5; ms, median of 15, W not in the caches): oneDNN 3.4 for one
row but 6.4-6.9 for two to four, MKL 4.2 for two and 6.0-6.6 for three or four.

The kernels here walk W one row at a time, front to back: for each row φ_r they keep the b
dot products φ_r·x_j in b accumulators, and LLVM vectorises the sum over D. W is read as one
forward stream, which the hardware prefetcher follows at the full memory speed, and each of
its rows is multiplied by all b test rows while it sits in L1. Every value is one row's dot
product, summed the same way wherever the row lies, so a thread split never changes it.
They accumulate in float32, as the BLAS kernels do, in a different order (values agree to
float32 rounding).

An earlier version held an R×b block of dot products (R = 6 or 8 rows of W at once) in
registers. It was best on an AMD Zen 5 (3.0-3.3 ms for one row, 4.5 for four, one thread)
but the R interleaved streams starved the prefetcher of an AMD Zen 4 (EPYC, 2 vCPUs,
n=50,000, D=513, W not in the caches; ms, medians of 30 in two to four runs,
``few_rows_product``; the two-thread figures vary most, with the host's load):

==============  =======  =======  =======  =======
rows b             1        2        3        4
==============  =======  =======  =======  =======
R×b, 1 thread   7.2-7.8  7.8-8.5  8.2-8.3  9.3-9.8
row, 1 thread   3.3-3.5  3.5-3.7  4.7-5.2  5.2-5.5
R×b, 2 threads  4.0-4.5  4.4-4.7  5.1-5.2  5.1-5.3
row, 2 threads  1.9-3.4  2.1-3.4  2.8-3.8  3.0-3.9
==============  =======  =======  =======  =======

(NumPy's GEMV took 4.3-5.3 ms for one row on one thread, ``W.sum()`` 4.3-4.5.)

A product runs on as many threads as the caller's pass may use (``torch.get_num_threads()``:
``RPS_QUERY_THREADS`` in an API process, every core in a job), each thread reading its own
range of W's rows: one core need not saturate the memory bus (above: 3.3-3.5 ms for one
row on one thread, 1.9-3.4 on two). The kernels release the interpreter lock (``nogil``)
and the threads are plain Python threads of this module; numba's own thread pool is never
started, since it loads the system's OpenMP runtime beside torch's and
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
    "run_on_ranges",
]

FEW_ROWS_KERNELS = numba is not None
"""Whether ``few_rows_product`` can run (numba is importable)."""
MAX_KERNEL_ROWS = 4
"""The largest b with a kernel: from five rows on oneDNN's GEMM is faster (AMD Zen 5, one
thread: 7.4 ms for eight rows, 9.2 for sixteen, where a register-blocked kernel took 6.3-8.8
and 9.4-11.6; on the Zen 4 above, sixteen rows as four passes of the four-row kernel took
14.6 ms on two threads, oneDNN 12-18)."""
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
    spans = row_ranges(n, threads or torch.get_num_threads())
    run_on_ranges(lambda start, stop: kernel(weights, rows, out, start, stop), spans)
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
    lock in short bursts, and each return of a kernel waited for one. The groups run the
    kernels ``few_rows_product`` runs, so the values are equal bit for bit.

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
    spans = row_ranges(n, threads or torch.get_num_threads())
    arguments = (weights, rows, out, group_classes, group_starts)
    run_on_ranges(lambda start, stop: driver(*arguments, start, stop), spans)
    return out


def row_ranges(
    n: int, threads: int, *, min_rows: int = MIN_ROWS_PER_THREAD
) -> list[tuple[int, int]]:
    """[start, stop) ranges covering 0..n, one per thread, each at least ``min_rows`` rows
    (so at least one range)."""
    parts = min(threads, n // max(1, min_rows))
    if parts <= 1:
        return [(0, n)]
    bounds = [n * part // parts for part in range(parts + 1)]  # each range >= n // parts rows
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def run_on_ranges(task: Callable[[int, int], object], spans: list[tuple[int, int]]) -> None:
    """``task(start, stop)`` for every span, at once: the first on the calling thread, the
    others on this process's helper threads; returns when all are done (re-raising the
    first error). ``task`` should let go of the interpreter lock (a ``nogil`` kernel, a
    NumPy product), or the spans run one after another."""
    first, *others = spans
    pending = [_thread_pool().submit(task, *span) for span in others]
    try:
        task(*first)
    finally:  # never return while a helper still writes into the caller's arrays
        errors = [future.exception() for future in pending]
    for error in errors:
        if error is not None:
            raise error


def _thread_pool() -> ThreadPoolExecutor:
    """This process's pool of helper threads for ``run_on_ranges``."""
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
    namespace: dict[str, Any] = {
        f"kernel_{count}": _kernel(count) for count in range(1, MAX_KERNEL_ROWS + 1)
    }
    body = [
        "def driver(weights, rows, out, group_classes, group_starts, start, stop):",
        "    for group in range(group_classes.shape[0]):",
        "        lo, hi = group_starts[group], group_starts[group + 1]",
        "        chosen = weights[group_classes[group]]",
    ]
    for count in range(1, MAX_KERNEL_ROWS + 1):
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
        exec(_kernel_source(count), namespace)  # the template above, no input
        compiled = numba.njit(fastmath=True, boundscheck=False, nogil=True)(namespace["kernel"])
        return cast(Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], None], compiled)


def _kernel_source(count: int) -> str:
    """Python source of a kernel(weights (n, D), rows (b, D), out (b, n), start, stop) that
    fills out[:, start:stop] one row of W at a time, with b named accumulators ``s{j}``:
    named scalars are what LLVM keeps in registers and vectorises over D (an accumulator
    array would live in memory)."""
    accumulators = [f"s{j}" for j in range(count)]
    body = [
        "def kernel(weights, rows, out, start, stop):",
        "    dim = weights.shape[1]",
        "    for i in range(start, stop):",
        "        " + " = ".join(accumulators) + " = np.float32(0.0)",
        "        for d in range(dim):",
        "            w = weights[i, d]",
    ]
    body += [f"            s{j} += w * rows[{j}, d]" for j in range(count)]
    body += [f"        out[{j}, i] = s{j}" for j in range(count)]
    return "\n".join(body)
