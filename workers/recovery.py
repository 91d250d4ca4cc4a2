"""Re-enqueue jobs left queued or running (the embedded broker forgets them on restart)."""

from __future__ import annotations

import logging

import dramatiq
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models_store import Job, JobStatus, Model, utcnow
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

    For when their workers are known to be gone (the embedded server restarting, or an
    operator's ``rps jobs requeue --running``): running jobs go back to queued at once,
    without waiting for their heartbeat to go stale. Safe to over-send: a job that is done
    when its message arrives is skipped.
    """
    with sessions() as session, session.begin():
        rows = session.execute(
            select(Job.id, Model.queue)
            .join(Model, Model.id == Job.model_id)
            .where(Job.status.in_([status.value for status in statuses]))
        ).all()
        job_ids = [job_id for job_id, _ in rows]
        # their workers are gone: the claim must not wait for the heartbeat to go stale
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == JobStatus.RUNNING.value)
            .values(status=JobStatus.QUEUED.value, heartbeat_at=None)
        )
        for job_id, queue in rows:
            enqueue_precompute(broker, job_id, queue=queue)
        session.execute(update(Job).where(Job.id.in_(job_ids)).values(enqueued_at=utcnow()))
    if rows:
        logger.info("re-enqueued %d unfinished job(s)", len(rows))
    return job_ids
