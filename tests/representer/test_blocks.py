"""Per-class blocks + preconditioned CG (MATH.md §9) against the dense H⁺ and brute force."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from representer import (
    HessianMode,
    InfluenceConfig,
    InvalidInputError,
    LinearHead,
    LJEConfig,
    MemoryLimitError,
    Method,
    contributions,
    explain,
    fit,
)
from representer.block_hessian import block_thresholds, factor_blocks
from representer.hessian_solver import choose_hessian
from representer.pcg import HessianProduct, project, support_threshold
from tests.helpers.problems import brute_hessian, clustered_problem, probabilities

CONTRIBUTION_RTOL = 1e-4
"""max |c_blocks − c_dense| / max |c_dense| at the default cg_tolerance (1e-6)."""
PRODUCT_RTOL = 1e-12
"""The matrix-free product against the explicit Kronecker Hessian (float64)."""
FLOAT32_PRODUCT_RTOL = 1e-5
"""One contribution through two float32 product kernels (D=13: ~1e-6 of the largest)."""
SELF_SCORE_SPEARMAN = 0.9
"""Block self-scores (§9.5) are an estimate; their ranking must still follow the dense one."""
TOP_K = 10
GERMAN = Path(__file__).resolve().parents[3] / "shared" / "data" / "german_credit"
CONFIGS = {Method.LJE: LJEConfig, Method.INFLUENCE: InfluenceConfig}


def _head(problem) -> LinearHead:
    return LinearHead(problem["weights"], problem["bias"])


def _both(head, train, labels, method, **fields):
    config = CONFIGS[method]
    dense = fit(head, train, labels, method=method, config=config(hessian="dense", **fields))
    blocks = fit(head, train, labels, method=method, config=config(hessian="blocks", **fields))
    assert dense.meta["hessian_used"] == "dense" and blocks.meta["hessian_used"] == "blocks"
    return dense, blocks


def _assert_same_answers(dense, blocks, train, test):
    targets = np.arange(test.shape[0]) % dense.meta["num_classes"]
    exact = contributions(dense, train, test, target_classes=targets)
    solved = contributions(blocks, train, test, target_classes=targets)
    assert np.abs(solved - exact).max() <= CONTRIBUTION_RTOL * np.abs(exact).max()
    for d_row, b_row in zip(
        explain(dense, train, test, top_k=TOP_K),
        explain(blocks, train, test, top_k=TOP_K),
        strict=True,
    ):
        assert set(d_row.positive_indices) == set(b_row.positive_indices)
        assert set(d_row.negative_indices) == set(b_row.negative_indices)
        assert d_row.solver.name == "dense" and b_row.solver.name == "pcg"
        assert b_row.solver.iterations > 0
        assert b_row.solver.relative_residual <= blocks.meta["cg_tolerance"] * 10


@pytest.fixture(scope="module")
def clustered():
    return clustered_problem(n_train=800, n_test=6, dim=12, num_classes=5, seed=3)


@pytest.mark.parametrize("method", [Method.LJE, Method.INFLUENCE])
def test_blocks_answers_equal_dense_on_synthetic_heads(clustered, method):
    train = clustered["train_features"]
    dense, blocks = _both(_head(clustered), train, clustered["train_labels"], method)
    _assert_same_answers(dense, blocks, train, clustered["test_features"])
    rho = spearmanr(dense.self_scores, blocks.self_scores)[0]
    assert rho >= SELF_SCORE_SPEARMAN


def test_blocks_newton_step_keeps_the_decomposition(clustered):
    """MATH.md §8.2 to the solver's tolerance: Σ_i c_i(t) is the Newton step from Θ*."""
    train, test = clustered["train_features"], clustered["test_features"]
    dense, blocks = _both(_head(clustered), train, clustered["train_labels"], Method.LJE)
    exact = dense.arrays["newton_theta"]
    np.testing.assert_allclose(
        blocks.arrays["newton_theta"], exact, rtol=0, atol=CONTRIBUTION_RTOL * np.abs(exact).max()
    )
    targets = np.zeros(test.shape[0], dtype=np.int64)
    total = contributions(blocks, train, test, target_classes=targets).sum(axis=1)
    newton = np.hstack([test, np.ones((test.shape[0], 1))]) @ blocks.arrays["newton_theta"][0]
    np.testing.assert_allclose(total, newton, rtol=1e-4)


def _german_multiclass():
    """German credit features with the credit history (5 one-hot classes) as the label."""
    path = GERMAN / "X_train_clean.csv"
    header = path.read_text().splitlines()[0].split(",")  # first column: the row number
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    history = [j for j, name in enumerate(header) if name.startswith("credithistory")]
    kept = [j for j, name in enumerate(header) if name not in ("", "id") and j not in history]
    features = table[:, kept]
    labels = np.argmax(table[:, history], axis=1)
    features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-12)
    return features.astype(np.float32), labels.astype(np.int64)


