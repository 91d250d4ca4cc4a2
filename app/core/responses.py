"""Hot-path responses: bodies serialised once, in the thread that built them, with orjson,
and sent without a second validation pass (the routes keep ``response_model`` for the
OpenAPI schema)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi.responses import Response
from pydantic import BaseModel

__all__ = ["StoredJson", "json_bytes", "json_response"]


class StoredJson:
    """JSON text as the database holds it (a training record), embedded verbatim: never
    parsed and serialised again on the way out."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _as_fragment(value: Any) -> orjson.Fragment:
    if isinstance(value, StoredJson):
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _as_value(value: Any) -> Any:
    if isinstance(value, StoredJson):
        return json.loads(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON")


def json_bytes(content: Any) -> bytes:
    """``content`` (JSON values and ``StoredJson``) as compact UTF-8 JSON.

    orjson refuses integers beyond 64 bits, which a parsed record may hold; such a body
    takes the standard library's encoder instead (same JSON, slower).
    """
    try:
        return orjson.dumps(content, default=_as_fragment)
    except orjson.JSONEncodeError:
        text = json.dumps(
            content, default=_as_value, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
        return text.encode()


def json_response(body: BaseModel | dict[str, Any] | bytes, *, status_code: int = 200) -> Response:
    """A JSON response from serialised bytes, a schema instance, or a dict of JSON values."""
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    content = body if isinstance(body, bytes) else json_bytes(body)
    return Response(content, status_code=status_code, media_type="application/json")
