"""The compiled contraction of the kernel form (``representer.kernel.contract_product``):
the bias row, the float64 view and the sum over classes of the float32 product, equal to
NumPy's conversion and ``einsum`` of the same product to float64 rounding, for both layouts
the product arrives in (the few-row kernels' and oneDNN's transposed one), on any number
of threads; and ``directions_from_rows``' product of M split over threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from representer import kernel
from representer.feature_blocks import augmented_product, float32_product_t
from representer.kernel import (
    compile_contraction,
    contract_product,
    directions_from_rows,
    kernel_scores,
)
from representer.row_kernels import FEW_ROWS_KERNELS, MAX_KERNEL_ROWS, MIN_ROWS_PER_THREAD

pytestmark = pytest.mark.skipif(not FEW_ROWS_KERNELS, reason="numba is not installed")

FLOAT64_RTOL = 1e-13
"""Relative to the largest |score|: the same float64 terms, summed in another order."""


def _numpy_scores(features, vectors, residuals, count) -> np.ndarray:
    n, num_outputs = residuals.shape
    product = augmented_product(features, vectors).reshape(n, count, num_outputs)
    return np.einsum("ibc,ic->bi", product, residuals)  # (count, n)


@pytest.mark.parametrize(("count", "num_outputs"), [(1, 1), (3, 1), (1, 10), (2, 3), (16, 10)])
def test_contraction_equals_numpy(count, num_outputs):
    rng = np.random.default_rng(count * 100 + num_outputs)
    features = rng.normal(size=(1_003, 65)).astype(np.float32)  # (n, d)
    vectors = rng.normal(size=(66, count * num_outputs))  # (d + 1, count·k_out)
    residuals = rng.normal(size=(1_003, num_outputs))  # (n, k_out)
    product_t = float32_product_t(features, vectors)
    assert product_t is not None and product_t.dtype == np.float32
    # Few columns come from the row kernels (C order), more from oneDNN (a transposed view).
    assert product_t.flags.c_contiguous == (count * num_outputs <= MAX_KERNEL_ROWS)
    scores = contract_product(product_t, vectors[-1], residuals, count)
    expected = _numpy_scores(features, vectors, residuals, count)
    assert scores.shape == (count, 1_003) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, expected, rtol=0, atol=FLOAT64_RTOL * np.abs(expected).max())


def test_kernel_scores_contracts_float32_features_as_numpy_does():
    rng = np.random.default_rng(7)
    features = rng.normal(size=(1_003, 65)).astype(np.float32)
    residuals = rng.normal(size=(1_003, 4))
    directions = rng.normal(size=(5, 4, 66))  # (m, k_out, D)
    scores = kernel_scores(features, residuals, directions)
    expected = _numpy_scores(features, directions.reshape(-1, 66).T, residuals, 5)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=FLOAT64_RTOL * np.abs(expected).max())


def test_float64_features_take_numpy_s_product():
    features = np.ones((10, 3))
    assert float32_product_t(features, np.ones((4, 2))) is None
    residuals = np.ones((10, 2))
    scores = kernel_scores(features, residuals, np.ones((1, 2, 4)))
    np.testing.assert_allclose(scores, np.full((1, 10), 2 * (3 + 1)))


def test_compile_contraction_runs():
    compile_contraction()
    assert contract_product(
        np.ones((1, 2), np.float32), np.zeros(1), np.ones((2, 1)), 1
    ).tolist() == [[1.0, 1.0]]


@pytest.fixture
def torch_threads():
    """Set torch's thread count (the pass's threads) for a test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_rows_split_over_threads_sum_as_on_one(torch_threads):
    rng = np.random.default_rng(3)
    n = 2 * MIN_ROWS_PER_THREAD + 5  # two ranges on two threads
    assert 128 * n >= kernel.MIN_TERMS_TO_SPLIT  # enough work to split
    product_t = rng.normal(size=(128, n)).astype(np.float32)  # (count·k_out, n)
    bias, residuals = rng.normal(size=128), rng.normal(size=(n, 4))
    torch_threads(1)
    alone = contract_product(product_t, bias, residuals, 32)
    torch_threads(2)
    split = contract_product(product_t, bias, residuals, 32)
    np.testing.assert_array_equal(split, alone)