@pytest.mark.parametrize("method", [Method.LJE, Method.INFLUENCE])
def test_blocks_answers_equal_dense_on_german_credit(method):
    """Real one-hot features (collinear groups: both sides damped) and a 5-class head."""
    features, labels = _german_multiclass()
    train, train_labels, test = features[:700], labels[:700], features[700:706]
    model = LogisticRegression(C=1.0, max_iter=2000).fit(train, train_labels)
    head = LinearHead(model.coef_, model.intercept_)
    dense, blocks = _both(head, train, train_labels, method, damping=1e-3)
    _assert_same_answers(dense, blocks, train, test)


def test_dead_features_are_the_pseudo_inverse():
    """Digits: pixels never lit are dead; blocks (no damping) equal dense without them."""
    digits = load_digits()
    features = (digits.data / 16.0).astype(np.float32)
    live = np.flatnonzero(np.abs(features).sum(axis=0) > 0)
    assert live.size < features.shape[1]  # the data set really has dead pixels
    labels = digits.target.astype(np.int64)
    train, test = features[:900], features[900:904]
    model = LogisticRegression(C=0.05, max_iter=3000).fit(train[:, live], labels[:900])
    weights = np.zeros((10, features.shape[1]))
    weights[:, live] = model.coef_
    blocks = fit(
        LinearHead(weights, model.intercept_),
        train,
        labels[:900],
        config=LJEConfig(hessian="blocks"),
    )
    dense = fit(
        LinearHead(model.coef_, model.intercept_),
        train[:, live],
        labels[:900],
        config=LJEConfig(hessian="dense"),
    )
    targets = np.arange(4)
    exact = contributions(dense, train[:, live], test[:, live], target_classes=targets)
    solved = contributions(blocks, train, test, target_classes=targets)
    assert np.abs(solved - exact).max() <= CONTRIBUTION_RTOL * np.abs(exact).max()


def test_few_points_per_class_are_handled_by_the_ridge():
    problem = clustered_problem(n_train=300, n_test=4, dim=10, num_classes=4, seed=5)
    train, labels = problem["train_features"], problem["train_labels"].copy()
    rare = np.flatnonzero(labels == 3)
    labels[rare[2:]] = 0  # class 3 keeps two training points: its block is singular
    dense, blocks = _both(_head(problem), train, labels, Method.LJE)
    _assert_same_answers(dense, blocks, train, problem["test_features"])


def test_matrix_free_product_is_the_exact_hessian(clustered):
    train = clustered["train_features"].astype(np.float64)[:200]
    theta = np.hstack([clustered["weights"], clustered["bias"][:, None]])
    probs = probabilities(theta, train)
    live = torch.ones(theta.shape[1], dtype=torch.bool)
    product = HessianProduct(train, probs, 0.0, live, support_threshold(probs))
    directions = torch.from_numpy(np.random.default_rng(0).normal(size=(3, *theta.shape)))
    expected = directions.reshape(3, -1).numpy() @ brute_hessian(theta, train)  # H symmetric
    actual = product(directions).reshape(3, -1).numpy()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=PRODUCT_RTOL * np.abs(expected).max())
    np.testing.assert_allclose(actual.reshape(3, *theta.shape).sum(axis=1), 0.0, atol=1e-12)


@pytest.mark.parametrize("in_memory", [False, True])
def test_dense_product_is_the_same_in_any_row_steps(clustered, monkeypatch, in_memory):
    """Batch-size invariance: steps of a few rows (``PRODUCT_BLOCK_BYTES``) give H's product."""
    import representer.pcg

    train = clustered["train_features"].astype(np.float64)[:200]
    theta = np.hstack([clustered["weights"], clustered["bias"][:, None]])
    probs = probabilities(theta, train)
    live = torch.ones(theta.shape[1], dtype=torch.bool)
    directions = torch.from_numpy(np.random.default_rng(1).normal(size=(2, *theta.shape)))
    expected = directions.reshape(2, -1).numpy() @ brute_hessian(theta, train)
    monkeypatch.setattr(representer.pcg, "PRODUCT_BLOCK_BYTES", 8 * 7 * 40)  # 64-row steps
    product = HessianProduct(train, probs, 0.0, live, support_threshold(probs))
    if in_memory:
        product = product.in_memory(torch.device("cpu"))
    actual = product(directions).reshape(2, -1).numpy()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=PRODUCT_RTOL * np.abs(expected).max())


