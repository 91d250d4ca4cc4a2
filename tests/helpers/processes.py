"""Subprocesses of the service for the integration tests: start, health-wait, kill, stop.

Used by ``conftest.py``'s fixtures and by the tests that start extra processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from rps.client import Client, WaitTimeoutError

__all__ = [
    "RPS_SCRIPT",
    "REPO_ROOT",
    "Backend",
    "ServiceProcess",
    "clean_env",
    "free_port",
    "start_api",
    "start_worker",
    "wait_ready_while_alive",
]

STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_CHARS = 4000
REPO_ROOT = Path(__file__).resolve().parents[2]
RPS_SCRIPT = Path(sys.executable).with_name("rps")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServiceProcess:
    """One ``rps`` (or other) subprocess with its log file; stopped by the fixture."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None
    base_url: str | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.env.get("RPS_DATA_DIR", REPO_ROOT),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-LOG_TAIL_CHARS:]

    def wait_healthy(self, *, timeout: float = STARTUP_TIMEOUT_S) -> ServiceProcess:
        """Poll ``GET /healthz`` until it answers 200; fail with the log if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                pytest.fail(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"{self.name} did not answer /healthz within {timeout:g} s:\n{self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process's whole group (a worker's forked children too)."""
        if self.alive():
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; always reaps the group."""
        if self.popen is None:
            return
        try:
            if self.alive():
                os.killpg(self.popen.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=STOP_TIMEOUT_S)
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class Backend:
    """Environment of one service deployment: database, Redis, data directory."""

    env: dict[str, str]
    data_dir: Path
    processes: list[ServiceProcess] = field(default_factory=list)

    def spawn(
        self, name: str, *arguments: str, port: int | None = None, extra_env: dict | None = None
    ) -> ServiceProcess:
        """Start ``rps <arguments>``; with ``port`` the process is an HTTP server on it."""
        env = {**self.env, **(extra_env or {})}
        process = ServiceProcess(
            name=name,
            argv=[str(RPS_SCRIPT), *arguments],
            env=env,
            log_path=self.data_dir / f"{name}.log",
        )
        if port is not None:
            process.base_url = f"http://127.0.0.1:{port}"
        self.processes.append(process)
        return process.start()

    def run(self, *arguments: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run ``rps <arguments>`` to completion in this environment."""
        return subprocess.run(
            [str(RPS_SCRIPT), *arguments],
            env=self.env,
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RPS_")}
    env.update(
        PYTHONUNBUFFERED="1",
        RPS_DATA_DIR=str(data_dir),
        RPS_ENV="development",
        RPS_LOG_LEVEL="INFO",
    )
    # two cores shared by everyone: keep each process's BLAS to one thread
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    return env


def start_api(
    backend: Backend, name: str = "api", *, extra_env: dict | None = None
) -> ServiceProcess:
    """An API process (no jobs run in it: Redis is set) on a free port, healthy."""
    port = free_port()
    process = backend.spawn(
        name, "serve", "--host", "127.0.0.1", "--port", str(port), port=port, extra_env=extra_env
    )
    return process.wait_healthy()


def start_worker(backend: Backend, name: str, *, queues: str = "default") -> ServiceProcess:
    """An ``rps worker`` process: one worker process with one thread."""
    return backend.spawn(name, "worker", "--queues", queues, "--processes", "1", "--threads", "1")


def wait_ready_while_alive(
    client: Client,
    model_id: str,
    *,
    processes: list[ServiceProcess],
    timeout: float,
    check_every: float = 5.0,
) -> dict:
    """``client.wait_ready``, failing at once (with the log) if one of ``processes`` dies meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            return client.wait_ready(
                model_id, timeout=max(0.0, min(check_every, remaining)), progress=False
            )
        except WaitTimeoutError:
            for process in processes:
                if not process.alive():
                    pytest.fail(
                        f"{process.name} died while model {model_id} waited:\n{process.log_tail()}"
                    )
            if remaining <= check_every:
                raise
