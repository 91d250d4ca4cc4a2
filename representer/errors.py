"""The one exception family the engine raises.

Every error names the argument (or the quantity) that is wrong and, where there is one,
what to do about it. Callers that only care "was my input bad" catch ``RepresenterError``.
"""

from __future__ import annotations

__all__ = [
    "RepresenterError",
    "InvalidInputError",
    "SingularSystemError",
    "MemoryLimitError",
]


class RepresenterError(ValueError):
    """Base class of every error the engine raises on purpose.

    Attributes
    ----------
    argument : str or None
        The name of the offending argument (``"train_labels"``, ``"damping"``, ...),
        so a service can point at the bad part of a request.
    """

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class InvalidInputError(RepresenterError):
    """An argument has the wrong shape, dtype, range, or holds non-finite values."""


class SingularSystemError(RepresenterError):
    """The Hessian system could not be factorised (singular or non-finite).

    The message tells the caller to raise ``damping``.
    """


class MemoryLimitError(RepresenterError):
    """The exact Hessian (or a materialised array) would not fit the memory budget."""
