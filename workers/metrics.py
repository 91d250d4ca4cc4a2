"""Prometheus metrics of the precompute (default registry: visible on the embedded
server's ``/metrics``; a separate worker process may expose its own)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["JOB_DURATION", "JOB_OUTCOMES"]

JOB_DURATION = Histogram(
    "rps_job_duration_seconds",
    "Wall time of precompute jobs by outcome.",
    ["outcome"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
JOB_OUTCOMES = Counter(
    "rps_jobs_finished_total", "Precompute jobs finished, by outcome.", ["outcome"]
)
