"""Faults of the dependencies, in process: the problems they answer and what they keep.

The same faults under live processes (PostgreSQL stopped, a full or read-only disk) are in
tests/integration/test_dependency_faults.py.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from models_store import make_sessionmaker, sweep_leftovers
from models_store.artifacts import TRASH_GRACE_S
from tests.helpers.problems import linear_problem
from tests.helpers.service import linear_parts, wait_ready

UNREACHABLE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"
SPEC = {"name": "faults", "kind": "linear", "methods": ["lje"]}


def assert_problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"urn:rps:problem:{slug}", body
    return body


@pytest.mark.parametrize(
    "path", ["/models", "/models/{id}", "/explain?model_id={id}&test_id=te-0", "/metrics"]
)
async def test_database_down_is_503_with_retry_after(service, binary_model, monkeypatch, path):
    unreachable = create_engine(UNREACHABLE_POSTGRES)
    monkeypatch.setattr(service.context, "engine", unreachable)
    monkeypatch.setattr(service.context, "sessions", make_sessionmaker(unreachable))
    monkeypatch.setattr(service.context, "read_sessions", make_sessionmaker(unreachable))
    async with service.client() as client:
        response = await client.get(path.format(id=binary_model.id))
    body = assert_problem(response, 503, "dependency-unavailable")
    assert body["dependency"] == "database"
    assert int(response.headers["Retry-After"]) >= 1


async def test_readyz_reports_low_disk(service, monkeypatch):
    free_mb = service.context.store.free_bytes() // 1024**2
    monkeypatch.setattr(service.context.settings, "min_free_disk_mb", free_mb + 1024)
    async with service.client() as client:
        response = await client.get("/readyz")
    body = assert_problem(response, 503, "unavailable")
    assert body["failing"] == ["artifact_store"]
    assert "low disk" in body["errors"][0]["message"]


async def test_upload_below_the_free_space_floor_is_507_and_keeps_nothing(service, monkeypatch):
    free_mb = service.context.store.free_bytes() // 1024**2
    monkeypatch.setattr(service.context.settings, "min_free_disk_mb", free_mb + 1024)
    models_before, files_before = service.model_count(), set(service.artifact_files())
    async with service.client() as client:
        response = await client.post("/models", files=linear_parts(linear_problem(), SPEC))
    body = assert_problem(response, 507, "insufficient-storage")
    assert "RPS_MIN_FREE_DISK_MB" in body["detail"]
    assert service.model_count() == models_before
    assert set(service.artifact_files()) == files_before
    assert service.upload_files() == []


async def test_delete_removes_files_and_cached_explanations(service):
    if service.context.results is None:
        pytest.skip("the explain cache needs Redis (the postgres backend)")
    cache = service.context.results._client  # the real Redis the service writes to
    async with service.client() as client:
        created = await client.post("/models", files=linear_parts(linear_problem(seed=7), SPEC))
        model_id = created.json()["id"]
        assert (await wait_ready(client, model_id))["status"] == "ready"
        for test_id in ("0", "1"):
            answer = await client.get("/explain", params={"model_id": model_id, "test_id": test_id})
            assert answer.status_code == 200, answer.text
        pattern = f"{service.context.results.namespace}:explain:{model_id}:*"
        assert len(list(cache.scan_iter(match=pattern))) == 2
        assert service.context.store.model_dir(model_id).exists()

        assert (await client.delete(f"/models/{model_id}")).status_code == 204
    assert list(cache.scan_iter(match=pattern)) == []
    assert not service.context.store.model_dir(model_id).exists()
    trash = service.context.store.trash_dir
    assert not trash.exists() or not any(p.name.startswith(model_id) for p in trash.iterdir())


async def test_uploads_beyond_the_concurrency_limit_are_429(service, monkeypatch):
    slots = service.context.upload_slots
    monkeypatch.setattr(slots, "active", slots.capacity)  # every slot held by slow clients
    async with service.client() as client:
        response = await client.post("/models", files=linear_parts(linear_problem(), SPEC))
    body = assert_problem(response, 429, "too-many-requests")
    assert "RPS_MAX_CONCURRENT_UPLOADS" in body["detail"]
    assert int(response.headers["Retry-After"]) >= 1
    assert service.upload_files() == []


def _age(path: Path, seconds: float) -> None:
    moment = time.time() - seconds
    for item in [path, *path.rglob("*")]:
        os.utime(item, (moment, moment))


async def test_leftovers_older_than_the_grace_period_are_swept(service, binary_model):
    store, tmp_root, grace_s = service.context.store, service.settings.upload_tmp_dir, 60.0
    crashed_upload = tmp_root / "upload-crashed"
    (crashed_upload / "part-0.npy").parent.mkdir(parents=True)
    (crashed_upload / "part-0.npy").write_bytes(b"\0" * 4096)
    _age(crashed_upload, 2 * grace_s)
    live_upload = tmp_root / "upload-streaming"
    live_upload.mkdir()
    orphan = store.model_dir(str(uuid.uuid4()))
    (orphan / "inputs").mkdir(parents=True)
    (orphan / "inputs" / "train_features.npy").write_bytes(b"\0" * 4096)
    _age(orphan, 2 * grace_s)
    young_orphan = store.model_dir(str(uuid.uuid4()))  # files stored, row not committed yet
    young_orphan.mkdir(parents=True)
    _age(store.model_dir(binary_model.id), 2 * grace_s)  # old, but its row exists
    store.trash_dir.mkdir(parents=True, exist_ok=True)
    old_trash = store.trash_dir / f"{uuid.uuid4()}.{int(time.time() - 2 * TRASH_GRACE_S)}.ab12"
    old_trash.mkdir()
    fresh_trash = store.trash_dir / f"{uuid.uuid4()}.{int(time.time())}.cd34"
    fresh_trash.mkdir()  # a deletion still committing: it may move back

    swept = sweep_leftovers(store, tmp_root, service.context.sessions, grace_s=grace_s)

    assert swept.temp_uploads == ["upload-crashed"] and not crashed_upload.exists()
    assert swept.orphan_models == [orphan.name] and not orphan.exists()
    assert swept.trash == [old_trash.name] and not old_trash.exists()
    assert swept.freed_bytes >= 2 * 4096
    assert live_upload.exists() and young_orphan.exists() and fresh_trash.exists()
    assert store.model_dir(binary_model.id).exists()
    for folder in (live_upload, young_orphan, fresh_trash):
        folder.rmdir()
