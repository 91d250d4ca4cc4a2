"""Readiness checks and the queue-depth numbers behind ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from sqlalchemy import func, select, text

from app.context import ServiceContext
from app.core.metrics import EXPLAIN_CACHE, QUEUE_DEPTH
from models_store import Job, JobStatus, sweep_leftovers
from rps_server.periodic import PeriodicThread

__all__ = ["failing_parts", "refresh_gauges", "start_leftover_sweep", "LEFTOVER_SWEEP_MAX_S"]

LEFTOVER_SWEEP_MAX_S = 600.0
"""The leftover sweep runs at start and every half grace period, but at least this often."""


def _check_database(context: ServiceContext) -> None:
    with context.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _check_broker(context: ServiceContext) -> None:
    client = getattr(context.broker, "client", None)
    if client is not None:  # RedisBroker; the StubBroker lives in this process
        client.ping()


def _check_artifacts(context: ServiceContext) -> None:
    context.store.check()
    minimum = context.settings.min_free_disk_mb * 1024**2
    free = context.store.free_bytes()
    if free < minimum:
        raise OSError(
            f"low disk: {free // 1024**2} MiB free, below RPS_MIN_FREE_DISK_MB="
            f"{context.settings.min_free_disk_mb}"
        )


def failing_parts(context: ServiceContext) -> dict[str, str]:
    """``{part: reason}`` for each of database, broker, artifact_store that is not reachable."""
    failures = {}
    for name, check in (
        ("database", _check_database),
        ("broker", _check_broker),
        ("artifact_store", _check_artifacts),
    ):
        try:
            check(context)
        except Exception as error:  # any failure means "not ready"
            failures[name] = f"{type(error).__name__}: {error}"[:300]
    return failures


def refresh_gauges(context: ServiceContext) -> None:
    """Set the job gauges from the jobs table (the truth about queue depth)."""
    with context.sessions() as session:
        counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    for status in JobStatus:
        QUEUE_DEPTH.labels(status.value).set(counts.get(status.value, 0))
    EXPLAIN_CACHE.set(len(context.models))


def start_leftover_sweep(context: ServiceContext) -> PeriodicThread:
    """Sweep temp uploads, orphan model folders and the trash now and periodically."""
    grace_s = context.settings.leftover_grace_s

    def sweep() -> None:
        sweep_leftovers(
            context.store, context.settings.upload_tmp_dir, context.sessions, grace_s=grace_s
        )

    interval_s = min(grace_s / 2, LEFTOVER_SWEEP_MAX_S)
    return PeriodicThread("leftover sweep", interval_s, sweep).start()
