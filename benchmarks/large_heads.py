"""Large heads: dense H⁺ against per-class blocks + PCG (docs/math.md §10), through the engine.

Synthetic clustered data (class centres plus noise, the generating model's head, so the
probabilities are peaked as in real classifiers), float32 features memory-mapped from disk as
the service keeps them. Each variant runs in its own process so its peak RSS is its own:

    python -m benchmarks.large_heads --case k10      # n=50,000 d=512  k=10: dense, blocks, auto
    python -m benchmarks.large_heads --case k100     # n=50,000 d=768  k=100: blocks vs reference
    python -m benchmarks.large_heads --case k1000    # n=50,000 d=1024 k=1000: blocks vs reference
    python -m benchmarks.large_heads --case k1000 --damping 1e-4 --http   # ... and through HTTP
    python -m benchmarks.large_heads --case n1m      # n=1,000,000 d=128 k=10: auto vs blocks

The reference is dense where it fits, otherwise the same PCG run to a relative residual of
1e-10 (float64 products). Reported per variant: precompute seconds, query p50 (one test
point, cold: each point is new), peak RSS, the load average around the run, and agreement
with the reference over the contributions of every training point (median Spearman, top-10
positive + negative overlap, max |c − c_ref| / max |c_ref|) and of the self-scores (Spearman).

``--threads N`` sets the engine variants' torch threads. On a 2-core machine with a third
process busy on one core, 2 threads made the PCG queries erratic (k=100: 17-22 s a query with
2 threads, 5.3-5.5 s with 1; k=10: 1.6-8.4 s with 2, 3.0-3.3 s with 1): many small operations
wait for the descheduled thread. Report the threads with the figures.

``--http`` adds the variant ``http`` to the same run: ``rps serve`` + ``rps worker`` on
PostgreSQL and Redis (as ``benchmarks.http_bench``'s production deployment), the head
registered through the API with ``hessian: blocks`` (and the run's damping), the time from
registration to ready, ``GET /explain`` for every stored test point (p50), the peak RSS of
the worker's processes (sampled VmHWM of the worker and its children) and of the API
process, and whether each answer's top-10 positive and negative training points are the
reference's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

CASES = {
    "k10": {
        "n": 50_000,
        "d": 512,
        "k": 10,
        "separation": 2.0,
        "variants": ["dense", "blocks", "auto"],
    },
    "k100": {
        "n": 50_000,
        "d": 768,
        "k": 100,
        "separation": 3.0,
        "variants": ["reference", "blocks"],
    },
    "k1000": {
        "n": 50_000,
        "d": 1024,
        "k": 1000,
        "separation": 3.0,
        "variants": ["reference", "blocks"],
        "test_points": 3,
    },
    "n1m": {
        "n": 1_000_000,
        "d": 128,
        "k": 10,
        "separation": 2.0,
        "variants": ["auto", "blocks"],
    },
    "small": {
        "n": 3_000,
        "d": 32,
        "k": 10,
        "separation": 2.0,
        "variants": ["dense", "blocks", "auto"],
    },
    "k100-n10k-d256": {
        "n": 10_000,
        "d": 256,
        "k": 100,
        "separation": 2.0,
        "variants": ["reference", "blocks"],
    },
    "k1000-n10k-d256": {
        "n": 10_000,
        "d": 256,
        "k": 1000,
        "separation": 3.0,
        "variants": ["reference", "blocks"],
    },
    "k1000-n5k-d64": {
        "n": 5_000,
        "d": 64,
        "k": 1000,
        "separation": 3.0,
        "variants": ["reference", "blocks"],
    },
    "small100": {
        "n": 3_000,
        "d": 32,
        "k": 100,
        "separation": 3.0,
        "variants": ["reference", "blocks"],
    },
}
"""Separation 2 gives 98% training accuracy at k = 10 and 75% at k = 1000 with almost every P_ic
above the support threshold; 3 gives 99% at k = 1000 with about a quarter of the pairs kept,
but such peaked heads are nearly singular on S: at k = 100, n = 10,000, d = 256, separation 3,
PCG without damping stopped at 500 iterations with a relative residual of 0.1. Pass
``--damping`` (for example 1e-4) for the separation-3 cases."""
TEST_POINTS = 5
TOP_K = 10
REFERENCE_TOLERANCE = 1e-10


def _problem(case: str, directory: Path) -> dict:
    """Write the case's arrays to ``directory`` once; return their paths and sizes."""
    from tests.helpers.problems import clustered_problem

    spec = CASES[case]
    marker = directory / "problem.json"
    if marker.exists():
        return json.loads(marker.read_text())
    problem = clustered_problem(
        n_train=spec["n"],
        n_test=spec.get("test_points", TEST_POINTS),
        dim=spec["d"],
        num_classes=spec["k"],
        separation=spec["separation"],
        seed=7,
    )
    for name, array in problem.items():
        np.save(directory / f"{name}.npy", array)
    info = {"case": case, **{key: spec[key] for key in ("n", "d", "k", "separation")}}
    marker.write_text(json.dumps(info))
    return info


