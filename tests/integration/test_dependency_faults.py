"""Dependencies that fail under live processes: PostgreSQL stopped and started again, the
artifact disk full or read-only. Each answers a clear 503/507 problem, keeps nothing
partial, and heals without a manual step.

The PostgreSQL, Redis and disk here belong to the test (``tests.helpers.private_services``),
so stopping them disturbs no other test.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rps.client import Client, ServiceError
from tests.helpers.private_services import (
    private_postgres,
    private_redis,
    read_only,
    small_tmpfs,
)
from tests.helpers.problems import linear_problem
from tests.helpers.processes import (
    Backend,
    ServiceProcess,
    clean_env,
    start_api,
    start_worker,
    wait_ready_while_alive,
)

pytestmark = [pytest.mark.slow]

READY_TIMEOUT_S = 180.0
RECOVERY_TIMEOUT_S = 30.0
DEPENDENCY_ROUTES = (
    ("GET", "/models"),
    ("GET", "/models/{id}"),
    ("GET", "/explain?model_id={id}&test_id=0"),
    ("GET", "/debug/suspicious?model_id={id}"),
    ("GET", "/metrics"),
    ("GET", "/readyz"),
    ("DELETE", "/models/{id}"),
)


def register(
    client: Client, *, n: int = 200, d: int = 8, k: int = 3, name: str = "fault", **options
) -> dict:
    problem = linear_problem(n=n, d=d, k=k)
    return client.register_linear(
        problem["weights"],
        problem["bias"],
        problem["train_features"],
        problem["train_labels"],
        name=name,
        test_features=problem["test_features"],
        **options,
    )


def make_backend(data_dir: Path, *, database_url: str, redis_url: str, **extra: str) -> Backend:
    env = clean_env(data_dir)
    env.update(RPS_DATABASE_URL=database_url, RPS_REDIS_URL=redis_url, **extra)
    backend = Backend(env=env, data_dir=data_dir)
    migrated = backend.run("db", "upgrade")
    if migrated.returncode != 0:
        pytest.fail(f"rps db upgrade failed:\n{migrated.stderr[-2000:]}")
    return backend


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict:
    assert response.status_code == status, (response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == f"urn:rps:problem:{slug}", body
    return body


def artifact_models(data_dir: Path) -> set[str]:
    folder = data_dir / "artifacts" / "models"
    return {path.name for path in folder.iterdir()} if folder.exists() else set()


def temp_files(data_dir: Path) -> list[Path]:
    folder = data_dir / "tmp"
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


@pytest.fixture
def stack(tmp_path) -> Iterator[tuple]:
    """A private PostgreSQL and Redis; the test starts the rps processes it needs."""
    with private_postgres() as postgres, private_redis() as redis_server:
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        backend = make_backend(data_dir, database_url=postgres.url, redis_url=redis_server.url)
        try:
            yield postgres, redis_server, backend
        finally:
            backend.stop_all()


def test_postgres_stopped_answers_503_then_recovers(stack):
    postgres, _redis, backend = stack
    api = start_api(backend)
    worker = start_worker(backend, "worker")
    with Client(api.base_url, timeout=30) as client:
        ready = register(client)
        wait_ready_while_alive(
            client, ready["id"], processes=[api, worker], timeout=READY_TIMEOUT_S
        )
        folders_before = artifact_models(backend.data_dir)

        postgres.stop()
        for method, path in DEPENDENCY_ROUTES:
            response = httpx.request(method, api.base_url + path.format(id=ready["id"]), timeout=30)
            if path == "/readyz":
                assert assert_problem(response, 503, "unavailable")["failing"] == ["database"]
            else:
                body = assert_problem(response, 503, "dependency-unavailable")
                assert body["dependency"] == "database", body
            assert int(response.headers["Retry-After"]) >= 1
        with pytest.raises(ServiceError) as refused:
            register(client, name="while-postgres-is-down")
        assert refused.value.status == 503, refused.value
        assert artifact_models(backend.data_dir) == folders_before, "a refused upload kept files"
        assert temp_files(backend.data_dir) == []

        postgres.start()
        started = time.monotonic()
        while httpx.get(f"{api.base_url}/models/{ready['id']}", timeout=30).status_code != 200:
            assert time.monotonic() - started < RECOVERY_TIMEOUT_S, api.log_tail()
            time.sleep(0.2)
        assert client.get_model(ready["id"])["status"] == "ready"
        assert client.explain(ready["id"], test_id="0", k=3)["positive"]
        again = register(client, name="after-postgres-returned")
        assert (
            wait_ready_while_alive(
                client, again["id"], processes=[api, worker], timeout=READY_TIMEOUT_S
            )["status"]
            == "ready"
        )


TMPFS_BYTES = 24 * 1024**2
HEADROOM_BYTES = 1024**2


def fill_leaving(folder: Path, free_bytes: int) -> Path:
    """Write a ballast file so that about ``free_bytes`` stay free on ``folder``'s disk."""
    ballast = folder / "ballast"
    size = shutil.disk_usage(folder).free - free_bytes
    with open(ballast, "wb") as handle:
        handle.write(b"\0" * max(0, size))
    return ballast


