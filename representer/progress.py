"""Progress reporting for the precompute: map a stage's own [0, 1] onto part of the whole."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressCallback", "stage_progress"]

ProgressCallback = Callable[[float], None]


def stage_progress(
    progress: ProgressCallback | None, start: float, stop: float
) -> ProgressCallback:
    """A callback for one stage that reports ``start + fraction·(stop − start)`` to ``progress``."""

    def report(fraction: float) -> None:
        if progress is not None:
            progress(min(1.0, max(0.0, start + (stop - start) * min(1.0, max(0.0, fraction)))))

    return report
