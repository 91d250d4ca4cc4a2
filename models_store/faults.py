"""Which low-level errors mean "storage full or read-only" and "out of file descriptors".

Both the API (507 / 503 problems) and the workers (a failed job's problem body) classify
``OSError`` by its errno here, so the two sides name a full disk the same way.
"""

from __future__ import annotations

import errno

__all__ = ["STORAGE_ERRNOS", "DESCRIPTOR_ERRNOS", "is_storage_error", "is_descriptor_error"]

STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
"""No space left, quota exceeded, read-only file system, file over RLIMIT_FSIZE."""

DESCRIPTOR_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
"""Too many open files in this process / in the system."""


def is_storage_error(error: BaseException) -> bool:
    """True for an ``OSError`` that says the store cannot take more bytes (or any write).

    numpy reports a full disk as a short write, an ``OSError`` without errno
    (``"1176000 requested and 432096 written"``); that counts too.
    """
    if not isinstance(error, OSError):
        return False
    if error.errno is None:
        return "requested and" in str(error) and "written" in str(error)
    return error.errno in STORAGE_ERRNOS


def is_descriptor_error(error: BaseException) -> bool:
    """True for an ``OSError`` that says the process ran out of file descriptors."""
    return isinstance(error, OSError) and error.errno in DESCRIPTOR_ERRNOS
