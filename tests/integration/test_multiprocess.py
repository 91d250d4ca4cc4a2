"""Production layout in miniature: an API process and two worker processes on PostgreSQL + Redis.

Auth is on (two tenants through RPS_API_KEYS): the models registered by one tenant are
invisible to the other (404) and to a request without a key (401).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from rps.client import Client, ServiceError
from tests.helpers.expected_answers import (
    assert_explanation_matches,
    assert_prediction_matches,
    assert_suspicious_matches,
    fitted_states,
    head_accuracy,
)
from tests.helpers.problems import make_linear_problem
from tests.helpers.processes import start_api, start_worker, wait_ready_while_alive

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

TOP_K = 4
READY_TIMEOUT_S = 150.0
ACME_KEY = "acme-key-for-the-integration-test"
RIVAL_KEY = "rival-key-for-the-integration-test"
PROBLEMS = {  # name: (seed, n_train, n_test, dim, num_classes, methods)
    "binary": (11, 300, 6, 8, 2, ("lje", "influence")),
    "three-class": (12, 260, 6, 5, 3, ("lje", "l2")),
    "five-class": (13, 220, 6, 7, 5, ("lje",)),
}


def test_three_models_registered_at_once_all_ready_with_the_engines_answers(production_backend):
    api = start_api(
        production_backend, extra_env={"RPS_API_KEYS": f"acme:{ACME_KEY},rival:{RIVAL_KEY}"}
    )
    workers = [start_worker(production_backend, f"worker-{index}") for index in range(2)]
    problems = {
        name: make_linear_problem(seed=seed, n_train=n, n_test=m, dim=d, num_classes=k)
        for name, (seed, n, m, d, k, _methods) in PROBLEMS.items()
    }

    with Client(api.base_url, api_key=ACME_KEY) as client:

        def register(name):
            problem, methods = problems[name], PROBLEMS[name][-1]
            return client.register_linear(
                problem.weights,
                problem.bias,
                problem.train_features,
                problem.train_labels,
                name=name,
                methods=list(methods),
                test_features=problem.test_features,
                test_labels=problem.test_labels,
            )

        with ThreadPoolExecutor(max_workers=len(problems)) as pool:
            registered = dict(zip(problems, pool.map(register, problems), strict=False))
        assert len({model["id"] for model in registered.values()}) == 3

        for name, model in registered.items():
            problem, methods = problems[name], PROBLEMS[name][-1]
            ready = wait_ready_while_alive(
                client, model["id"], processes=[api, *workers], timeout=READY_TIMEOUT_S
            )
            assert ready["status"] == "ready" and ready["n_train"] == len(problem.train_labels)
            assert ready["attempts"] == 1
            assert ready["diagnostics"]["train_accuracy"] == pytest.approx(
                head_accuracy(problem.head, problem.train_features, problem.train_labels), abs=1e-9
            )
            states = fitted_states(
                problem.head, problem.train_features, problem.train_labels, methods
            )
            for method in methods:
                for test_index in (0, 5):
                    body = client.explain(
                        model["id"], test_id=str(test_index), k=TOP_K, method=method
                    )
                    assert_prediction_matches(body, problem.head, problem.test_features[test_index])
                    assert_explanation_matches(
                        body,
                        states[method],
                        problem.train_features,
                        problem.test_features[test_index],
                        k=TOP_K,
                    )
                assert_suspicious_matches(
                    client.suspicious(model["id"], method=method, limit=10),
                    states[method],
                    n_train=len(problem.train_labels),
                )
    assert all(worker.alive() for worker in workers), "a worker died during the run"
    _assert_other_tenants_see_nothing(api.base_url, [model["id"] for model in registered.values()])


def _assert_other_tenants_see_nothing(base_url: str, model_ids: list[str]) -> None:
    with Client(base_url, api_key=RIVAL_KEY) as rival:
        assert rival.list_models() == []
        for model_id in model_ids:
            with pytest.raises(ServiceError) as hidden:
                rival.get_model(model_id)
            assert hidden.value.status == 404
            with pytest.raises(ServiceError) as hidden:
                rival.explain(model_id, test_id="0")
            assert hidden.value.status == 404
    with Client(base_url) as anonymous, pytest.raises(ServiceError) as refused:
        anonymous.list_models()
    assert refused.value.status == 401
