"""Explain latency over HTTP: p50/p99 with one client and with 16 concurrent clients.

Starts the servers itself on loopback ports chosen free at run time, registers one linear
model (n training points of dimension d, a stored test set), waits until it is ready, then
times ``GET /explain?test_id=...&k=10``, every request for a different stored test point (so
no answer comes from the result cache). Two deployments:

* ``embedded``: ``rps serve`` alone (SQLite, in-memory broker, worker thread);
* ``production``: ``rps serve`` + ``rps worker`` on PostgreSQL (a fresh database, dropped
  afterwards) and Redis (its own database index, flushed).

Run::

    .venv/bin/python -m benchmarks.http_bench                # n=50,000, d=512, 10 classes
    .venv/bin/python -m benchmarks.http_bench --classes 2    # the same with a binary head
    .venv/bin/python -m benchmarks.http_bench --quick        # n=5,000, d=64

Targets (one client): p50 <= 15 ms, p99 <= 50 ms. Results also go to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

from rps.client import Client
from tests.helpers.backing_services import fresh_postgres_database
from tests.helpers.problems import sampled_head_problem
from tests.helpers.processes import RPS_SCRIPT, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "benchmarks" / "out"
REDIS_URL = os.environ.get("RPS_BENCH_REDIS", "redis://127.0.0.1:6379/12")
TARGET_P50_MS = 15.0
TARGET_P99_MS = 50.0
CONCURRENT_CLIENTS = 16
STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class BenchSize:
    """The model and the request counts of one run."""

    n_train: int
    dim: int
    top_k: int
    warmup: int
    single_requests: int
    concurrent_requests_per_client: int

    @property
    def n_test(self) -> int:
        """Enough stored test points that no request repeats another."""
        return (
            self.warmup
            + self.single_requests
            + CONCURRENT_CLIENTS * self.concurrent_requests_per_client
        )


FULL = BenchSize(
    n_train=50_000,
    dim=512,
    top_k=10,
    warmup=30,
    single_requests=300,
    concurrent_requests_per_client=30,
)
QUICK = BenchSize(
    n_train=5_000,
    dim=64,
    top_k=10,
    warmup=10,
    single_requests=100,
    concurrent_requests_per_client=10,
)


@dataclass(frozen=True)
class Latency:
    """Latency summary of one batch of requests, in milliseconds."""

    requests: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    throughput_rps: float

    @classmethod
    def of(cls, seconds: np.ndarray, *, wall_s: float) -> Latency:
        millis = 1000.0 * np.asarray(seconds)
        return cls(
            len(millis),
            float(np.percentile(millis, 50)),
            float(np.percentile(millis, 99)),
            float(millis.mean()),
            len(millis) / wall_s,
        )


@contextmanager
def rps_process(
    arguments: list[str], *, env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen]:
    """Run ``rps <arguments>``; always SIGTERM (then SIGKILL) its process group on exit."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(RPS_SCRIPT), *arguments],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=grace)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


