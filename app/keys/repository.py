"""Database access of API keys."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models_store import ApiKey

__all__ = ["add_key", "all_keys", "find_key"]


def add_key(session: Session, key: ApiKey) -> None:
    session.add(key)
    session.flush()


def all_keys(session: Session) -> list[ApiKey]:
    """Every key row, oldest first (revoked ones too)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.prefix)))


def find_key(session: Session, *, prefix: str) -> ApiKey | None:
    """The key whose lookup prefix (or row id) is ``prefix``, locked for update."""
    return session.scalar(
        select(ApiKey).where(or_(ApiKey.prefix == prefix, ApiKey.id == prefix)).with_for_update()
    )
