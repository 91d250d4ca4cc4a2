"""The FastAPI application: routers, problem handlers, metrics, and the start-up checks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dramatiq
from fastapi import FastAPI

from app.context import ServiceContext, build_context
from app.core.body_limit import BodyLimitMiddleware
from app.core.metrics import MetricsMiddleware
from app.core.openapi import install_openapi, operation_id
from app.core.problems import install_problem_handlers
from app.core.request_ids import RequestIdMiddleware
from app.debug.endpoints import router as debug_router
from app.explain.endpoints import router as explain_router
from app.models.endpoints import router as models_router
from app.ops.endpoints import router as ops_router
from app.ops.service import start_leftover_sweep
from app.reviews.endpoints import router as reviews_router
from app.ui import router as ui_router
from rps.spec import json_schema as spec_json_schema
from rps_server.settings import Environment, Settings, get_settings

__all__ = ["create_app", "check_startup"]

API_DESCRIPTION = """Register a classifier (a linear head over features, or an XGBoost booster),
let a worker precompute its representer points, then ask which training points push a test
point toward or against a class (`/explain`) and which training labels look wrong
(`/debug/suspicious`).

Every error is `application/problem+json` (the `Problem` schema) and names the part or field
at fault. Once the service has API keys, send one as `Authorization: Bearer <key>`
(**Authorize** above). The reference with examples is docs/api.md in the repository."""

TAGS = [
    {"name": "models", "description": "Register models, follow their precompute, list, delete."},
    {"name": "explain", "description": "Representer points of stored or submitted test points."},
    {"name": "debug", "description": "Training points ranked by how likely their label is wrong."},
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics."},
    {"name": "viewer", "description": "The browser viewer's pages (HTML; no key needed)."},
]

logger = logging.getLogger(__name__)


def check_startup(context: ServiceContext) -> None:
    """Refuse production without keys; say clearly whether auth is on."""
    keys, settings = context.keys, context.settings
    db_keys = keys.count_db_keys()
    if settings.env is Environment.PRODUCTION and keys.env_key_count + db_keys == 0:
        raise RuntimeError(
            "RPS_ENV=production refuses to start without API keys (RPS_API_KEYS or `rps keys create`)"
        )
    if keys.env_key_count + db_keys == 0:
        logger.warning(
            "auth is OFF: no API keys configured (RPS_API_KEYS unset, no keys in the database); "
            "every request acts as tenant 'default'. Create one with `rps keys create --tenant NAME`."
        )
    else:
        logger.info(
            "auth is ON: %d key(s) from RPS_API_KEYS, %d in the database",
            keys.env_key_count,
            db_keys,
        )


def create_app(
    settings: Settings | None = None, *, broker: dramatiq.Broker | None = None
) -> FastAPI:
    """Build the application for ``settings`` (default: the environment's).

    The database must be migrated (``rps db upgrade``; ``rps serve`` does it).
    """
    settings = settings or get_settings()
    context = build_context(settings, broker=broker)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        check_startup(context)
        leftover_sweep = start_leftover_sweep(context)
        yield
        leftover_sweep.stop()
        context.close()

    app = FastAPI(
        title="RPS explanation service",
        version="0.1.0",
        summary="Representer-point explanations (RPS-LJE, RPS-l2, influence) of classifiers.",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        redirect_slashes=False,  # "/models/" is a problem+json 404, not a bare 307 redirect
    )
    app.state.context = context
    install_problem_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_explain_body_bytes)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)  # outermost: every line of the request has its id
    for router in (
        models_router,
        explain_router,
        debug_router,
        ops_router,
        reviews_router,
        ui_router,
    ):
        app.include_router(router)
    install_openapi(app, extra_schemas={"ModelSpec": spec_json_schema()}, tags=TAGS)
    return app
