"""Every bad argument at the public boundary raises InvalidInputError naming it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from representer import InvalidInputError, L2Config, LJEConfig, Method, contributions, explain, fit


@pytest.fixture(scope="module")
def fitted(multiclass_problem):
    problem = multiclass_problem
    return problem, fit(problem.perturbed_head, problem.train_features, problem.train_labels)


def fit_errors(problem):
    x, y, head = problem.train_features, problem.train_labels, problem.perturbed_head
    nan_features = x.copy()
    nan_features[3, 1] = np.nan
    return [
        (dict(head=head.theta), "head"),
        (dict(train_features=x[:, :-1]), "train_features"),
        (dict(train_features=x[0]), "train_features"),
        (dict(train_features=x[:1], train_labels=y[:1]), "train_features"),
        (dict(train_features=nan_features), "train_features"),
        (dict(train_features=x.astype(complex)), "train_features"),
        (dict(train_features=np.full(x.shape, "a")), "train_features"),
        (dict(train_labels=y[:-1]), "train_labels"),
        (dict(train_labels=y.astype(float)), "train_labels"),
        (dict(train_labels=np.where(y == 0, 7, y)), "train_labels"),
        (dict(train_labels=y - 1), "train_labels"),
        (dict(method="bogus"), "method"),
        (dict(method=Method.L2, config=LJEConfig()), "config"),
        (dict(device="tpu"), "device"),
        (dict(device="cuda:0"), "device"),
        (dict(progress=3), "progress"),
    ]


def test_fit_names_every_bad_argument(multiclass_problem):
    problem = multiclass_problem
    base = dict(
        head=problem.perturbed_head,
        train_features=problem.train_features,
        train_labels=problem.train_labels,
    )
    for change, argument in fit_errors(problem):
        if change.get("device") == "cuda:0" and torch.cuda.is_available():
            continue
        kwargs = {**base, **change}
        head = kwargs.pop("head")
        features = kwargs.pop("train_features")
        labels = kwargs.pop("train_labels")
        with pytest.raises(InvalidInputError) as error:
            fit(head, features, labels, **kwargs)
        assert error.value.argument == argument, change
        assert argument in str(error.value)


def test_binary_labels_must_be_zero_or_one(binary_problem):
    problem = binary_problem
    with pytest.raises(InvalidInputError) as error:
        fit(problem.perturbed_head, problem.train_features, problem.train_labels + 1)
    assert error.value.argument == "train_labels" and "0..1" in str(error.value)


@pytest.mark.parametrize(
    ("make_config", "argument"),
    [
        (lambda: LJEConfig(lr=-1.0), "lr"),
        (lambda: LJEConfig(damping=float("nan")), "damping"),
        (lambda: LJEConfig(memory_budget_bytes=0), "memory_budget_bytes"),
        (lambda: LJEConfig(weight_layout="dense"), "weight_layout"),
        (lambda: L2Config(lam=0.0), "lambda"),
        (lambda: L2Config(grad_reduction=10.0), "grad_reduction"),
    ],
)
def test_configs_name_bad_fields(make_config, argument):
    with pytest.raises(InvalidInputError) as error:
        make_config()
    assert error.value.argument == argument


def test_queries_name_every_bad_argument(fitted):
    problem, state = fitted
    # The kernel form reads the training features; a NaN there shows in its result.
    kernel_state = fit(
        problem.perturbed_head,
        problem.train_features,
        problem.train_labels,
        config=LJEConfig(weight_layout="kernel"),
    )
    x, t = problem.train_features, problem.test_features
    nan_test = t.copy()
    nan_test[0, 0] = np.inf
    nan_train = x.copy()
    nan_train[5, 0] = np.nan
    targets = np.zeros(len(t), dtype=int)
    cases = [
        (lambda: contributions("state", x, t, target_classes=targets), "state"),
        (lambda: contributions(state, x[:-1], t, target_classes=targets), "train_features"),
        (lambda: contributions(state, x[:, :2], t, target_classes=targets), "train_features"),
        (
            lambda: contributions(kernel_state, nan_train, t, target_classes=targets),
            "train_features",
        ),
        (lambda: contributions(state, x, t[:, :2], target_classes=targets), "test_features"),
        (lambda: contributions(state, x, nan_test, target_classes=targets), "test_features"),
        (lambda: contributions(state, x, t, target_classes=targets[:-1]), "target_classes"),
        (lambda: contributions(state, x, t, target_classes=targets + 3), "target_classes"),
        (
            lambda: contributions(state, x, t, target_classes=targets.astype(float)),
            "target_classes",
        ),
        (lambda: explain(state, x, t, target="observed"), "target"),
        (lambda: explain(state, x, t, target=5), "target"),
        (lambda: explain(state, x, t, target=[0, 1]), "target"),
        (lambda: explain(state, x, t, top_k=0), "top_k"),
        (lambda: explain(state, x, t, top_k=2.5), "top_k"),
        (lambda: explain(state, x, t, top_k=True), "top_k"),
    ]
    for call, argument in cases:
        with pytest.raises(InvalidInputError) as error:
            call()
        assert error.value.argument == argument
        assert argument in str(error.value)


def test_empty_query_and_large_top_k(fitted):
    problem, state = fitted
    x = problem.train_features
    empty = contributions(
        state, x, np.empty((0, x.shape[1])), target_classes=np.empty(0, dtype=int)
    )
    assert empty.shape == (0, len(x))
    [explanation] = explain(state, x, problem.test_features[:1], top_k=10 * len(x))
    assert sorted(explanation.positive_indices) == list(range(len(x)))