def _run_variant(case: str, variant: str, directory: Path, damping: float) -> dict:
    """Fit and query one variant in this process; contributions saved for the comparison."""
    import representer.pcg
    from representer import LinearHead, LJEConfig, contributions, explain, fit

    if variant == "reference":  # exact operator: no pair left out of the sums
        representer.pcg.SUPPORT_RTOL = 0.0

    weights = np.load(directory / "weights.npy")
    bias = np.load(directory / "bias.npy")
    train = np.load(directory / "train_features.npy", mmap_mode="r")
    labels = np.load(directory / "train_labels.npy")
    test = np.load(directory / "test_features.npy").astype(np.float64)
    hessian = {"reference": "blocks"}.get(variant, variant)
    tolerance = REFERENCE_TOLERANCE if variant == "reference" else 1e-6
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    state = fit(
        LinearHead(weights, bias),
        train,
        labels,
        config=LJEConfig(
            hessian=hessian, cg_tolerance=tolerance, weight_layout="kernel", damping=damping
        ),
    )
    precompute_s = time.perf_counter() - started
    query_s, solvers = [], []
    timed_rows = 0 if variant == "reference" else test.shape[0]  # the reference is not timed
    for row in range(timed_rows):
        started = time.perf_counter()
        [answer] = explain(state, train, test[row : row + 1], top_k=TOP_K)
        query_s.append(time.perf_counter() - started)
        solvers.append(
            [answer.solver.name, answer.solver.iterations, answer.solver.relative_residual]
        )
    predicted = np.argmax(test @ weights.T + bias, axis=1)
    started = time.perf_counter()
    values = contributions(state, train, test, target_classes=predicted)
    batch_s = time.perf_counter() - started
    np.save(directory / f"contributions_{variant}.npy", values)
    np.save(directory / f"self_scores_{variant}.npy", np.asarray(state.self_scores))
    fill = None
    if "hessian_probabilities" in state.arrays:
        from representer.pcg import class_support, support_threshold

        probabilities = np.asarray(state.arrays["hessian_probabilities"])
        threshold = support_threshold(probabilities)
        fill = float(class_support(torch.from_numpy(probabilities), threshold).float().mean())
    return {
        "variant": variant,
        "hessian_used": state.meta["hessian_used"],
        "precompute_s": round(precompute_s, 2),
        "query_p50_s": round(float(np.median(query_s)), 3) if query_s else None,
        "all_test_points_s": round(batch_s, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "threads": torch.get_num_threads(),
        "solver": solvers[0] if solvers else None,
        "support_fill": fill,
        "diagnostics": {
            key: value
            for key, value in state.diagnostics.items()
            if key.startswith("newton") or key == "train_accuracy"
        },
    }


def _process_tree(root: int) -> list[int]:
    """``root`` and its descendants (from /proc/<pid>/task/<tid>/children)."""
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                stack += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def _peak_rss_gib(pids: list[int]) -> float:
    """The largest VmHWM (peak resident set) among ``pids``, in GiB."""
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024**2


def _run_http(case: str, directory: Path, damping: float) -> dict:
    """Register through the API, wait until ready, explain every stored test point."""
    import threading

    from benchmarks.http_bench import deployment
    from rps.client import Client

    problem = {
        name: np.load(directory / f"{name}.npy")
        for name in ("weights", "bias", "train_features", "train_labels", "test_features")
    }
    peaks = {"worker": 0.0, "serve": 0.0}
    stop = threading.Event()

    def sample(data_dir: str) -> None:  # this deployment's processes: by their RPS_DATA_DIR
        marker = f"RPS_DATA_DIR={data_dir}".encode()
        while not stop.is_set():
            for key in peaks:
                for line in subprocess.run(
                    ["pgrep", "-f", f"rps {key}"], capture_output=True, text=True, check=False
                ).stdout.split():
                    try:
                        environment = Path(f"/proc/{line}/environ").read_bytes().split(b"\0")
                    except OSError:
                        continue
                    if marker in environment:
                        peaks[key] = max(peaks[key], _peak_rss_gib(_process_tree(int(line))))
            stop.wait(0.5)

    with tempfile.TemporaryDirectory(prefix="large_heads_http_") as scratch:
        workdir = Path(scratch)
        with deployment("production", workdir) as deployed:
            base_url = deployed[0] if isinstance(deployed, tuple) else deployed  # (url, pid)
            sampler = threading.Thread(
                target=sample, args=(str(workdir / "production"),), daemon=True
            )
            sampler.start()
            load_before = os.getloadavg()[0]
            with Client(base_url, timeout=3600) as client:
                started = time.perf_counter()
                model = client.register_linear(
                    problem["weights"],
                    problem["bias"],
                    problem["train_features"],
                    problem["train_labels"],
                    spec={"lje": {"hessian": "blocks", "damping": damping}},
                    name=f"large-heads-{case}",
                    methods=["lje"],
                    test_features=problem["test_features"],
                )
                upload_s = time.perf_counter() - started
                client.wait_ready(model.id, timeout=7200, progress=False)
                ready_s = time.perf_counter() - started
                query_s, answers = [], []
                for row in range(problem["test_features"].shape[0]):
                    started = time.perf_counter()
                    answers.append(client.explain(model.id, test_id=str(row), k=TOP_K))
                    query_s.append(time.perf_counter() - started)
            stop.set()
            load_after = os.getloadavg()[0]
    top = [
        {
            "positive": [item.train_index for item in answer.positive],
            "negative": [item.train_index for item in answer.negative],
        }
        for answer in answers
    ]
    (directory / "http_top.json").write_text(json.dumps(top))
    first = answers[0].solver
    return {
        "variant": "http",
        "upload_s": round(upload_s, 2),
        "register_to_ready_s": round(ready_s, 2),
        "query_p50_s": round(float(np.median(query_s)), 3),
        "query_s": [round(value, 3) for value in query_s],
        "peak_rss_gib_worker": round(peaks["worker"], 2),
        "peak_rss_gib_serve": round(peaks["serve"], 2),
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "solver": [first.name, first.iterations, first.relative_residual] if first else None,
    }


def _http_agreement(directory: Path, reference: str) -> dict:
    """Top-10 positive and negative indices over HTTP against the reference's contributions."""
    exact = np.load(directory / f"contributions_{reference}.npy")
    top = json.loads((directory / "http_top.json").read_text())
    same, overlaps = [], []
    for answer, exact_row in zip(top, exact, strict=True):
        order = np.argsort(exact_row)
        positive, negative = set(order[-TOP_K:].tolist()), set(order[:TOP_K].tolist())
        same.append(set(answer["positive"]) == positive and set(answer["negative"]) == negative)
        overlaps.append(
            (len(set(answer["positive"]) & positive) + len(set(answer["negative"]) & negative))
            / (2 * TOP_K)
        )
    return {"identical_top10": int(sum(same)), "of": len(same), "top10_overlap": min(overlaps)}


def _rank_correlation(left: np.ndarray, right: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(left, right)[0])


def _agreement(directory: Path, variant: str, reference: str) -> dict:
    values = np.load(directory / f"contributions_{variant}.npy")
    exact = np.load(directory / f"contributions_{reference}.npy")
    overlaps, correlations = [], []
    for row, exact_row in zip(values, exact, strict=True):
        correlations.append(_rank_correlation(row, exact_row))
        top = set(np.argsort(row)[-TOP_K:]) | set(np.argsort(row)[:TOP_K])
        top_exact = set(np.argsort(exact_row)[-TOP_K:]) | set(np.argsort(exact_row)[:TOP_K])
        overlaps.append(len(top & top_exact) / (2 * TOP_K))
    scores = np.load(directory / f"self_scores_{variant}.npy")
    exact_scores = np.load(directory / f"self_scores_{reference}.npy")
    return {
        "spearman_median": round(float(np.median(correlations)), 6),
        "top10_overlap": round(float(np.mean(overlaps)), 3),
        "max_relative_difference": float(np.abs(values - exact).max() / np.abs(exact).max()),
        "self_score_spearman": round(_rank_correlation(scores, exact_scores), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--variants", help="comma-separated subset of the case's variants")
    parser.add_argument("--directory", type=Path, help="keep the arrays here (default: a temp dir)")
    parser.add_argument("--damping", type=float, default=0.0, help="lje damping δ (all variants)")
    parser.add_argument("--http", action="store_true", help="also register and query over HTTP")
    parser.add_argument(
        "--threads", type=int, help="torch threads of the engine variants (default: torch's)"
    )
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant
    args = parser.parse_args()
    if args.variant == "http":
        print(json.dumps(_run_http(args.case, args.directory, args.damping)))
        return
    if args.variant:
        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(_run_variant(args.case, args.variant, args.directory, args.damping)))
        return
    with tempfile.TemporaryDirectory(prefix=f"large_heads_{args.case}_") as scratch:
        directory = args.directory or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        info = _problem(args.case, directory)
        variants = args.variants.split(",") if args.variants else CASES[args.case]["variants"]
        if args.http and "http" not in variants:
            variants.append("http")
        results = []
        for variant in variants:
            command = [sys.executable, "-m", "benchmarks.large_heads", "--case", args.case]
            command += ["--variant", variant, "--directory", str(directory)]
            command += ["--damping", str(args.damping)]
            command += ["--threads", str(args.threads)] if args.threads else []
            finished = subprocess.run(command, capture_output=True, text=True, check=False)
            if finished.returncode != 0:
                results.append({"variant": variant, "error": finished.stderr[-2000:]})
            else:
                results.append(json.loads(finished.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
        reference = variants[0]
        for result in results[1:]:
            if "error" in result or "error" in results[0]:
                continue
            if result["variant"] == "http":
                result["agreement_with_" + reference] = _http_agreement(directory, reference)
            else:
                result["agreement_with_" + reference] = _agreement(
                    directory, result["variant"], reference
                )
        print(json.dumps({"problem": info, "damping": args.damping, "results": results}, indent=2))


if __name__ == "__main__":
    main()
