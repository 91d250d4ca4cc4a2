"""Run Dramatiq workers: in this process (a thread pool), or N supervised processes."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading

import dramatiq
from dramatiq import Worker

from rps_server.broker import GPU_QUEUE, QUEUES, setup_broker
from rps_server.settings import Settings
from workers.actors import declare_actors

__all__ = ["start_worker", "run_worker_forever", "run_worker_processes"]

logger = logging.getLogger("rps.worker")


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
    worker = start_worker(broker, queues=queues, threads=threads)
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
    worker.stop()
    broker.close()


def run_worker_processes(*, processes: int, queues: tuple[str, ...], threads: int) -> int:
    """Start ``processes`` single-process workers and wait; SIGTERM/SIGINT stops them all."""
    command = [
        sys.executable,
        "-m",
        "rps.cli",
        "worker",
        "--processes",
        "1",
        "--threads",
        str(threads),
        "--queues",
        *queues,
    ]
    children = [subprocess.Popen(command) for _ in range(processes)]

    def forward(signum, _frame) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    return max(child.wait() for child in children)
