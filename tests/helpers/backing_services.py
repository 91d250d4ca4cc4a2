"""The real services tests talk to: skip-or-fail when absent, fresh PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

__all__ = [
    "POSTGRES_ADMIN_URL",
    "REDIS_BASE_URL",
    "REDIS_DATABASES",
    "claim_redis_database",
    "fresh_postgres_database",
    "redis_url_for",
    "running_in_ci",
    "unavailable",
]

POSTGRES_ADMIN_URL = os.environ.get(
    "RPS_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)

REDIS_BASE_URL = os.environ.get("RPS_TEST_REDIS", "redis://127.0.0.1:6379")
REDIS_DATABASES: dict[str, tuple[int, ...]] = {
    "service": (14,),  # one per run; runs keep apart by a key namespace of their own
    "integration": (13, 11, 10, 9, 8),  # one per test, claimed (see claim_redis_database)
    "benchmarks": (12,),
}
"""Redis database indices by user: no two users share one, so nobody flushes another's keys."""
REDIS_CLAIM_KEY = "rps-integration-test:claim"
REDIS_CLAIM_TTL_S = 900


def redis_url_for(user: str) -> str:
    """The Redis URL of the first database index of ``user`` (a key of ``REDIS_DATABASES``)."""
    return f"{REDIS_BASE_URL}/{REDIS_DATABASES[user][0]}"


def claim_redis_database(user: str, token: str) -> tuple[int, Any]:
    """A connection to the first index of ``user`` that no concurrent run holds.

    The claim is a key set with NX in that database (expiring, so a crashed run frees it);
    the database is then emptied but for the claim. Fails the test when all are held.
    """
    import redis

    for index in REDIS_DATABASES[user]:
        connection = redis.Redis.from_url(f"{REDIS_BASE_URL}/{index}", socket_connect_timeout=3)
        if connection.set(REDIS_CLAIM_KEY, token, nx=True, ex=REDIS_CLAIM_TTL_S):
            stale = [
                key for key in connection.scan_iter(count=1000) if key != REDIS_CLAIM_KEY.encode()
            ]
            if stale:
                connection.delete(*stale)
            return index, connection
        connection.close()
    pytest.fail(f"every Redis database of {user!r} is claimed by another run")


def running_in_ci() -> bool:
    """True under CI=true, where a missing service or data set is a failure, not a skip."""
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip (or fail under CI=true) because something the test needs is not there."""
    if running_in_ci():
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@contextmanager
def fresh_postgres_database(*, prefix: str) -> Iterator[str]:
    """Create ``<prefix><random>``, yield its SQLAlchemy URL, drop it afterwards."""
    import psycopg

    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        unavailable(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield (
                POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[
                    0
                ]
                + f"/{name}"
            )
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