def test_preconditioner_is_symmetric_positive_definite_on_the_subspace(clustered):
    train = clustered["train_features"]
    theta = np.hstack([clustered["weights"], clustered["bias"][:, None]])
    probs = probabilities(theta, train.astype(np.float64))
    precondition, _ = factor_blocks(
        train,
        probs,
        damping=0.0,
        thresholds=block_thresholds(probs),
        device=torch.device("cpu"),
        progress=lambda fraction: None,
    )
    rng = np.random.default_rng(1)
    left, right = (project(torch.from_numpy(rng.normal(size=(4, *theta.shape)))) for _ in "lr")
    applied_right, applied_left = precondition(right), precondition(left)
    np.testing.assert_allclose(applied_right.sum(dim=1).numpy(), 0.0, atol=1e-9)
    cross = (left * applied_right).sum(dim=(1, 2))
    mirrored = (applied_left * right).sum(dim=(1, 2))
    np.testing.assert_allclose(cross.numpy(), mirrored.numpy(), rtol=1e-5)
    assert bool(((left * applied_left).sum(dim=(1, 2)) > 0).all())


def test_binary_heads_stay_dense():
    problem = clustered_problem(n_train=200, n_test=2, dim=5, num_classes=2, seed=1)
    head = LinearHead(problem["weights"][1:] - problem["weights"][:1], problem["bias"][1:])
    state = fit(
        head, problem["train_features"], problem["train_labels"], config=LJEConfig(hessian="blocks")
    )
    assert state.meta["hessian_used"] == "dense"
    [answer] = explain(state, problem["train_features"], problem["test_features"][:1])
    assert answer.solver.name == "dense" and answer.solver.iterations == 0


def test_auto_is_dense_for_small_heads_and_blocks_for_large_ones():
    small = choose_hessian(
        HessianMode.AUTO, n=1000, num_outputs=10, dim=65, memory_budget_bytes=8 * 1024**3
    )
    large = choose_hessian(
        HessianMode.AUTO, n=50_000, num_outputs=40, dim=513, memory_budget_bytes=8 * 1024**3
    )
    unaffordable = choose_hessian(
        HessianMode.AUTO, n=1000, num_outputs=100, dim=769, memory_budget_bytes=8 * 1024**3
    )
    assert (small, large, unaffordable) == (
        HessianMode.DENSE,
        HessianMode.BLOCKS,
        HessianMode.BLOCKS,
    )


def test_blocks_beyond_the_memory_budget_are_refused(clustered):
    with pytest.raises(MemoryLimitError) as error:
        fit(
            _head(clustered),
            clustered["train_features"],
            clustered["train_labels"],
            config=LJEConfig(hessian="blocks", memory_budget_bytes=10_000),
        )
    assert error.value.argument == "memory_budget_bytes"


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: LJEConfig(hessian="sparse"), "hessian"),
        (lambda: InfluenceConfig(hessian="kfac"), "hessian"),
        (lambda: LJEConfig(cg_tolerance=0.0), "cg_tolerance"),
        (lambda: LJEConfig(cg_tolerance=1.0), "cg_tolerance"),
        (lambda: InfluenceConfig(cg_tolerance=float("nan")), "cg_tolerance"),
        (lambda: InfluenceConfig(cg_tolerance=True), "cg_tolerance"),
        (lambda: LJEConfig(hessian="blocks", weight_layout="materialised"), "weight_layout"),
    ],
)
def test_bad_solver_settings_name_the_setting(build, argument):
    with pytest.raises(InvalidInputError) as error:
        build()
    assert error.value.argument == argument


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_blocks_precompute_on_cuda_equals_cpu(clustered):
    train, labels = clustered["train_features"], clustered["train_labels"]
    config = LJEConfig(hessian="blocks")
    on_cpu = fit(_head(clustered), train, labels, config=config)
    on_cuda = fit(_head(clustered), train, labels, config=config, device="cuda")
    test = clustered["test_features"]
    targets = np.zeros(test.shape[0], dtype=np.int64)
    np.testing.assert_allclose(
        contributions(on_cuda, train, test, target_classes=targets),
        contributions(on_cpu, train, test, target_classes=targets),
        rtol=1e-4,
        atol=1e-8,
    )


