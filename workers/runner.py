"""Run Dramatiq workers: in this process (a thread pool), or N processes under Dramatiq's own
command line (``dramatiq workers.dramatiq_app``), which supervises and restarts them.

Metrics: with ``RPS_WORKER_METRICS_PORT`` set, one process serves the default registry
(``workers.metrics``) itself; N processes write to a shared multi-process directory that
Dramatiq's Prometheus exposition server sums (its message metrics included).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

import dramatiq
from dramatiq import Worker

from models_store import make_engine, make_sessionmaker
from rps_server.broker import GPU_QUEUE, QUEUES, setup_broker
from rps_server.settings import Settings
from workers.actors import declare_actors
from workers.outbox import start_job_sweeper

__all__ = ["start_worker", "run_worker_forever", "run_worker_processes"]

logger = logging.getLogger(__name__)


def start_worker(
    broker: dramatiq.Broker,
    *,
    queues: tuple[str, ...] = QUEUES,
    threads: int = 1,
    worker_timeout_ms: int = 1000,
) -> Worker:
    """Start a worker on ``broker`` (actors must be declared); the caller stops it."""
    worker = Worker(
        broker, queues=set(queues), worker_threads=threads, worker_timeout=worker_timeout_ms
    )
    worker.start()
    return worker


def run_worker_forever(settings: Settings, *, queues: tuple[str, ...], threads: int) -> None:
    """One worker process: consume ``queues`` until SIGTERM/SIGINT, then stop gracefully."""
    if GPU_QUEUE in queues and not settings.device.startswith("cuda"):
        logger.warning(
            "listening on the %r queue with RPS_DEVICE=%s: set RPS_DEVICE=cuda on GPU workers",
            GPU_QUEUE,
            settings.device,
        )
    broker = setup_broker(settings)
    declare_actors(broker, settings=settings)
    serve_worker_metrics(settings)
    worker = start_worker(broker, queues=queues, threads=threads)
    sweeper = start_job_sweeper(
        settings, broker, make_sessionmaker(make_engine(settings.resolved_database_url))
    )
    logger.info(
        "worker started: queues=%s threads=%d broker=%s",
        ",".join(queues),
        threads,
        type(broker).__name__,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    logger.info("worker stopping")
    sweeper.stop()
    worker.stop()
    broker.close()


def serve_worker_metrics(settings: Settings) -> None:
    """Serve this process's Prometheus registry on the configured port (if any)."""
    if settings.worker_metrics_port is None:
        return
    from prometheus_client import start_http_server

    start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
    logger.info(
        "worker metrics on http://%s:%d/metrics",
        settings.worker_metrics_host,
        settings.worker_metrics_port,
    )


def dramatiq_command(*, processes: int, queues: tuple[str, ...], threads: int) -> list[str]:
    """The Dramatiq command line that runs ``processes`` worker processes of this service."""
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "workers.dramatiq_app",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        *queues,
        "--skip-logging",  # workers.dramatiq_app configures logging from the settings
    ]


def run_worker_processes(
    settings: Settings, *, processes: int, queues: tuple[str, ...], threads: int
) -> int:
    """Replace this process by Dramatiq's supervisor of ``processes`` worker processes."""
    env = dict(os.environ)
    if settings.worker_metrics_port is not None:
        # every process writes its metrics here; Dramatiq's exposition server sums them
        metrics_dir = Path(tempfile.gettempdir()) / f"rps-worker-metrics-{os.getpid()}"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env.update(
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
            dramatiq_prom_db=str(metrics_dir),
            dramatiq_prom_host=settings.worker_metrics_host,
            dramatiq_prom_port=str(settings.worker_metrics_port),
        )
    command = dramatiq_command(processes=processes, queues=queues, threads=threads)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)
    return 1  # not reached
