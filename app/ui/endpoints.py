"""Routes of the viewer: four page shells and their two static files.

The shells carry no data, so they need no key; the browser fetches everything from the
JSON API with the user's key. Kept out of the OpenAPI schema (they are pages, not API).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi.responses import HTMLResponse

from app.core.openapi import problem_responses
from app.ui import pages

ModelIdPath = Annotated[str, Path(description="The model's id; the page fetches its data.")]

router = APIRouter(prefix="/ui", tags=["viewer"], default_response_class=HTMLResponse)


@router.get("")
def models_page() -> HTMLResponse:
    """The tenant's models: status, live progress, failures."""
    return pages.page_response(pages.models_page())


@router.get("/models/{model_id}")
def model_page(model_id: ModelIdPath) -> HTMLResponse:
    """One model: diagnostics, methods, classes and its stored test points."""
    return pages.page_response(pages.model_page(model_id))


@router.get("/models/{model_id}/explain")
def explanation_page(model_id: ModelIdPath) -> HTMLResponse:
    """One explanation (test point, method, target and k come from the query string)."""
    return pages.page_response(pages.explanation_page(model_id))


@router.get("/models/{model_id}/suspicious")
def suspicious_page(model_id: ModelIdPath) -> HTMLResponse:
    """The suspicious-label ranking as cards with filters, export and review actions."""
    return pages.page_response(pages.suspicious_page(model_id))


@router.get("/static/{name}", response_class=Response, responses=problem_responses(404))
def static_file(
    name: Annotated[str, Path(description="viewer.js or viewer.css.")],
) -> Response:
    """``viewer.js`` or ``viewer.css`` (any other name is a problem+json 404)."""
    return pages.static_response(name)