def test_repeated_queries_reuse_the_solved_vector(clustered):
    train, test = clustered["train_features"], clustered["test_features"]
    state = fit(
        _head(clustered), train, clustered["train_labels"], config=LJEConfig(hessian="blocks")
    )
    rows = np.vstack([test[:1], test[:1], test[1:2]])
    first = explain(state, train, rows, target=[0, 0, 0])
    solved = state.scratch["solved_vectors"]
    assert len(solved._entries) == 2  # the duplicated (row, target) was solved once
    again = explain(state, train, rows[:1], target=[0])
    assert len(solved._entries) == 2
    # The same solved vector; one row's float32 product may come from another kernel (the
    # few-row kernels for one point's four columns, oneDNN for three points' twelve).
    np.testing.assert_array_equal(again[0].positive_indices, first[0].positive_indices)
    np.testing.assert_allclose(
        again[0].positive_contributions,
        first[0].positive_contributions,
        rtol=0,
        atol=FLOAT32_PRODUCT_RTOL * np.abs(first[0].positive_contributions).max(),
    )
    assert again[0].solver == first[0].solver == first[1].solver
    other_target = explain(state, train, rows[:1], target=[1])
    assert len(solved._entries) == 3 and other_target[0].target_class == 1


SPARSE_PRODUCT_RTOL = 1e-7
"""Dropping (i, c) with P_ic ≤ SUPPORT_RTOL·(1 − max P)/k changes a row's curvature by at most
SUPPORT_RTOL (1e-8) of itself; the product is compared to the exact one at 10x that."""


@pytest.fixture(scope="module")
def peaked():
    """Many well separated classes: most P_ic are negligible, the sparse paths run."""
    return clustered_problem(n_train=900, n_test=4, dim=8, num_classes=30, separation=4.0, seed=9)


def test_sparse_product_is_the_exact_hessian_on_peaked_heads(peaked):
    train = peaked["train_features"].astype(np.float64)[:300]
    theta = np.hstack([peaked["weights"], peaked["bias"][:, None]])
    probs = probabilities(theta, train)
    live = torch.ones(theta.shape[1], dtype=torch.bool)
    product = HessianProduct(train, probs, 0.0, live, support_threshold(probs))
    directions = torch.from_numpy(np.random.default_rng(2).normal(size=(2, *theta.shape)))
    actual = product(directions).reshape(2, -1).numpy()
    assert any(pairs is not None for pairs in product.supports.values())  # the sparse path ran
    expected = directions.reshape(2, -1).numpy() @ brute_hessian(theta, train)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=SPARSE_PRODUCT_RTOL * scale)


@pytest.mark.parametrize("method", [Method.LJE, Method.INFLUENCE])
def test_blocks_answers_equal_dense_on_peaked_heads(peaked, method):
    train = peaked["train_features"]
    # so peaked that the dense factor needs damping (almost no curvature); both sides get it
    dense, blocks = _both(_head(peaked), train, peaked["train_labels"], method, damping=1e-4)
    _assert_same_answers(dense, blocks, train, peaked["test_features"])
    rho = spearmanr(dense.self_scores, blocks.self_scores)[0]
    assert rho >= SELF_SCORE_SPEARMAN


def test_batched_solves_share_products_and_stop_each_at_its_own_tolerance(clustered):
    """Systems solved together give what each gives alone, with its own iteration count."""
    from representer.hessian_solver import BlockSystem

    train = clustered["train_features"]
    theta = np.hstack([clustered["weights"], clustered["bias"][:, None]])
    system = BlockSystem.fit(
        train,
        probabilities(theta, train.astype(np.float64)),
        damping=0.0,
        tolerance=1e-8,
        device=torch.device("cpu"),
        progress=lambda fraction: None,
    )
    rng = np.random.default_rng(4)
    rhs = torch.from_numpy(rng.normal(size=(3, *theta.shape)))
    rhs[1] *= 1e-3  # scale does not change a relative tolerance ...
    rhs[2, 1:] = 0.0  # ... but a different right-hand side (one class) takes a different path
    together = system.solve(rhs)
    for j in range(3):
        alone = system.solve(rhs[j : j + 1])
        assert together.iterations[j] == alone.iterations[0]
        expected = alone.solution[0].numpy()  # equal up to the rounding of stacked GEMMs
        np.testing.assert_allclose(
            together.solution[j].numpy(), expected, rtol=0, atol=1e-6 * np.abs(expected).max()
        )
        assert together.relative_residual[j] <= 1e-8 * 10
    assert len(set(together.iterations.tolist())) > 1


LEFT_OUT_RTOL = 1e-12
"""Sparse product + left-out product (float64) against the explicit Kronecker Hessian."""
LEFT_OUT_FLOAT32_RTOL = 1e-6
"""The same with the left-out part in float32: its error is relative to that small part."""
REFINED_RTOL = 1e-5
"""Refined and plain solves, both to cg_tolerance 1e-7, agree to this relative difference."""