def test_own_columns_weigh_each_point_as_l2_does():
    """RPS-ℓ2's form: one product column per point, weighed by α's column of its target."""
    rng = np.random.default_rng(4)
    features = rng.normal(size=(1_003, 65)).astype(np.float32)
    test_augmented = np.hstack([rng.normal(size=(6, 65)), np.ones((6, 1))])  # (m, D)
    alpha = rng.normal(size=(1_003, 3))
    targets = np.array([2, 0, 1, 1, 2, 0])
    product_t = float32_product_t(features, test_augmented.T)  # (m, n)
    assert product_t is not None
    values = contract_product(product_t, test_augmented[:, -1], alpha, 6, columns=targets)
    kernel = augmented_product(features, test_augmented.T)  # (n, m) float64
    np.testing.assert_array_equal(values, kernel.T * alpha[:, targets].T)


@pytest.mark.parametrize("threads", [1, 2])
def test_directions_split_over_columns_equal_one_product(torch_threads, threads):
    rng = np.random.default_rng(5)
    half = rng.normal(size=(600, 600))
    inverse = half @ half.T  # (k_out·D, k_out·D), symmetric
    right_hand_sides = rng.normal(size=(7, 600))
    torch_threads(threads)
    directions = directions_from_rows(inverse, right_hand_sides, num_outputs=3)
    assert directions.shape == (7, 3, 200)
    expected = (inverse @ right_hand_sides.T).T.reshape(7, 3, 200)
    np.testing.assert_allclose(
        directions, expected, rtol=0, atol=FLOAT64_RTOL * np.abs(expected).max()
    )


def _softmax_residuals(rng, n: int, num_outputs: int) -> np.ndarray:
    """P_i − e_ỹi for random logits and labels: every row sums to zero."""
    logits = rng.normal(size=(n, num_outputs))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probabilities[np.arange(n), rng.integers(0, num_outputs, size=n)] -= 1.0
    return probabilities


@pytest.fixture
def product_widths(monkeypatch) -> list[int]:
    """The column count of every product ``kernel_scores`` asks ``float32_product_t`` for."""
    widths: list[int] = []
    real_product = kernel.float32_product_t
    monkeypatch.setattr(
        kernel,
        "float32_product_t",
        lambda train, vectors: widths.append(vectors.shape[1]) or real_product(train, vectors),
    )
    return widths


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_sum_residuals_fold_the_last_class(product_widths, dtype):
    """With softmax residuals the product has k_out − 1 columns a point, and the scores are
    the full sum over k_out classes (float64: to rounding; float32: to its product's)."""
    rng = np.random.default_rng(8)
    features = rng.normal(size=(1_003, 65)).astype(dtype)
    residuals = _softmax_residuals(rng, 1_003, 4)
    directions = rng.normal(size=(5, 4, 66))  # (m, k_out, D)
    scores = kernel_scores(features, residuals, directions)
    augmented = np.hstack([features.astype(np.float64), np.ones((1_003, 1))])  # (n, D)
    expected = np.einsum("id,mcd,ic->mi", augmented, directions, residuals)  # (m, n)
    tolerance = FLOAT64_RTOL if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(scores, expected, rtol=0, atol=tolerance * np.abs(expected).max())
    assert product_widths == [5 * 3]  # k_out − 1 = 3 product columns a point


def test_residuals_that_do_not_sum_to_zero_keep_every_class(product_widths):
    rng = np.random.default_rng(9)
    features = rng.normal(size=(1_003, 65)).astype(np.float32)
    residuals = _softmax_residuals(rng, 1_003, 4)
    residuals[17, 2] += 1e-6  # one row off: no fold
    kernel_scores(features, residuals, rng.normal(size=(5, 4, 66)))
    assert product_widths == [5 * 4]
