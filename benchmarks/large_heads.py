"""Large heads: dense H⁺ against per-class blocks + PCG (docs/math.md §10), through the engine.

Synthetic clustered data (class centres plus noise, the generating model's head, so the
probabilities are peaked as in real classifiers), float32 features memory-mapped from disk as
the service keeps them. Each variant runs in its own process so its peak RSS is its own:

    python -m benchmarks.large_heads --case k10      # n=50,000 d=512  k=10: dense, blocks, auto
    python -m benchmarks.large_heads --case k100     # n=50,000 d=768  k=100: blocks vs reference
    python -m benchmarks.large_heads --case k1000    # n=50,000 d=1024 k=1000: blocks vs reference

The reference is dense where it fits, otherwise the same PCG run to a relative residual of
1e-10 (float64 products). Reported per variant: precompute seconds, query p50 (one test
point, cold: each point is new), peak RSS, the load average around the run, and agreement
with the reference over the contributions of every training point (median Spearman, top-10
positive + negative overlap, max |c − c_ref| / max |c_ref|) and of the self-scores (Spearman).
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
        n_test=TEST_POINTS,
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
    for row in range(test.shape[0]):
        started = time.perf_counter()
        [answer] = explain(state, train, test[row : row + 1], top_k=TOP_K)
        query_s.append(time.perf_counter() - started)
        solvers.append(
            [answer.solver.name, answer.solver.iterations, answer.solver.relative_residual]
        )
    predicted = np.argmax(test @ weights.T + bias, axis=1)
    values = contributions(state, train, test, target_classes=predicted)
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
        "query_p50_s": round(float(np.median(query_s)), 3),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "solver": solvers[0],
        "support_fill": fill,
        "diagnostics": {
            key: value
            for key, value in state.diagnostics.items()
            if key.startswith("newton") or key == "train_accuracy"
        },
    }


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
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(_run_variant(args.case, args.variant, args.directory, args.damping)))
        return
    with tempfile.TemporaryDirectory(prefix=f"large_heads_{args.case}_") as scratch:
        directory = args.directory or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        info = _problem(args.case, directory)
        variants = args.variants.split(",") if args.variants else CASES[args.case]["variants"]
        results = []
        for variant in variants:
            command = [sys.executable, "-m", "benchmarks.large_heads", "--case", args.case]
            command += ["--variant", variant, "--directory", str(directory)]
            command += ["--damping", str(args.damping)]
            finished = subprocess.run(command, capture_output=True, text=True, check=False)
            if finished.returncode != 0:
                results.append({"variant": variant, "error": finished.stderr[-2000:]})
            else:
                results.append(json.loads(finished.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
        reference = variants[0]
        for result in results[1:]:
            if "error" not in result and "error" not in results[0]:
                result["agreement_with_" + reference] = _agreement(
                    directory, result["variant"], reference
                )
        print(json.dumps({"problem": info, "damping": args.damping, "results": results}, indent=2))


if __name__ == "__main__":
    main()
