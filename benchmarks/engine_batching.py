"""What a shared pass costs: 16 queued points in one engine call against one point alone.

The API's batcher (``app.explain.batcher``) scores the waiting requests of one model and
method in one ``representer.explain`` call, which groups rows by target class. Measured
here on the engine alone, medians over repeats, for each method:

* one point (the cost of one pass), toward one class every time and toward a new class each
  call (the weights the previous call read are no help, as in a mixed pass);
* 16 points that share one target class (target: <= 3x one pass);
* 16 points with mixed target classes (target: <= (distinct targets + 1) x one pass).

Passes use the threads an API process gives them (``RPS_QUERY_THREADS``; by default every
usable CPU), set with ``--threads``, and NumPy's BLAS on one thread, as ``rps serve`` runs it.

    .venv/bin/python -m benchmarks.engine_batching            # n=50,000, d=512, k=10
    .venv/bin/python -m benchmarks.engine_batching --quick    # n=5,000, d=64
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from representer import Method, explain, fit
from rps_server.commands import query_thread_count
from tests.helpers.problems import memmapped_problem

OUT_DIR = Path(__file__).resolve().parent / "out"
BATCH = 16


def interleaved_medians_ms(functions: dict[str, Callable[[], object]], repeats: int) -> dict:
    """Median milliseconds of each function over ``repeats`` rounds. A round runs every
    function in turn, each once untimed (caches as a repeat of it leaves them) and once
    timed, so a drift of the host's speed (its other tenants, its clock) reaches the one
    point and the 16 points alike and their ratio stays fair."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            function()
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: 1000.0 * statistics.median(values) for name, values in times.items()}


def measure_method(
    method: Method, features, labels, head, test, *, repeats: int, threads: int
) -> dict:
    state = fit(head, features, labels, method=method)  # every core, as a precompute job
    with threadpool_limits(limits=1, user_api="blas"):  # as in an API process (rps serve)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return _passes(method, state, features, head, test, repeats=repeats)
        finally:
            torch.set_num_threads(previous)


def _passes(method: Method, state, features, head, test, *, repeats: int) -> dict:
    rng = np.random.default_rng(1)
    one_target = [0] * BATCH
    mixed = rng.integers(0, head.num_classes, size=BATCH).tolist()
    calls = itertools.count()

    def one_new_target() -> None:  # class c+1 after c: what the last call read is no help
        call = next(calls)
        explain(state, features, test[call % BATCH][None], target=[call % head.num_classes])

    medians = interleaved_medians_ms(
        {
            "one": lambda: explain(state, features, test[:1], target=[0]),
            "one_new": one_new_target,
            "same": lambda: explain(state, features, test[:BATCH], target=one_target),
            "mixed": lambda: explain(state, features, test[:BATCH], target=mixed),
        },
        repeats,
    )
    one_ms, one_new_ms, same_ms, mixed_ms = (
        medians[name] for name in ("one", "one_new", "same", "mixed")
    )
    distinct = len(set(mixed))
    return {
        "method": method.value,
        "one_point_ms": one_ms,
        "one_point_new_target_ms": one_new_ms,
        "same_target_ms": same_ms,
        "same_target_ratio": same_ms / one_ms,
        "mixed_targets_ms": mixed_ms,
        "distinct_targets": distinct,
        "mixed_targets_ratio": mixed_ms / one_ms,
        "mixed_target_bound": distinct + 1,
        "mixed_targets_ratio_new_target": mixed_ms / one_new_ms,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n=5,000, d=64")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--methods", default="lje,influence,l2")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="PyTorch and helper threads of a pass (0: RPS_QUERY_THREADS's default, every CPU)",
    )
    args = parser.parse_args(argv)
    threads = query_thread_count(args.threads)
    n, d, k = (5_000, 64, 10) if args.quick else (50_000, 512, 10)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rps-engine-batching-") as scratch:
        features, labels, head = memmapped_problem(n=n, d=d, k=k, directory=Path(scratch))
        test = np.random.default_rng(2).normal(size=(BATCH, d))
        for name in args.methods.split(","):
            rows.append(
                measure_method(
                    Method(name),
                    features,
                    labels,
                    head,
                    test,
                    repeats=args.repeats,
                    threads=threads,
                )
            )
    print(
        f"engine passes, n={n:,}, d={d}, k={k}, {BATCH} points per shared pass, median of "
        f"{args.repeats}, {threads} thread(s) a pass"
    )
    print(
        f"{'method':<10} {'1 pt ms':>8} {'16 same ms':>10} {'ratio':>6} {'16 mixed ms':>11} {'ratio':>6} {'bound':>6}"
        f" {'1 pt new c':>10} {'mixed ratio':>11}"
    )
    for row in rows:
        print(
            f"{row['method']:<10} {row['one_point_ms']:>8.2f} {row['same_target_ms']:>10.2f} "
            f"{row['same_target_ratio']:>6.2f} {row['mixed_targets_ms']:>11.2f} "
            f"{row['mixed_targets_ratio']:>6.2f} {row['mixed_target_bound']:>6}"
            f" {row['one_point_new_target_ms']:>10.2f} {row['mixed_targets_ratio_new_target']:>11.2f}"
        )
    print("targets: 16 same-target points <= 3x one pass; mixed <= (distinct targets + 1)x")
    print(
        "'1 pt ms' repeats one point toward class 0 (its weights partly stay in the caches); "
        "'1 pt new c' moves to the next class each call, as the classes of a mixed pass do, "
        "and 'mixed ratio' divides by it"
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    name = "engine_batching_quick" if args.quick else "engine_batching"
    (OUT_DIR / f"{name}.json").write_text(
        json.dumps({"n": n, "d": d, "k": k, "threads": threads, "rows": rows}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
