"""Operations: health, readiness (503 naming the failing part), metrics, OpenAPI, the 500 shape."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import create_engine

from tests.helpers.problems import linear_problem
from tests.helpers.service import (
    linear_parts,
    wait_ready,
)


async def test_healthz_and_readyz(service):
    async with service.client() as client:
        health = await client.get("/healthz", headers={})
        ready = await client.get("/readyz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "database": "ok",
        "broker": "ok",
        "artifact_store": "ok",
    }


@pytest.mark.parametrize("part", ["database", "broker", "artifact_store"])
async def test_readyz_names_the_failing_part(service, monkeypatch, tmp_path, part):
    context = service.context
    if part == "database":
        monkeypatch.setattr(
            context, "engine", create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
        )
    elif part == "broker":
        monkeypatch.setattr(context, "broker", RedisBroker(url="redis://127.0.0.1:1/0"))
    else:
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("x")
        monkeypatch.setattr(context.store, "root", blocker)
    async with service.client() as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == [part]
    assert [error["field"] for error in body["errors"]] == [part]


def metric_value(text: str, name: str, labels: dict[str, str]) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(
            f'{key}="{value}"' in line for key, value in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in metrics")


async def test_metrics(service, multiclass_model):
    async with service.client() as client:
        for _ in range(3):
            await client.get(
                "/explain", params={"model_id": multiclass_model.id, "test_id": "te-0"}
            )
        response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    labels = {"route": "/explain", "method": "GET", "status": "200"}
    assert metric_value(text, "rps_http_request_duration_seconds_count", labels) >= 3
    assert metric_value(text, "rps_job_duration_seconds_count", {"outcome": "done"}) >= 1
    assert metric_value(text, "rps_jobs", {"status": "done"}) >= 1
    assert re.search(r'^rps_jobs\{status="queued"\} \d', text, re.M)


async def test_openapi_and_docs(service):
    async with service.client() as client:
        schema = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    for path in (
        "/models",
        "/models/{model_id}",
        "/explain",
        "/debug/suspicious",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in schema["paths"]
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_unexpected_error_is_problem_500_without_trace(service):
    """A ready model whose result files vanished: a 500 problem, no stack trace."""
    async with service.client() as client:
        created = (
            await client.post(
                "/models", files=linear_parts(linear_problem(n=20, d=4, m=2), {"kind": "linear"})
            )
        ).json()
        ready = await wait_ready(client, created["id"])
        assert ready["status"] == "ready"
        service.context.models.forget(created["id"])
        results = service.context.store.model_dir(created["id"]) / "results"
        shutil.rmtree(results)
        response = await client.get("/explain", params={"model_id": created["id"], "test_id": "0"})
        await client.delete(f"/models/{created['id']}")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 500 and body["title"] == "Internal Server Error"
    assert "Traceback" not in response.text and str(Path(results)) not in response.text


async def test_unknown_route_is_problem_404(service):
    async with service.client() as client:
        response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_engine_errors_share_the_422_shape():
    """A ``RepresenterError`` escaping a route becomes the same 422 body as a schema error."""
    from fastapi import FastAPI

    from app.core.problems import install_problem_handlers
    from representer import InvalidInputError

    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/engine")
    def engine_route() -> None:
        raise InvalidInputError("damping must be a finite number >= 0, got -1", argument="damping")

    @app.get("/schema")
    def schema_route(k: int) -> None:
        return None

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        engine = await client.get("/engine")
        schema = await client.get("/schema", params={"k": "x"})
    for response, field in ((engine, "damping"), (schema, "k")):
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert set(body) == {"type", "title", "status", "detail", "errors"}
        assert body["errors"][0]["field"] == field and set(body["errors"][0]) == {
            "field",
            "location",
            "message",
        }
