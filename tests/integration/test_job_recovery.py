"""Jobs heal by themselves under live processes: a registration made while Redis is down is
sent once Redis is back (the jobs table is the outbox), and a model deleted while its
precompute runs stops the job and leaves no files.

A worker SIGKILLed mid-job is in tests/integration/test_fault.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rps.client import Client
from tests.helpers.private_services import private_redis
from tests.helpers.problems import linear_problem
from tests.helpers.processes import (
    Backend,
    clean_env,
    start_api,
    start_worker,
    wait_ready_while_alive,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

READY_TIMEOUT_S = 180.0
RUNNING_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
SWEEP_INTERVAL_S = 1.0


def register(client: Client, *, n: int = 200, d: int = 8, k: int = 3, **options) -> dict:
    problem = linear_problem(n=n, d=d, k=k)
    return client.register_linear(
        problem["weights"],
        problem["bias"],
        problem["train_features"],
        problem["train_labels"],
        test_features=problem["test_features"],
        **options,
    )


@pytest.fixture
def recovering_backend(tmp_path, postgres_database) -> Iterator[tuple]:
    """A fresh PostgreSQL database, a Redis of this test's own, a data directory."""
    with private_redis() as redis_server:
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        env = clean_env(data_dir)
        env.update(
            RPS_DATABASE_URL=postgres_database,
            RPS_REDIS_URL=redis_server.url,
            RPS_JOB_SWEEP_INTERVAL_S=str(SWEEP_INTERVAL_S),
            RPS_WORKER_HEARTBEAT_TIMEOUT_MS="3000",
            RPS_BROKER_MAINTENANCE_CHANCE="1000000",
        )
        backend = Backend(env=env, data_dir=data_dir)
        migrated = backend.run("db", "upgrade")
        if migrated.returncode != 0:
            pytest.fail(f"rps db upgrade failed:\n{migrated.stderr[-2000:]}")
        try:
            yield redis_server, backend
        finally:
            backend.stop_all()


def test_registration_while_redis_is_down_is_computed_once_redis_returns(recovering_backend):
    redis_server, backend = recovering_backend
    api = start_api(backend)
    worker = start_worker(backend, "worker")
    with Client(api.base_url, timeout=60) as client:
        warm = register(client, name="before-the-fault")
        wait_ready_while_alive(client, warm["id"], processes=[api, worker], timeout=READY_TIMEOUT_S)

        redis_server.kill()
        stored = register(client, name="while-redis-is-down")
        assert stored["status"] == "queued"
        time.sleep(3 * SWEEP_INTERVAL_S)  # sweeps against a dead broker change nothing
        assert client.get_model(stored["id"])["status"] == "queued"

        redis_server.start()  # empty: whatever was queued in it is gone
        restarted = time.monotonic()
        ready = wait_ready_while_alive(
            client, stored["id"], processes=[api, worker], timeout=READY_TIMEOUT_S
        )
        healed_after = time.monotonic() - restarted
    assert ready["status"] == "ready" and ready["attempts"] == 1, ready
    assert healed_after < READY_TIMEOUT_S
    assert "the job sweep will send it" in api.log_tail()


def _wait_running(client: Client, model_id: str) -> None:
    deadline = time.monotonic() + RUNNING_TIMEOUT_S
    while client.get_model(model_id)["status"] != "running":
        assert time.monotonic() < deadline, client.get_model(model_id)
        time.sleep(0.05)


def test_delete_during_precompute_stops_the_job_and_keeps_no_files(recovering_backend):
    _redis, backend = recovering_backend
    api = start_api(backend)
    worker = start_worker(backend, "worker")
    models = backend.data_dir / "artifacts" / "models"
    with Client(api.base_url, timeout=60) as client:
        doomed = register(client, n=20_000, d=96, k=8, name="doomed", methods=["lje", "influence"])
        _wait_running(client, doomed["id"])
        time.sleep(1.0)  # well inside the precompute
        assert httpx.delete(f"{api.base_url}/models/{doomed['id']}").status_code == 204
        deleted = time.monotonic()
        while "stopped (model deleted)" not in worker.log_tail():
            assert time.monotonic() - deleted < STOP_TIMEOUT_S, worker.log_tail()
            assert worker.alive(), worker.log_tail()
            time.sleep(0.1)
        assert not (models / doomed["id"]).exists()

        # the worker is free at once: the next model does not wait for the deleted one
        after = register(client, name="after-the-delete")
        wait_ready_while_alive(client, after["id"], processes=[api, worker], timeout=60)
    assert not (models / doomed["id"]).exists()
    trash = backend.data_dir / "artifacts" / "trash"
    assert not trash.exists() or list(Path(trash).iterdir()) == []
    assert "result discarded" not in worker.log_tail()
