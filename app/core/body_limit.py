"""A byte budget for request bodies that are parsed whole (JSON), enforced before parsing.

``POST /models`` streams its multipart parts to files with per-part limits
(``app.models.uploads``); every other body (``POST /explain``, ``POST /explain/batch``) is
JSON that FastAPI parses in memory, at 5-10x its size. This middleware answers 413 when
``Content-Length`` says the body is over the budget, and otherwise reads at most the budget
(a chunked body is counted as it streams) before the application sees it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from app.core.errors import FieldError, PayloadTooLargeError
from app.core.problems import problem_response

__all__ = ["BodyLimitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_STREAMED = {("POST", "/models")}  # bodies with their own streaming limits
_WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}


class BodyLimitMiddleware:
    """413 for a JSON body over ``max_body_bytes``; the body is read at most once, bounded."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _WITH_BODY
            or (scope["method"], scope["path"]) in _STREAMED
        ):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLargeError(
            f"the request body is larger than {self.max_body_bytes} bytes "
            "(RPS_MAX_EXPLAIN_BODY_BYTES); send fewer rows per request",
            errors=[FieldError("body", f"larger than {self.max_body_bytes} bytes", "body")],
        )
        response = problem_response(
            error.status, error.title, error.detail, slug=error.slug, errors=error.errors
        )
        response.headers["Connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) <= 18 else None
    return None


def _replay(chunks: list[bytes], receive: Receive) -> Receive:
    """A ``receive`` that hands the buffered body over once, then waits on the client's."""
    body = b"".join(chunks)
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # only a disconnect can come now

    return replay
