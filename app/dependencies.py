"""Request dependencies as ``Annotated`` aliases: the session (the transaction boundary),
the tenant, the tenant's model named by ``model_id`` (path or query), and the paging offset;
``ready_model`` (the tenant's READY model with a precomputed method) and
``read_only_session`` for the explain routes, which do all their work in one thread call.

Domains get their model from here instead of calling each other's services.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.context import ServiceContext
from app.core.errors import ConflictError, FieldError, InvalidRequestError
from app.core.transactions import after_commit, commit, on_rollback, roll_back
from app.models.repository import get_tenant_model
from app.models.service import get_model_public
from models_store import Model, ModelStatus
from representer import Method

__all__ = [
    "ContextDep",
    "SessionDep",
    "read_only_session",
    "ReadyModelQuery",
    "ReadyModelQueryDep",
    "TenantDep",
    "ModelDep",
    "ready_model",
    "ready_any_method",
    "OffsetQuery",
    "MAX_OFFSET",
    "after_commit",
    "on_rollback",
    "get_tenant_model",
]

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


async def get_context(request: Request) -> ServiceContext:
    return request.app.state.context


ContextDep = Annotated[ServiceContext, Depends(get_context)]


async def get_session(request: Request, context: ContextDep) -> AsyncIterator[Session]:
    """One transaction per request: commit on success, roll back on any error.

    The session is created on the event loop (no I/O). For GET/HEAD, which never write,
    the read transaction just ends on the loop; otherwise committing or rolling back
    runs in the thread pool, once per request.
    """
    session = context.sessions()
    read_only = request.method in READ_ONLY_METHODS
    try:
        yield session
    except BaseException:
        if read_only:
            session.close()
        else:
            await run_in_threadpool(roll_back, session)
        raise
    if read_only:
        session.close()
    else:
        await run_in_threadpool(commit, session)


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@contextmanager
def read_only_session(context: ServiceContext) -> Iterator[Session]:
    """The session of a request that never writes (the explain queries), opened and closed
    in the calling worker thread: the route makes one thread-pool call.

    Its statements run in autocommit (``ServiceContext.read_sessions``): no BEGIN and no
    ROLLBACK round trips on PostgreSQL, and ``session.commit()`` gives the connection back
    to the pool at no cost, which the explain service does while a request waits for its
    engine pass (so 16 waiting requests do not hold 16 connections)."""
    session = context.read_sessions()
    try:
        yield session
    finally:
        session.close()


BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    bearerFormat="API key",
    description="An API key (RPS_API_KEYS or `rps keys create`), sent as "
    "`Authorization: Bearer <key>`. Needed once the service has any key; with none, auth is "
    "off and every request is tenant `default`.",
)


async def get_tenant(
    request: Request,
    context: ContextDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> str:
    """The caller's tenant from the bearer token ('default' when auth is off).

    ``BEARER`` only declares the scheme (so /docs has Authorize); the header itself is read
    here as it is, so a malformed one gets the key ring's 401 wording.

    Resolved keys and the key count are cached, so this rarely touches the database;
    when it must, it does so in the thread pool.
    """
    authorization = request.headers.get("authorization")
    cached = context.keys.cached_tenant(authorization)
    if cached is not None:
        return cached
    return await run_in_threadpool(context.keys.tenant_for, authorization)


TenantDep = Annotated[str, Depends(get_tenant)]


async def get_model(
    session: SessionDep,
    tenant: TenantDep,
    model_id: Annotated[str, Path(description="The model's id (from POST /models).")],
) -> Model:
    return await run_in_threadpool(get_tenant_model, session, model_id, tenant=tenant)


ModelDep = Annotated[Model, Depends(get_model)]


def ready_model(
    session: Session, model_id: str, *, tenant: str, method: Method, location: str
) -> Model:
    """The tenant's model ``model_id``, ready and precomputed for ``method``.

    Raises 404 (unknown or another tenant's), 409 with the model's status (not ready) and
    422 naming ``method`` (not precomputed); ``location`` is where ``method`` was sent.
    """
    model = ready_any_method(session, model_id, tenant=tenant)
    if method.value not in model.methods:
        raise InvalidRequestError(
            f"method {method.value!r} was not precomputed for this model (methods: {model.methods})",
            errors=[FieldError("method", f"not one of {model.methods}", location)],
        )
    return model


def ready_any_method(session: Session, model_id: str, *, tenant: str) -> Model:
    """The tenant's model ``model_id`` if it is ready: 404 (unknown or another tenant's),
    409 with the model's status (not ready)."""
    model = get_tenant_model(session, model_id, tenant=tenant)
    if model.status != ModelStatus.READY.value:
        public = get_model_public(session, model).model_dump(mode="json")
        raise ConflictError(
            f"model {model.id} is {model.status}, not ready",
            extra={"model_status": model.status, "model": public},
        )
    return model


@dataclass(frozen=True)
class ReadyModelQuery:
    """The ``model_id`` and ``method`` a query names; the route resolves them with
    ``ready_model`` inside its one thread call (404, 409 and 422 as documented there)."""

    model_id: str
    method: Method


async def get_ready_model_query(
    model_id: Annotated[str, Query(description="The model's id (from POST /models).")],
    method: Annotated[
        Method, Query(description="A method the model was registered with (spec.methods).")
    ] = Method.LJE,
) -> ReadyModelQuery:
    """Only parses the query (on the event loop, no thread hop, no database)."""
    return ReadyModelQuery(model_id, method)


ReadyModelQueryDep = Annotated[ReadyModelQuery, Depends(get_ready_model_query)]


MAX_OFFSET = 2**63 - 1
"""The largest OFFSET SQLite and PostgreSQL take (a signed 64-bit integer); more is a 422."""

OffsetQuery = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description="How many items of the ranking to skip.")
]
