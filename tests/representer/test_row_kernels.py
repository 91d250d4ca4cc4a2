"""The compiled few-row products: rows @ Wᵀ to float32 rounding for every row count they
serve, for any n, over a read-only memmap as the service stores W, on one thread or
several (the same values bit for bit)."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from representer import row_kernels
from representer.row_kernels import (
    FEW_ROWS_KERNELS,
    MAX_KERNEL_ROWS,
    _kernel,
    compile_kernels,
    few_rows_product,
    grouped_rows_product,
    row_ranges,
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


@pytest.fixture
def small_thread_ranges(monkeypatch):
    """Split from 16 rows a thread on, so that small test problems use several threads."""
    monkeypatch.setattr(row_kernels, "MIN_ROWS_PER_THREAD", 16)


@pytest.mark.parametrize("count", range(1, MAX_KERNEL_ROWS + 1))
def test_threads_give_the_same_values_bit_for_bit(tmp_path, small_thread_ranges, count):
    weights = _read_only_weights(tmp_path, 1_003, 65)
    rows = np.random.default_rng(count).normal(size=(count, 65)).astype(np.float32)
    alone = few_rows_product(weights, rows, threads=1)
    for threads in (2, 3, 4, 7):
        np.testing.assert_array_equal(few_rows_product(weights, rows, threads=threads), alone)


@pytest.mark.parametrize("n", [0, 15, 16, 100, 1_003, 50_000])
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_row_ranges_cover_every_row_once(small_thread_ranges, n, threads):
    ranges = row_ranges(n, threads)
    assert 1 <= len(ranges) <= threads
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (_, stop), (start, _) in zip(ranges, ranges[1:], strict=False):
        assert stop == start  # contiguous, no overlap
    if len(ranges) > 1:
        assert all(stop - start >= row_kernels.MIN_ROWS_PER_THREAD for start, stop in ranges)


def _read_only_class_weights(tmp_path, classes: int, n: int, dim: int) -> np.ndarray:
    path = tmp_path / "class_weights.f32"
    writer = np.memmap(path, dtype=np.float32, mode="w+", shape=(classes, n, dim))
    writer[:] = np.random.default_rng(classes).normal(size=writer.shape)
    writer.flush()
    return np.memmap(path, dtype=np.float32, mode="r", shape=(classes, n, dim))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_grouped_product_equals_each_group_alone_bit_for_bit(
    tmp_path, small_thread_ranges, threads
):
    """Groups of every row count, classes out of order and one class twice, against
    ``few_rows_product`` of each group on one thread."""
    weights = _read_only_class_weights(tmp_path, 4, 1_003, 65)
    classes = np.array([2, 0, 3, 2, 1], dtype=np.int64)
    sizes = [1, 4, 2, 3, 1]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    rows = np.random.default_rng(11).normal(size=(starts[-1], 65)).astype(np.float32)
    product = grouped_rows_product(weights, rows, classes, starts, threads=threads)
    assert product.shape == (starts[-1], 1_003) and product.dtype == np.float32
    for group, c in enumerate(classes):
        lo, hi = starts[group], starts[group + 1]
        alone = few_rows_product(np.ascontiguousarray(weights[c]), rows[lo:hi], threads=1)
        np.testing.assert_array_equal(product[lo:hi], alone)


def test_no_rows_give_an_empty_product():
    product = few_rows_product(np.zeros((0, 8), np.float32), np.ones((2, 8), np.float32))
    assert product.shape == (2, 0)


def _product_in_child(weights, rows, queue) -> None:
    queue.put(few_rows_product(weights, rows, threads=2))


def test_a_forked_child_makes_its_own_threads(tmp_path, small_thread_ranges):
    """A job process forked after the API used the pool must not wait on its dead threads."""
    weights = np.ascontiguousarray(_read_only_weights(tmp_path, 1_003, 65))
    rows = np.ones((2, 65), np.float32)
    expected = few_rows_product(weights, rows, threads=2)  # the parent's pool now exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_product_in_child, args=(weights, rows, queue))
    child.start()
    try:
        np.testing.assert_array_equal(queue.get(timeout=60), expected)
    finally:
        child.join(timeout=60)
        if child.is_alive():  # hung on the parent's threads: do not leave it behind
            child.kill()
    assert child.exitcode == 0
