"""Logging of every server process: text for people, JSON lines for log collectors.

``RPS_LOG_FORMAT=json`` writes one JSON object a line with ``time``, ``level``, ``logger``,
``message`` and, where known, ``request_id`` (API lines), ``job_id`` and ``model_id`` (worker
lines), so a request, the job it queued and the worker's lines about that job can be joined.
The ids come from context variables set with :func:`log_context`: the API's request middleware
sets ``request_id`` (echoed as the ``X-Request-ID`` response header) and the job runner sets
``job_id`` and ``model_id`` for the duration of a job.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

__all__ = ["CONTEXT_FIELDS", "configure_logging", "log_context", "current_context"]

CONTEXT_FIELDS = ("request_id", "job_id", "model_id")
_context: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"rps_log_{name}", default=None) for name in CONTEXT_FIELDS
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


def current_context() -> dict[str, str]:
    """The ids set in this context (only those that are set)."""
    values = {name: variable.get() for name, variable in _context.items()}
    return {name: value for name, value in values.items() if value is not None}


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Attach ``ids`` (``request_id``, ``job_id``, ``model_id``) to every line logged inside."""
    unknown = set(ids) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields: {sorted(unknown)}")
    tokens = [(_context[name], _context[name].set(value)) for name, value in ids.items()]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


class _ContextFilter(logging.Filter):
    """Copies the context ids onto each record (``record.context`` is their text form)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current_context()
        for name in CONTEXT_FIELDS:
            setattr(record, name, ids.get(name))
        record.context = "".join(f" [{name}={value}]" for name, value in ids.items())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line; exceptions as a ``exception`` string field."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Route every logger (ours, uvicorn's, Dramatiq's) to stderr in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "dramatiq"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    logging.getLogger("alembic").setLevel(logging.WARNING)
