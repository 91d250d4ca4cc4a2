"""Explain latency and throughput over HTTP with 1, 4, 16 and 64 concurrent clients.

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

Concurrent requests of one model share engine passes (``app.explain.batcher``); the table
shows throughput against one client, 429 refusals, 5xx answers, and the server time per
request spent outside queueing and the engine (from the server's own /metrics).

Targets: one client p50 <= 15 ms; 16 clients >= 1.3x the one-client throughput with p99 <=
200 ms; 64 clients no 5xx, every refusal a 429. Results also go to benchmarks/out/.
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
from tests.helpers.backing_services import fresh_postgres_database, redis_url_for
from tests.helpers.problems import sampled_head_problem
from tests.helpers.processes import RPS_SCRIPT, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "benchmarks" / "out"
REDIS_URL = os.environ.get("RPS_BENCH_REDIS", redis_url_for("benchmarks"))
TARGET_P50_MS = 15.0
TARGET_P99_MS = 50.0
TARGET_P99_16_MS = 200.0
CLIENT_LEVELS = (1, 4, 16, 64)
"""Concurrent clients of each measured level; every level sends distinct test ids."""
STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class BenchSize:
    """The model and the request counts of one run."""

    n_train: int
    dim: int
    top_k: int
    warmup: int
    requests_per_level: int

    @property
    def n_test(self) -> int:
        """Enough stored test points that no request repeats another."""
        return self.warmup + len(CLIENT_LEVELS) * self.requests_per_level


FULL = BenchSize(
    n_train=50_000,
    dim=512,
    top_k=10,
    warmup=30,
    requests_per_level=640,
)
QUICK = BenchSize(
    n_train=5_000,
    dim=64,
    top_k=10,
    warmup=10,
    requests_per_level=128,
)


@dataclass(frozen=True)
class Latency:
    """Latency summary of one batch of requests, in milliseconds."""

    requests: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    throughput_rps: float
    refused_429: int
    server_errors: int
    outside_engine_ms: float
    """Server-side time per answered request outside queueing and the engine pass."""

    @classmethod
    def of(
        cls, seconds: np.ndarray, statuses: np.ndarray, *, wall_s: float, outside_engine_ms: float
    ) -> Latency:
        answered = statuses == 200
        millis = 1000.0 * np.asarray(seconds)[answered]
        return cls(
            len(millis),
            float(np.percentile(millis, 50)),
            float(np.percentile(millis, 99)),
            float(millis.mean()),
            len(millis) / wall_s,
            int((statuses == 429).sum()),
            int((statuses >= 500).sum()),
            outside_engine_ms,
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


def time_requests(
    base_url: str, model_id: str, test_ids: list[str], *, top_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seconds and status per ``GET /explain`` for each test id, one keep-alive connection.

    A 429 (full queue, the documented refusal) is counted, not retried; anything else that
    is not a 200 stops the benchmark.
    """
    seconds = np.empty(len(test_ids))
    statuses = np.empty(len(test_ids), dtype=np.int64)
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for index, test_id in enumerate(test_ids):
            started = time.perf_counter()
            answer = http.get(
                "/explain", params={"model_id": model_id, "test_id": test_id, "k": top_k}
            )
            seconds[index] = time.perf_counter() - started
            statuses[index] = answer.status_code
            if answer.status_code not in (200, 429):
                raise RuntimeError(
                    f"GET /explain answered {answer.status_code}: {answer.text[:500]}"
                )
    return seconds, statuses


def server_seconds(base_url: str) -> dict[str, float]:
    """Cumulative server-side seconds of /explain requests, queue waits and engine passes."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    totals = {"request": 0.0, "requests": 0.0, "wait": 0.0, "engine": 0.0}
    for line in text.splitlines():
        if line.startswith("rps_http_request_duration_seconds_sum") and 'route="/explain"' in line:
            totals["request"] += float(line.rsplit(" ", 1)[1])
        elif (
            line.startswith("rps_http_request_duration_seconds_count")
            and 'route="/explain"' in line
        ):
            totals["requests"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("rps_explain_queue_wait_seconds_sum"):
            totals["wait"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("rps_explain_engine_seconds_sum"):
            totals["engine"] += float(line.rsplit(" ", 1)[1])
    return totals


def outside_engine_ms(before: dict[str, float], after: dict[str, float]) -> float:
    """Mean server time per request that is neither queueing nor an engine pass.

    A shared pass counts once for all its requests, so this is the per-request cost of
    HTTP, validation, the database, records and JSON.
    """
    delta = {name: after[name] - before[name] for name in after}
    if delta["requests"] <= 0:
        return float("nan")
    outside = delta["request"] - delta["wait"] - delta["engine"]
    return 1000.0 * outside / delta["requests"]


def measure(base_url: str, size: BenchSize, problem: dict[str, np.ndarray]) -> dict[str, object]:
    """Register, wait, then time each level of concurrent clients on distinct test ids."""
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
        client.wait_ready(model.id, timeout=3600, progress=True)
        ready_s = time.perf_counter() - started
    test_ids = [str(index) for index in range(size.n_test)]
    time_requests(base_url, model.id, test_ids[: size.warmup], top_k=size.top_k)
    levels = {}
    for position, clients in enumerate(CLIENT_LEVELS):
        start = size.warmup + position * size.requests_per_level
        ids = test_ids[start : start + size.requests_per_level]
        chunks = [ids[i::clients] for i in range(clients)]
        before = server_seconds(base_url)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            timings = list(
                pool.map(
                    lambda chunk: time_requests(base_url, model.id, chunk, top_k=size.top_k),
                    chunks,
                )
            )
        wall_s = time.perf_counter() - started
        levels[str(clients)] = asdict(
            Latency.of(
                np.concatenate([seconds for seconds, _ in timings]),
                np.concatenate([statuses for _, statuses in timings]),
                wall_s=wall_s,
                outside_engine_ms=outside_engine_ms(before, server_seconds(base_url)),
            )
        )
    return {"upload_s": registered_s, "register_to_ready_s": ready_s, "clients": levels}


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
        f"{'deployment':<12} {'clients':>7} {'answered':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'mean ms':>8} {'req/s':>7} {'x 1 cl.':>7} {'429':>5} {'5xx':>4} {'outside ms':>10}",
    ]
    for kind, result in results.items():
        one_client = result["clients"]["1"]["throughput_rps"]
        for label, row in result["clients"].items():
            lines.append(
                f"{kind:<12} {label:>7} {row['requests']:>8} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                f"{row['mean_ms']:>8.2f} {row['throughput_rps']:>7.1f} "
                f"{row['throughput_rps'] / one_client:>7.2f} {row['refused_429']:>5} "
                f"{row['server_errors']:>4} {row['outside_engine_ms']:>10.2f}"
            )
        lines.append(
            f"{'':<12} register->ready {result['register_to_ready_s']:.1f} s (upload {result['upload_s']:.1f} s)"
        )
    lines.append(
        f"targets: one client p50 <= {TARGET_P50_MS:g} ms; 16 clients >= 1.3x one client's "
        f"throughput with p99 <= {TARGET_P99_16_MS:g} ms; 64 clients no 5xx, refusals only 429"
    )
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
