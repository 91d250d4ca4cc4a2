"""Shared helpers of tests/service: the service handle, problems, multipart parts, waiting."""

from __future__ import annotations

import asyncio
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.context import ServiceContext
from rps_server.settings import Settings

READY_TIMEOUT_S = 90.0
ALICE_KEY, BOB_KEY = "alice-secret-key", "bob-secret-key"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@dataclass
class Service:
    """One running service: settings, app, context and the worker thread's runner."""

    name: str
    settings: Settings
    app: Any

    @property
    def context(self) -> ServiceContext:
        return self.app.state.context

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        return httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=ALICE, timeout=60
        )

    def artifact_files(self) -> list[Path]:
        root = self.settings.artifact_dir
        return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []

    def upload_files(self) -> list[Path]:
        root = self.settings.upload_tmp_dir
        return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []

    def model_count(self) -> int:
        from sqlalchemy import func, select

        from models_store import Model

        with self.context.sessions() as session:
            return session.scalar(select(func.count()).select_from(Model))


def linear_parts(
    problem: dict[str, np.ndarray], spec: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """Multipart ``files=`` for httpx from a problem and a spec."""
    files: dict[str, Any] = {"spec": (None, json.dumps(spec))}
    for name, array in problem.items():
        files[name] = (f"{name}.npy", npy_bytes(array), "application/octet-stream")
    for name, value in extra.items():
        files[name] = (None, json.dumps(value)) if not isinstance(value, tuple) else value
    return files


async def wait_ready(
    client: httpx.AsyncClient, model_id: str, *, timeout: float = READY_TIMEOUT_S
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = (await client.get(f"/models/{model_id}")).json()
        if body["status"] in ("ready", "failed"):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"model {model_id} not ready after {timeout} s: {body}")


@dataclass(frozen=True)
class ReadyModel:
    id: str
    problem: dict[str, np.ndarray]
    spec: dict[str, Any]
    status: dict[str, Any]
    train_ids: list[str]
    test_ids: list[str]


def register_ready(
    service: Service, problem: dict[str, np.ndarray], spec: dict[str, Any]
) -> ReadyModel:
    """Register through HTTP and wait until ready (from a sync fixture)."""
    n, m = len(problem["train_labels"]), len(problem["test_features"])
    train_ids = [f"tr-{i}" for i in range(n)]
    test_ids = [f"te-{i}" for i in range(m)]
    records = [{"row": i} for i in range(n)]

    async def go() -> ReadyModel:
        async with service.client() as client:
            files = linear_parts(
                problem, spec, train_ids=train_ids, test_ids=test_ids, train_records=records
            )
            response = await client.post("/models", files=files)
            assert response.status_code == 202, response.text
            status = await wait_ready(client, response.json()["id"])
            assert status["status"] == "ready", status
            return ReadyModel(status["id"], problem, spec, status, train_ids, test_ids)

    return asyncio.run(go())
