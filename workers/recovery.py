"""Re-enqueue jobs left queued or running (the embedded broker forgets them on restart)."""

from __future__ import annotations

import logging

import dramatiq
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models_store import Job, JobStatus, Model
from rps_server.broker import enqueue_precompute

__all__ = ["requeue_unfinished_jobs"]

logger = logging.getLogger(__name__)


def requeue_unfinished_jobs(
    sessions: sessionmaker[Session],
    broker: dramatiq.Broker,
    *,
    statuses: tuple[JobStatus, ...] = (JobStatus.QUEUED, JobStatus.RUNNING),
) -> list[str]:
    """Send a message for every job in ``statuses``; returns their ids.

    Safe to over-send: a job that is already done when its message arrives is skipped.
    """
    with sessions() as session:
        rows = session.execute(
            select(Job.id, Model.queue)
            .join(Model, Model.id == Job.model_id)
            .where(Job.status.in_([status.value for status in statuses]))
        ).all()
    for job_id, queue in rows:
        enqueue_precompute(broker, job_id, queue=queue)
    if rows:
        logger.info("re-enqueued %d unfinished job(s)", len(rows))
    return [job_id for job_id, _ in rows]
