"""XGBoost as features + linear head: Θ†φ̃(x) reproduces the booster's margin (MATH.md §7, §8.7)."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.datasets import load_digits

from representer import InvalidInputError
from representer.adapters import BoosterEmbedding, Embedding, load_booster

MARGIN_ATOL = 1e-5  # MATH.md §8.7: Θ†φ̃(x) = booster margin to 1e-5
LEAF_VALUE_ATOL = 1e-6  # one float32 leaf value read two ways

REPO_ROOT = Path(__file__).resolve().parents[3]
GERMAN_CREDIT = REPO_ROOT.parent / "shared" / "data" / "german_credit"


def _require_shared_data() -> None:
    if GERMAN_CREDIT.is_dir():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"shared data folder {GERMAN_CREDIT} is missing (required when CI=true)")
    pytest.skip(f"shared data folder {GERMAN_CREDIT} is absent")


def _german_split(split: str) -> tuple[pd.DataFrame, np.ndarray]:
    rows = pd.read_csv(GERMAN_CREDIT / f"X_{split}_clean.csv", index_col=0)
    labels = pd.read_csv(GERMAN_CREDIT / f"Y_{split}_clean.csv", index_col=0)
    assert np.array_equal(rows["id"].to_numpy(), labels.index.to_numpy())  # rows line up
    return rows.drop(columns="id").astype(np.float64), labels["classification"].to_numpy()


@pytest.fixture(scope="module")
def german_credit():
    _require_shared_data()
    return _german_split("train"), _german_split("test")


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits(return_X_y=True)
    return images[:1200], labels[:1200], images[1200:], labels[1200:]


def _booster_margin(booster: xgb.Booster, rows, *, iteration_range=(0, 0)) -> np.ndarray:
    margin = booster.predict(xgb.DMatrix(rows), output_margin=True, iteration_range=iteration_range)
    return margin.reshape(len(rows), -1).astype(np.float64)


def _train_german(german_credit, **params) -> xgb.Booster:
    (train_rows, train_labels), (test_rows, test_labels) = german_credit
    params = {
        "objective": "binary:logistic",
        "max_depth": 3,
        "eta": 0.3,
        "seed": 0,
        "nthread": 1,
    } | params
    return xgb.train(params, xgb.DMatrix(train_rows, label=train_labels), num_boost_round=50)


@pytest.mark.parametrize("embedding", list(Embedding))
@pytest.mark.parametrize("base_score", [None, 0.2])
def test_binary_margin_is_reproduced_on_german_credit(german_credit, embedding, base_score):
    params = {} if base_score is None else {"base_score": base_score}
    booster = _train_german(german_credit, **params)
    model = BoosterEmbedding.from_booster(booster, embedding=embedding)
    (train_rows, _), (test_rows, _) = german_credit
    assert model.head.is_binary and model.trees.num_trees == 50
    if base_score is not None:
        np.testing.assert_allclose(
            model.head.bias, [np.log(base_score / (1 - base_score))], rtol=1e-6
        )
    for rows in (train_rows, test_rows):
        np.testing.assert_allclose(
            model.margin(rows), _booster_margin(booster, rows), atol=MARGIN_ATOL
        )
        np.testing.assert_allclose(
            model.margin(rows.to_numpy()), _booster_margin(booster, rows), atol=MARGIN_ATOL
        )


@pytest.mark.parametrize("embedding", list(Embedding))
def test_early_stopped_booster_uses_best_iteration(german_credit, embedding):
    (train_rows, train_labels), (test_rows, test_labels) = german_credit
    train = xgb.DMatrix(train_rows, label=train_labels)
    valid = xgb.DMatrix(test_rows, label=test_labels)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.5, "seed": 0, "nthread": 1}
    booster = xgb.train(
        params,
        train,
        num_boost_round=60,
        evals=[(valid, "valid")],
        early_stopping_rounds=5,
        verbose_eval=False,
    )
    best_rounds = booster.best_iteration + 1
    assert best_rounds < booster.num_boosted_rounds()  # early stopping really cut the ensemble
    model = BoosterEmbedding.from_booster(booster, embedding=embedding)
    assert model.trees.num_rounds == best_rounds and model.trees.num_trees == best_rounds
    expected = _booster_margin(booster, test_rows, iteration_range=(0, best_rounds))
    np.testing.assert_allclose(model.margin(test_rows), expected, atol=MARGIN_ATOL)
    all_trees = _booster_margin(booster, test_rows)
    assert np.abs(all_trees - expected).max() > 100 * MARGIN_ATOL  # the check can tell them apart


def test_tree_margin_features_are_each_trees_own_output(german_credit):
    booster = _train_german(german_credit, base_score=0.4)
    (_, _), (test_rows, _) = german_credit
    features = BoosterEmbedding.from_booster(booster).transform(test_rows)  # (n, T)
    cumulative = np.hstack(
        [
            _booster_margin(booster, test_rows, iteration_range=(0, rounds))
            for rounds in range(1, 51)
        ]
    )  # (n, T): margin after 1, 2, ..., T trees
    base_margin = np.log(0.4 / 0.6)
    per_tree = np.diff(cumulative, axis=1, prepend=base_margin)  # (n, T): what each tree adds
    np.testing.assert_allclose(features, per_tree, atol=MARGIN_ATOL)


def test_leaf_onehot_has_one_leaf_per_tree_and_values_match_tree_margins(german_credit):
    booster = _train_german(german_credit)
    (_, _), (test_rows, _) = german_credit
    onehot = BoosterEmbedding.from_booster(booster, embedding=Embedding.LEAF_ONEHOT)
    margins = BoosterEmbedding.from_booster(booster, embedding=Embedding.TREE_MARGINS)
    indicators = onehot.transform(test_rows)  # (n, D)
    assert onehot.feature_dim == int(onehot.trees.is_leaf.sum()) > margins.feature_dim
    assert set(np.unique(indicators)) <= {0.0, 1.0}
    np.testing.assert_array_equal(indicators.sum(axis=1), np.full(len(test_rows), 50.0))
    # leaf value picked by the indicator = the tree's output, tree by tree
    leaf_positions = np.flatnonzero(onehot.trees.is_leaf)  # (D,) node position of each column
    column_tree = np.searchsorted(onehot.trees.node_offsets, leaf_positions, side="right") - 1
    picked = np.stack(
        [(indicators * onehot.head.weights[0])[:, column_tree == j].sum(1) for j in range(50)], 1
    )
    np.testing.assert_allclose(picked, margins.transform(test_rows), atol=LEAF_VALUE_ATOL)


@pytest.mark.parametrize("objective", ["multi:softprob", "multi:softmax"])
@pytest.mark.parametrize("embedding", list(Embedding))
def test_multiclass_margin_is_reproduced_on_digits(digits, objective, embedding):
    train_images, train_labels, test_images, _ = digits
    params = {
        "objective": objective,
        "num_class": 10,
        "max_depth": 3,
        "eta": 0.3,
        "seed": 0,
        "nthread": 1,
    }
    booster = xgb.train(params, xgb.DMatrix(train_images, label=train_labels), num_boost_round=15)
    model = BoosterEmbedding.from_booster(booster, embedding=embedding)
    assert model.head.num_outputs == 10 and model.trees.num_trees == 150
    np.testing.assert_array_equal(
        model.trees.tree_groups, np.arange(150) % 10
    )  # tree j serves j mod k
    if embedding == Embedding.TREE_MARGINS:
        np.testing.assert_array_equal(model.head.weights.sum(axis=0), np.ones(150))
    margin = model.margin(test_images)
    np.testing.assert_allclose(margin, _booster_margin(booster, test_images), atol=MARGIN_ATOL)
    probabilities = booster.predict(xgb.DMatrix(test_images))
    predicted = probabilities if objective == "multi:softmax" else probabilities.argmax(axis=1)
    np.testing.assert_array_equal(margin.argmax(axis=1), predicted)


def test_multiclass_scalar_base_score_and_parallel_trees(digits):
    train_images, train_labels, test_images, _ = digits
    params = {
        "objective": "multi:softprob", "num_class": 10, "max_depth": 2, "base_score": 0.25,
        "num_parallel_tree": 2, "subsample": 0.8, "seed": 0, "nthread": 1,
    }  # fmt: skip
    booster = xgb.train(params, xgb.DMatrix(train_images, label=train_labels), num_boost_round=5)
    model = BoosterEmbedding.from_booster(booster)
    np.testing.assert_array_equal(model.head.bias, np.full(10, 0.25))
    assert model.trees.num_trees == 100
    np.testing.assert_allclose(
        model.margin(test_images), _booster_margin(booster, test_images), atol=MARGIN_ATOL
    )


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
@pytest.mark.parametrize("embedding", list(Embedding))
def test_reloaded_booster_gives_the_same_embedding(german_credit, tmp_path, suffix, embedding):
    (train_rows, train_labels), (test_rows, test_labels) = german_credit
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "eta": 0.5, "seed": 0, "nthread": 1},
        xgb.DMatrix(train_rows, label=train_labels),
        num_boost_round=50,
        evals=[(xgb.DMatrix(test_rows, label=test_labels), "valid")],
        early_stopping_rounds=5,
        verbose_eval=False,
    )
    booster.save_model(tmp_path / f"model{suffix}")
    original = BoosterEmbedding.from_booster(booster, embedding=embedding)
    reloaded = BoosterEmbedding.from_booster(
        load_booster(tmp_path / f"model{suffix}"), embedding=embedding
    )
    assert reloaded.trees.num_rounds == original.trees.num_rounds == booster.best_iteration + 1
    np.testing.assert_array_equal(reloaded.head.theta, original.head.theta)
    np.testing.assert_array_equal(reloaded.transform(test_rows), original.transform(test_rows))


def test_embedding_is_a_snapshot_of_the_booster(digits):
    train_images, train_labels, test_images, _ = digits
    params = {
        "objective": "multi:softprob",
        "num_class": 10,
        "max_depth": 2,
        "seed": 0,
        "nthread": 1,
    }
    train = xgb.DMatrix(train_images, label=train_labels)
    booster = xgb.train(params, train, num_boost_round=3)
    model = BoosterEmbedding.from_booster(booster)
    before = model.margin(test_images)
    booster = xgb.train(params, train, num_boost_round=3, xgb_model=booster)  # keeps training
    np.testing.assert_array_equal(model.margin(test_images), before)


def _tiny_booster(**params) -> xgb.Booster:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(60, 3))
    labels = (rows[:, 0] > 0).astype(float)
    return xgb.train(
        {"max_depth": 2, "nthread": 1} | params, xgb.DMatrix(rows, label=labels), num_boost_round=2
    )


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "reg:squarederror"},
        {"objective": "binary:logitraw"},
        {"objective": "binary:logistic", "booster": "gblinear"},
        {"objective": "binary:logistic", "booster": "dart"},
    ],
)
def test_unsupported_boosters_name_booster(params):
    with pytest.raises(InvalidInputError) as error:
        BoosterEmbedding.from_booster(_tiny_booster(**params))
    assert error.value.argument.split(".")[0] == "booster"  # e.g. booster.gradient_booster


def test_bad_arguments_name_themselves():
    model = BoosterEmbedding.from_booster(_tiny_booster(objective="binary:logistic"))
    for inputs in (np.zeros((2, 4)), np.zeros((0, 3)), np.zeros(3), np.array([["a", "b", "c"]])):
        with pytest.raises(InvalidInputError) as error:
            model.transform(inputs)
        assert error.value.argument == "inputs"
    for not_a_booster in ("model.json", None):
        with pytest.raises(InvalidInputError) as error:
            BoosterEmbedding.from_booster(not_a_booster)
        assert error.value.argument == "booster"
    with pytest.raises(InvalidInputError) as error:
        BoosterEmbedding.from_booster(
            _tiny_booster(objective="binary:logistic"), embedding="leaves"
        )
    assert error.value.argument == "embedding"


def test_missing_values_follow_the_booster():
    booster = _tiny_booster(objective="binary:logistic")
    rows = np.array([[np.nan, 0.5, -1.0], [1.0, np.nan, np.nan]])
    model = BoosterEmbedding.from_booster(booster, embedding=Embedding.LEAF_ONEHOT)
    np.testing.assert_allclose(model.margin(rows), _booster_margin(booster, rows), atol=MARGIN_ATOL)


@pytest.mark.parametrize("name", ["model.pkl", "model.pickle", "model.txt", "model"])
def test_load_booster_refuses_other_formats(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x80\x04not an xgboost model")
    with pytest.raises(InvalidInputError) as error:
        load_booster(path)
    assert error.value.argument == "booster"


def test_load_booster_refuses_missing_and_corrupt_files(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    for path in (tmp_path / "absent.json", tmp_path / "broken.json"):
        with pytest.raises(InvalidInputError) as error:
            load_booster(path)
        assert error.value.argument == "booster"


def test_categorical_splits_from_a_frame_or_from_codes():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"amount": rng.normal(size=300), "kind": pd.Categorical(rng.integers(0, 6, 300))}
    )
    labels = ((frame["amount"] > 0) ^ (frame["kind"].cat.codes % 2 == 0)).astype(int)
    train = xgb.DMatrix(frame, label=labels, enable_categorical=True)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, train, num_boost_round=10
    )
    expected = booster.predict(xgb.DMatrix(frame, enable_categorical=True), output_margin=True)[
        :, None
    ]
    codes = np.column_stack([frame["amount"], frame["kind"].cat.codes]).astype(np.float64)
    for embedding in Embedding:
        model = BoosterEmbedding.from_booster(booster, embedding=embedding)
        np.testing.assert_allclose(model.margin(frame), expected, atol=MARGIN_ATOL)
        np.testing.assert_allclose(model.margin(codes), expected, atol=MARGIN_ATOL)
