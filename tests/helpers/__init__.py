"""Helpers shared by the test suites and the benchmarks: synthetic problems, the real
backing services (PostgreSQL, Redis), server processes and expected answers."""
