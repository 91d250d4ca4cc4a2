"""A running job's lease: a heartbeat thread that keeps ``jobs.heartbeat_at`` fresh while the
computation runs (a dense factorisation may report no progress for minutes), and notices when
the job stopped being this worker's: its model was deleted, or the sweep handed the job to
another worker. The computation then stops at its next progress report (``JobCancelled``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models_store import Job, JobStatus, Model, ModelStatus, utcnow

__all__ = [
    "ABANDONED_PROBLEM",
    "Contended",
    "JobCancelled",
    "JobLease",
    "Taken",
    "is_fresh",
    "take_job",
]

logger = logging.getLogger(__name__)


ABANDONED_PROBLEM = {
    "type": "urn:rps:problem:precompute-abandoned",
    "title": "Precompute abandoned",
    "status": 503,
    "detail": "the job's worker was lost (killed or silent) on every attempt allowed by "
    "RPS_JOB_MAX_ATTEMPTS; a job that kills its worker (e.g. out of memory) is not retried",
}


class JobCancelled(Exception):
    """The job is no longer this worker's (model deleted, or taken over after a stale beat)."""


def is_fresh(moment: datetime | None, *, timeout: timedelta, now: datetime | None = None) -> bool:
    """True when ``moment`` lies within ``timeout`` of ``now`` (naive means UTC: SQLite)."""
    if moment is None:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (now or utcnow()) - moment < timeout


@dataclass(frozen=True)
class Taken:
    """A job this worker now runs: its model and the attempt number."""

    model: Model
    attempt: int


class _ContendedType:
    """The job changed between reading and taking it: read again."""


Contended = _ContendedType()


def take_job(
    session: Session, job_id: str, *, heartbeat_timeout: timedelta, max_attempts: int | None
) -> Taken | _ContendedType | None:
    """Take job ``job_id`` if it is to be run: queued, or running with a stale heartbeat
    (its worker died). ``None``: finished, deleted, alive elsewhere, or out of attempts
    (then failed with ``precompute-abandoned``). The write is a compare-and-set on the
    status and attempt read, so a concurrent sweep or claim makes it ``Contended``.
    """
    job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None or job.status in (JobStatus.DONE.value, JobStatus.FAILED.value):
        logger.info("job %s: nothing to do (%s)", job_id, "missing" if job is None else job.status)
        return None
    if job.status == JobStatus.RUNNING.value and is_fresh(
        job.heartbeat_at, timeout=heartbeat_timeout
    ):
        logger.info("job %s: attempt %d is alive elsewhere; skipped", job_id, job.attempts)
        return None
    model = session.get(Model, job.model_id)
    if model is None:
        return None
    now, seen = utcnow(), (Job.id == job_id, Job.status == job.status, Job.attempts == job.attempts)
    if max_attempts is not None and job.attempts >= max_attempts:
        failed = session.execute(
            update(Job)
            .where(*seen)
            .values(status=JobStatus.FAILED.value, error=ABANDONED_PROBLEM, finished_at=now)
            .execution_options(synchronize_session=False)
        )
        if failed.rowcount == 0:  # type: ignore[attr-defined]
            return Contended
        logger.error("job %s: %d attempts lost their worker; failed", job_id, job.attempts)
        model.status, model.error = ModelStatus.FAILED.value, ABANDONED_PROBLEM
        return None
    attempt = job.attempts + 1
    taken = session.execute(
        update(Job)
        .where(*seen)
        .values(
            status=JobStatus.RUNNING.value,
            attempts=attempt,
            started_at=now,
            heartbeat_at=now,
            progress=0.0,
        )
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount == 0:  # type: ignore[attr-defined]
        return Contended
    model.status, model.progress, model.error = ModelStatus.RUNNING.value, 0.0, None
    logger.info("job %s of model %s: attempt %d", job_id, model.id, attempt)
    return Taken(model, attempt)


@dataclass
class JobLease:
    """Beats every ``interval_s`` for attempt ``attempt`` of job ``job_id`` while entered."""

    sessions: sessionmaker[Session]
    job_id: str
    attempt: int
    interval_s: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def beat(self) -> None:
        """Refresh the heartbeat; if the job is gone or no longer this attempt's, cancel."""
        with self.sessions() as session, session.begin():
            updated = session.execute(
                update(Job)
                .where(
                    Job.id == self.job_id,
                    Job.attempts == self.attempt,
                    Job.status == JobStatus.RUNNING.value,
                )
                .values(heartbeat_at=utcnow())
            )
        if updated.rowcount == 0:  # type: ignore[attr-defined]
            self.cancelled.set()

    def check(self) -> None:
        """Raise ``JobCancelled`` if the job stopped being this worker's."""
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.job_id} attempt {self.attempt} was cancelled")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s) and not self.cancelled.is_set():
            try:
                self.beat()
            except Exception as error:  # the database is away: keep computing, beat later
                logger.warning("job %s: heartbeat failed: %s", self.job_id, error)

    def __enter__(self) -> JobLease:
        self._thread = threading.Thread(
            target=self._run, name=f"lease-{self.job_id[:8]}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
