"""``fit``: state contents, save/load, memory limit, progress, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from representer import (
    FittedState,
    InfluenceConfig,
    InvalidInputError,
    LJEConfig,
    MemoryLimitError,
    Method,
    contributions,
    explain,
    fit,
)

DEVICE_RTOL = 1e-10
"""CPU and CUDA precomputes both run in float64; only summation order differs."""


@pytest.mark.parametrize("method", list(Method))
def test_state_round_trips_through_memory_mapped_files(problem, method, tmp_path):
    state = fit(problem.perturbed_head, problem.train_features, problem.train_labels, method=method)
    state.save(tmp_path / "state")
    loaded = FittedState.load(tmp_path / "state", mmap=True)
    assert loaded.method == method
    assert isinstance(loaded.arrays["self_scores"], np.memmap)
    assert loaded.meta == state.meta
    targets = np.arange(len(problem.test_features)) % state.meta["num_classes"]
    before = contributions(
        state, problem.train_features, problem.test_features, target_classes=targets
    )
    after = contributions(
        loaded, problem.train_features, problem.test_features, target_classes=targets
    )
    np.testing.assert_allclose(
        after, before, rtol=1e-12, atol=1e-16
    )  # BLAS paths may differ by alignment
    [first] = explain(loaded, problem.train_features, problem.test_features[:1])
    assert np.isfinite(first.residual)


@pytest.mark.parametrize("method", list(Method))
def test_every_state_has_the_common_fields(problem, method):
    state = fit(problem.perturbed_head, problem.train_features, problem.train_labels, method=method)
    n = len(problem.train_features)
    assert state.self_scores.shape == (n,) and state.self_scores.dtype == np.float32
    assert state.train_predicted_class.dtype == np.int64
    logits = problem.perturbed_head.logits(problem.train_features)
    expected_class = (
        (logits[:, 0] > 0).astype(int) if problem.num_outputs == 1 else logits.argmax(axis=1)
    )
    np.testing.assert_array_equal(state.train_predicted_class, expected_class)
    assert state.diagnostics["train_accuracy"] == pytest.approx(
        np.mean(expected_class == problem.train_labels)
    )
    assert state.diagnostics["mean_abs_residual"] >= 0 and state.diagnostics["theta_shift"] >= 0
    np.testing.assert_array_equal(state.arrays["theta_dagger"], problem.perturbed_head.theta)
    assert "train_features" not in state.arrays
    assert (
        state.meta["n_train"] == n and state.meta["feature_dim"] == problem.train_features.shape[1]
    )


def test_lje_diagnostics(problem):
    lr = 0.05
    state = fit(
        problem.perturbed_head,
        problem.train_features,
        problem.train_labels,
        config=LJEConfig(lr=lr),
    )
    theta, theta_star = problem.perturbed_head.theta, state.arrays["theta_star"]
    assert state.diagnostics["theta_shift"] == pytest.approx(
        np.linalg.norm(theta_star - theta) / np.linalg.norm(theta)
    )
    assert state.meta["lr"] == lr
    at_mle = fit(
        problem.mle_head, problem.train_features, problem.train_labels, config=LJEConfig(lr=lr)
    )
    assert at_mle.diagnostics["mean_abs_residual"] < 1e-9 < state.diagnostics["mean_abs_residual"]


@pytest.mark.parametrize("method", [Method.LJE, Method.INFLUENCE])
def test_refuses_hessians_beyond_the_memory_budget(multiclass_problem, method):
    problem = multiclass_problem
    config = (LJEConfig if method is Method.LJE else InfluenceConfig)(memory_budget_bytes=1000)
    with pytest.raises(MemoryLimitError) as error:
        fit(
            problem.perturbed_head,
            problem.train_features,
            problem.train_labels,
            method=method,
            config=config,
        )
    assert error.value.argument == "memory_budget_bytes" and "memory_budget_bytes=1000" in str(
        error.value
    )


@pytest.mark.parametrize("method", list(Method))
def test_progress_rises_to_one(binary_problem, method):
    reports = []
    problem = binary_problem
    fit(
        problem.perturbed_head,
        problem.train_features,
        problem.train_labels,
        method=method,
        progress=reports.append,
    )
    assert reports[-1] == 1.0
    assert all(0.0 <= value <= 1.0 for value in reports)
    assert reports == sorted(reports)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", [Method.LJE, Method.INFLUENCE, Method.L2])
def test_cuda_precompute_matches_cpu(problem, method):
    cpu = fit(problem.perturbed_head, problem.train_features, problem.train_labels, method=method)
    cuda = fit(
        problem.perturbed_head,
        problem.train_features,
        problem.train_labels,
        method=method,
        device="cuda",
    )
    for name, array in cpu.arrays.items():
        np.testing.assert_allclose(
            cuda.arrays[name],
            array,
            rtol=DEVICE_RTOL * 1e4 if method is Method.L2 else DEVICE_RTOL,
            atol=1e-12,
        )


def test_forced_materialised_weights_must_fit_the_budget(multiclass_problem):
    problem = multiclass_problem
    hessian_bytes = 2 * (3 * 5) ** 2 * 8
    config = LJEConfig(weight_layout="materialised", memory_budget_bytes=hessian_bytes + 100)
    with pytest.raises(MemoryLimitError) as error:
        fit(problem.perturbed_head, problem.train_features, problem.train_labels, config=config)
    assert error.value.argument == "memory_budget_bytes" and "materialised" in str(error.value)


@pytest.mark.parametrize(
    "method", [Method.L2, Method.INFLUENCE]
)  # they read Φ at query time, in float32
def test_non_finite_contributions_name_their_culprit(multiclass_problem, method):
    """Finite rows too large for the float32 products are the test rows' fault, NaN in Φ is Φ's."""
    train = multiclass_problem.train_features.astype(np.float32)
    state = fit(multiclass_problem.mle_head, train, multiclass_problem.train_labels, method=method)
    huge = np.full((2, train.shape[1]), 3e38)
    huge[0] = multiclass_problem.test_features[0]
    with pytest.raises(InvalidInputError, match="test_features row 1 is too large") as caught:
        explain(state, train, huge, target=0)
    assert caught.value.argument == "test_features"
    broken = train.copy()
    broken[7, 1] = np.nan
    with pytest.raises(InvalidInputError, match=r"row 7") as caught:
        explain(state, broken, multiclass_problem.test_features, target=0)
    assert caught.value.argument == "train_features"
