"""Auth never fails open: production with keys only in PostgreSQL.

Before: deleting the last key row made requests without a key succeed as tenant
``default`` about 5 s later, and a deleted key kept working for 60 s. Now production
refuses every request when no key is valid, ``rps keys revoke`` stops a key on every API
process within ``RPS_KEY_CACHE_TTL_S`` (1 s), and anonymous ``/readyz`` names failing parts
without the reasons (hosts, paths).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import delete

from app import create_app
from app.keys.service import create_api_key
from app.main import check_startup
from models_store import ApiKey, upgrade
from rps.cli import main
from rps_server.settings import Settings, get_settings

KEY_TTL_S = 1.0
REVOCATION_DEADLINE_S = KEY_TTL_S + 0.5


@pytest.fixture
def production(postgres_url, tmp_path) -> Iterator[tuple[Settings, list]]:
    """Two API processes' apps (separate key caches) on one PostgreSQL, keys only in the table."""
    upgrade(postgres_url)
    settings = Settings(
        env="production", database_url=postgres_url, data_dir=tmp_path, key_cache_ttl_s=KEY_TTL_S
    )
    apps = [create_app(settings), create_app(settings)]
    with apps[0].state.context.sessions() as session, session.begin():
        session.execute(delete(ApiKey))
    try:
        yield settings, apps
    finally:
        for app in apps:
            app.state.context.close()
        with apps[0].state.context.sessions() as session, session.begin():
            session.execute(delete(ApiKey))


def _new_key(app, tenant: str) -> str:
    with app.state.context.sessions() as session, session.begin():
        return create_api_key(session, tenant=tenant)


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def _status_within(app, headers: dict, expected: int, *, deadline_s: float) -> float:
    """Seconds until ``GET /models`` answers ``expected`` (fails after ``deadline_s``)."""
    started = time.monotonic()
    async with _client(app) as client:
        while True:
            status = (await client.get("/models", headers=headers)).status_code
            elapsed = time.monotonic() - started
            if status == expected:
                return elapsed
            assert elapsed < deadline_s, f"still {status} after {elapsed:.2f} s"
            await asyncio.sleep(0.05)


async def test_emptied_key_table_refuses_everyone_in_production(production):
    _, apps = production
    token = _new_key(apps[0], "acme")
    check_startup(apps[0].state.context)
    async with _client(apps[0]) as client:
        assert (await client.get("/models")).status_code == 401
        assert (await client.get("/models", headers={"Authorization": f"Bearer {token}"})).status_code == 200  # fmt: skip
    with apps[0].state.context.sessions() as session, session.begin():
        session.execute(delete(ApiKey))
    await asyncio.sleep(KEY_TTL_S + 0.2)  # every cache expired: the empty table is what counts
    async with _client(apps[0]) as client:
        anonymous = [await client.get("/models"), await client.post("/models", files={})]
        deleted = await client.get("/models", headers={"Authorization": f"Bearer {token}"})
    assert [response.status_code for response in anonymous] == [401, 401]
    assert deleted.status_code == 401
    assert anonymous[0].headers["content-type"].startswith("application/problem+json")


async def test_revoked_key_is_refused_by_every_api_process_within_a_second(
    production, monkeypatch, capsys
):
    settings, apps = production
    kept, revoked = _new_key(apps[0], "acme"), _new_key(apps[0], "acme")
    for app in apps:  # both processes have the key cached
        async with _client(app) as client:
            answer = await client.get("/models", headers={"Authorization": f"Bearer {revoked}"})
            assert answer.status_code == 200
    monkeypatch.setenv("RPS_ENV", "production")
    monkeypatch.setenv("RPS_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("RPS_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        assert main(["keys", "list"]) == 0
        listing = capsys.readouterr().out
        assert main(["keys", "revoke", revoked]) == 0
        assert main(["keys", "list"]) == 0
        after = capsys.readouterr().out
        assert main(["keys", "revoke", "no-such-prefix"]) == 1
    finally:
        get_settings.cache_clear()
    prefix = revoked.split("_")[1]
    assert listing.count("acme") == 2 and revoked not in listing
    revoked_line = next(line for line in after.splitlines() if line.startswith(prefix))
    assert not revoked_line.rstrip().endswith("-")  # a revocation time
    for app in apps:
        elapsed = await _status_within(
            app, {"Authorization": f"Bearer {revoked}"}, 401, deadline_s=REVOCATION_DEADLINE_S
        )
        assert elapsed < REVOCATION_DEADLINE_S
        async with _client(app) as client:
            answer = await client.get("/models", headers={"Authorization": f"Bearer {kept}"})
            assert answer.status_code == 200


@pytest.mark.parametrize("with_key", [False, True])
async def test_anonymous_readyz_names_failing_parts_without_reasons(production, tmp_path, with_key):
    _, apps = production
    token = _new_key(apps[0], "acme")
    context = apps[0].state.context
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    context.store.root = blocker  # the artifact store is unreachable
    headers = {"Authorization": f"Bearer {token}"} if with_key else {}
    async with _client(apps[0]) as client:
        response = await client.get("/readyz", headers=headers)
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["artifact_store"]
    assert (str(blocker) in response.text) is with_key
