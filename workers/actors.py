"""The Dramatiq actor: thin, takes a job id, calls the job runner."""

from __future__ import annotations

import dramatiq

from models_store import ArtifactStore, make_engine, make_sessionmaker
from rps_server.broker import DEFAULT_QUEUE, PRECOMPUTE_ACTOR
from rps_server.settings import Settings, get_settings
from workers.computation import RefitBudget
from workers.precompute import JobRunner

__all__ = ["make_runner", "declare_actors"]


def make_runner(settings: Settings) -> JobRunner:
    """A job runner on the database and artifact store of ``settings``."""
    engine = make_engine(settings.resolved_database_url)
    return JobRunner(
        sessions=make_sessionmaker(engine),
        store=ArtifactStore(settings.artifact_dir),
        device=settings.device,
        refit_budget=RefitBudget(
            min_s=settings.label_refit_min_s, share=settings.label_refit_share
        ),
        memory_budget_bytes=settings.memory_budget_bytes,
        booster_limits=settings.booster_limits,
        heartbeat_timeout_s=settings.worker_heartbeat_timeout_ms / 1000,
        max_attempts=settings.job_max_attempts,
    )


def declare_actors(
    broker: dramatiq.Broker, *, settings: Settings | None = None, runner: JobRunner | None = None
) -> dramatiq.Actor:
    """Declare ``precompute_model`` on ``broker``.

    The actor is named and queued as ``rps_server.broker`` expects; messages on the ``gpu``
    queue reach it too (a worker listening there looks actors up by name). Failures are
    recorded by the runner, so Dramatiq never retries; a dead worker's message is
    redelivered by the broker and the job resumes (idempotent).
    """
    settings = settings or get_settings()
    job_runner = runner or make_runner(settings)

    def precompute_model(job_id: str) -> None:
        job_runner.run(job_id)

    return dramatiq.actor(
        broker=broker,
        actor_name=PRECOMPUTE_ACTOR,
        queue_name=DEFAULT_QUEUE,
        max_retries=0,
        time_limit=settings.job_time_limit_ms,
    )(precompute_model)
