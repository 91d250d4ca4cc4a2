"""Real processes against real PostgreSQL and Redis: the fixtures that start and stop them.

Each test gets a fresh PostgreSQL database (created here, dropped at the end) and a Redis
database index of its own (flushed before and after), starts the ``rps`` processes it needs
on ports chosen free at run time, and every process is stopped by a finalizer, whatever
happens. When PostgreSQL or Redis is unreachable the tests are skipped with the reason,
except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.backing_services import fresh_postgres_database, unavailable
from tests.helpers.processes import REPO_ROOT, Backend, ServiceProcess, clean_env, free_port

REDIS_BASE_URL = os.environ.get("RPS_TEST_REDIS", "redis://127.0.0.1:6379")
# tests/service uses index 14 and benchmarks/http_bench.py 12; concurrent runs of this suite
# each claim one of these
REDIS_DB_INDICES = (13, 11, 10, 9, 8)
REDIS_CLAIM_KEY = "rps-integration-test:claim"
REDIS_CLAIM_TTL_S = 900
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test; its SQLAlchemy URL. Dropped afterwards."""
    with fresh_postgres_database(prefix="rps_it_") as url:
        yield url


def _claim_redis_database(token: str):
    """A connection to the first database index in ``REDIS_DB_INDICES`` no other run holds.

    The claim is a key set with NX in that database (expiring, so a crashed run frees it);
    the database is then emptied but for the claim.
    """
    import redis

    for index in REDIS_DB_INDICES:
        connection = redis.Redis.from_url(f"{REDIS_BASE_URL}/{index}", socket_connect_timeout=3)
        if connection.set(REDIS_CLAIM_KEY, token, nx=True, ex=REDIS_CLAIM_TTL_S):
            stale = [
                key for key in connection.scan_iter(count=1000) if key != REDIS_CLAIM_KEY.encode()
            ]
            if stale:
                connection.delete(*stale)
            return index, connection
        connection.close()
    pytest.fail(f"every Redis database in {REDIS_DB_INDICES} is claimed by another integration run")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL on a database index no concurrent run uses, emptied before and after the test."""
    import redis

    try:
        index, connection = _claim_redis_database(uuid.uuid4().hex)
    except redis.RedisError as error:
        unavailable(f"Redis unreachable at {REDIS_BASE_URL}: {error}")
    try:
        yield f"{REDIS_BASE_URL}/{index}"
    finally:
        connection.flushdb()  # the claim goes with it
        connection.close()


@pytest.fixture
def production_backend(tmp_path, postgres_database, redis_url) -> Iterator[Backend]:
    """PostgreSQL + Redis + a data directory; the schema migrated; processes stopped at the end."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = clean_env(data_dir)
    env.update(
        RPS_DATABASE_URL=postgres_database,
        RPS_REDIS_URL=redis_url,
        # a killed worker's message must come back within seconds, not the default minute
        RPS_WORKER_HEARTBEAT_TIMEOUT_MS="3000",
        RPS_BROKER_MAINTENANCE_CHANCE="1000000",
    )
    backend = Backend(env=env, data_dir=data_dir)
    migrated = backend.run("db", "upgrade")
    if migrated.returncode != 0:
        pytest.fail(f"rps db upgrade failed:\n{migrated.stdout[-2000:]}\n{migrated.stderr[-2000:]}")
    try:
        yield backend
    finally:
        backend.stop_all()


@pytest.fixture
def embedded_backend(tmp_path) -> Iterator[Backend]:
    """The embedded default (SQLite, in-memory broker) in a data directory of its own."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    backend = Backend(env=clean_env(data_dir), data_dir=data_dir)
    try:
        yield backend
    finally:
        backend.stop_all()


@pytest.fixture
def embedded_server(embedded_backend) -> ServiceProcess:
    """``rps serve`` (embedded) on a free port, healthy."""
    port = free_port()
    server = embedded_backend.spawn(
        "serve", "serve", "--host", "127.0.0.1", "--port", str(port), port=port
    )
    return server.wait_healthy()


@pytest.fixture
def shared_data() -> Callable[[str], Path]:
    """Path of a folder under ../shared/data; skips (fails under CI) when it is absent."""

    def locate(name: str) -> Path:
        folder = SHARED_DATA / name
        if not folder.is_dir():
            unavailable(f"{folder} is absent")
        return folder

    return locate
