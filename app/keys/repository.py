"""Database access of API keys."""

from __future__ import annotations

from sqlalchemy.orm import Session

from models_store import ApiKey

__all__ = ["add_key"]


def add_key(session: Session, key: ApiKey) -> None:
    session.add(key)
    session.flush()
