"""Memory-heavy hostile requests against a real ``rps serve`` whose address space is capped.

The server runs under ``RLIMIT_AS`` (set in the child before it execs ``rps``), so a
regression that parses an oversized body again fails this test (MemoryError, a dead
process) instead of exhausting the machine. Before the budgets, a 114 MB ``POST /explain``
body cost 0.9 GB and a 48 MB ``train_ids`` part 0.7 GB; a booster with a cycle never
answered. Each case must be a 4xx (or the connection closed after a 413 while the client
was still sending), the server must stay up, and its peak RSS must barely move.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.boosters import booster_document, trees_of
from tests.helpers.processes import RPS_SCRIPT, ServiceProcess, free_port
from tests.helpers.service import npy_bytes

pytestmark = pytest.mark.slow

ADDRESS_SPACE_BYTES = 3 * 1024**3  # the idle server maps about 1.1 GB
PEAK_GROWTH_LIMIT_MB = 250.0
CHUNK = 1024**2
LIMIT_AND_EXEC = (
    "import os, resource, sys; limit = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_AS, (limit, limit)); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


@pytest.fixture
def capped_server(embedded_backend) -> ServiceProcess:
    port = free_port()
    env = {**embedded_backend.env, "MALLOC_ARENA_MAX": "2", "RPS_LOG_LEVEL": "WARNING"}
    argv = [sys.executable, "-c", LIMIT_AND_EXEC, str(ADDRESS_SPACE_BYTES), str(RPS_SCRIPT)]
    argv += ["serve", "--host", "127.0.0.1", "--port", str(port)]
    process = ServiceProcess(
        name="capped-serve", argv=argv, env=env, log_path=embedded_backend.data_dir / "serve.log"
    )
    process.base_url = f"http://127.0.0.1:{port}"
    embedded_backend.processes.append(process)
    return process.start().wait_healthy()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def streamed(head: bytes, filler: bytes, total_bytes: int, tail: bytes):
    """A body of about ``total_bytes`` made lazily (the test process never holds it)."""
    yield head
    block = filler * (CHUNK // len(filler))
    for _ in range(total_bytes // len(block)):
        yield block
    yield tail


def send(server: ServiceProcess, path: str, **request) -> int | str:
    """The status answered, or the transport error if the server closed while we sent."""
    try:
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            return client.post(path, **request).status_code
    except httpx.TransportError as error:
        return type(error).__name__


def multipart(parts: dict[str, bytes], boundary: str = "hostileboundary"):
    for name, data in parts.items():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.bin"\r\n\r\n'.encode()  # fmt: skip
        yield from ([data] if isinstance(data, bytes) else data)
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def hostile_cases() -> dict:
    document, arrays = booster_document()
    cyclic = json.loads(json.dumps(document))
    trees_of(cyclic)[0]["left_children"][0] = 0
    rows = {name: npy_bytes(array) for name, array in arrays.items()}
    spec = json.dumps({"kind": "xgboost"}).encode()
    return {
        "explain_body_300mb": (
            "/explain",
            streamed(
                b'{"model_id": "m", "features": [',
                b"[0.123456789,1.5,2.5,3.5],",
                300 * CHUNK,
                b"[0]]}",
            ),  # fmt: skip
            "application/json",
        ),
        "spec_part_200mb": (
            "/models",
            multipart(
                {"spec": streamed(b'{"kind": "linear", "name": "', b"x", 200 * CHUNK, b'"}')}
            ),
            "multipart/form-data; boundary=hostileboundary",
        ),
        "train_ids_part_120mb": (
            "/models",
            multipart(
                {
                    "spec": spec,
                    "booster": json.dumps(document).encode(),
                    **rows,
                    "train_ids": streamed(b"[", b'"1",', 120 * CHUNK, b'"x"]'),
                }
            ),
            "multipart/form-data; boundary=hostileboundary",
        ),
        "cyclic_booster": (
            "/models",
            multipart({"spec": spec, "booster": json.dumps(cyclic).encode(), **rows}),
            "multipart/form-data; boundary=hostileboundary",
        ),
    }


def test_hostile_bodies_under_an_address_space_limit(capped_server):
    baseline = peak_rss_mb(capped_server.pid)
    outcomes = {}
    for case, (path, body, content_type) in hostile_cases().items():
        started = time.monotonic()
        outcomes[case] = (
            send(capped_server, path, content=body, headers={"content-type": content_type}),
            round(time.monotonic() - started, 1),
        )
        assert capped_server.alive(), f"{case} killed the server:\n{capped_server.log_tail()}"
        health = httpx.get(f"{capped_server.base_url}/healthz", timeout=10)
        assert health.status_code == 200, case
    growth = peak_rss_mb(capped_server.pid) - baseline
    for case, (status, seconds) in outcomes.items():
        assert status in (413, 422) or isinstance(status, str), (case, status)
        assert seconds < 60, (case, seconds)
    assert outcomes["cyclic_booster"][0] == 422, outcomes
    assert growth < PEAK_GROWTH_LIMIT_MB, (growth, outcomes)
    listing = httpx.get(f"{capped_server.base_url}/models", timeout=10).json()
    assert listing["total"] == 0, listing  # nothing hostile was stored
