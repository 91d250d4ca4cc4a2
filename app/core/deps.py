"""Request dependencies as ``Annotated`` aliases: the session (the transaction boundary),
the tenant, the tenant's model named by ``model_id`` (path or query), and the paging offset."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.core.context import ServiceContext
from app.models.repository import get_tenant_model
from models_store import Model

__all__ = [
    "ContextDep",
    "SessionDep",
    "TenantDep",
    "ModelDep",
    "OffsetQuery",
    "MAX_OFFSET",
    "after_commit",
    "on_rollback",
    "get_tenant_model",
]

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
_AFTER_COMMIT = "after_commit"
_ON_ROLLBACK = "on_rollback"


async def get_context(request: Request) -> ServiceContext:
    return request.app.state.context


ContextDep = Annotated[ServiceContext, Depends(get_context)]


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the request's transaction has committed (e.g. enqueue a job)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def on_rollback(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` if the request's transaction is rolled back (e.g. delete files)."""
    session.info.setdefault(_ON_ROLLBACK, []).append(callback)


def _commit(session: Session) -> None:
    try:
        session.commit()
    except BaseException:
        _roll_back(session)
        raise
    session.info.pop(_ON_ROLLBACK, None)
    for callback in session.info.pop(_AFTER_COMMIT, []):
        callback()
    session.close()


def _roll_back(session: Session) -> None:
    session.rollback()
    for callback in session.info.pop(_ON_ROLLBACK, []):
        callback()
    session.close()


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
            await run_in_threadpool(_roll_back, session)
        raise
    if read_only:
        session.close()
    else:
        await run_in_threadpool(_commit, session)


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_tenant(
    context: ContextDep, authorization: Annotated[str | None, Header()] = None
) -> str:
    """The caller's tenant from the bearer token ('default' when auth is off).

    Resolved keys and the key count are cached, so this rarely touches the database;
    when it must, it does so in the thread pool.
    """
    cached = context.keys.cached_tenant(authorization)
    if cached is not None:
        return cached
    return await run_in_threadpool(context.keys.tenant_for, authorization)


TenantDep = Annotated[str, Depends(get_tenant)]


async def get_model(session: SessionDep, tenant: TenantDep, model_id: str) -> Model:
    return await run_in_threadpool(get_tenant_model, session, model_id, tenant=tenant)


ModelDep = Annotated[Model, Depends(get_model)]


MAX_OFFSET = 2**63 - 1
"""The largest OFFSET SQLite and PostgreSQL take (a signed 64-bit integer); more is a 422."""

OffsetQuery = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
