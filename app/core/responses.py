"""Hot-path responses: already-validated bodies serialised once, without a second
validation pass (the routes keep ``response_model`` for the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

__all__ = ["json_response"]


def json_response(body: BaseModel | dict[str, Any], *, status_code: int = 200) -> JSONResponse:
    """A JSON response from a schema instance (or a cached, already-serialised dict)."""
    content = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return JSONResponse(content, status_code=status_code)
