"""Engine and session factory for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["make_engine", "make_sessionmaker", "is_sqlite"]

SQLITE_BUSY_TIMEOUT_MS = 30_000
DEFAULT_POOL_SIZE = 20
"""Connections an engine keeps open (an API process's: ``RPS_DB_POOL_SIZE``, default 20).
It should cover the sessions a process has open at once: beyond it, the pool opens an
overflow connection and closes it again when it comes back. With 10, 16 explain clients
on PostgreSQL opened 58 connections in 640 requests (a server process forked, and
authenticated, for each)."""
MAX_OVERFLOW = 10
"""Connections opened beyond the pool at a peak, and closed when they come back."""


def is_sqlite(url: str) -> bool:
    """True for a ``sqlite:`` URL."""
    return url.startswith("sqlite")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> Engine:
    """An engine for ``url`` that keeps ``pool_size`` connections open (up to
    ``MAX_OVERFLOW`` more at a peak); SQLite gets WAL, foreign keys and cross-thread use."""
    if is_sqlite(url):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=MAX_OVERFLOW,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=MAX_OVERFLOW)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (responses are built after it)."""
    return sessionmaker(engine, expire_on_commit=False)
