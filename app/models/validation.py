"""Checks of uploaded parts: ``.npy`` arrays (no pickles), JSON ids and records.

Every failure is an ``InvalidRequestError`` naming the part, so a rejected registration
tells the caller exactly which part to fix.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from app.core.errors import FieldError, InvalidRequestError, PayloadTooLargeError
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
MAX_ID_JSON_BYTES = MAX_ID_CHARS * 12 + 4  # every character a \uXXXX surrogate pair, quotes, comma
MAX_JSON_DEPTH = 64  # nesting levels of a JSON part (records are small texts, rows, images)


def reject(part: str, message: str) -> InvalidRequestError:
    """The 422 error for one bad part."""
    return InvalidRequestError(f"{part}: {message}", errors=[FieldError(part, message, "part")])


def _read_header(part: UploadedPart) -> np.dtype:
    """The array's dtype, after checking that the file holds exactly the array (no more bytes)."""
    with open(part.path, "rb") as handle:
        if handle.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise reject(part.name, "not a .npy file (pickles and other formats are refused)")
        handle.seek(0)
        try:
            version = npy_format.read_magic(handle)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy version {version}")
            reader = (
                npy_format.read_array_header_1_0
                if version == (1, 0)
                else npy_format.read_array_header_2_0
            )
            shape, _, dtype = reader(handle)
        except (ValueError, EOFError) as error:
            raise reject(part.name, f"unreadable .npy header: {error}") from error
        data_offset = handle.tell()
    if dtype.hasobject:
        raise reject(part.name, "pickled object arrays are refused (allow_pickle=False)")
    expected = data_offset + dtype.itemsize * math.prod(shape)
    size = part.path.stat().st_size
    if size != expected:
        raise reject(
            part.name,
            f"the file holds {size} bytes; a {dtype} array of shape {shape} needs "
            f"{expected} (nothing may follow the array)",
        )
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


def _check_finite(part: str, array: np.ndarray, *, stored_dtype: str) -> None:
    """NaN/inf, also after the cast to ``stored_dtype`` (float64 1e300 is inf in float32)."""
    for start in range(0, array.shape[0], FINITE_CHECK_ROWS):
        with np.errstate(over="ignore"):
            block = np.asarray(array[start : start + FINITE_CHECK_ROWS], dtype=stored_dtype)
        if not np.all(np.isfinite(block)):
            raise reject(
                part, f"holds NaN or infinite values (or values beyond the {stored_dtype} range)"
            )


def _is_real(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)


def check_matrix(
    part: str,
    array: np.ndarray,
    *,
    rows: int | None = None,
    cols: int | None = None,
    stored_dtype: str = "float64",
) -> None:
    """A finite real matrix of shape (rows, cols) (``None`` = any size >= 1), finite as ``stored_dtype``."""
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
    _check_finite(part, array, stored_dtype=stored_dtype)


def check_vector(part: str, array: np.ndarray, *, length: int) -> None:
    """A finite real vector of shape (length,)."""
    if array.shape != (length,):
        raise reject(part, f"must have shape ({length},), got {array.shape}")
    if not _is_real(array):
        raise reject(part, f"must hold real numbers, got dtype {array.dtype}")
    _check_finite(part, array, stored_dtype="float64")


def check_labels(part: str, array: np.ndarray, *, length: int, num_classes: int) -> None:
    """Integer labels of shape (length,) with values in 0..num_classes-1."""
    if array.ndim != 1 or array.shape[0] != length:
        raise reject(part, f"must have shape ({length},), got {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise reject(part, f"must hold integers, got dtype {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= num_classes:
        raise reject(part, f"values must lie in 0..{num_classes - 1}, found {low}..{high}")


def _refuse_constant(token: str) -> float:
    raise ValueError(f"{token} is not a JSON number")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"{token} overflows a 64-bit float")
    return value


def _unstorable(value: Any) -> str | None:
    """Why a parsed JSON value cannot be stored and answered, if it cannot.

    Strings must suit a database text column (no NUL, no lone UTF-16 surrogate), and
    nesting must stay within ``MAX_JSON_DEPTH`` (answers embed records a few levels deep
    and their serialiser stops at about 250). Walked iteratively: no recursion limit.
    """
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, str):
            if "\x00" in item:
                return "strings must not contain NUL (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "strings must not contain lone UTF-16 surrogates"
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            pending.extend((key, depth + 1) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
    return None


def load_json_part(part: UploadedPart) -> Any:
    """Parse a JSON part: strict JSON (no NaN/Infinity, finite numbers), storable and answerable."""
    try:
        value = json.loads(
            part.read_text(), parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError is a ValueError
        raise reject(part.name, f"not valid JSON: {error}") from error
    except RecursionError:
        raise reject(part.name, "not valid JSON: nested too deeply") from None
    problem = _unstorable(value)
    if problem is not None:
        raise reject(part.name, problem)
    return value


def check_ids(part: UploadedPart | None, *, length: int) -> list[str]:
    """``length`` distinct id strings; default ``"0".."length-1"``."""
    if part is None:
        return [str(index) for index in range(length)]
    budget = length * MAX_ID_JSON_BYTES + 64
    size = part.path.stat().st_size
    if size > budget:  # refused before parsing: a list of tiny strings costs ~20x its bytes
        raise PayloadTooLargeError(
            f"{part.name}: {size} bytes cannot be {length} ids of at most {MAX_ID_CHARS} "
            f"characters (at most {budget} bytes)",
            errors=[FieldError(part.name, f"larger than {budget} bytes for {length} ids", "part")],
        )
    ids = load_json_part(part)
    if not isinstance(ids, list) or not all(isinstance(value, str) for value in ids):
        raise reject(part.name, "must be a JSON array of strings")
    if len(ids) != length:
        raise reject(part.name, f"must hold {length} ids, got {len(ids)}")
    if any(not value or len(value) > MAX_ID_CHARS for value in ids):
        raise reject(part.name, f"ids must be 1..{MAX_ID_CHARS} characters")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(value for value in ids if value in seen or _remember(seen, value))
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


def _remember(seen: set[str], value: str) -> bool:
    """Add ``value`` to ``seen``; False, so it can stand inside a search."""
    seen.add(value)
    return False
