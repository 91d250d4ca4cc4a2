"""The compiled few-row products: rows @ Wᵀ to float32 rounding for every row count they
serve, whatever n mod R (the rows past the last full register block), over a read-only
memmap as the service stores W."""

from __future__ import annotations

import numpy as np
import pytest

from representer.row_kernels import (
    FEW_ROWS_KERNELS,
    MAX_KERNEL_ROWS,
    _kernel,
    compile_kernels,
    few_rows_product,
)

pytestmark = pytest.mark.skipif(not FEW_ROWS_KERNELS, reason="numba is not installed")

FLOAT32_RTOL = 1e-5
"""Relative to the largest |value|: D=65 float32 sums accumulate ~1e-6 rounding."""


def _read_only_weights(tmp_path, n: int, dim: int) -> np.ndarray:
    path = tmp_path / "weights.f32"
    writer = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, dim))
    writer[:] = np.random.default_rng(n).normal(size=writer.shape)
    writer.flush()
    return np.memmap(path, dtype=np.float32, mode="r", shape=(n, dim))


@pytest.mark.parametrize("count", range(1, MAX_KERNEL_ROWS + 1))
@pytest.mark.parametrize("n", [1, 5, 48, 1_003])
def test_equals_float64_product(tmp_path, count, n):
    weights = _read_only_weights(tmp_path, n, 65)
    rows = np.random.default_rng(count).normal(size=(count, 65)).astype(np.float32)
    product = few_rows_product(weights, rows)
    assert product.shape == (count, n)
    assert product.dtype == np.float32
    reference = rows.astype(np.float64) @ np.asarray(weights, dtype=np.float64).T  # (b, n)
    np.testing.assert_allclose(product, reference, atol=FLOAT32_RTOL * np.abs(reference).max())


def test_a_row_does_not_depend_on_its_neighbours(tmp_path):
    weights = _read_only_weights(tmp_path, 1_003, 65)
    rows = np.random.default_rng(9).normal(size=(MAX_KERNEL_ROWS, 65)).astype(np.float32)
    together = few_rows_product(weights, rows)  # (b, n)
    for j in range(MAX_KERNEL_ROWS):
        alone = few_rows_product(weights, rows[j : j + 1])[0]
        np.testing.assert_allclose(alone, together[j], atol=FLOAT32_RTOL * np.abs(together).max())


def test_compile_kernels_compiles_every_row_count():
    compile_kernels()
    assert _kernel.cache_info().currsize == MAX_KERNEL_ROWS
