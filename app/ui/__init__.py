"""The web viewer under ``/ui``: page shells served without a key, filled in the browser by
``static/viewer.js`` from the JSON API with the user's key (kept in sessionStorage)."""

__all__ = ["router"]

from app.ui.endpoints import router
