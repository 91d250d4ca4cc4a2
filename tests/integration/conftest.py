"""Real processes against real PostgreSQL and Redis: the fixtures that start and stop them.

Each test gets a fresh PostgreSQL database (created here, dropped at the end) and a Redis
database index of its own (flushed before and after), starts the ``rps`` processes it needs
on ports chosen free at run time, and every process is stopped by a finalizer, whatever
happens. When PostgreSQL or Redis is unreachable the tests are skipped with the reason,
except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.backing_services import (
    REDIS_BASE_URL,
    claim_redis_database,
    fresh_postgres_database,
    unavailable,
)
from tests.helpers.processes import REPO_ROOT, Backend, ServiceProcess, clean_env, free_port

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test; its SQLAlchemy URL. Dropped afterwards."""
    with fresh_postgres_database(prefix="rps_it_") as url:
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL on a database index no concurrent run uses, emptied before and after the test."""
    import redis

    try:
        index, connection = claim_redis_database("integration", uuid.uuid4().hex)
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
