"""Engine benchmark: RPS-LJE precompute and one explain query against plain baselines.

For each case (synthetic float32 features in a memory-mapped file, a non-converged head):

(a) the LJE precompute (``representer.fit``) against a plain torch GEMM doing the same
    number of floating-point operations (float64, like the precompute; float32 shown too);
(b) one ``explain`` query (one test point, top-10) against one streaming pass over the
    n×d float32 features (a float32 matrix-vector product), medians over repeats;
(c) both query layouts of docs/math.md §2.4 at the main size: the kernel form (R*, M; a query
    is one (n, D)x(D, k) GEMM) and materialised per-class weights W (k, n, D) float32 (a
    query is one matvec; 2 n (kD)^2 more precompute flops, k·n·D·4 bytes).

Each case runs in its own process so its peak RSS is its own. Targets: (a) <= 2x, (b) <= 2x.

    .venv/bin/python -m benchmarks.engine_bench                 # every case (tens of minutes)
    .venv/bin/python -m benchmarks.engine_bench --case main     # n=50,000 d=512 k=10, auto layout
    .venv/bin/python -m benchmarks.engine_bench --quick         # small sizes, seconds
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from representer import LJEConfig, Method, WeightLayout, explain, fit
from tests.helpers.problems import memmapped_problem

OUT_DIR = Path(__file__).resolve().parent / "out"
CASES = {
    "main": (50_000, 512, 10, WeightLayout.AUTO),
    "main-kernel": (50_000, 512, 10, WeightLayout.KERNEL),
    "k2": (50_000, 512, 2, WeightLayout.AUTO),
    "large": (200_000, 512, 10, WeightLayout.AUTO),
}
QUICK_CASES = {
    "main": (4_000, 64, 10, WeightLayout.AUTO),
    "main-kernel": (4_000, 64, 10, WeightLayout.KERNEL),
    "k2": (4_000, 64, 2, WeightLayout.AUTO),
    "large": (16_000, 64, 10, WeightLayout.AUTO),
}
STAGES = {
    "first pass": 0.1,
    "hessian pass": 0.6,
    "factor + inverse": 0.65,
    "weights/self-scores": 1.0,
}
"""Progress fractions at which ``fit_lje`` finishes each stage."""
GEMM_BLOCK = 4096
"""Row block of the reference GEMMs, the same order as the engine's blocks."""


@dataclass(frozen=True)
class CaseResult:
    case: str
    n: int
    d: int
    k: int
    layout: str
    threads: int
    precompute_s: float
    stage_s: dict
    precompute_gflop: float
    gemm64_equivalent_s: float
    gemm32_equivalent_s: float
    precompute_vs_gemm64: float
    query_median_ms: float
    stream_median_ms: float
    query_vs_stream: float
    batch64_per_point_ms: float
    state_bytes: int
    features_bytes: int
    peak_rss_bytes: int
    sum_residual_abs: float


def precompute_flops(n: int, d: int, k: int, layout: str) -> float:
    """Floating-point operations of ``fit_lje`` (multiply-add = 2), leading terms."""
    dim, outputs = d + 1, (1 if k == 2 else k)
    hessian = n * dim * dim * outputs * (outputs + 1)  # block rows c' >= c, 2 n D² each
    moment = 2 * n * dim * dim if outputs > 1 else 0
    passes = 2 * (4 * n * dim * outputs)  # logits + gradient, two passes
    size = outputs * dim
    factor_and_inverse = size**3 / 3 + 2 * size**3  # potrf + cholesky_solve against I
    if layout == WeightLayout.MATERIALISED.value:
        tail = 2 * n * size * size + 2 * n * size  # G* M, then W_i[ỹ_i]·φ̃_i
    else:
        tail = 2 * n * dim * size + 2 * n * size  # Φ̃_c [B_c1 … B_ck], then the quadratic form
    newton_logits = 2 * n * dim * outputs
    return float(hessian + moment + passes + factor_and_inverse + tail + newton_logits)


def gemm_equivalent_seconds(
    flops: float, dim: int, width: int, dtype: torch.dtype, cap_s: float
) -> float:
    """Seconds a plain (D×b)@(b×width) GEMM loop needs for ``flops``; measured up to cap_s, then scaled."""
    left = torch.randn(dim, GEMM_BLOCK, dtype=dtype)
    right = torch.randn(GEMM_BLOCK, width, dtype=dtype)
    per_call = 2.0 * dim * GEMM_BLOCK * width
    left @ right  # warm-up
    done, start = 0.0, time.perf_counter()
    while done < flops and time.perf_counter() - start < cap_s:
        left @ right
        done += per_call
    elapsed = time.perf_counter() - start
    return elapsed * flops / done


