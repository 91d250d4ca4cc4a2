"""Checks of uploaded parts: ``.npy`` arrays (no pickles), JSON ids and records.

Every failure is an ``InvalidRequestError`` naming the part, so a rejected registration
tells the caller exactly which part to fix.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from app.core.errors import FieldError, InvalidRequestError
from app.models.uploads import UploadedPart

__all__ = [
    "reject",
    "load_npy",
    "check_matrix",
    "check_vector",
    "check_labels",
    "load_json_part",
    "check_ids",
    "check_records",
    "FINITE_CHECK_ROWS",
]

FINITE_CHECK_ROWS = 8192  # rows per block when scanning a memmap for NaN/inf
NPY_MAGIC = b"\x93NUMPY"
MAX_ID_CHARS = 200


def reject(part: str, message: str) -> InvalidRequestError:
    """The 422 error for one bad part."""
    return InvalidRequestError(f"{part}: {message}", errors=[FieldError(part, message, "part")])


def _read_header(part: UploadedPart) -> np.dtype:
    with open(part.path, "rb") as handle:
        if handle.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise reject(part.name, "not a .npy file (pickles and other formats are refused)")
        handle.seek(0)
        try:
            version = npy_format.read_magic(handle)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy version {version}")
            reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            _, _, dtype = reader(handle)
        except (ValueError, EOFError) as error:
            raise reject(part.name, f"unreadable .npy header: {error}") from error
    if dtype.hasobject:
        raise reject(part.name, "pickled object arrays are refused (allow_pickle=False)")
    return dtype


def load_npy(part: UploadedPart) -> np.ndarray:
    """Open an uploaded ``.npy`` read-only (memory-mapped), refusing pickles.

    Returns
    -------
    ndarray, memory-mapped (or in memory when empty)
    """
    _read_header(part)
    try:
        array = np.load(part.path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise reject(part.name, f"not a valid .npy file: {error}") from error
    if not isinstance(array, np.ndarray):
        raise reject(part.name, "expected a single .npy array")
    return array


def _check_finite(part: str, array: np.ndarray) -> None:
    for start in range(0, array.shape[0], FINITE_CHECK_ROWS):
        if not np.all(np.isfinite(array[start : start + FINITE_CHECK_ROWS])):
            raise reject(part, "holds NaN or infinite values")


def _is_real(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)


def check_matrix(part: str, array: np.ndarray, *, rows: int | None = None, cols: int | None = None) -> None:
    """A finite real matrix of shape (rows, cols) (``None`` = any size >= 1)."""
    if array.ndim != 2:
        raise reject(part, f"must be 2-d, got shape {array.shape}")
    if not _is_real(array):
        raise reject(part, f"must hold real numbers, got dtype {array.dtype}")
    if rows is not None and array.shape[0] != rows:
        raise reject(part, f"must have {rows} rows, got shape {array.shape}")
    if cols is not None and array.shape[1] != cols:
        raise reject(part, f"must have {cols} columns, got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise reject(part, f"must not be empty, got shape {array.shape}")
    _check_finite(part, array)


def check_vector(part: str, array: np.ndarray, *, length: int) -> None:
    """A finite real vector of shape (length,)."""
    if array.shape != (length,):
        raise reject(part, f"must have shape ({length},), got {array.shape}")
    if not _is_real(array):
        raise reject(part, f"must hold real numbers, got dtype {array.dtype}")
    _check_finite(part, array)


def check_labels(part: str, array: np.ndarray, *, length: int, num_classes: int) -> None:
    """Integer labels of shape (length,) with values in 0..num_classes-1."""
    if array.ndim != 1 or array.shape[0] != length:
        raise reject(part, f"must have shape ({length},), got {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise reject(part, f"must hold integers, got dtype {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= num_classes:
        raise reject(part, f"values must lie in 0..{num_classes - 1}, found {low}..{high}")


def load_json_part(part: UploadedPart) -> Any:
    """Parse a JSON part."""
    try:
        return json.loads(part.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise reject(part.name, f"not valid JSON: {error}") from error


def check_ids(part: UploadedPart | None, *, length: int) -> list[str]:
    """``length`` distinct id strings; default ``"0".."length-1"``."""
    if part is None:
        return [str(index) for index in range(length)]
    ids = load_json_part(part)
    if not isinstance(ids, list) or not all(isinstance(value, str) for value in ids):
        raise reject(part.name, "must be a JSON array of strings")
    if len(ids) != length:
        raise reject(part.name, f"must hold {length} ids, got {len(ids)}")
    if any(not value or len(value) > MAX_ID_CHARS for value in ids):
        raise reject(part.name, f"ids must be 1..{MAX_ID_CHARS} characters")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(value for value in ids if value in seen or seen.add(value))
        raise reject(part.name, f"ids must be distinct; {duplicate!r} is repeated")
    return ids


def check_records(part: UploadedPart | None, *, length: int) -> list[Any] | None:
    """A JSON array of ``length`` records (any JSON values), or None."""
    if part is None:
        return None
    records = load_json_part(part)
    if not isinstance(records, list):
        raise reject(part.name, "must be a JSON array")
    if len(records) != length:
        raise reject(part.name, f"must hold {length} records, got {len(records)}")
    return records
