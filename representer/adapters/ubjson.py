"""A bounded UBJSON reader for XGBoost's ``.ubj`` model files (no native code).

Covers what XGBoost writes (objects with length-prefixed keys, strings, integers, floats,
booleans, null, plain and strongly typed arrays ``[$T#N``) per the UBJSON draft 12 spec.
Typed numeric arrays become NumPy arrays read straight from the bytes. Every length is
checked against the bytes left before anything is allocated, and nesting is bounded, so a
hostile file costs at most about its own size.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

__all__ = ["UBJSONError", "decode_ubjson"]

_NUMBERS = {  # marker -> (struct format, numpy big-endian dtype)
    b"i": (">b", ">i1"),
    b"U": (">B", ">u1"),
    b"I": (">h", ">i2"),
    b"l": (">i", ">i4"),
    b"L": (">q", ">i8"),
    b"d": (">f", ">f4"),
    b"D": (">d", ">f8"),
}
_INTEGERS = (b"i", b"U", b"I", b"l", b"L")


class UBJSONError(ValueError):
    """The bytes are not UBJSON this reader accepts."""


class _Reader:
    def __init__(self, data: bytes, *, max_depth: int) -> None:
        self.data = memoryview(data)
        self.position = 0
        self.max_depth = max_depth

    def take(self, count: int) -> memoryview:
        if count < 0 or self.position + count > len(self.data):
            raise UBJSONError(f"{count} bytes wanted at offset {self.position}, file too short")
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def marker(self) -> bytes:
        while True:
            marker = bytes(self.take(1))
            if marker != b"N":  # no-op
                return marker

    def number(self, marker: bytes) -> int | float:
        form, _ = _NUMBERS[marker]
        (value,) = struct.unpack(form, self.take(struct.calcsize(form)))
        return value

    def length(self) -> int:
        marker = self.marker()
        if marker not in _INTEGERS:
            raise UBJSONError(f"a length must be an integer, got marker {marker!r}")
        value = int(self.number(marker))
        if value < 0 or value > len(self.data) - self.position:
            raise UBJSONError(f"length {value} exceeds the {len(self.data) - self.position} bytes left")  # fmt: skip
        return value

    def string(self) -> str:
        try:
            return str(self.take(self.length()), "utf-8")
        except UnicodeDecodeError as error:
            raise UBJSONError(f"invalid UTF-8 in a string: {error}") from None

    def value(self, marker: bytes, depth: int) -> Any:
        if marker in _NUMBERS:
            return self.number(marker)
        if marker == b"S" or marker == b"H":
            return self.string()
        if marker == b"C":
            return str(self.take(1), "latin-1")
        if marker in (b"T", b"F"):
            return marker == b"T"
        if marker == b"Z":
            return None
        if marker in (b"[", b"{"):
            if depth >= self.max_depth:
                raise UBJSONError(f"nested deeper than {self.max_depth} levels")
            return self.array(depth + 1) if marker == b"[" else self.obj(depth + 1)
        raise UBJSONError(f"unknown marker {marker!r} at offset {self.position - 1}")

    def container_header(self) -> tuple[bytes | None, int | None]:
        """``$T`` and ``#N`` after an opening bracket, if present."""
        kind = count = None
        if bytes(self.data[self.position : self.position + 1]) == b"$":
            self.position += 1
            kind = bytes(self.take(1))
            if bytes(self.take(1)) != b"#":
                raise UBJSONError("a typed container needs a count")
            count = self.length()
        elif bytes(self.data[self.position : self.position + 1]) == b"#":
            self.position += 1
            count = self.length()
        return kind, count

    def array(self, depth: int) -> Any:
        kind, count = self.container_header()
        if kind in _NUMBERS and count is not None:
            dtype = np.dtype(_NUMBERS[kind][1])
            raw = self.take(count * dtype.itemsize)
            array = np.frombuffer(raw, dtype=dtype)
            return array.astype(np.int64 if kind in _INTEGERS else np.float64)
        if count is not None:
            return [
                self.value(kind if kind is not None else self.marker(), depth) for _ in range(count)
            ]
        items: list[Any] = []
        while True:
            marker = self.marker()
            if marker == b"]":
                return items
            items.append(self.value(marker, depth))

    def obj(self, depth: int) -> dict[str, Any]:
        kind, count = self.container_header()
        result: dict[str, Any] = {}
        remaining = count
        while remaining is None or remaining > 0:
            if remaining is None and bytes(self.data[self.position : self.position + 1]) == b"}":
                self.position += 1
                return result
            key = self.string()
            result[key] = self.value(kind if kind is not None else self.marker(), depth)
            if remaining is not None:
                remaining -= 1
        return result


def decode_ubjson(data: bytes, *, max_depth: int = 32) -> Any:
    """The value encoded in ``data`` (one UBJSON value, nothing after it)."""
    reader = _Reader(data, max_depth=max_depth)
    value = reader.value(reader.marker(), 0)
    if reader.position != len(reader.data):
        raise UBJSONError(f"{len(reader.data) - reader.position} bytes after the value")
    return value
