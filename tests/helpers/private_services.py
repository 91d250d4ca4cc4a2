"""Backing services a fault test owns and may stop: PostgreSQL and Redis on ports of their
own, and a small tmpfs as a data directory that can fill up or turn read-only.

The shared PostgreSQL and Redis of the other tests are never touched. Each helper skips
(fails under CI=true, see ``unavailable``) when the machine cannot provide it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.backing_services import unavailable
from tests.helpers.processes import free_port

__all__ = [
    "PrivatePostgres",
    "PrivateRedis",
    "private_postgres",
    "private_redis",
    "small_tmpfs",
    "read_only",
]

START_TIMEOUT_S = 60.0
POSTGRES_OS_USER = "postgres"  # initdb refuses root; tests run as root in CI


def _postgres_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PrivatePostgres:
    """A throw-away PostgreSQL cluster; ``stop()`` and ``start()`` inject the fault."""

    bin_dir: Path
    base: Path
    port: int
    run_as: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *arguments: str) -> None:
        command = [*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.base / "data")]
        command += ["-w", "-t", str(int(START_TIMEOUT_S)), "-l", str(self.base / "postgres.log")]
        subprocess.run([*command, *arguments], check=True, capture_output=True, timeout=90)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("start", "-o", options)

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "fast")

    def log_tail(self) -> str:
        log = self.base / "postgres.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """initdb a cluster in a fresh folder, start it on a free port, remove it afterwards."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    run_as: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            unavailable("running as root without runuser: cannot start PostgreSQL as a user")
        try:
            pwd.getpwnam(POSTGRES_OS_USER)
        except KeyError:
            unavailable(f"running as root and there is no {POSTGRES_OS_USER!r} user for initdb")
        run_as = ["runuser", "-u", POSTGRES_OS_USER, "--"]
    base = Path(tempfile.mkdtemp(prefix="rps-pg-"))  # under /tmp: the postgres user reaches it
    base.chmod(0o755)
    if run_as:
        shutil.chown(base, user=POSTGRES_OS_USER)
    cluster = PrivatePostgres(bin_dir=bin_dir, base=base, port=free_port(), run_as=run_as)
    try:
        subprocess.run(
            [*run_as, str(bin_dir / "initdb"), "-D", str(base / "data")]
            + ["-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        cluster.start()
        yield cluster
    finally:
        with suppress(Exception):
            cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class PrivateRedis:
    """A ``redis-server`` without persistence; ``kill()`` and ``start()`` inject the fault."""

    port: int
    popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.popen = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with suppress(redis.RedisError):
                if redis.Redis(port=self.port, socket_connect_timeout=1).ping():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed")
    server = PrivateRedis(port=free_port())
    try:
        server.start()
        yield server
    finally:
        server.kill()


@contextmanager
def small_tmpfs(size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` mounted on a fresh folder (needs root, or skips)."""
    mount_point = Path(tempfile.mkdtemp(prefix="rps-tmpfs-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        mount_point.rmdir()
        unavailable(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
        with suppress(OSError):
            mount_point.rmdir()


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` read-only for everyone (root too) while inside: a read-only bind
    mount of itself, so files held open elsewhere on the disk do not block it."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
        yield
    finally:
        # lazy: the API may hold read-only memory maps of files under it
        subprocess.run(["umount", "-l", str(folder)], check=True)
