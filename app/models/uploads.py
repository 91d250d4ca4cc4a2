"""Stream a ``multipart/form-data`` body to temporary files, one per part, with size limits.

Nothing is held in memory beyond one chunk (and 16 KiB of part headers); a part over its
budget (``PartBudget``: the spec, the JSON ids/records, every other part) stops the upload
with 413 naming the part, before anything parses it. The caller owns the returned ``Upload`` and must
``close()`` it (which deletes whatever was not moved into the artifact store).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.core.errors import (
    FieldError,
    InvalidRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
    TooManyRequestsError,
    UnsupportedMediaTypeError,
)

__all__ = [
    "Deadline",
    "PartBudget",
    "UploadedPart",
    "Upload",
    "UploadSlots",
    "receive_multipart",
]

MAX_HEADER_BYTES = 16 * 1024  # all header lines of one part together
UPLOAD_RETRY_AFTER_S = 5
JSON_PARTS = frozenset({"train_ids", "test_ids", "train_records", "test_records"})


@dataclass(frozen=True)
class PartBudget:
    """Byte budgets of one registration's parts (the ``RPS_MAX_*`` settings)."""

    max_part_bytes: int
    """Any part not named below (``.npy`` arrays, the booster)."""
    max_json_part_bytes: int
    """``train_ids``, ``test_ids``, ``train_records``, ``test_records``."""
    max_spec_bytes: int
    """The ``spec`` part."""
    max_parts: int

    def limit(self, name: str) -> tuple[int, str]:
        """Bytes allowed for part ``name`` and the setting that says so."""
        if name == "spec":
            return self.max_spec_bytes, "RPS_MAX_SPEC_BYTES"
        if name in JSON_PARTS:
            return self.max_json_part_bytes, "RPS_MAX_JSON_PART_BYTES"
        return self.max_part_bytes, "RPS_MAX_UPLOAD_BYTES"


MAX_BOUNDARY_CHARS = 70  # RFC 2046 §5.1.1


