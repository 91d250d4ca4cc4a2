"""The packaged Alembic migrations create exactly the tables the code declares."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from models_store import Base, upgrade


def schema_differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_match_the_tables(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    upgrade(url)
    upgrade(url)  # idempotent: already at head
    assert schema_differences(url) == []
    engine = create_engine(url)
    try:
        names = {index["name"] for index in inspect(engine).get_indexes("scores")}
    finally:
        engine.dispose()
    assert "ix_scores_rank" in names
