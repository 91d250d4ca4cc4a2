"""Uploads that would hold the server for ever, under a live server: slow and stalled
clients are answered 408, uploads beyond the concurrency limit 429, descriptor exhaustion
never a 500, and what crashed uploads left on disk is swept at start.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from rps.client import Client
from tests.helpers.problems import linear_problem
from tests.helpers.processes import Backend, ServiceProcess, free_port

pytestmark = [pytest.mark.slow]

UPLOAD_TIMEOUT_S = 4.0
IDLE_TIMEOUT_S = 2.0
CONCURRENT_UPLOADS = 2
GRACE_S = 60.0
ANSWER_TIMEOUT_S = 30.0
PART_HEAD = (
    b'--b\r\nContent-Disposition: form-data; name="train_features"; filename="f.npy"\r\n\r\n'
)


def start_server(backend: Backend, name: str, *, nofile: int | None = None) -> ServiceProcess:
    port = free_port()
    extra = {
        "RPS_UPLOAD_TIMEOUT_S": str(UPLOAD_TIMEOUT_S),
        "RPS_UPLOAD_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
        "RPS_MAX_CONCURRENT_UPLOADS": str(CONCURRENT_UPLOADS),
        "RPS_LEFTOVER_GRACE_S": str(GRACE_S),
    }
    arguments = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    process = backend.spawn(name, *arguments, port=port, extra_env=extra)
    if nofile is not None:
        os.system(f"prlimit --pid {process.pid} --nofile={nofile}:{nofile}")
    return process.wait_healthy()


def open_upload(server: ServiceProcess, *, length: int = 1_000_000) -> socket.socket:
    """A registration whose body starts but does not finish."""
    port = int(server.base_url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S)
    sock.sendall(
        b"POST /models HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
        + PART_HEAD
    )
    return sock


def status_line(sock: socket.socket) -> str:
    try:
        head = sock.recv(4096)
    except OSError as error:
        return type(error).__name__
    return head.split(b"\r\n", 1)[0].decode() if head else "closed"


def temp_uploads(data_dir: Path) -> list[Path]:
    folder = data_dir / "tmp"
    return list(folder.iterdir()) if folder.exists() else []


def _aged(path: Path, seconds: float) -> None:
    moment = time.time() - seconds
    for item in [path, *path.rglob("*")]:
        os.utime(item, (moment, moment))


def test_slow_stalled_and_excess_uploads_are_refused_and_leave_nothing(embedded_backend):
    data_dir = embedded_backend.data_dir
    crashed = data_dir / "tmp" / "upload-crashed"
    crashed.mkdir(parents=True)
    (crashed / "part-0.npy").write_bytes(b"\0" * 3_000_000)
    orphan = data_dir / "artifacts" / "models" / str(uuid.uuid4()) / "inputs"
    orphan.mkdir(parents=True)
    (orphan / "train_features.npy").write_bytes(b"\0" * 1000)
    _aged(crashed, 2 * GRACE_S)
    _aged(orphan.parent, 2 * GRACE_S)

    server = start_server(embedded_backend, "serve")
    deadline = time.monotonic() + 10
    while crashed.exists() or orphan.exists():  # swept at start
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.1)

    # a client sending one byte a second is cut off at the total deadline
    slow, started = open_upload(server), time.monotonic()
    slow.settimeout(0.5)
    answer = ""
    while not answer and time.monotonic() - started < ANSWER_TIMEOUT_S:
        try:
            slow.sendall(b"x")
            head = slow.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            answer = "closed"
            break
        answer = head.split(b"\r\n", 1)[0].decode() if head else "closed"
    took = time.monotonic() - started
    slow.close()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert UPLOAD_TIMEOUT_S - 0.5 <= took < UPLOAD_TIMEOUT_S + 5, took

    # two stalled clients hold both slots: a third upload is 429, then both get 408
    stalled = [open_upload(server), open_upload(server)]
    time.sleep(0.5)
    with Client(server.base_url) as client:
        problem = linear_problem(n=50, d=4, k=2)
        refused = httpx.post(
            f"{server.base_url}/models",
            files={"spec": (None, '{"kind": "linear"}')},
            timeout=ANSWER_TIMEOUT_S,
        )
        assert refused.status_code == 429, refused.text
        assert refused.json()["type"] == "urn:rps:problem:too-many-requests"
        assert int(refused.headers["Retry-After"]) >= 1
        assert [status_line(sock) for sock in stalled] == ["HTTP/1.1 408 Request Timeout"] * 2
        for sock in stalled:
            sock.close()
        model = client.register_linear(
            problem["weights"], problem["bias"], problem["train_features"], problem["train_labels"]
        )
        assert client.wait_ready(model["id"], timeout=120, progress=False)["status"] == "ready"
    assert temp_uploads(data_dir) == []


def test_descriptor_exhaustion_answers_503_or_429_never_500(embedded_backend):
    server = start_server(embedded_backend, "serve", nofile=80)
    sockets, answers = [], Counter()
    for _ in range(120):
        try:
            sockets.append(open_upload(server, length=200))
        except OSError as error:
            answers[type(error).__name__] += 1
    for sock in sockets:
        answers[status_line(sock)] += 1
        sock.close()
    served = {line for line in answers if line.startswith("HTTP/1.1")}
    assert not any(" 500 " in line for line in served), answers
    assert len(served) >= 2, answers  # the storm did reach the limits
    assert served <= {
        "HTTP/1.1 408 Request Timeout",
        "HTTP/1.1 429 Too Many Requests",
        "HTTP/1.1 503 Service Unavailable",
    }, answers
    assert server.alive(), server.log_tail()
    time.sleep(1.0)
    assert httpx.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
    # folders that could not be removed without descriptors go with the next upload
    after = httpx.post(f"{server.base_url}/models", files={"spec": (None, "{}")}, timeout=30)
    assert after.status_code == 422, after.text
    assert temp_uploads(embedded_backend.data_dir) == []
