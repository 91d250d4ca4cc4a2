"""Creating, listing and revoking API keys (``rps keys create|list|revoke``); only the
hash of a key is stored, so a listing shows its lookup prefix, never the key."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.core.auth import hash_token, new_token, token_prefix
from app.core.errors import FieldError, InvalidRequestError, NotFoundError
from app.keys import repository
from models_store import ApiKey, utcnow

__all__ = ["create_api_key", "list_api_keys", "revoke_api_key"]

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


def list_api_keys(session: Session) -> list[dict[str, str | None]]:
    """Every key: prefix, tenant, created_at and revoked_at (ISO 8601, or None)."""
    return [
        {
            "prefix": key.prefix,
            "tenant": key.tenant,
            "created_at": key.created_at.isoformat() if key.created_at else None,
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        }
        for key in repository.all_keys(session)
    ]


def revoke_api_key(session: Session, key: str) -> ApiKey:
    """Revoke the key given by its prefix, its row id or the whole token; idempotent.

    Every API process refuses it within ``RPS_KEY_CACHE_TTL_S``.
    """
    prefix = token_prefix(key.strip()) or key.strip()
    row = repository.find_key(session, prefix=prefix)
    if row is None:
        raise NotFoundError(
            f"no API key with prefix {prefix[:40]!r}", errors=[FieldError("key", "not found")]
        )
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row
