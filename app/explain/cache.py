"""Explanations cached in Redis, keyed by model id + version + the query."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import redis

__all__ = ["ResultCache", "cache_key"]

logger = logging.getLogger(__name__)


def cache_key(model_id: str, version: int, query: dict[str, Any], *, namespace: str = "rps") -> str:
    """A key that changes whenever the model is re-published or the query differs."""
    digest = hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:32]
    return f"{namespace}:explain:{model_id}:{version}:{digest}"


class ResultCache:
    """Serialised JSON answers in Redis, stored and returned as the bytes sent; failures are
    logged and treated as misses."""

    def __init__(self, url: str, *, ttl_s: int, namespace: str = "rps") -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=1.0)
        self._ttl_s = ttl_s
        self.namespace = namespace

    def get(self, key: str) -> bytes | None:
        if self._ttl_s <= 0:
            return None
        try:
            raw = self._client.get(key)
        except redis.RedisError as error:
            logger.warning("explain cache read failed: %s", error)
            return None
        return raw if isinstance(raw, bytes) else None

    def put(self, key: str, body: bytes) -> None:
        if self._ttl_s <= 0:
            return
        try:
            self._client.set(key, body, ex=self._ttl_s)
        except redis.RedisError as error:
            logger.warning("explain cache write failed: %s", error)

    def forget_model(self, model_id: str) -> int:
        """Delete every cached explanation of ``model_id`` (they carry training records);
        returns how many. Redis down: logged, and the entries expire with their TTL."""
        pattern = f"{self.namespace}:explain:{model_id}:*"
        try:
            keys = list(self._client.scan_iter(match=pattern, count=1000))
            if keys:
                self._client.delete(*keys)
        except redis.RedisError as error:
            logger.warning("explain cache of model %s not invalidated: %s", model_id, error)
            return 0
        return len(keys)

    def ping(self) -> None:
        self._client.ping()

    def close(self) -> None:
        self._client.close()
