"""A daemon thread that runs one action at start and then every ``interval_s``.

The job sweep of the workers and the leftover sweep of the API use it; an action that
raises is logged and tried again at the next tick (a dependency may be down meanwhile).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["PeriodicThread"]

logger = logging.getLogger(__name__)


@dataclass
class PeriodicThread:
    """Runs ``action`` now and every ``interval_s`` until ``stop()``."""

    name: str
    interval_s: float
    action: Callable[[], object]
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run_once(self) -> None:
        try:
            self.action()
        except Exception as error:  # a dependency is away: the next tick tries again
            logger.warning("%s failed: %s", self.name, error)

    def _run(self) -> None:
        while True:
            self.run_once()
            if self._stop.wait(self.interval_s):
                return

    def start(self) -> PeriodicThread:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
