"""The materialised LJE product W[c] φ̃_t: every kernel ``class_product`` picks gives the
float64 product to float32 rounding, for every row count, and a row's value does not depend
on the rows it shares a pass with beyond that rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from representer import lje_weights
from representer.lje_weights import ONEDNN_MIN_ROWS, class_product, materialised_contributions
from representer.row_kernels import MAX_KERNEL_ROWS

FLOAT32_RTOL = 1e-5
"""Relative to the largest |value|: D=65 float32 products accumulate ~1e-6 rounding."""
ROW_COUNTS = [1, 2, 3, MAX_KERNEL_ROWS, ONEDNN_MIN_ROWS, 16, 37]


@pytest.fixture(params=["chosen", "torch_only", "mkl_only"])
def kernels(request, monkeypatch):
    """The kernels as chosen on this machine, torch's alone (no numba), and MKL alone
    (PyTorch without oneDNN, no numba)."""
    if request.param in ("torch_only", "mkl_only"):
        monkeypatch.setattr(lje_weights, "_FEW_ROWS", False)
    if request.param == "mkl_only":
        monkeypatch.setattr(lje_weights, "_ONEDNN_MATMUL", None)
    return request.param


def _weights(tmp_path, *, num_outputs=3, n=1_000, dim=65):
    """A read-only float32 memmap (k_out, n, D), as the service stores W."""
    path = tmp_path / "weights.f32"
    writer = np.memmap(path, dtype=np.float32, mode="w+", shape=(num_outputs, n, dim))
    writer[:] = np.random.default_rng(0).normal(size=writer.shape)
    writer.flush()
    return np.memmap(path, dtype=np.float32, mode="r", shape=(num_outputs, n, dim))


@pytest.mark.parametrize("count", ROW_COUNTS)
def test_class_product_equals_float64_product(tmp_path, kernels, count):
    weights = _weights(tmp_path)
    rows = np.random.default_rng(count).normal(size=(count, weights.shape[2])).astype(np.float32)
    product = class_product(torch.from_numpy(np.array(weights[1])), torch.from_numpy(rows))
    assert product.shape == (count, weights.shape[1])
    assert product.dtype == torch.float32
    reference = rows.astype(np.float64) @ weights[1].astype(np.float64).T  # (b, n)
    scale = np.abs(reference).max()
    np.testing.assert_allclose(product.numpy(), reference, atol=FLOAT32_RTOL * scale)


@pytest.mark.parametrize("order", ["grouped", "interleaved"])
def test_rows_equal_alone_and_in_a_shared_pass(tmp_path, kernels, order):
    """Grouped: a GEMM class's rows are consecutive (copied by torch); interleaved: not."""
    weights = _weights(tmp_path)
    test_augmented = np.random.default_rng(1).normal(size=(41, weights.shape[2]))
    rows_class = np.array([0] * 20 + [1] * 3 + [2] * 17 + [1])  # few-row and GEMM counts
    if order == "interleaved":
        rows_class = np.random.default_rng(2).permutation(rows_class)
    shared = materialised_contributions(weights, test_augmented, rows_class)  # (m, n)
    assert shared.dtype == np.float64
    scale = np.abs(shared).max()
    for row, target in enumerate(rows_class):
        alone = materialised_contributions(weights, test_augmented[row : row + 1], target[None])
        np.testing.assert_allclose(alone[0], shared[row], atol=FLOAT32_RTOL * scale)
    reference = np.einsum("mnd,md->mn", weights[rows_class].astype(np.float64), test_augmented)
    np.testing.assert_allclose(shared, reference, atol=FLOAT32_RTOL * scale)
