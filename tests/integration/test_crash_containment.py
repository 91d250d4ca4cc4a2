"""A native crash in a precompute fails that job and nothing else.

Before: a booster that made XGBoost crash (SIGSEGV) took down the process running the job:
the embedded server with every request, again after each restart (the job was re-queued
at start), and in production every worker that took the job, attempts growing without a
cap. Now the job runs in a child process: the crash fails the job with
``precompute-crashed`` (it is not retried), and the serving process stays up and runs the
next job. (A job whose worker itself keeps dying stops after ``RPS_JOB_MAX_ATTEMPTS``:
``precompute-abandoned``, tested with the job leases.)

The crash is made real without a crashing input (the structural checks refuse those): the
test sends SIGSEGV to the job's child process while it computes.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from rps.client import Client
from tests.helpers.problems import make_linear_problem
from tests.helpers.processes import ServiceProcess, start_api, start_worker

pytestmark = pytest.mark.slow

LONG_PROBLEM = dict(seed=41, n_train=20_000, n_test=4, dim=96, num_classes=8)
SMALL_PROBLEM = dict(seed=42, n_train=200, n_test=4, dim=6, num_classes=3)
STATUS_TIMEOUT_S = 120.0


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def register(client: Client, problem_options: dict, name: str) -> dict:
    problem = make_linear_problem(**problem_options)
    return client.register_linear(
        problem.weights,
        problem.bias,
        problem.train_features,
        problem.train_labels,
        name=name,
        methods=["lje", "influence"],
        test_features=problem.test_features,
        test_labels=problem.test_labels,
    )


def wait_status(client: Client, model_id: str, statuses: set[str]) -> dict:
    deadline = time.monotonic() + STATUS_TIMEOUT_S
    while time.monotonic() < deadline:
        model = client.get_model(model_id)
        if model["status"] in statuses:
            return model
        time.sleep(0.05)
    pytest.fail(f"model {model_id} never reached {statuses}: {model}")


def crash_the_running_job(client: Client, server: ServiceProcess) -> dict:
    """Register a long job, SIGSEGV its child process mid-way; the model it left behind."""
    before = descendants(server.pid)
    model = register(client, LONG_PROBLEM, "crashes")
    wait_status(client, model["id"], {"running"})
    deadline = time.monotonic() + 30
    while not (jobs := descendants(server.pid) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert jobs, "no child process runs the job"
    for pid in jobs:
        os.kill(pid, signal.SIGSEGV)
    return wait_status(client, model["id"], {"failed", "ready"})


def test_embedded_server_survives_a_crashing_precompute(embedded_server):
    with Client(embedded_server.base_url, timeout=60) as client:
        warm = register(client, SMALL_PROBLEM, "warm-up")  # starts the job process server
        assert wait_status(client, warm["id"], {"ready", "failed"})["status"] == "ready"
        crashed = crash_the_running_job(client, embedded_server)
        assert embedded_server.alive(), embedded_server.log_tail()
        assert crashed["status"] == "failed", crashed
        assert crashed["error"]["type"] == "urn:rps:problem:precompute-crashed", crashed
        assert "SIGSEGV" in crashed["error"]["detail"] and crashed["attempts"] == 1
        after = register(client, SMALL_PROBLEM, "after-the-crash")
        assert wait_status(client, after["id"], {"ready", "failed"})["status"] == "ready"
        assert client.explain(warm["id"], test_id="1", k=3)["positive"]


def test_worker_process_survives_a_crashing_precompute(production_backend):
    api = start_api(production_backend)
    worker = start_worker(production_backend, "worker")
    with Client(api.base_url, timeout=60) as client:
        warm = register(client, SMALL_PROBLEM, "warm-up")
        assert wait_status(client, warm["id"], {"ready", "failed"})["status"] == "ready"
        crashed = crash_the_running_job(client, worker)
        assert worker.alive(), worker.log_tail()
        assert crashed["error"]["type"] == "urn:rps:problem:precompute-crashed", crashed
        after = register(client, SMALL_PROBLEM, "after-the-crash")
        assert wait_status(client, after["id"], {"ready", "failed"})["status"] == "ready"
