"""Worker processes export Prometheus metrics: one process serves its own registry; N processes
run under Dramatiq's supervisor, whose exposition server sums every process's metrics."""

from __future__ import annotations

import time

import httpx
import pytest

from rps.client import Client
from tests.helpers.problems import make_linear_problem
from tests.helpers.processes import free_port, start_api, wait_ready_while_alive

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

READY_TIMEOUT_S = 150.0
MODELS = 3


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape(url: str, *, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=5.0).text
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.parametrize("processes", [1, 2])
def test_worker_metrics_count_every_job_of_every_process(production_backend, processes):
    port = free_port()
    api = start_api(production_backend)
    worker = production_backend.spawn(
        "worker",
        "worker",
        "--processes",
        str(processes),
        "--threads",
        "1",
        extra_env={"RPS_WORKER_METRICS_PORT": str(port)},
    )
    with Client(api.base_url) as client:
        ids = []
        for seed in range(MODELS):
            problem = make_linear_problem(seed=seed, n_train=80, n_test=2, dim=4, num_classes=3)
            ids.append(
                client.register_linear(
                    problem.weights, problem.bias, problem.train_features, problem.train_labels
                )["id"]
            )
        for model_id in ids:
            wait_ready_while_alive(
                client, model_id, processes=[api, worker], timeout=READY_TIMEOUT_S
            )

    text = scrape(f"http://127.0.0.1:{port}/metrics")
    assert metric_sum(text, "rps_jobs_finished_total", outcome="done") == MODELS
    assert metric_sum(text, "rps_job_duration_seconds_count", outcome="done") == MODELS
    if processes > 1:  # Dramatiq's own middleware, summed over the processes
        assert metric_sum(text, "dramatiq_messages_total", actor_name="precompute_model") == MODELS

    worker.stop()
    assert worker.popen.returncode is not None
