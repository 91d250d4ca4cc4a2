"""API keys: hashing, the token format, and the request-time lookup with small caches.

A token is ``rps_<prefix>_<secret>``; the table stores ``prefix`` (for lookup) and the
sha256 of the whole token. Keys from ``RPS_API_KEYS`` are compared by hash too.

In production auth is always on: with no valid key (the table emptied, every key revoked)
every request is refused, never served as an anonymous tenant. In development auth is on
as soon as any key exists (environment or table); with none, every request is tenant
``default`` and the server logs that auth is off.

Revoked keys (``revoked_at`` set) and deleted rows stop working within ``ttl_s`` (the
``RPS_KEY_CACHE_TTL_S`` setting): that is how long a resolved key and the key count are
trusted without asking the database again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import UnauthorizedError
from models_store import ApiKey

__all__ = ["DEFAULT_TENANT", "hash_token", "new_token", "token_prefix", "KeyRing"]

DEFAULT_TENANT = "default"
TOKEN_PREFIX_CHARS = 12
DEFAULT_TTL_S = 1.0
MAX_RESOLVED = 10_000  # resolved keys remembered per process


def hash_token(token: str) -> str:
    """sha256 hex digest of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh token and its lookup prefix."""
    prefix = secrets.token_hex(TOKEN_PREFIX_CHARS // 2)
    return f"rps_{prefix}_{secrets.token_urlsafe(32)}", prefix


def token_prefix(token: str) -> str | None:
    """The lookup prefix of an ``rps_<prefix>_<secret>`` token, else None."""
    parts = token.split("_", 2)
    if len(parts) == 3 and parts[0] == "rps" and len(parts[1]) == TOKEN_PREFIX_CHARS:
        return parts[1]
    return None


class KeyRing:
    """Resolves a bearer token to its tenant (environment keys, then the table)."""

    def __init__(
        self,
        env_keys: dict[str, str],
        sessions: sessionmaker[Session],
        *,
        require_keys: bool = False,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        self._env_hashes = {hash_token(key): tenant for key, tenant in env_keys.items()}
        self._sessions = sessions
        self._require_keys = require_keys
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._db_count: tuple[float, int] = (-1e9, 0)
        self._resolved: dict[str, tuple[float, str]] = {}

    def count_db_keys(self) -> int:
        """Number of keys in the table that are not revoked (cached ``ttl_s``)."""
        checked_at, count = self._db_count
        if time.monotonic() - checked_at > self._ttl_s:
            with self._sessions() as session:
                count = (
                    session.scalar(
                        select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))
                    )
                    or 0
                )
            self._db_count = (time.monotonic(), count)
        return count

    @property
    def env_key_count(self) -> int:
        return len(self._env_hashes)

    def enabled(self) -> bool:
        """True when requests must carry a key: always in production, else when any exists."""
        return self._require_keys or bool(self._env_hashes) or self.count_db_keys() > 0

    def cached_tenant(self, authorization: str | None) -> str | None:
        """The tenant if it is known without touching the database, else None."""
        if not self._env_hashes and not self._require_keys:
            checked_at, count = self._db_count  # auth is on only if the table has keys
            if time.monotonic() - checked_at > self._ttl_s:
                return None
            if count == 0:
                return DEFAULT_TENANT
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        cached = self._resolved.get(hash_token(token.strip()))
        if cached and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        return None

    def tenant_for(self, authorization: str | None) -> str:
        """The tenant of the ``Authorization`` header; 401 when auth is on and it is bad."""
        if not self.enabled():
            return DEFAULT_TENANT
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("missing bearer token: send 'Authorization: Bearer <api key>'")
        digest = hash_token(token.strip())
        cached = self._resolved.get(digest)
        if cached and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        tenant = self._lookup(token.strip(), digest)
        if tenant is None:
            with self._lock:
                self._resolved.pop(digest, None)
            raise UnauthorizedError("unknown or revoked API key")
        with self._lock:
            if len(self._resolved) >= MAX_RESOLVED:  # bounded: old entries go first
                self._resolved.clear()
            self._resolved[digest] = (time.monotonic(), tenant)
        return tenant

    def is_valid(self, authorization: str | None) -> bool:
        """True when the header carries a key that resolves now (never raises)."""
        if not (authorization or "").strip():
            return False
        try:
            return self.enabled() and bool(self.tenant_for(authorization))
        except Exception:  # unknown key, or the database is down: not shown as valid
            return False

    def _lookup(self, token: str, digest: str) -> str | None:
        for env_digest, tenant in self._env_hashes.items():
            if hmac.compare_digest(env_digest, digest):
                return tenant
        prefix = token_prefix(token)
        if prefix is None:
            return None
        with self._sessions() as session:
            row = session.scalar(
                select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
            )
        if row is not None and hmac.compare_digest(row.key_hash, digest):
            return row.tenant
        return None
