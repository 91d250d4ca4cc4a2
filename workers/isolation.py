"""Run one precompute in a child process, so a native crash fails that job, not the worker.

XGBoost and the BLAS libraries are native code: a bug they hit (or a hostile file we failed
to refuse) ends the process with SIGSEGV. Run in the worker's own process, that took the
whole worker down, and in the embedded server every request with it. Here the computation
runs in a child (``forkserver``: forked from a small server process that has the engine
imported, so a job starts in milliseconds; ``spawn`` where there is none). The child sends
progress and then its result, or the problem body of its failure, through a pipe; a child
that dies without either is a ``PrecomputeCrashed`` naming the signal. The parent polls, so
Dramatiq's time limit (an ``Interrupt`` raised in the parent's thread) still stops the job:
the child is killed and the interrupt goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from models_store import ArtifactStore
from workers.computation import ModelInputs, PrecomputeResult, compute_result
from workers.problems import problem_body

__all__ = ["ChildJobFailed", "PrecomputeCrashed", "compute_in_child"]

logger = logging.getLogger(__name__)
POLL_S = 0.2
PROGRESS_EVERY_S = 0.1
_PRELOAD = ["workers.computation", "representer", "representer.adapters"]


class PrecomputeCrashed(RuntimeError):
    """The child process died without sending a result (a signal, or ``os._exit``)."""

    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode
        if exitcode is not None and exitcode < 0:
            try:
                how = f"was killed by {signal.Signals(-exitcode).name}"
            except ValueError:
                how = f"was killed by signal {-exitcode}"
        else:
            how = f"exited with code {exitcode} without a result"
        super().__init__(f"the precompute process {how}")


class ChildJobFailed(RuntimeError):
    """The computation raised in the child; ``problem`` is the problem body it made of it."""

    def __init__(self, problem: dict[str, Any]) -> None:
        self.problem = problem
        super().__init__(str(problem.get("detail", "precompute failed")))


def _context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def compute_in_child(
    store: ArtifactStore,
    inputs: ModelInputs,
    *,
    progress: Callable[[float], None],
    **options: Any,
) -> PrecomputeResult:
    """``compute_result(store, inputs, progress=..., **options)`` in a child process.

    Raises
    ------
    ChildJobFailed
        The computation raised; its problem body is attached.
    PrecomputeCrashed
        The child died (SIGSEGV, SIGKILL, ...) without an answer.
    """
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_child_main,
        args=(sender, str(store.root), inputs, options),
        name=f"precompute-{inputs.model_id[:8]}",
        daemon=True,
    )
    child.start()
    sender.close()  # the child holds the only writing end: EOF once it is gone
    try:
        while True:
            if receiver.poll(POLL_S):
                try:
                    kind, payload = receiver.recv()
                except EOFError:
                    break
                if kind == "progress":
                    progress(payload)
                    continue
                child.join(timeout=30)
                if kind == "result":
                    return payload
                raise ChildJobFailed(payload)
            if not child.is_alive() and not receiver.poll(0):
                break
        child.join(timeout=30)
        raise PrecomputeCrashed(child.exitcode)
    except BaseException:
        if child.is_alive():  # an Interrupt, or an error while handling a message
            child.kill()
            child.join(timeout=30)
        raise
    finally:
        receiver.close()


def _child_main(
    sender: Connection, store_root: str, inputs: ModelInputs, options: dict[str, Any]
) -> None:
    """The child: compute, then send ("result", result) or ("failed", problem body)."""
    last = [0.0]

    def report(fraction: float) -> None:
        now = time.monotonic()
        if fraction >= 1.0 or now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            sender.send(("progress", float(fraction)))

    try:
        result = compute_result(ArtifactStore(Path(store_root)), inputs, progress=report, **options)
    except Exception as error:
        logger.exception("precompute of model %s failed", inputs.model_id)
        sender.send(("failed", problem_body(error)))
    else:
        sender.send(("result", result))
    finally:
        sender.close()
