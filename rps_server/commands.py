"""The server's subcommands of ``rps``: run the service (``serve``, ``worker``) and manage it
(``keys``, ``jobs``, ``db``).

The ``rps`` console script belongs to the client distribution (``rps.cli``); it finds these
commands through the ``rps.commands`` entry-point group, which this distribution declares.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from collections.abc import Callable

from rps_server.broker import QUEUES
from rps_server.logs import configure_logging
from rps_server.settings import Settings, get_settings

__all__ = ["add_server_commands", "let_idle_threads_sleep", "query_thread_count"]

Handler = Callable[[argparse.Namespace], int]

logger = logging.getLogger(__name__)


def _configure_logging() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def let_idle_threads_sleep() -> None:
    """Make PyTorch's OpenMP threads sleep between parallel regions in this process
    (``OMP_WAIT_POLICY=PASSIVE``, unless the environment sets it). Call it before torch is
    imported: the OpenMP runtime reads it when it loads.

    By default they spin for milliseconds after each region. In an API process that time
    belongs to HTTP and to the threads that split a few-row product
    (``representer.row_kernels``): on a 2-core machine with ``RPS_QUERY_THREADS=2``, an LJE
    point's product took 6.0 ms on two threads alone but the pass as a whole no less than
    with one thread (11.7-12.0 ms), because a spinning thread held the second core; with
    sleeping threads, 6.3 ms and 10.5 ms. Jobs (``rps worker``) keep the default: in the same
    run a two-thread oneDNN product of 16 rows took 21.5 ms with sleeping threads against
    18.5 ms with spinning ones, and jobs are made of such products.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def query_thread_count(requested: int, *, concurrent_queries: int = 1) -> int:
    """Threads of one engine pass for ``RPS_QUERY_THREADS=requested`` (0: the usable CPUs
    shared among ``RPS_CONCURRENT_QUERIES`` passes, at least 1 each)."""
    return requested or max(1, _usable_cpus() // concurrent_queries)


def _limit_query_threads(settings: Settings) -> int:
    """Give each engine pass of this API process ``RPS_QUERY_THREADS`` threads (0: every
    usable CPU, shared among ``RPS_CONCURRENT_QUERIES`` passes): PyTorch's, and the helper
    threads the engine splits its own kernels and NumPy products over. NumPy's BLAS
    (OpenBLAS) runs on one thread: its idle threads spin for about 0.1 s after each
    product, on the cores the next step of the pass needs (an influence pass of 16 points,
    n=50,000, d=512, 10 classes, two threads: 123-132 ms with two OpenBLAS threads, 64-83
    with them sleeping), and it cannot be told otherwise once loaded.

    Why every CPU by default: the pass is what requests queue for, and the rest of a
    request is Python that runs one thread at a time under the interpreter lock. On the
    2-core benchmark machine (n=50,000, d=512, 10 classes, production deployment), one
    thread a pass against two: one client p50 15.5 ms against 10.6 ms, 16 clients 97.6
    against 122.9 req/s with p99 205 against 171 ms. (Before a pass stopped giving the lock
    up some ninety times, two threads lost under load and the default was half the CPUs.)
    Jobs run in child processes of their own and keep every core.
    """
    import torch
    from threadpoolctl import threadpool_limits

    count = query_thread_count(
        settings.query_threads, concurrent_queries=settings.concurrent_queries
    )
    threadpool_limits(limits=1, user_api="blas")
    torch.set_num_threads(count)
    logger.info("engine passes use %d thread(s) (RPS_QUERY_THREADS)", count)
    return count


def _compile_query_kernels() -> None:
    """Compile the engine's query kernels before serving (``representer.row_kernels``,
    ``representer.row_summaries``, ``representer.kernel``'s contraction): the first query of
    each row count would otherwise wait 0.2-0.8 s for numba."""
    from representer.kernel import compile_contraction
    from representer.row_kernels import compile_kernels
    from representer.row_summaries import compile_summaries

    started = time.perf_counter()
    compile_kernels()
    compile_summaries()
    compile_contraction()
    logger.info("query kernels compiled in %.2f s", time.perf_counter() - started)


def _freeze_startup_objects() -> int:
    """Collect, then move every object alive now (modules, classes, the app, the settings:
    about 370,000 in an API process) out of the collector's reach (``gc.freeze``); returns
    how many were frozen.

    Without it, each full (generation-2) collection walked them all, stopping every thread
    of the process, engine passes included, for 0.2-0.34 s on the 2-core benchmark machine;
    one such pause in a 640-request run of 16 clients set the p99 (323 and 394 ms against
    199 and 208 ms frozen, issue 10). Objects made later are collected as before.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _serve(args: argparse.Namespace) -> int:
    let_idle_threads_sleep()
    import uvicorn

    from app import create_app
    from models_store import make_engine, make_sessionmaker, upgrade
    from rps_server.broker import setup_broker
    from workers import declare_actors, requeue_unfinished_jobs, start_job_sweeper, start_worker

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    _limit_query_threads(settings)
    _compile_query_kernels()
    broker = setup_broker(settings)
    worker = sweeper = None
    if args.with_worker or settings.redis_url is None:
        declare_actors(broker, settings=settings)
        worker = start_worker(broker, threads=args.worker_threads)
        logger.info("in-process worker started (%s)", type(broker).__name__)
        sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
        if settings.redis_url is None:  # the in-memory broker lost whatever was queued
            requeue_unfinished_jobs(sessions, broker)
        sweeper = start_job_sweeper(settings, broker, sessions)
    app = create_app(settings, broker=broker)
    logger.info("viewer: http://%s:%d/ui", args.host, args.port)
    if args.demo:
        _start_demo(f"http://{args.host}:{args.port}", settings)
    logger.info("%d start-up objects frozen out of garbage collection", _freeze_startup_objects())
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level=settings.log_level.lower(),
            log_config=None,  # keep the handlers of rps_server.logs (text or JSON)
        )
    finally:
        if sweeper is not None:
            sweeper.stop()
        if worker is not None:
            worker.stop(timeout=5000)
    return 0


def _start_demo(base_url: str, settings: Settings) -> None:
    """Register the demo model; with auth on it needs a key: RPS_API_KEY, else the first of RPS_API_KEYS."""
    try:
        from rps_server.demo import register_demo_in_background
    except ImportError as error:
        logger.error("--demo unavailable: %s", error)
        return
    api_key = os.environ.get("RPS_API_KEY") or next(iter(settings.env_api_keys), None)
    register_demo_in_background(base_url, api_key=api_key)


def _worker(args: argparse.Namespace) -> int:
    from workers import run_worker_forever, run_worker_processes

    queues = tuple(args.queues)
    settings = get_settings()
    if args.processes > 1:
        return run_worker_processes(
            settings, processes=args.processes, queues=queues, threads=args.threads
        )
    run_worker_forever(settings, queues=queues, threads=args.threads)
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    from app.keys.service import create_api_key
    from models_store import make_engine, make_sessionmaker, upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
    with sessions() as session, session.begin():
        token = create_api_key(session, tenant=args.tenant)
    print(token)
    print(f"(tenant {args.tenant!r}; shown once, stored hashed)", file=sys.stderr)
    return 0


def _key_sessions():
    from models_store import make_engine, make_sessionmaker, upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    return make_sessionmaker(make_engine(settings.resolved_database_url))


def _keys_list(_args: argparse.Namespace) -> int:
    from app.keys.service import list_api_keys

    sessions = _key_sessions()
    with sessions() as session:
        keys = list_api_keys(session)
    print(f"{'prefix':<14}{'tenant':<24}{'created_at':<34}revoked_at")
    for key in keys:
        print(
            f"{key['prefix']:<14}{(key['tenant'] or '')[:22]:<24}{key['created_at'] or '':<34}"
            f"{key['revoked_at'] or '-'}"
        )
    env_keys = len(get_settings().env_api_keys)
    if env_keys:
        print(f"(+ {env_keys} key(s) from RPS_API_KEYS, not listed: remove them there)")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from app.core.errors import NotFoundError
    from app.keys.service import revoke_api_key

    try:
        sessions = _key_sessions()
        with sessions() as session, session.begin():
            key = revoke_api_key(session, args.key)
            prefix, tenant = key.prefix, key.tenant
    except NotFoundError as error:
        print(f"rps: {error}", file=sys.stderr)
        return 1
    ttl = get_settings().key_cache_ttl_s
    print(
        f"revoked key {prefix} of tenant {tenant!r}; every API process refuses it within {ttl:g} s"
    )
    return 0


def _jobs_requeue(args: argparse.Namespace) -> int:
    from models_store import JobStatus, make_engine, make_sessionmaker
    from rps_server.broker import make_broker
    from workers import requeue_unfinished_jobs

    settings = get_settings()
    statuses = (JobStatus.QUEUED, JobStatus.RUNNING) if args.running else (JobStatus.QUEUED,)
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
    job_ids = requeue_unfinished_jobs(sessions, make_broker(settings), statuses=statuses)
    print(f"re-enqueued {len(job_ids)} job(s)")
    return 0


def _db_upgrade(_args: argparse.Namespace) -> int:
    from models_store import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    print("database is at the latest revision")
    return 0


def _with_settings(handler: Handler) -> Handler:
    """Configure logging from the settings, and turn refused settings into exit code 2."""

    def run(args: argparse.Namespace) -> int:
        from pydantic import ValidationError

        try:
            _configure_logging()
            return int(handler(args) or 0)
        except ValidationError as error:  # settings refused at start-up (e.g. production + SQLite)
            print(f"rps: invalid settings: {error}", file=sys.stderr)
            return 2

    run.__name__ = handler.__name__
    return run


def add_server_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve``, ``worker``, ``keys``, ``jobs`` and ``db`` to ``subparsers`` (the
    ``rps.commands`` entry point of this distribution)."""
    serve = subparsers.add_parser("serve", help="run the API (embedded: with an in-process worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--demo", action="store_true", help="register a small demo model in the background"
    )
    serve.add_argument(
        "--with-worker", action="store_true", help="run a worker thread even with Redis"
    )
    serve.add_argument("--worker-threads", type=int, default=1)
    serve.set_defaults(func=_with_settings(_serve))

    worker = subparsers.add_parser("worker", help="run precompute workers")
    worker.add_argument("--queues", nargs="+", default=list(QUEUES[:1]), choices=list(QUEUES))
    worker.add_argument("--processes", type=int, default=1)
    worker.add_argument("--threads", type=int, default=1)
    worker.set_defaults(func=_with_settings(_worker))

    keys = subparsers.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key for a tenant (prints it once)")
    create.add_argument("--tenant", required=True)
    create.set_defaults(func=_with_settings(_keys_create))
    keys.add_parser("list", help="list keys (prefix, tenant, created, revoked)").set_defaults(
        func=_with_settings(_keys_list)
    )
    revoke = keys.add_parser(
        "revoke", help="revoke a key: every API process refuses it within RPS_KEY_CACHE_TTL_S"
    )
    revoke.add_argument("key", help="the key's prefix (from `rps keys list`) or the key itself")
    revoke.set_defaults(func=_with_settings(_keys_revoke))

    jobs = subparsers.add_parser("jobs", help="precompute jobs").add_subparsers(
        dest="jobs_command", required=True
    )
    requeue = jobs.add_parser(
        "requeue", help="send the message of every queued job again (e.g. after a broker loss)"
    )
    requeue.add_argument(
        "--running", action="store_true", help="also jobs marked running (their worker died)"
    )
    requeue.set_defaults(func=_with_settings(_jobs_requeue))

    database = subparsers.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    database.add_parser("upgrade", help="apply the Alembic migrations").set_defaults(
        func=_with_settings(_db_upgrade)
    )
