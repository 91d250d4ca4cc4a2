"""The jobs table is the outbox: a periodic sweep sends what the broker never got.

* a ``queued`` job whose message was never sent (the broker was down when it was
  registered: ``enqueued_at`` is NULL) is sent once the broker answers again;
* a ``queued`` job sent longer than ``resend_after_s`` ago is sent again (a Redis restarted
  without persistence lost its queue); a duplicate is harmless, the claim skips it;
* a ``running`` job whose worker stopped beating for ``heartbeat_timeout_s`` (the worker was
  killed) goes back to ``queued`` and is sent again, unless it has used its attempts, which
  fails it with ``precompute-abandoned``.

Each worker process sweeps (``start_job_sweeper``); on PostgreSQL the rows are locked with SKIP
LOCKED, so two sweepers do not send the same job at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import dramatiq
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from models_store import Job, JobStatus, Model, ModelStatus, utcnow
from rps_server.broker import enqueue_precompute
from rps_server.periodic import PeriodicThread
from rps_server.settings import Settings
from workers.lease import ABANDONED_PROBLEM

__all__ = [
    "SweepOutcome",
    "sweep_jobs",
    "start_job_sweeper",
    "UNSENT_GRACE_S",
]

logger = logging.getLogger(__name__)

UNSENT_GRACE_S = 2.0
"""A job just committed is sent by the API itself; the sweep leaves it this long first."""
SWEEP_BATCH = 500


@dataclass
class SweepOutcome:
    """Job ids the sweep sent (never sent before, or lost), handed over, or gave up on."""

    sent: list[str] = field(default_factory=list)
    taken_over: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)


def sweep_jobs(
    sessions: sessionmaker[Session],
    broker: dramatiq.Broker,
    *,
    heartbeat_timeout_s: float,
    resend_after_s: float,
    max_attempts: int | None = None,
) -> SweepOutcome:
    """One sweep (see the module); a broker that refuses leaves the jobs for the next one."""
    now, outcome = utcnow(), SweepOutcome()
    last_beat = func.coalesce(Job.heartbeat_at, Job.started_at, Job.created_at)
    due = or_(
        and_(
            Job.status == JobStatus.QUEUED.value,
            Job.enqueued_at.is_(None),
            Job.created_at < now - timedelta(seconds=UNSENT_GRACE_S),
        ),
        and_(
            Job.status == JobStatus.QUEUED.value,
            Job.enqueued_at < now - timedelta(seconds=resend_after_s),
        ),
        and_(
            Job.status == JobStatus.RUNNING.value,
            last_beat < now - timedelta(seconds=heartbeat_timeout_s),
        ),
    )
    query = (
        select(Job, Model.queue)
        .join(Model, Model.id == Job.model_id)
        .where(due)
        .order_by(Job.created_at)
        .limit(SWEEP_BATCH)
    )
    with sessions() as session, session.begin():
        if session.get_bind().dialect.name != "sqlite":
            query = query.with_for_update(skip_locked=True, of=Job)
        for job, queue in session.execute(query).all():
            if job.status == JobStatus.RUNNING.value:
                abandon = max_attempts is not None and job.attempts >= max_attempts
                if not _hand_over(session, job, abandon=abandon):
                    continue  # claimed meanwhile (SQLite has no row locks): leave it
                if abandon:
                    outcome.abandoned.append(job.id)
                    continue
                outcome.taken_over.append(job.id)
            # written (and, on SQLite, the write lock taken) before the message can be
            # claimed: a fast worker must not see the job before its hand-over
            session.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(enqueued_at=now)
                .execution_options(synchronize_session=False)
            )
            enqueue_precompute(broker, job.id, queue=queue)
            outcome.sent.append(job.id)
    if outcome.sent or outcome.abandoned:
        logger.info(
            "job sweep: sent %d job(s) (%d taken over from silent workers), abandoned %d",
            len(outcome.sent),
            len(outcome.taken_over),
            len(outcome.abandoned),
        )
    return outcome


def _hand_over(session: Session, job: Job, *, abandon: bool) -> bool:
    """Put the silent worker's job back to queued (or fail it when out of attempts), if it
    is still the attempt read; False when it changed meanwhile."""
    problem = ABANDONED_PROBLEM if abandon else None
    status = JobStatus.FAILED if abandon else JobStatus.QUEUED
    changed = session.execute(
        update(Job)
        .where(
            Job.id == job.id,
            Job.status == JobStatus.RUNNING.value,
            Job.attempts == job.attempts,
        )
        .values(status=status.value, error=problem, finished_at=utcnow() if abandon else None)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount == 0:  # type: ignore[attr-defined]
        return False
    session.execute(
        update(Model)
        .where(Model.id == job.model_id)
        .values(status=ModelStatus(status.value).value, error=problem)
        .execution_options(synchronize_session=False)
    )
    if abandon:
        logger.error("job %s: its worker was lost on all %d attempts; failed", job.id, job.attempts)
    else:
        logger.warning(
            "job %s: its worker has not beaten since %s; handing it to another worker",
            job.id,
            job.heartbeat_at or job.started_at,
        )
    return True


def start_job_sweeper(
    settings: Settings, broker: dramatiq.Broker, sessions: sessionmaker[Session]
) -> PeriodicThread:
    """The job sweep of a worker process, with the intervals of ``settings``; started."""

    def sweep() -> None:
        sweep_jobs(
            sessions,
            broker,
            heartbeat_timeout_s=settings.worker_heartbeat_timeout_ms / 1000,
            resend_after_s=settings.job_resend_after_s,
            max_attempts=settings.job_max_attempts,
        )

    return PeriodicThread("job sweep", settings.job_sweep_interval_s, sweep).start()
