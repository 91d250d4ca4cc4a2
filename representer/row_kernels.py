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

numba compiles a kernel the first time a row count is used (0.2-0.4 s each) for the CPU
it runs on (AVX-512 where there is one); without numba, ``FEW_ROWS_KERNELS`` is False and
callers use torch's products.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, cast

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; platforms without a wheel
    numba = None  # type: ignore[assignment]

__all__ = ["FEW_ROWS_KERNELS", "MAX_KERNEL_ROWS", "compile_kernels", "few_rows_product"]

FEW_ROWS_KERNELS = numba is not None
"""Whether ``few_rows_product`` can run (numba is importable)."""
MAX_KERNEL_ROWS = 4
"""The largest b with a kernel: from five rows on oneDNN's GEMM is faster (7.4 ms for eight
rows, 9.2 for sixteen, where a register-blocked kernel took 6.3-8.8 and 9.4-11.6)."""
_BLOCK_ROWS = {1: 8, 2: 8, 3: 8, 4: 6}
"""R, the rows of W a kernel holds at once for b test rows: R·b accumulators of 16 floats,
at most 24 of the 32 AVX-512 registers (measured best of R in 4, 6, 8, 12, 16)."""
_COMPILE_LOCK = threading.Lock()


def few_rows_product(weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """rows @ weightsᵀ, reading ``weights`` once.

    Parameters
    ----------
    weights : ndarray of shape (n, D), float32, C-contiguous (may be a read-only memmap)
    rows : ndarray of shape (b, D), float32, 1 <= b <= MAX_KERNEL_ROWS

    Returns
    -------
    ndarray of shape (b, n), float32.
    """
    count = rows.shape[0]
    out = np.empty((count, weights.shape[0]), dtype=np.float32)  # (b, n)
    _kernel(count)(weights, np.ascontiguousarray(rows), out)
    return out


def compile_kernels() -> None:
    """Compile every row count's kernel now (1.2-2.4 s in all), so that no query waits for
    one; a no-op without numba or when they are compiled."""
    if not FEW_ROWS_KERNELS:
        return
    weights = np.zeros((16, 8), dtype=np.float32)
    for count in range(1, MAX_KERNEL_ROWS + 1):
        few_rows_product(weights, np.zeros((count, 8), dtype=np.float32))


@functools.cache
def _kernel(count: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
    """The compiled kernel for ``count`` test rows (compiled once per process)."""
    if numba is None:
        raise RuntimeError("few_rows_product needs numba (FEW_ROWS_KERNELS is False)")
    with _COMPILE_LOCK:
        namespace: dict[str, Any] = {"np": np}
        exec(_kernel_source(_BLOCK_ROWS[count], count), namespace)  # the template above, no input
        compiled = numba.njit(fastmath=True, boundscheck=False, nogil=True)(namespace["kernel"])
        return cast(Callable[[np.ndarray, np.ndarray, np.ndarray], None], compiled)


def _kernel_source(block_rows: int, count: int) -> str:
    """Python source of a kernel(weights (n, D), rows (b, D), out (b, n)) with R×b named
    accumulators ``s{r}_{j}``: named scalars are what LLVM keeps in registers and vectorises
    over D (an accumulator array would live in memory)."""
    pairs = [(r, j) for r in range(block_rows) for j in range(count)]
    body = [
        "def kernel(weights, rows, out):",
        "    n, dim = weights.shape",
        f"    full = n - n % {block_rows}",
        f"    for i in range(0, full, {block_rows}):",
        "        " + " = ".join(f"s{r}_{j}" for r, j in pairs) + " = np.float32(0.0)",
        "        for d in range(dim):",
    ]
    body += [f"            x{j} = rows[{j}, d]" for j in range(count)]
    for r in range(block_rows):
        body.append(f"            w = weights[i + {r}, d]")
        body += [f"            s{r}_{j} += w * x{j}" for j in range(count)]
    body += [f"        out[{j}, i + {r}] = s{r}_{j}" for r, j in pairs]
    body += [
        "    for i in range(full, n):  # the last n mod R rows",
        f"        for j in range({count}):",
        "            total = np.float32(0.0)",
        "            for d in range(dim):",
        "                total += weights[i, d] * rows[j, d]",
        "            out[j, i] = total",
    ]
    return "\n".join(body)