def wait_finished(client: Client, model_id: str, processes: list[ServiceProcess]) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        model = client.get_model(model_id)
        if model["status"] in ("ready", "failed"):
            return model
        for process in processes:
            assert process.alive(), process.log_tail()
        time.sleep(0.2)
    pytest.fail(f"model {model_id} did not finish: {client.get_model(model_id)}")


def test_full_and_read_only_disk_answer_507_and_keep_nothing(tmp_path):
    with (
        private_postgres() as postgres,
        private_redis() as redis_server,
        small_tmpfs(TMPFS_BYTES) as disk,
    ):
        backend = make_backend(
            disk, database_url=postgres.url, redis_url=redis_server.url, RPS_MIN_FREE_DISK_MB="2"
        )
        try:
            _full_and_read_only(backend, disk)
        except BaseException:
            for process in backend.processes:
                print(f"--- {process.name}\n{process.log_tail()}")
            raise
        finally:
            backend.stop_all()


def _full_and_read_only(backend: Backend, disk: Path) -> None:
    # the low-disk check of /readyz and of uploads, and the real ENOSPC behind it (check off)
    guarded = start_api(backend, "api-guarded")
    api = start_api(backend, "api", extra_env={"RPS_MIN_FREE_DISK_MB": "0"})
    worker = start_worker(backend, "worker")
    with Client(api.base_url, timeout=60) as client, Client(guarded.base_url) as guarded_client:
        kept = register(client, name="kept")
        wait_ready_while_alive(client, kept["id"], processes=[api, worker], timeout=READY_TIMEOUT_S)
        assert httpx.get(f"{guarded.base_url}/readyz").status_code == 200
        folders = artifact_models(disk)

        ballast = fill_leaving(disk, HEADROOM_BYTES)
        readiness = assert_problem(httpx.get(f"{guarded.base_url}/readyz"), 503, "unavailable")
        assert readiness["failing"] == ["artifact_store"]  # why: only to a caller with a key
        with pytest.raises(ServiceError) as low:
            register(guarded_client, name="refused-by-the-check")
        assert low.value.status == 507, low.value
        with pytest.raises(ServiceError) as full:  # ~3 MB of features into 1 MB: ENOSPC
            register(client, n=4000, d=96, name="does-not-fit")
        assert full.value.status == 507, full.value
        assert full.value.problem["type"] == "urn:rps:problem:insufficient-storage"
        assert artifact_models(disk) == folders and temp_files(disk) == []

        # the upload fits, the precompute's results do not: the job fails with the problem
        ballast.unlink()
        # ~1.2 MB uploaded and stored as float32 (~0.6 MB); the results take ~7 MB
        problem = linear_problem(n=3000, d=48, k=8)
        fill_leaving(disk, int(2.2 * (problem["train_features"].nbytes + 3000 * 8)))
        model = register(
            client, n=3000, d=48, k=8, name="results-do-not-fit", methods=["lje", "influence"]
        )
        failed = wait_finished(client, model["id"], [api, worker])
        assert failed["status"] == "failed", failed
        assert failed["error"]["type"] == "urn:rps:problem:insufficient-storage", failed["error"]
        assert failed["error"]["status"] == 507
        results = disk / "artifacts" / "models" / model["id"] / "results"
        assert not results.exists() or list(results.iterdir()) == [], "a partial run was kept"
        (disk / "ballast").unlink()
        client.delete_model(model["id"])

        # read-only: registering and deleting both say so, and nothing changes
        with read_only(disk / "artifacts"):
            with pytest.raises(ServiceError) as refused_upload:
                register(client, name="read-only")
            assert refused_upload.value.status == 507, refused_upload.value
            refused = httpx.delete(f"{api.base_url}/models/{kept['id']}")
            assert_problem(refused, 507, "insufficient-storage")
            assert client.get_model(kept["id"])["status"] == "ready"
            assert client.explain(kept["id"], test_id="0", k=3)["positive"]
        assert kept["id"] in artifact_models(disk)
        assert httpx.delete(f"{api.base_url}/models/{kept['id']}").status_code == 204
        assert kept["id"] not in artifact_models(disk)
