"""The service under test, on two backends: SQLite + StubBroker, PostgreSQL + Redis.

Each backend gets a fresh data directory, a migrated database (PostgreSQL: a database
``rps_test_<random>`` created for the session and dropped after it; Redis: its own db
index and a key namespace of this session, cleaned afterwards), the app, and a Dramatiq
``Worker`` thread on the backend's broker.
Unreachable PostgreSQL/Redis skips the backend with the reason, or fails under CI=true.
Auth is on: tenants ``alice`` and ``bob`` have keys from ``RPS_API_KEYS``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from app import create_app
from app.main import check_startup
from models_store import upgrade
from rps_server.broker import make_broker
from rps_server.settings import Settings
from tests.helpers.backing_services import (
    REDIS_BASE_URL,
    fresh_postgres_database,
    redis_url_for,
    unavailable,
)
from tests.helpers.problems import linear_problem
from tests.helpers.service import (
    ALICE_KEY,
    BOB_KEY,
    ReadyModel,
    Service,
    register_ready,
)
from workers import declare_actors, make_runner, start_worker


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database(prefix="rps_test_") as url:
        yield url


@pytest.fixture(scope="session")
def redis_namespace() -> str:
    """Every Redis key of this session (broker queues, heartbeats, cache) starts with this."""
    return f"rps-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redis_url(redis_namespace) -> Iterator[str]:
    """Redis on the service tests' own db index; this session's keys are removed afterwards.

    The keys live under a namespace of their own, so two test runs at once (or an
    integration run) never take each other's messages, and no run flushes another's keys.
    """
    import redis

    url = redis_url_for("service")
    connection = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        connection.ping()
    except redis.RedisError as error:
        unavailable(f"Redis unreachable at {REDIS_BASE_URL}: {error}")
    yield url
    for key in connection.scan_iter(match=f"{redis_namespace}*", count=1000):
        connection.delete(key)
    connection.close()


def _start_service(name: str, settings: Settings) -> Iterator[Service]:
    upgrade(settings.resolved_database_url)
    broker = make_broker(settings)
    declare_actors(broker, settings=settings, runner=make_runner(settings))
    worker = start_worker(broker, queues=("default",), threads=1, worker_timeout_ms=100)
    app = create_app(settings, broker=broker)
    check_startup(app.state.context)
    try:
        yield Service(name=name, settings=settings, app=app)
    finally:
        worker.stop(timeout=10_000)
        app.state.context.close()
        broker.close()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def service(request, tmp_path_factory) -> Iterator[Service]:
    """The service on one backend (the whole suite runs once per backend)."""
    data_dir = tmp_path_factory.mktemp(f"data-{request.param}")
    options: dict[str, Any] = {"data_dir": data_dir, "api_keys": f"alice:{ALICE_KEY},bob:{BOB_KEY}"}
    if request.param == "postgres":
        options.update(
            database_url=request.getfixturevalue("postgres_url"),
            redis_url=request.getfixturevalue("redis_url"),
            redis_namespace=request.getfixturevalue("redis_namespace"),
            worker_heartbeat_timeout_ms=5000,
        )
    yield from _start_service(request.param, Settings(**options))


@pytest.fixture(scope="session")
def multiclass_model(service) -> ReadyModel:
    spec = {
        "name": "three-class",
        "kind": "linear",
        "methods": ["lje", "l2", "influence"],
        "class_names": ["a", "b", "c"],
        "lje": {"lr": 0.01},
    }
    return register_ready(service, linear_problem(k=3), spec)


@pytest.fixture(scope="session")
def binary_model(service) -> ReadyModel:
    spec = {"name": "binary", "kind": "linear", "methods": ["lje"]}
    return register_ready(service, linear_problem(k=1, seed=1), spec)