@pytest.mark.parametrize("min_outputs", [0, 10**9])  # the second GEMM by oneDNN, or not
@pytest.mark.parametrize("float32", [False, True])
def test_sparse_and_left_out_products_add_up_to_the_exact_hessian(
    peaked, float32, min_outputs, monkeypatch
):
    import representer.pcg
    from representer.pcg import LeftOutProduct

    monkeypatch.setattr(representer.pcg, "ONEDNN_MIN_OUTPUTS", min_outputs)

    train = peaked["train_features"].astype(np.float64)[:300]
    theta = np.hstack([peaked["weights"], peaked["bias"][:, None]])
    probs = probabilities(theta, train)
    live = torch.ones(theta.shape[1], dtype=torch.bool)
    threshold = 1e-4  # most pairs left out of the sparse operator
    sparse = HessianProduct(train, probs, 0.0, live, threshold)
    left_out = LeftOutProduct(train, probs, threshold, live, float32=float32)
    directions = project(torch.from_numpy(np.random.default_rng(4).normal(size=(2, *theta.shape))))
    expected = directions.reshape(2, -1).numpy() @ brute_hessian(theta, train)
    truncated = sparse(directions)
    assert (
        np.abs(truncated.reshape(2, -1).numpy() - expected).max() > 1e-6 * np.abs(expected).max()
    )  # the threshold does leave curvature out
    actual = (truncated + left_out(directions)).reshape(2, -1).numpy()
    tolerance = LEFT_OUT_FLOAT32_RTOL if float32 else LEFT_OUT_RTOL
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance * np.abs(expected).max())


LIGHT_ROW_THRESHOLD = 1e-6
"""A refined threshold (``REFINE_THRESHOLD``'s order) at which most rows of ``peaked`` keep no
pair."""


def test_refined_support_leaves_out_only_confident_rows(peaked):
    from representer.pcg import class_support, refined_support

    theta = np.hstack([peaked["weights"], peaked["bias"][:, None]])
    probs = torch.from_numpy(probabilities(theta, peaked["train_features"].astype(np.float64)))
    kept = refined_support(probs, LIGHT_ROW_THRESHOLD, keep_top=False)
    classic = class_support(probs, LIGHT_ROW_THRESHOLD)
    assert torch.equal(refined_support(probs, LIGHT_ROW_THRESHOLD, keep_top=True), classic)
    unkept = ~kept.any(dim=1)
    top = probs.max(dim=1).values
    assert unkept.float().mean() > 0.5  # peaked: most rows leave H̃ entirely
    assert bool((top[unkept] * (1 - top[unkept]) <= LIGHT_ROW_THRESHOLD).all())
    assert bool((classic[unkept].sum(dim=1) == 1).all())  # they kept only their top before
    assert torch.equal(kept[~unkept], classic[~unkept])  # every other row is unchanged


@pytest.mark.parametrize("float32", [False, True])
def test_rows_left_out_of_the_sparse_operator_add_up_to_the_exact_hessian(peaked, float32):
    """Rows with no kept pair: the left-out product multiplies A_i whole (in float32 without
    the cancellation of P_it ≈ 1 against the row sum)."""
    from representer.pcg import ClassPairs, GroupedProduct, LeftOutProduct, refined_support

    train = peaked["train_features"].astype(np.float64)[:300]
    theta = np.hstack([peaked["weights"], peaked["bias"][:, None]])
    probs = probabilities(theta, train)
    live = torch.ones(theta.shape[1], dtype=torch.bool)
    pairs = ClassPairs.of(
        probs,
        lambda block: refined_support(
            torch.from_numpy(block), LIGHT_ROW_THRESHOLD, keep_top=False
        ).numpy(),
    )
    assert np.unique(pairs.rows).size < train.shape[0] // 2  # most rows are left out
    sparse = GroupedProduct(pairs, train.shape[0], live, source=train)
    left_out = LeftOutProduct(
        train, probs, LIGHT_ROW_THRESHOLD, live, float32=float32, keep_top=False
    )
    directions = project(torch.from_numpy(np.random.default_rng(4).normal(size=(2, *theta.shape))))
    expected = directions.reshape(2, -1).numpy() @ brute_hessian(theta, train)
    actual = (sparse(directions) + left_out(directions)).reshape(2, -1).numpy()
    tolerance = LEFT_OUT_FLOAT32_RTOL if float32 else LEFT_OUT_RTOL
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance * np.abs(expected).max())