def median_ms(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def run_case(
    case: str, n: int, d: int, k: int, layout: WeightLayout, repeats: int, gemm_cap_s: float
) -> CaseResult:
    with tempfile.TemporaryDirectory(prefix="engine_bench_") as scratch:
        features, labels, head = memmapped_problem(n=n, d=d, k=k, directory=Path(scratch))
        marks: dict[str, float] = {}

        def progress(fraction: float) -> None:
            for stage, end in STAGES.items():
                if fraction >= end - 1e-12 and stage not in marks:
                    marks[stage] = time.perf_counter()

        start = time.perf_counter()
        config = LJEConfig(lr=0.01, weight_layout=layout)
        state = fit(head, features, labels, method=Method.LJE, config=config, progress=progress)
        layout_used = state.meta["weight_layout_used"]
        precompute_s = time.perf_counter() - start
        previous, stage_s = start, {}
        for stage in STAGES:
            stage_s[stage] = round(marks.get(stage, previous) - previous, 3)
            previous = marks.get(stage, previous)
        flops = precompute_flops(n, d, k, layout_used)
        width = head.num_outputs * (d + 1)
        gemm64 = gemm_equivalent_seconds(flops, d + 1, width, torch.float64, gemm_cap_s)
        gemm32 = gemm_equivalent_seconds(flops, d + 1, width, torch.float32, gemm_cap_s)
        rng = np.random.default_rng(1)
        tests = rng.normal(size=(64, d))
        calls = iter(range(10**9))
        query = median_ms(
            lambda: explain(state, features, tests[(row := next(calls) % 64) : row + 1], top_k=10),
            repeats,
        )
        vector = rng.normal(size=d).astype(np.float32)
        stream = median_ms(lambda: features @ vector, repeats)
        batch = median_ms(
            lambda: explain(state, features, tests, top_k=10), max(3, repeats // 5)
        ) / len(tests)
        residual = max(abs(e.residual) for e in explain(state, features, tests[:8], top_k=10))
        return CaseResult(
            case=case,
            n=n,
            d=d,
            k=k,
            layout=layout_used,
            threads=torch.get_num_threads(),
            precompute_s=round(precompute_s, 3),
            stage_s=stage_s,
            precompute_gflop=round(flops / 1e9, 1),
            gemm64_equivalent_s=round(gemm64, 3),
            gemm32_equivalent_s=round(gemm32, 3),
            precompute_vs_gemm64=round(precompute_s / gemm64, 2),
            query_median_ms=round(query, 2),
            stream_median_ms=round(stream, 2),
            query_vs_stream=round(query / stream, 2),
            batch64_per_point_ms=round(batch, 2),
            state_bytes=int(sum(np.asarray(a).nbytes for a in state.arrays.values())),
            features_bytes=int(features.nbytes),
            peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            sum_residual_abs=float(residual),
        )


def print_table(results: list[dict]) -> None:
    mib = 1024**2
    rows = [
        ("n / d / k", lambda r: f"{r['n']} / {r['d']} / {r['k']}"),
        ("query layout", lambda r: r["layout"]),
        ("torch threads", lambda r: r["threads"]),
        ("LJE precompute (s)", lambda r: r["precompute_s"]),
        ("  stages (s)", lambda r: ", ".join(f"{v}" for v in r["stage_s"].values())),
        ("precompute GFLOP", lambda r: r["precompute_gflop"]),
        ("same-flop GEMM f64 (s)", lambda r: r["gemm64_equivalent_s"]),
        ("same-flop GEMM f32 (s)", lambda r: r["gemm32_equivalent_s"]),
        ("(a) precompute / GEMM f64", lambda r: f"{r['precompute_vs_gemm64']}x  (target <= 2)"),
        ("explain 1 pt top-10 (ms, median)", lambda r: r["query_median_ms"]),
        ("f32 matvec over n×d (ms, median)", lambda r: r["stream_median_ms"]),
        ("(b) query / stream", lambda r: f"{r['query_vs_stream']}x  (target <= 2)"),
        ("explain batch of 64 (ms / point)", lambda r: r["batch64_per_point_ms"]),
        ("state size (MiB)", lambda r: round(r["state_bytes"] / mib)),
        ("features file (MiB)", lambda r: round(r["features_bytes"] / mib)),
        ("peak RSS (MiB)", lambda r: round(r["peak_rss_bytes"] / mib)),
        ("max |residual| (8 pts)", lambda r: f"{r['sum_residual_abs']:.3g}"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"{'':<{width}}  " + "  ".join(f"{r['case']:>22}" for r in results))
    for label, value in rows:
        print(f"{label:<{width}}  " + "  ".join(f"{str(value(r)):>22}" for r in results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--case", action="append", choices=sorted(CASES), help="repeatable; default: all"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--repeats", type=int, default=21, help="query repeats (median reported)")
    parser.add_argument(
        "--gemm-cap-s",
        type=float,
        default=30.0,
        help="measure the reference GEMM at most this long, then scale",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=OUT_DIR / "engine_bench.json",
        help="where to write the results",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = QUICK_CASES if args.quick else CASES
    if args.worker:
        n, d, k, layout = sizes[args.worker]
        result = run_case(
            args.worker, n, d, k, layout, repeats=args.repeats, gemm_cap_s=args.gemm_cap_s
        )
        print(json.dumps(asdict(result)))
        return 0
    results = []
    for case in args.case or list(CASES):
        command = [
            sys.executable,
            "-m",
            "benchmarks.engine_bench",
            "--worker",
            case,
            "--repeats",
            str(args.repeats),
            "--gemm-cap-s",
            str(args.gemm_cap_s),
        ]
        if args.quick:
            command.append("--quick")
        print(
            f"running case {case} {sizes[case][:3]} {sizes[case][3].value} ...",
            file=sys.stderr,
            flush=True,
        )
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
