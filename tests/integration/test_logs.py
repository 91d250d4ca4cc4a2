"""RPS_LOG_FORMAT=json: an API process and a worker process write one JSON object a line, and
a registration can be followed from its request to the worker's lines about its job."""

from __future__ import annotations

import json

import httpx
import pytest

from rps.client import Client
from tests.helpers.problems import make_linear_problem
from tests.helpers.processes import ServiceProcess, start_api, wait_ready_while_alive

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

READY_TIMEOUT_S = 120.0
JSON_LOGS = {"RPS_LOG_FORMAT": "json"}


def json_lines(process: ServiceProcess) -> list[dict]:
    """Every line of the process's log, parsed; a line that is not a JSON object fails."""
    lines = [line for line in process.log_path.read_text().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        value = json.loads(line)  # raises on a plain-text line
        assert isinstance(value, dict) and {"time", "level", "logger", "message"} <= set(value)
        parsed.append(value)
    return parsed


def test_a_registration_is_traced_from_request_to_worker_in_json_logs(production_backend):
    api = start_api(production_backend, extra_env=JSON_LOGS)
    worker = production_backend.spawn(
        "worker", "worker", "--processes", "1", "--threads", "1", extra_env=JSON_LOGS
    )
    problem = make_linear_problem(seed=3, n_train=120, n_test=4, dim=5, num_classes=3)
    with Client(api.base_url) as client:
        model = client.register_linear(
            problem.weights, problem.bias, problem.train_features, problem.train_labels
        )
        wait_ready_while_alive(
            client, model["id"], processes=[api, worker], timeout=READY_TIMEOUT_S
        )
    echoed = httpx.get(f"{api.base_url}/models", headers={"X-Request-ID": "trace-me-42"})
    assert echoed.headers["x-request-id"] == "trace-me-42"
    minted = httpx.get(f"{api.base_url}/models").headers["x-request-id"]
    assert len(minted) >= 16

    api_lines = json_lines(api)
    queued = [line for line in api_lines if "registered: job" in line["message"]]
    assert len(queued) == 1 and model["id"] in queued[0]["message"]
    request_id = queued[0]["request_id"]
    job_id = queued[0]["message"].split("job ")[1].split()[0]
    assert any(
        line.get("request_id") == request_id and "POST /models" in line["message"]
        for line in api_lines
    ), "the access line of the registration carries the same request id"
    assert any(line.get("request_id") == "trace-me-42" for line in api_lines)

    job_lines = [line for line in json_lines(worker) if line.get("job_id") == job_id]
    assert any("ready" in line["message"] for line in job_lines)
    ready_lines = [line for line in job_lines if "ready" in line["message"]]
    assert ready_lines and all(line.get("model_id") == model["id"] for line in ready_lines)
    assert any("attempt 1" in line["message"] for line in job_lines)
    assert all(line["logger"].startswith("workers.") for line in job_lines)  # module names