@dataclass(frozen=True)
class UploadedPart:
    """One received part: its form name, the client's file name, and where it lies."""

    name: str
    filename: str | None
    path: Path
    size: int

    def read_text(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass
class Upload:
    """The parts of one request, in a private temporary directory."""

    directory: Path
    parts: dict[str, UploadedPart] = field(default_factory=dict)

    def close(self) -> None:
        """Remove the folder; one that cannot be removed now (out of file descriptors) is
        tried again at the next close, and in the end by the leftover sweep."""
        for directory in [self.directory, *_UNREMOVED]:
            _remove_tree(directory)


_UNREMOVED: set[Path] = set()


def _remove_tree(directory: Path) -> None:
    try:
        shutil.rmtree(directory)
    except FileNotFoundError:
        pass
    except OSError:
        _UNREMOVED.add(directory)
        return
    _UNREMOVED.discard(directory)


class _PartWriter:
    """Parser callbacks: headers -> name/filename, data -> the current temp file."""

    def __init__(self, upload: Upload, *, budget: PartBudget) -> None:
        self.upload = upload
        self.budget = budget
        self.max_part_bytes, self.limit_setting = budget.max_part_bytes, "RPS_MAX_UPLOAD_BYTES"
        self.header_bytes = 0
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.handle: BinaryIO | None = None
        self.name = ""
        self.filename: str | None = None
        self.size = 0
        self.finished = False

    def on_end(self) -> None:
        self.finished = True

    def on_part_begin(self) -> None:
        self.headers, self.size, self.handle, self.header_bytes = {}, 0, None, 0

    def _count_header(self, size: int) -> None:
        self.header_bytes += size
        if self.header_bytes > MAX_HEADER_BYTES:
            raise PayloadTooLargeError(
                f"the headers of a multipart part exceed {MAX_HEADER_BYTES} bytes",
                errors=[FieldError("body", f"part headers over {MAX_HEADER_BYTES} bytes", "body")],
            )

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise InvalidRequestError(
                "a multipart part has no name", errors=[FieldError("body", "part without a name")]
            )
        if name in self.upload.parts or len(self.upload.parts) >= self.budget.max_parts:
            raise InvalidRequestError(
                f"part {name!r} is repeated or there are too many parts",
                errors=[FieldError(name, "repeated part or too many parts", "part")],
            )
        raw_filename = options.get(b"filename")
        self.max_part_bytes, self.limit_setting = self.budget.limit(name)
        self.name = name
        self.filename = raw_filename.decode("utf-8", "replace") if raw_filename else None
        suffix = Path(self.filename).suffix.lower()[:8] if self.filename else ""
        path = self.upload.directory / f"part-{len(self.upload.parts)}{suffix}"
        self.handle = open(path, "wb")  # noqa: SIM115 (closed in on_part_end)
        self.upload.parts[name] = UploadedPart(name, self.filename, path, 0)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.size += end - start
        if self.size > self.max_part_bytes:
            raise PayloadTooLargeError(
                f"part {self.name!r} is larger than the limit of {self.max_part_bytes} bytes "
                f"({self.limit_setting})",
                errors=[FieldError(self.name, f"larger than {self.max_part_bytes} bytes", "part")],
            )
        assert self.handle is not None
        self.handle.write(data[start:end])

    def on_part_end(self) -> None:
        if self.handle is not None:
            self.handle.close()
            part = self.upload.parts[self.name]
            self.upload.parts[self.name] = UploadedPart(
                part.name, part.filename, part.path, self.size
            )
            self.handle = None

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _malformed(reason: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"malformed multipart body: {reason}", errors=[FieldError("body", reason, "body")]
    )


def _boundary(content_type: str | None) -> bytes:
    media_type, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaTypeError("POST /models takes multipart/form-data with a boundary")
    if len(boundary) > MAX_BOUNDARY_CHARS:
        raise InvalidRequestError(
            f"the multipart boundary has {len(boundary)} characters; at most "
            f"{MAX_BOUNDARY_CHARS} are allowed (RFC 2046)",
            errors=[FieldError("content-type", "boundary longer than 70 characters", "header")],
        )
    return boundary


@dataclass(frozen=True)
class Deadline:
    """How long a body may take in all (``total_s``) and with nothing arriving (``idle_s``)."""

    total_s: float
    idle_s: float


async def _within(chunks: AsyncIterator[bytes], deadline: Deadline) -> AsyncIterator[bytes]:
    """``chunks``, or 408 once the body is late (a slow or stalled client holds a slot, a
    connection and a temp folder: it must not hold them for ever)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline.total_s
    iterator = chunks.__aiter__()
    while True:
        remaining = end - loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            chunk = await asyncio.wait_for(
                iterator.__anext__(), timeout=min(deadline.idle_s, remaining)
            )
        except StopAsyncIteration:
            return
        except TimeoutError:
            late = "in full" if remaining <= deadline.idle_s else "anything"
            limit = deadline.total_s if late == "in full" else deadline.idle_s
            raise RequestTimeoutError(
                f"the request body did not arrive {late} within {limit:g} s "
                "(RPS_UPLOAD_TIMEOUT_S / RPS_UPLOAD_IDLE_TIMEOUT_S); nothing was stored",
                errors=[FieldError("body", f"not received within {limit:g} s", "body")],
            ) from None
        yield chunk


@dataclass
class UploadSlots:
    """Caps the uploads one API process receives at once; beyond it 429 with Retry-After."""

    capacity: int
    active: int = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        if self.active >= self.capacity:
            raise TooManyRequestsError(
                f"this process is receiving {self.capacity} uploads already "
                "(RPS_MAX_CONCURRENT_UPLOADS); retry later",
                extra={"retry_after_s": UPLOAD_RETRY_AFTER_S},
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


async def receive_multipart(
    chunks: AsyncIterator[bytes],
    content_type: str | None,
    *,
    tmp_root: Path,
    budget: PartBudget,
    deadline: Deadline | None = None,
) -> Upload:
    """Stream ``chunks`` (the request body) into one temp file per part, within ``deadline``."""
    if deadline is not None:
        chunks = _within(chunks, deadline)
    boundary = _boundary(content_type)
    tmp_root.mkdir(parents=True, exist_ok=True)
    upload = Upload(Path(tempfile.mkdtemp(prefix="upload-", dir=tmp_root)))
    writer = _PartWriter(upload, budget=budget)
    callbacks = {
        name: getattr(writer, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_end",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
        if not writer.finished:
            raise _malformed("the body ends before the closing multipart boundary")
    except MultipartParseError as error:
        writer.close()
        upload.close()
        raise _malformed(str(error)) from error
    except BaseException:
        writer.close()
        upload.close()
        raise
    writer.close()
    return upload
