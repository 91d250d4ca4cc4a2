"""The real services tests talk to: skip-or-fail when absent, fresh PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

__all__ = ["POSTGRES_ADMIN_URL", "running_in_ci", "unavailable", "fresh_postgres_database"]

POSTGRES_ADMIN_URL = os.environ.get(
    "RPS_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


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
