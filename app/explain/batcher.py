"""Scoring passes shared by concurrent requests (one batcher per API process).

A query costs one pass over a model's training data (its n×D features, or one class's
n×D materialised weights). Requests for the same key — (model id, version, method) — that
arrive while a pass for that key runs, or within ``window_s`` of the first one, are scored
together in the next pass, so the data is read once for all of them; the engine groups the
rows of a pass by target class. Each request still gets exactly the answer it would get
alone: the scorer returns one outcome per item, an exception for an item that failed alone.

How it runs, without a thread of its own: the first request for an idle key *leads*: it
waits the window, takes every waiting item of its key, scores them and hands the results
out. If more items arrived meanwhile, the oldest of them is woken to lead the next pass.
A bounded number of items may wait in the whole process; beyond it ``submit`` raises
``QueueFullError`` (the API answers 429 with Retry-After).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from app.core.metrics import (
    EXPLAIN_BATCH_SIZE,
    EXPLAIN_PASS_SECONDS,
    EXPLAIN_QUEUE_DEPTH,
    EXPLAIN_QUEUE_WAIT,
)

__all__ = ["PassBatcher", "QueueFullError", "Scorer"]

Item = TypeVar("Item")
Result = TypeVar("Result")
Scorer = Callable[[Sequence[Item]], Sequence[Result | BaseException]]
"""Scores a batch: one outcome per item, in order (an exception for an item that failed)."""


class QueueFullError(Exception):
    """More items wait for a pass than the process allows."""


@dataclass(eq=False)
class _Ticket(Generic[Item, Result]):
    item: Item
    enqueued_at: float = field(default_factory=time.perf_counter)
    signal: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    result: Result | None = None
    error: BaseException | None = None


class PassBatcher(Generic[Item, Result]):
    """Combine concurrent items per key into shared scoring passes.

    Parameters
    ----------
    window_s : float
        How long the leader of an idle key waits for company before its pass (0: none;
        items still combine whenever a pass of their key is already running).
    max_waiting : int
        Items allowed to wait across every key of this process.
    """

    def __init__(self, *, window_s: float, max_waiting: int) -> None:
        self._window_s = window_s
        self._max_waiting = max_waiting
        self._lock = threading.Lock()
        self._waiting: dict[Hashable, list[_Ticket]] = {}
        self._active: set[Hashable] = set()
        self._waiting_count = 0

    @property
    def waiting(self) -> int:
        """Items queued for a pass right now (all keys)."""
        return self._waiting_count

    def submit(self, key: Hashable, item: Item, score: Scorer) -> Result:
        """Score ``item`` in a pass of ``key``; its result, or its own exception raised."""
        ticket: _Ticket = _Ticket(item)
        with self._lock:
            if self._waiting_count >= self._max_waiting:
                raise QueueFullError(f"{self._waiting_count} explanations are already waiting")
            self._waiting.setdefault(key, []).append(ticket)
            self._waiting_count += 1
            EXPLAIN_QUEUE_DEPTH.set(self._waiting_count)
            leads = key not in self._active
            self._active.add(key)
        if leads:
            self._lead(key, score)
        while not ticket.finished:
            ticket.signal.wait()
            ticket.signal.clear()
            if not ticket.finished:  # woken to lead the next pass of its key
                self._lead(key, score)
        if ticket.error is not None:
            raise ticket.error
        return ticket.result  # type: ignore[return-value]

    def _lead(self, key: Hashable, score: Scorer) -> None:
        if self._window_s > 0:
            time.sleep(self._window_s)
        with self._lock:
            batch = self._waiting.pop(key, [])
            self._waiting_count -= len(batch)
            EXPLAIN_QUEUE_DEPTH.set(self._waiting_count)
        try:
            self._score(batch, score)
        finally:
            with self._lock:
                queued = self._waiting.get(key)
                if queued:
                    queued[0].signal.set()  # the oldest waiting item leads the next pass
                else:
                    self._active.discard(key)

    @staticmethod
    def _score(batch: list[_Ticket], score: Scorer) -> None:
        started = time.perf_counter()
        for ticket in batch:
            EXPLAIN_QUEUE_WAIT.observe(started - ticket.enqueued_at)
        EXPLAIN_BATCH_SIZE.observe(len(batch))
        try:
            outcomes = list(score([ticket.item for ticket in batch]))
            if len(outcomes) != len(batch):
                raise RuntimeError(f"scorer answered {len(outcomes)} of {len(batch)} items")
        except BaseException as error:  # every item of the pass shares the failure
            outcomes = [error] * len(batch)
        elapsed = time.perf_counter() - started
        for ticket, outcome in zip(batch, outcomes, strict=True):
            EXPLAIN_PASS_SECONDS.observe(elapsed)
            if isinstance(outcome, BaseException):
                ticket.error = outcome
            else:
                ticket.result = outcome
            ticket.finished = True
            ticket.signal.set()
