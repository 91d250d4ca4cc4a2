"""Everything a request needs that outlives it: database, broker, artifact store, caches."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import dramatiq
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.core.auth import KeyRing
from app.explain.batcher import PassBatcher
from app.explain.cache import ResultCache
from app.explain.loader import ModelCache
from app.models.uploads import UploadSlots
from models_store import ArtifactStore, make_engine, make_sessionmaker
from rps_server.broker import make_broker
from rps_server.settings import Environment, Settings

__all__ = ["ServiceContext", "build_context"]


@dataclass
class ServiceContext:
    """Process-wide state of one API process (stateless apart from caches)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    """Sessions of the explain routes, which only read: each statement commits on its own
    (no BEGIN and ROLLBACK round trips), and ``commit()`` hands the connection back to the
    pool without a round trip (``read_only_session``)."""
    store: ArtifactStore
    broker: dramatiq.Broker
    keys: KeyRing
    models: ModelCache
    results: ResultCache | None
    scoring_slots: threading.BoundedSemaphore
    """Caps concurrent engine scorings: one pass already saturates the cores (BLAS threads),
    so more at once only oversubscribe them (16 clients: 4x lower throughput measured)."""
    batcher: PassBatcher
    """Combines concurrent explain requests of one model and method into shared passes."""
    upload_slots: UploadSlots
    """Caps the registrations received at once (each holds a connection, descriptors and a
    temp folder while its body streams)."""

    def close(self) -> None:
        self.models.clear()
        if self.results is not None:
            self.results.close()
        self.engine.dispose()


def build_context(settings: Settings, *, broker: dramatiq.Broker | None = None) -> ServiceContext:
    """Open the database, artifact store, broker and caches for ``settings``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
    sessions = make_sessionmaker(engine)
    store = ArtifactStore(settings.artifact_dir)
    store.root.mkdir(parents=True, exist_ok=True)
    return ServiceContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        read_sessions=make_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT")),
        store=store,
        broker=broker if broker is not None else make_broker(settings),
        keys=KeyRing(
            settings.env_api_keys,
            sessions,
            require_keys=settings.env is Environment.PRODUCTION,
            ttl_s=settings.key_cache_ttl_s,
        ),
        models=ModelCache(
            store, capacity=settings.model_cache_size, booster_limits=settings.booster_limits
        ),
        results=(
            ResultCache(
                settings.redis_url,
                ttl_s=settings.explain_cache_ttl_s,
                namespace=settings.redis_namespace,
            )
            if settings.redis_url
            else None
        ),
        scoring_slots=threading.BoundedSemaphore(settings.concurrent_queries),
        batcher=PassBatcher(
            window_s=settings.batch_window_ms / 1000, max_waiting=settings.explain_queue_size
        ),
        upload_slots=UploadSlots(settings.max_concurrent_uploads),
    )
