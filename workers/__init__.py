"""workers: the precompute job as a Dramatiq actor. Never imports ``app``."""

from workers.actors import declare_actors, make_runner
from workers.outbox import start_job_sweeper, sweep_jobs
from workers.precompute import JobRunner
from workers.recovery import requeue_unfinished_jobs
from workers.runner import run_worker_forever, run_worker_processes, start_worker

__all__ = [
    "JobRunner",
    "declare_actors",
    "make_runner",
    "requeue_unfinished_jobs",
    "run_worker_forever",
    "run_worker_processes",
    "start_job_sweeper",
    "start_worker",
    "sweep_jobs",
]
