"""Creating API keys (``rps keys create``); only the hash is stored."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.core.auth import hash_token, new_token
from app.core.errors import FieldError, InvalidRequestError
from app.keys import repository
from models_store import ApiKey

__all__ = ["create_api_key"]

MAX_TENANT_CHARS = 200


def create_api_key(session: Session, *, tenant: str) -> str:
    """Add a key for ``tenant`` and return the token (shown once, stored hashed)."""
    tenant = tenant.strip()
    if not tenant or len(tenant) > MAX_TENANT_CHARS:
        raise InvalidRequestError(
            "tenant must be 1..200 characters", errors=[FieldError("tenant", "invalid")]
        )
    token, prefix = new_token()
    repository.add_key(
        session,
        ApiKey(id=str(uuid.uuid4()), tenant=tenant, prefix=prefix, key_hash=hash_token(token)),
    )
    return token
