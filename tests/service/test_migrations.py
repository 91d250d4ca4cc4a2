"""The packaged Alembic migrations create exactly the tables the code declares."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from models_store import Base, upgrade
from tests.helpers.backing_services import fresh_postgres_database


def schema_differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_match_the_tables(backend, tmp_path, request):
    url = (
        f"sqlite:///{tmp_path / 'm.sqlite3'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    upgrade(url)
    upgrade(url)  # idempotent: already at head
    assert schema_differences(url) == []
    engine = create_engine(url)
    try:
        names = {index["name"] for index in inspect(engine).get_indexes("scores")}
    finally:
        engine.dispose()
    assert "ix_scores_rank" in names


def test_processes_migrating_together_do_not_race():
    """Four processes upgrade one fresh PostgreSQL database at once; all succeed."""
    import subprocess
    import sys

    with fresh_postgres_database(prefix="rps_test_race_") as url:
        code = f"from models_store import upgrade; upgrade({url!r})"
        processes = [
            subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(4)
        ]
        outcomes = [
            (process.wait(timeout=120), process.stderr.read().decode()[-300:])
            for process in processes
        ]
        assert [code for code, _ in outcomes] == [0, 0, 0, 0], outcomes
        assert schema_differences(url) == []