def test_left_out_product_over_kept_transposed_features(peaked, monkeypatch):
    """Float32 features read in place, Φᵀ kept per row block (short last block included) and
    rebuilt when the number of systems changes the cut: the float64 product each time."""
    import representer.pcg
    from representer.pcg import LeftOutProduct

    cuts = {1: 64, 2: 100}  # rows a block for one and two systems (d = 8, k = 30)
    monkeypatch.setattr(
        representer.pcg, "rows_per_block", lambda row_bytes: cuts[(row_bytes // 8 - 8) // 120]
    )
    stored = peaked["train_features"][:300].astype(np.float32)
    stored.flags.writeable = False  # as the read-only memmap
    train = stored.astype(np.float64)
    theta = np.hstack([peaked["weights"], peaked["bias"][:, None]])
    probs = probabilities(theta, train)
    live = torch.ones(theta.shape[1], dtype=torch.bool)
    exact = LeftOutProduct(train, probs, LIGHT_ROW_THRESHOLD, live, float32=False, keep_top=False)
    fast = LeftOutProduct(stored, probs, LIGHT_ROW_THRESHOLD, live, float32=True, keep_top=False)
    rng = np.random.default_rng(13)
    for systems in (2, 1, 1, 2):
        directions = project(torch.from_numpy(rng.normal(size=(systems, *theta.shape))))
        expected = exact(directions).numpy()
        np.testing.assert_allclose(
            fast(directions).numpy(),
            expected,
            rtol=0,
            atol=LEFT_OUT_FLOAT32_RTOL * np.abs(expected).max(),
        )
    if representer.pcg.ONEDNN_LINEAR is not None:
        assert set(fast.transposed) == {(100, 0), (100, 100), (100, 200)}  # the last cut only


def test_block_thresholds_leave_out_at_most_their_share_of_each_class_mass(peaked):
    from representer.block_hessian import PRECONDITIONER_MASS_RTOL

    theta = np.hstack([peaked["weights"], peaked["bias"][:, None]])
    probs = probabilities(theta, peaked["train_features"].astype(np.float64))
    weights = probs * (1.0 - probs)
    thresholds = block_thresholds(probs)
    left_out = (weights * (weights <= thresholds)).sum(axis=0)
    assert (left_out <= PRECONDITIONER_MASS_RTOL * weights.sum(axis=0)).all()
    assert (weights > thresholds).mean() < 0.5  # peaked: most pairs leave the block sums


def test_refined_solves_equal_plain_solves_on_peaked_heads(peaked):
    from representer.hessian_solver import BlockSystem

    train = peaked["train_features"]
    theta = np.hstack([peaked["weights"], peaked["bias"][:, None]])
    probs = probabilities(theta, train.astype(np.float64))
    fields = {"damping": 1e-4, "tolerance": 1e-7, "device": torch.device("cpu")}
    refined = BlockSystem.fit(train, probs, progress=lambda fraction: None, **fields)
    assert refined.refined is not None  # peaked: the sparse operator keeps few pairs
    plain = replace(refined, refined=None)
    rng = np.random.default_rng(5)
    rhs = torch.from_numpy(rng.normal(size=(3, *theta.shape)))
    solved, expected = refined.solve(rhs), plain.solve(rhs)
    assert (solved.relative_residual <= 1e-7).all()
    difference = (solved.solution - expected.solution).abs().max()
    assert float(difference) <= REFINED_RTOL * float(expected.solution.abs().max())


GROUPED_FLOAT32_RTOL = 1e-5
"""The grouped product over float32 rows against the float64 sparse product."""


@pytest.mark.parametrize(
    ("cached", "features_dtype"),
    [(False, np.float64), (True, np.float64), (True, np.float32)],
    ids=["gathered", "cached", "cached-sampled"],
)
def test_grouped_product_is_the_sparse_product(peaked, cached, features_dtype):
    """float32 features take the sampled first product (``SampledLogits``); the others the
    class-grouped GEMMs."""
    from representer.pcg import ClassPairs, GroupedProduct, class_support

    stored = peaked["train_features"][:300].astype(features_dtype)
    train = stored.astype(np.float64)
    theta = np.hstack([peaked["weights"], peaked["bias"][:, None]])
    probs = probabilities(theta, train)
    live = torch.ones(theta.shape[1], dtype=torch.bool)
    threshold = 1e-4
    pairs = ClassPairs.of(
        probs, lambda block: class_support(torch.from_numpy(block), threshold).numpy()
    )
    grouped = (
        GroupedProduct.cached(stored, pairs, live)
        if cached
        else GroupedProduct(pairs, train.shape[0], live, source=train)
    )
    assert (grouped.sampled is not None) == (features_dtype == np.float32)
    assert bool(grouped.cached_chunks) == cached  # the cached rows' chunks, built once
    directions = torch.from_numpy(np.random.default_rng(6).normal(size=(2, *theta.shape)))
    if cached:  # the same product as slicing the cache at every call
        assert torch.equal(grouped(directions), replace(grouped)(directions))
    expected = HessianProduct(train, probs, 0.0, live, threshold)(directions).numpy()
    tolerance = GROUPED_FLOAT32_RTOL if cached else PRODUCT_RTOL
    np.testing.assert_allclose(
        grouped(directions).numpy(), expected, rtol=0, atol=tolerance * np.abs(expected).max()
    )


LOWRANK_RTOL = 1e-4
"""Low-rank (Woodbury) and dense block factors, both float32, applied to the same vectors."""


def test_low_rank_blocks_equal_dense_blocks(peaked, monkeypatch):
    import representer.block_hessian as block_hessian
    from representer.block_hessian import block_quadratic_forms, support_pairs

    monkeypatch.setattr(block_hessian, "WHITENED_MIN_EIGENVALUE", -1.0)  # every direction
    train = peaked["train_features"]
    theta = np.hstack([peaked["weights"], peaked["bias"][:, None]])
    probs = probabilities(theta, train.astype(np.float64))
    thresholds = block_thresholds(probs)
    fields = {"damping": 1e-4, "thresholds": thresholds, "device": torch.device("cpu")}
    built = {}
    for name, fraction in (("dense", 0.0), ("lowrank", 1e9)):
        monkeypatch.setattr(block_hessian, "LOWRANK_FRACTION", fraction)
        built[name], _ = factor_blocks(train, probs, progress=lambda fraction: None, **fields)
    assert built["dense"].lowrank is None and built["lowrank"].cholesky.shape[0] == 0
    vectors = project(torch.from_numpy(np.random.default_rng(7).normal(size=(3, *theta.shape))))
    expected = built["dense"](vectors)
    np.testing.assert_allclose(
        built["lowrank"](vectors).numpy(),
        expected.numpy(),
        rtol=0,
        atol=LOWRANK_RTOL * float(expected.abs().max()),
    )
    pairs = support_pairs(probs, peaked["train_labels"], thresholds)
    forms = {
        name: block_quadratic_forms(train, built[name], pairs, progress=lambda fraction: None)
        for name in built
    }
    np.testing.assert_allclose(forms["lowrank"], forms["dense"], rtol=LOWRANK_RTOL * 10)


WHITENED_FLOAT32_RTOL = 1e-5
"""Slack of the float32 applies in the spectral bounds of the leading-direction blocks."""


def test_leading_directions_bound_the_low_rank_preconditioner(peaked, monkeypatch):
    """Q_cᵀQ_c kept on its eigenvalues above μ = WHITENED_MIN_EIGENVALUE only: for v in S,
    ⟨v, M⁻¹v⟩ ≤ ⟨v, M_μ⁻¹v⟩ ≤ ⟨v, M⁻¹v⟩ / (1 − μ), so PCG's reach changes by at most that."""
    import representer.block_hessian as block_hessian
    from representer.block_hessian import WHITENED_MIN_EIGENVALUE

    train = peaked["train_features"]
    theta = np.hstack([peaked["weights"], peaked["bias"][:, None]])
    probs = probabilities(theta, train.astype(np.float64))
    fields = {"damping": 1e-4, "thresholds": block_thresholds(probs), "device": torch.device("cpu")}
    monkeypatch.setattr(block_hessian, "LOWRANK_FRACTION", 1e9)
    leading, _ = factor_blocks(train, probs, progress=lambda fraction: None, **fields)
    monkeypatch.setattr(block_hessian, "WHITENED_MIN_EIGENVALUE", -1.0)
    full, _ = factor_blocks(train, probs, progress=lambda fraction: None, **fields)
    assert leading.lowrank is not None and full.lowrank is not None
    kept = sum(q.shape[0] for q in leading.lowrank.whitened)
    assert kept < sum(q.shape[0] for q in full.lowrank.whitened)  # directions were dropped
    vectors = project(torch.from_numpy(np.random.default_rng(14).normal(size=(8, *theta.shape))))
    exact = (vectors * full(vectors)).sum(dim=(1, 2))
    truncated = (vectors * leading(vectors)).sum(dim=(1, 2))
    assert bool((truncated >= exact * (1 - WHITENED_FLOAT32_RTOL)).all())
    bound = exact / (1 - WHITENED_MIN_EIGENVALUE) * (1 + WHITENED_FLOAT32_RTOL)
    assert bool((truncated <= bound).all())


def test_low_rank_batches_apply_the_inverse_of_every_block():
    """Classes of 0 to 40 rows (fewer and more than D) against (σ I + ĜᵀĜ)⁻¹ itself."""
    from representer.block_hessian import BlockPreconditioner, LowRankBlocks

    rng = np.random.default_rng(8)
    dim, counts = 12, [0, 3, 16, 17, 40]
    sigma = rng.uniform(0.5, 2.0, len(counts))
    rows = [rng.normal(size=(count, dim)) for count in counts]
    kernels = [
        np.linalg.cholesky(block @ block.T + s * np.eye(len(block))).ravel()
        for block, s in zip(rows, sigma, strict=True)
    ]
    lowrank = LowRankBlocks(
        classes=np.arange(len(counts)),
        rows=torch.from_numpy(np.concatenate(rows)).float(),
        starts=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        kernels=torch.from_numpy(np.concatenate(kernels)).float(),
        sigma=sigma,
    )
    preconditioner = BlockPreconditioner(
        torch.zeros((0, dim, dim)), np.zeros(0, dtype=np.int64), lowrank
    )
    vectors = project(torch.from_numpy(rng.normal(size=(2, len(counts), dim))))
    inverses = np.stack(
        [
            np.linalg.inv(block.T @ block + s * np.eye(dim))
            for block, s in zip(rows, sigma, strict=True)
        ]
    )
    solved = np.einsum("cde,qce->qcd", inverses, vectors.numpy())
    expected = project(torch.from_numpy(solved)).numpy()
    np.testing.assert_allclose(
        preconditioner(vectors).numpy(),
        expected,
        rtol=0,
        atol=LOWRANK_RTOL * np.abs(expected).max(),
    )


TRAIN_LOGITS_RTOL = 1e-5
"""Z = Φ̃ Xᵀ kept from a refined solve's last exact residual (float32 GEMMs) against float64."""


def test_refined_solves_keep_the_training_logits_of_their_solutions(peaked, monkeypatch):
    import representer.hessian_solver as hessian_solver
    from representer.hessian_solver import BlockSystem

    train = peaked["train_features"]
    theta = np.hstack([peaked["weights"], peaked["bias"][:, None]])
    probs = probabilities(theta, train.astype(np.float64))
    fields = {"damping": 1e-4, "tolerance": 1e-6, "device": torch.device("cpu")}
    system = BlockSystem.fit(train, probs, progress=lambda fraction: None, **fields)
    assert system.refined is not None
    rng = np.random.default_rng(11)
    rhs = torch.from_numpy(rng.normal(size=(3, *theta.shape)))
    rhs[1, 1:] = 0.0  # one class: its own iterations, so the systems stop at different rounds
    rhs[2] = 0.0  # X = 0, never multiplied: Z = 0
    result = system.solve(rhs)
    expected = np.einsum("nd,qkd->nqk", train.astype(np.float64), result.solution[..., :-1])
    assert result.train_logits is not None
    np.testing.assert_allclose(
        result.train_logits.double().numpy(),
        expected,
        rtol=0,
        atol=TRAIN_LOGITS_RTOL * np.abs(expected).max(),
    )
    loose = replace(system, tolerance=1e-2).solve(rhs)  # done after the first correction,
    assert (loose.relative_residual <= 1e-2).all() and loose.train_logits is None  # no Z kept
    monkeypatch.setattr(hessian_solver, "TRAIN_LOGITS_BYTES", 0)
    assert system.solve(rhs).train_logits is None


PRODUCT_NT_RTOL = 1e-5
"""``product_nt`` (oneDNN for float32 on the CPU) against the float64 product."""


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_product_nt_is_the_product_with_the_transpose(dtype):
    from representer.pcg import product_nt

    rng = np.random.default_rng(12)
    left, right = rng.normal(size=(70, 33)), rng.normal(size=(20, 33))
    expected = left @ right.T
    actual = product_nt(torch.from_numpy(left).to(dtype), torch.from_numpy(right.T).to(dtype).T)
    assert actual.dtype == dtype and actual.shape == (70, 20)
    tolerance = PRODUCT_NT_RTOL if dtype == torch.float32 else PRODUCT_RTOL
    np.testing.assert_allclose(
        actual.double().numpy(), expected, rtol=0, atol=tolerance * np.abs(expected).max()
    )


@pytest.mark.parametrize("method", [Method.LJE, Method.INFLUENCE])
def test_scores_from_kept_logits_equal_the_kernel_pass(peaked, method, monkeypatch):
    import representer.hessian_solver as hessian_solver

    monkeypatch.setattr(hessian_solver, "SPARSE_FILL", 0.0)  # every block takes the GEMM path
    train, test = peaked["train_features"], peaked["test_features"]
    config = CONFIGS[method](hessian="blocks", damping=1e-4)
    state = fit(_head(peaked), train, peaked["train_labels"], method=method, config=config)
    targets = np.arange(test.shape[0]) % state.meta["num_classes"]
    state.scratch.clear()
    kept = contributions(state, train, test, target_classes=targets)
    assert state.scratch["block_system"].refined is not None  # the kept logits were used
    monkeypatch.setattr(hessian_solver, "TRAIN_LOGITS_BYTES", 0)
    state.scratch.clear()
    passed = contributions(state, train, test, target_classes=targets)
    assert np.abs(kept - passed).max() <= TRAIN_LOGITS_RTOL * np.abs(passed).max()
