"""Φ̃ without the augmented copy: row blocks and the implicit-bias product."""

import numpy as np
import pytest
import torch

from representer import feature_blocks
from representer.feature_blocks import augmented_product, augmented_row_blocks

FLOAT32_RTOL = 1e-5


def test_row_blocks_cover_every_row_with_a_ones_column():
    features = np.arange(35, dtype=np.float32).reshape(7, 5)
    blocks = list(augmented_row_blocks(features, block_rows=3, device=torch.device("cpu")))
    assert [rows for rows, _ in blocks] == [slice(0, 3), slice(3, 6), slice(6, 7)]
    stacked = torch.cat([block for _, block in blocks]).numpy()
    assert stacked.dtype == np.float64
    np.testing.assert_array_equal(stacked, np.hstack([features, np.ones((7, 1))]))


def test_product_applies_the_bias_row():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 6))
    vectors = rng.normal(size=(7, 3))
    expected = np.hstack([features, np.ones((50, 1))]) @ vectors
    np.testing.assert_allclose(augmented_product(features, vectors), expected, rtol=1e-13)
    single = augmented_product(features.astype(np.float32), vectors)
    assert single.dtype == np.float64
    np.testing.assert_allclose(single, expected, rtol=FLOAT32_RTOL, atol=FLOAT32_RTOL)
    integers = np.arange(12).reshape(4, 3)
    np.testing.assert_allclose(
        augmented_product(integers, np.ones((4, 1))), integers.sum(axis=1, keepdims=True) + 1
    )


def test_read_only_memmaps_are_used_without_the_not_writable_warning(tmp_path):
    """Stored arrays arrive as read-only memmaps; torch must never wrap them as they are."""
    import warnings

    from representer import FittedState, LinearHead, Method, explain, fit

    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 4)).astype(np.float32)
    weights = rng.normal(size=(3, 4))
    labels = (features @ weights.T).argmax(axis=1).astype(np.int64)
    for name, array in {
        "features": features,
        "labels": labels,
        "weights": weights,
        "bias": np.zeros(3),
    }.items():
        np.save(tmp_path / f"{name}.npy", array)
    mapped = {
        name: np.load(tmp_path / f"{name}.npy", mmap_mode="r")
        for name in ("features", "labels", "weights", "bias")
    }
    assert not mapped["labels"].flags.writeable
    head = LinearHead(mapped["weights"], mapped["bias"])
    warn_always = torch._C._get_warnAlways()
    torch._C._set_warnAlways(
        True
    )  # torch warns once per process otherwise; an earlier test may have used it up
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for method in Method:
                fit(head, mapped["features"], mapped["labels"], method=method).save(
                    tmp_path / method.value
                )
                state = FittedState.load(tmp_path / method.value)  # as the service opens it
                explain(state, mapped["features"], mapped["features"][:3], top_k=2)
    finally:
        torch._C._set_warnAlways(warn_always)
    assert [str(w.message) for w in caught if "not writable" in str(w.message)] == []


@pytest.mark.parametrize("columns", [1, 3, 12])
@pytest.mark.parametrize("kernel", ["chosen", "numpy"])
@pytest.mark.parametrize("layout", ["memmap", "fortran"])
def test_float32_product_equals_float64_for_every_kernel(
    tmp_path, monkeypatch, columns, kernel, layout
):
    """The few-row kernels (few columns), oneDNN (where torch has it) and NumPy's matmul
    agree with the float64 product, over a read-only memmap (read in place) and a
    column-major array (copied)."""
    if kernel == "numpy":
        monkeypatch.setattr(feature_blocks, "ONEDNN_LINEAR", None)
        monkeypatch.setattr(feature_blocks, "FEW_ROWS_KERNELS", False)
    rng = np.random.default_rng(3)
    values = rng.normal(size=(301, 17)).astype(np.float32)
    if layout == "memmap":
        path = tmp_path / "features.f32"
        writer = np.memmap(path, dtype=np.float32, mode="w+", shape=values.shape)
        writer[:] = values
        writer.flush()
        features = np.memmap(path, dtype=np.float32, mode="r", shape=values.shape)
    else:
        features = np.asfortranarray(values)
    vectors = rng.normal(size=(18, columns))
    expected = np.hstack([values.astype(np.float64), np.ones((301, 1))]) @ vectors  # (n, q)
    product = augmented_product(features, vectors)
    assert product.dtype == np.float64
    np.testing.assert_allclose(product, expected, atol=FLOAT32_RTOL * np.abs(expected).max())
