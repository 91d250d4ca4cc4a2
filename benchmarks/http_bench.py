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
    .venv/bin/python -m benchmarks.http_bench --clients 1,16 --requests 200   # a quick check

Concurrent requests of one model share engine passes (``app.explain.batcher``); the table
shows throughput against one client, 429 refusals, 5xx answers, the server time per
request spent outside queueing and the engine (from the server's own /metrics), the mean
requests per engine pass, and the API process's CPU per answered request: its event-loop
thread (``loop``) and all its other threads (``threads``: engine passes, the thread-pool
calls with their database queries and JSON).

The clients are threads of this process (one interpreter lock: together they use at most
one core); ``--client-processes`` makes each client a process of its own. Clients share the
machine with the server either way; the ``client ms`` column is the benchmark process's own
CPU per answer (client threads only), CPU the server did not get. On a 2-core AMD Zen 4 it
was 1.2-1.3 ms for one httpx client and 1.5-1.9 ms for 16 at n=50,000; with ``--quick``'s
shorter requests, 16 client threads contending for the lock took 5.8 ms. 16 client
processes compete with the server for both cores.

Targets: one client p50 <= 15 ms; 16 clients >= 1.3x the one-client throughput with p99 <=
200 ms; 64 clients no 5xx, every refusal a 429. Results also go to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
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
"""Concurrent clients of each measured level (``--clients``); every level sends distinct
test ids."""
STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class BenchSize:
    """The model, the client levels and the request counts of one run."""

    n_train: int
    dim: int
    top_k: int
    warmup: int
    requests_per_level: int
    client_levels: tuple[int, ...] = CLIENT_LEVELS

    @property
    def n_test(self) -> int:
        """Enough stored test points that no request repeats another."""
        return self.warmup + len(self.client_levels) * self.requests_per_level


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
    requests_per_pass: float
    """Mean requests scored together in one engine pass."""
    pass_ms: float
    """Mean engine time of one pass (``representer.explain`` on the pass's rows)."""
    engine_busy: float
    """Share of the level's wall time an engine pass was running (1.0: passes back to back,
    the engine is the bottleneck; lower: requests wait for HTTP, the database or a core)."""
    loop_cpu_ms: float
    """CPU of the API process's event-loop thread per answered request."""
    threads_cpu_ms: float
    """CPU of the API process's other threads (engine, thread pool) per answered request."""
    client_cpu_ms: float
    """CPU of this benchmark process (its client threads) per answered request; NaN when
    the clients are processes of their own."""

    @classmethod
    def of(
        cls,
        seconds: np.ndarray,
        statuses: np.ndarray,
        *,
        wall_s: float,
        server: ServerDelta,
        client_cpu_s: float,
    ) -> Latency:
        answered = statuses == 200
        millis = 1000.0 * np.asarray(seconds)[answered]
        count = max(1, len(millis))
        return cls(
            len(millis),
            float(np.percentile(millis, 50)),
            float(np.percentile(millis, 99)),
            float(millis.mean()),
            len(millis) / wall_s,
            int((statuses == 429).sum()),
            int((statuses >= 500).sum()),
            server.outside_engine_ms(),
            server.requests_per_pass(),
            server.pass_ms(),
            server.metrics["engine"] / wall_s,
            1000.0 * server.loop_cpu_s / count,
            1000.0 * server.threads_cpu_s / count,
            1000.0 * client_cpu_s / count,
        )


@dataclass(frozen=True)
class ServerDelta:
    """What the API process did during one level: its /metrics sums and its CPU."""

    metrics: dict[str, float]
    loop_cpu_s: float
    threads_cpu_s: float

    def outside_engine_ms(self) -> float:
        """Mean server time per request that is neither queueing nor its engine pass: the
        per-request cost of HTTP, validation, the database, records and JSON (and of waiting
        for a core).

        Each request's pass counts for it (``rps_explain_pass_seconds``). A server without
        that metric only gives each pass once (``rps_explain_engine_seconds``), which leaves
        the rest of a shared pass's requests' time in this figure.
        """
        if self.metrics["requests"] <= 0:
            return float("nan")
        scored = self.metrics["pass"] if self.metrics["pass"] > 0 else self.metrics["engine"]
        outside = self.metrics["request"] - self.metrics["wait"] - scored
        return 1000.0 * outside / self.metrics["requests"]

    def requests_per_pass(self) -> float:
        if self.metrics["passes"] <= 0:
            return float("nan")
        return self.metrics["batched"] / self.metrics["passes"]

    def pass_ms(self) -> float:
        if self.metrics["passes"] <= 0:
            return float("nan")
        return 1000.0 * self.metrics["engine"] / self.metrics["passes"]


def process_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds of ``pid``'s main thread (the event loop) and of all its other threads
    (Linux /proc; threads that ended are not counted, so compare a level's start and end)."""
    tick = os.sysconf("SC_CLK_TCK")
    main = other = 0.0
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        if stat.parent.name == str(pid):
            main += seconds
        else:
            other += seconds
    return main, other


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
) -> Iterator[tuple[str, int]]:
    """Start the servers of ``kind`` ("embedded" or "production"); yields the base URL and
    the API process's pid.

    ``server_threads`` caps the BLAS / OpenMP / torch threads of each server process;
    ``concurrent_queries`` sets RPS_CONCURRENT_QUERIES (engine scorings at once per API process).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("RPS_")}
    env.update(PYTHONUNBUFFERED="1", RPS_DATA_DIR=str(workdir / kind), RPS_ENV="development")
    if concurrent_queries is not None:
        env["RPS_CONCURRENT_QUERIES"] = str(concurrent_queries)
    if server_threads is not None:
        env["RPS_QUERY_THREADS"] = str(server_threads)
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
        yield base_url, server.pid


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
    """Cumulative server-side seconds of /explain requests, queue waits and engine passes,
    and the number of passes and of requests they scored."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    totals = {
        "request": 0.0,
        "requests": 0.0,
        "wait": 0.0,
        "engine": 0.0,
        "pass": 0.0,
        "passes": 0.0,
        "batched": 0.0,
    }
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
        elif line.startswith("rps_explain_pass_seconds_sum"):
            totals["pass"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("rps_explain_batch_size_count"):
            totals["passes"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("rps_explain_batch_size_sum"):
            totals["batched"] += float(line.rsplit(" ", 1)[1])
    return totals


def _timed_chunk(arguments: tuple[str, str, list[str], int]) -> tuple[np.ndarray, np.ndarray]:
    base_url, model_id, test_ids, top_k = arguments
    return time_requests(base_url, model_id, test_ids, top_k=top_k)


def _started(index: int) -> int:
    return index


def client_pool(clients: int, *, processes: bool) -> Executor:
    """``clients`` workers, each timing its own share of the requests."""
    if not processes:
        return ThreadPoolExecutor(max_workers=clients)
    pool = ProcessPoolExecutor(max_workers=clients)
    list(pool.map(_started, range(clients)))  # every process started before the clock
    return pool


def time_level(
    base_url: str,
    pid: int,
    model_id: str,
    chunks: list[list[str]],
    *,
    top_k: int,
    processes: bool,
) -> Latency:
    """One level: every chunk timed by its own client, all at once."""
    with client_pool(len(chunks), processes=processes) as pool:
        before, cpu_before = server_seconds(base_url), process_cpu_s(pid)
        client_cpu_before = time.process_time()
        started = time.perf_counter()
        timings = list(
            pool.map(_timed_chunk, [(base_url, model_id, chunk, top_k) for chunk in chunks])
        )
        wall_s = time.perf_counter() - started
        client_cpu_s = time.process_time() - client_cpu_before if not processes else math.nan
        cpu_after, after = process_cpu_s(pid), server_seconds(base_url)
    delta = ServerDelta(
        {name: after[name] - before[name] for name in after},
        loop_cpu_s=cpu_after[0] - cpu_before[0],
        threads_cpu_s=cpu_after[1] - cpu_before[1],
    )
    return Latency.of(
        np.concatenate([seconds for seconds, _ in timings]),
        np.concatenate([statuses for _, statuses in timings]),
        wall_s=wall_s,
        server=delta,
        client_cpu_s=client_cpu_s,
    )


def measure(
    base_url: str,
    pid: int,
    size: BenchSize,
    problem: dict[str, np.ndarray],
    *,
    client_processes: bool,
) -> dict[str, object]:
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
    load_before = os.getloadavg()[0]
    levels = {}
    for position, clients in enumerate(size.client_levels):
        start = size.warmup + position * size.requests_per_level
        ids = test_ids[start : start + size.requests_per_level]
        chunks = [ids[i::clients] for i in range(clients)]
        latency = time_level(
            base_url, pid, model.id, chunks, top_k=size.top_k, processes=client_processes
        )
        levels[str(clients)] = asdict(latency)
    return {
        "upload_s": registered_s,
        "register_to_ready_s": ready_s,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "clients": levels,
    }


def report(
    results: dict[str, dict],
    size: BenchSize,
    *,
    num_classes: int,
    server_threads: int | None,
    client_processes: bool,
) -> str:
    threads = (
        f"{server_threads} BLAS thread(s) per server" if server_threads else "default BLAS threads"
    )
    head = "binary head" if num_classes == 2 else f"{num_classes}-class softmax head"
    clients_in = (
        "each client a process of its own"
        if client_processes
        else "clients are threads of the benchmark's process"
    ) + (
        "; pass ms: engine time of a pass; busy: share of the wall time a pass ran; "
        "loop/thr. ms: CPU of the API process's event-loop thread / other threads per answer; "
        "client ms: CPU of the benchmark's client threads per answer"
    )
    lines = [
        f"GET /explain, n={size.n_train:,}, d={size.dim}, {head}, top-{size.top_k}, LJE, distinct test ids, "
        f"{threads}, {os.cpu_count()} CPUs",
        f"{clients_in}",
        f"{'deployment':<12} {'clients':>7} {'answered':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'mean ms':>8} {'req/s':>7} {'x 1 cl.':>7} {'429':>5} {'5xx':>4} {'outside ms':>10} "
        f"{'req/pass':>8} {'pass ms':>7} {'busy':>5} {'loop ms':>7} {'thr. ms':>7} {'client ms':>9}",
    ]
    for kind, result in results.items():
        reference = next(iter(result["clients"].values()))["throughput_rps"]
        for label, row in result["clients"].items():
            lines.append(
                f"{kind:<12} {label:>7} {row['requests']:>8} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                f"{row['mean_ms']:>8.2f} {row['throughput_rps']:>7.1f} "
                f"{row['throughput_rps'] / reference:>7.2f} {row['refused_429']:>5} "
                f"{row['server_errors']:>4} {row['outside_engine_ms']:>10.2f} "
                f"{row['requests_per_pass']:>8.1f} {row['pass_ms']:>7.2f} {row['engine_busy']:>5.2f} {row['loop_cpu_ms']:>7.2f} {row['threads_cpu_ms']:>7.2f} "
                f"{row['client_cpu_ms']:>9.2f}"
            )
        lines.append(
            f"{'':<12} register->ready {result['register_to_ready_s']:.1f} s (upload {result['upload_s']:.1f} s); "
            f"load average {result['load_before']:.2f} before the clients, {result['load_after']:.2f} after"
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
    parser.add_argument(
        "--client-processes",
        action="store_true",
        help="run each client in a process of its own (default: threads of this process)",
    )
    parser.add_argument(
        "--clients",
        default=",".join(map(str, CLIENT_LEVELS)),
        help="comma list of concurrent-client levels (default 1,4,16,64; the first is the "
        "throughput reference)",
    )
    parser.add_argument(
        "--requests", type=int, help="requests per level (default 640; --quick 128)"
    )
    parser.add_argument(
        "--logs", type=Path, help="copy the servers' logs into this directory at the end"
    )
    args = parser.parse_args(argv)
    if args.classes < 2:
        parser.error("--classes must be >= 2")
    try:
        levels = tuple(int(level) for level in args.clients.split(","))
    except ValueError:
        parser.error(f"--clients must be a comma list of integers, got {args.clients!r}")
    if not levels or min(levels) < 1:
        parser.error(f"--clients levels must be >= 1, got {args.clients!r}")
    if args.requests is not None and args.requests < max(levels):
        parser.error(f"--requests must be at least the largest level ({max(levels)})")
    size = replace(
        QUICK if args.quick else FULL,
        client_levels=levels,
        **({"requests_per_level": args.requests} if args.requests is not None else {}),
    )
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
            ) as (base_url, pid):
                results[kind] = measure(
                    base_url, pid, size, problem, client_processes=args.client_processes
                )
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in Path(workdir).glob("*.log"):
                shutil.copy(log, args.logs / log.name)
    text = report(
        results,
        size,
        num_classes=args.classes,
        server_threads=args.server_threads,
        client_processes=args.client_processes,
    )
    if args.concurrent_queries is not None:
        text += f"\nRPS_CONCURRENT_QUERIES={args.concurrent_queries}"
    print(text)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    name = (
        ("http_bench_quick" if args.quick else "http_bench")
        + f"_k{args.classes}"
        + (f"_threads{args.server_threads}" if args.server_threads else "")
        + (f"_cq{args.concurrent_queries}" if args.concurrent_queries else "")
        + ("_client_processes" if args.client_processes else "")
        + ("" if levels == CLIENT_LEVELS else "_clients" + "-".join(map(str, levels)))
        + ("" if args.requests is None else f"_requests{args.requests}")
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
                "client_processes": args.client_processes,
            },
            indent=2,
        )
    )
    (OUT_DIR / f"{name}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
