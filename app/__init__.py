"""app: the FastAPI front end (routes, schemas, auth, errors, the query path, metrics).

It never imports ``workers``: jobs are enqueued by actor name through ``rps_server.broker``.
"""

from app.main import create_app

__all__ = ["create_app"]
