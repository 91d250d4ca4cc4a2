"""Alembic environment: migrate the database given in the config (online mode only).

On PostgreSQL the migration holds a transaction-scoped advisory lock, so API processes
started together (docker-compose) do not race to create the same tables.
"""

from alembic import context
from sqlalchemy import create_engine, pool, text

from models_store.tables import Base

config = context.config
target_metadata = Base.metadata
MIGRATION_LOCK_KEY = 72_431_177  # any constant shared by every rps process


def _migrate(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: set sqlalchemy.url or pass a connection")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _migrate(conn)
    engine.dispose()


run_migrations_online()
