"""Settings, the ``rps`` CLI (keys, db upgrade), auth off/on at start-up."""

from __future__ import annotations

import logging

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from app import create_app
from app.main import check_startup
from models_store import ApiKey
from rps.cli import build_parser, main
from rps_server.settings import Environment, Settings, get_settings, parse_api_keys


def test_defaults_are_embedded(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert settings.env is Environment.DEVELOPMENT
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'rps.sqlite3').resolve()}"
    assert settings.redis_url is None and settings.env_api_keys == {}


def test_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("RPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RPS_API_KEYS", "acme: k1 , beta:k2")
    monkeypatch.setenv("RPS_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("RPS_WORKER_HEARTBEAT_TIMEOUT_MS", "3000")
    settings = Settings()
    assert settings.env_api_keys == {"k1": "acme", "k2": "beta"}
    assert (settings.max_upload_bytes, settings.worker_heartbeat_timeout_ms) == (1234, 3000)


@pytest.mark.parametrize("raw", ["nocolon", ":key", "tenant:"])
def test_bad_api_keys_are_refused(raw):
    with pytest.raises(ValueError):
        parse_api_keys(raw)
    with pytest.raises(ValidationError):
        Settings(api_keys=raw)


def test_production_refuses_sqlite(tmp_path):
    with pytest.raises(ValidationError, match="refuses SQLite"):
        Settings(env="production", data_dir=tmp_path)


def test_production_refuses_to_start_without_keys(postgres_url, tmp_path):
    from models_store import upgrade

    upgrade(postgres_url)
    settings = Settings(env="production", database_url=postgres_url, data_dir=tmp_path)
    app = create_app(settings)
    with pytest.raises(RuntimeError, match="without API keys"):
        check_startup(app.state.context)
    app.state.context.close()


async def test_auth_off_without_keys_says_so(tmp_path, caplog):
    from models_store import upgrade

    settings = Settings(data_dir=tmp_path)
    upgrade(settings.resolved_database_url)
    app = create_app(settings)
    with caplog.at_level(logging.WARNING, logger="rps.app"):
        check_startup(app.state.context)
    assert "auth is OFF" in caplog.text
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/models")
    assert response.status_code == 200 and response.json() == {"items": [], "total": 0}
    app.state.context.close()


async def test_keys_create_then_auth_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RPS_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert main(["db", "upgrade"]) == 0
        assert main(["keys", "create", "--tenant", "carol"]) == 0
        token = capsys.readouterr().out.strip().splitlines()[-1]
        settings = get_settings()
    finally:
        get_settings.cache_clear()
    app = create_app(settings)
    with app.state.context.sessions() as session:
        row = session.scalar(select(ApiKey))
    assert (
        row.tenant == "carol"
        and token not in (row.key_hash, row.prefix)
        and len(row.key_hash) == 64
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        without = await client.get("/models")
        with_key = await client.get("/models", headers={"Authorization": f"Bearer {token}"})
        wrong = await client.get("/models", headers={"Authorization": f"Bearer {token[:-2]}xx"})
    assert (without.status_code, with_key.status_code, wrong.status_code) == (401, 200, 401)
    app.state.context.close()


def test_cli_has_every_command():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"serve", "worker", "keys", "db", "jobs"} <= set(commands)
    assert parser.parse_args(["jobs", "requeue", "--running"]).running is True
    args = parser.parse_args(["worker", "--queues", "gpu", "--processes", "2", "--threads", "3"])
    assert (args.queues, args.processes, args.threads) == (["gpu"], 2, 3)
    serve = parser.parse_args(["serve", "--port", "9001", "--demo"])
    assert (serve.host, serve.port, serve.demo) == ("127.0.0.1", 9001, True)


def test_resolved_keys_are_served_from_the_cache(tmp_path):
    """After the first lookup a key resolves without the database (no thread-pool hop)."""
    from models_store import upgrade

    settings = Settings(data_dir=tmp_path, api_keys="acme:k-1")
    upgrade(settings.resolved_database_url)
    app = create_app(settings)
    keys = app.state.context.keys
    assert keys.cached_tenant("Bearer k-1") is None
    assert keys.tenant_for("Bearer k-1") == "acme"
    assert keys.cached_tenant("Bearer k-1") == "acme"
    assert keys.cached_tenant("Bearer other") is None and keys.cached_tenant(None) is None
    app.state.context.close()