def wait_healthy(base_url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not healthy after {STARTUP_TIMEOUT_S:g} s")


@contextmanager
def flushed_redis() -> Iterator[str]:
    import redis

    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    try:
        yield REDIS_URL
    finally:
        connection.flushdb()
        connection.close()


@contextmanager
def deployment(
    kind: str,
    workdir: Path,
    *,
    server_threads: int | None = None,
    concurrent_queries: int | None = None,
) -> Iterator[str]:
    """Start the servers of ``kind`` ("embedded" or "production"); yields the base URL.

    ``server_threads`` caps the BLAS / OpenMP / torch threads of each server process;
    ``concurrent_queries`` sets RPS_CONCURRENT_QUERIES (engine scorings at once per API process).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("RPS_")}
    env.update(PYTHONUNBUFFERED="1", RPS_DATA_DIR=str(workdir / kind), RPS_ENV="development")
    if concurrent_queries is not None:
        env["RPS_CONCURRENT_QUERIES"] = str(concurrent_queries)
    if server_threads is not None:
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[variable] = str(server_threads)
    (workdir / kind).mkdir()
    port = free_port()
    with ExitStack() as stack:
        if kind == "production":
            env["RPS_DATABASE_URL"] = stack.enter_context(
                fresh_postgres_database(prefix="rps_bench_")
            )
            env["RPS_REDIS_URL"] = stack.enter_context(flushed_redis())
            subprocess.run(
                [str(RPS_SCRIPT), "db", "upgrade"], env=env, check=True, capture_output=True
            )
            stack.enter_context(
                rps_process(
                    ["worker", "--processes", "1", "--threads", "1"],
                    env=env,
                    log_path=workdir / f"{kind}-worker.log",
                )
            )
        log_path = workdir / f"{kind}-serve.log"
        server = stack.enter_context(
            rps_process(
                ["serve", "--host", "127.0.0.1", "--port", str(port)], env=env, log_path=log_path
            )
        )
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, server, log_path)
        yield base_url


def time_requests(base_url: str, model_id: str, test_ids: list[str], *, top_k: int) -> np.ndarray:
    """Seconds per ``GET /explain`` for each test id, one keep-alive connection."""
    seconds = np.empty(len(test_ids))
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for index, test_id in enumerate(test_ids):
            started = time.perf_counter()
            answer = http.get(
                "/explain", params={"model_id": model_id, "test_id": test_id, "k": top_k}
            )
            seconds[index] = time.perf_counter() - started
            if answer.status_code != 200:
                raise RuntimeError(
                    f"GET /explain answered {answer.status_code}: {answer.text[:500]}"
                )
    return seconds


def measure(base_url: str, size: BenchSize, problem: dict[str, np.ndarray]) -> dict[str, object]:
    """Register, wait, then time one client and 16 concurrent clients."""
    with Client(base_url, timeout=600) as client:
        started = time.perf_counter()
        model = client.register_linear(
            problem["weights"],
            problem["bias"],
            problem["train_features"],
            problem["train_labels"],
            name="http-bench",
            methods=["lje"],
            test_features=problem["test_features"],
            test_labels=problem["test_labels"],
        )
        registered_s = time.perf_counter() - started
        client.wait_ready(model["id"], timeout=3600, progress=True)
        ready_s = time.perf_counter() - started
    test_ids = [str(index) for index in range(size.n_test)]
    warmup, rest = test_ids[: size.warmup], test_ids[size.warmup :]
    single_ids, concurrent_ids = rest[: size.single_requests], rest[size.single_requests :]
    time_requests(base_url, model["id"], warmup, top_k=size.top_k)

    started = time.perf_counter()
    single = time_requests(base_url, model["id"], single_ids, top_k=size.top_k)
    single_latency = Latency.of(single, wall_s=time.perf_counter() - started)

    chunks = [concurrent_ids[i::CONCURRENT_CLIENTS] for i in range(CONCURRENT_CLIENTS)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CONCURRENT_CLIENTS) as pool:
        timings = list(
            pool.map(
                lambda ids: time_requests(base_url, model["id"], ids, top_k=size.top_k), chunks
            )
        )
    concurrent_latency = Latency.of(np.concatenate(timings), wall_s=time.perf_counter() - started)
    return {
        "upload_s": registered_s,
        "register_to_ready_s": ready_s,
        "one_client": asdict(single_latency),
        f"{CONCURRENT_CLIENTS}_clients": asdict(concurrent_latency),
    }


def report(
    results: dict[str, dict], size: BenchSize, *, num_classes: int, server_threads: int | None
) -> str:
    threads = (
        f"{server_threads} BLAS thread(s) per server" if server_threads else "default BLAS threads"
    )
    head = "binary head" if num_classes == 2 else f"{num_classes}-class softmax head"
    lines = [
        f"GET /explain, n={size.n_train:,}, d={size.dim}, {head}, top-{size.top_k}, LJE, distinct test ids, "
        f"{threads}, {os.cpu_count()} CPUs",
        f"{'deployment':<12} {'clients':>7} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'req/s':>7}",
    ]
    for kind, result in results.items():
        for label, key in (
            ("1", "one_client"),
            (str(CONCURRENT_CLIENTS), f"{CONCURRENT_CLIENTS}_clients"),
        ):
            row = result[key]
            lines.append(
                f"{kind:<12} {label:>7} {row['requests']:>8} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                f"{row['mean_ms']:>8.2f} {row['throughput_rps']:>7.1f}"
            )
        lines.append(
            f"{'':<12} register->ready {result['register_to_ready_s']:.1f} s (upload {result['upload_s']:.1f} s)"
        )
    lines.append(f"targets, one client: p50 <= {TARGET_P50_MS:g} ms, p99 <= {TARGET_P99_MS:g} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n=5,000, d=64 and fewer requests")
    parser.add_argument(
        "--deployments", default="embedded,production", help="comma list: embedded,production"
    )
    parser.add_argument(
        "--server-threads", type=int, help="cap BLAS/OpenMP threads of the server processes"
    )
    parser.add_argument(
        "--concurrent-queries",
        type=int,
        help="RPS_CONCURRENT_QUERIES of the servers (default: the service's own, 1)",
    )
    parser.add_argument(
        "--classes",
        type=int,
        default=10,
        help="number of classes of the head (2 = binary sigmoid head; default 10)",
    )
    args = parser.parse_args(argv)
    if args.classes < 2:
        parser.error("--classes must be >= 2")
    size = QUICK if args.quick else FULL
    problem = sampled_head_problem(
        n_train=size.n_train, n_test=size.n_test, dim=size.dim, num_classes=args.classes
    )
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="rps-http-bench-") as workdir:
        for kind in args.deployments.split(","):
            with deployment(
                kind,
                Path(workdir),
                server_threads=args.server_threads,
                concurrent_queries=args.concurrent_queries,
            ) as base_url:
                results[kind] = measure(base_url, size, problem)
    text = report(results, size, num_classes=args.classes, server_threads=args.server_threads)
    if args.concurrent_queries is not None:
        text += f"\nRPS_CONCURRENT_QUERIES={args.concurrent_queries}"
    print(text)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    name = (
        ("http_bench_quick" if args.quick else "http_bench")
        + f"_k{args.classes}"
        + (f"_threads{args.server_threads}" if args.server_threads else "")
        + (f"_cq{args.concurrent_queries}" if args.concurrent_queries else "")
    )
    (OUT_DIR / f"{name}.json").write_text(
        json.dumps(
            {
                "size": asdict(size),
                "num_classes": args.classes,
                "results": results,
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "server_threads": args.server_threads,
            },
            indent=2,
        )
    )
    (OUT_DIR / f"{name}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
