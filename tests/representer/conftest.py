"""Fixtures of the engine tests: the synthetic problems of ``tests.helpers.problems``."""

from __future__ import annotations

import pytest

from tests.helpers.problems import Problem, make_problem


@pytest.fixture(scope="session")
def binary_problem() -> Problem:
    return make_problem(1, seed=1)


@pytest.fixture(scope="session")
def multiclass_problem() -> Problem:
    return make_problem(3, seed=2)


@pytest.fixture(scope="session", params=["binary", "multiclass"])
def problem(request, binary_problem, multiclass_problem) -> Problem:
    return binary_problem if request.param == "binary" else multiclass_problem
