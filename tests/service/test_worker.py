"""The precompute job: idempotent under redelivery, resumes after a crash, records failures."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from models_store import Job, Model, utcnow
from tests.helpers.problems import linear_problem
from tests.helpers.service import (
    linear_parts,
    wait_ready,
)
from workers import make_runner, requeue_unfinished_jobs


async def register_parked(client, **problem_options) -> dict:
    """Register on the ``gpu`` queue, which no worker in these tests consumes."""
    problem = linear_problem(n=30, d=4, k=3, m=2, **problem_options)
    response = await client.post(
        "/models", files=linear_parts(problem, {"kind": "linear", "queue": "gpu"})
    )
    assert response.status_code == 202, response.text
    return response.json()


def stop_heartbeat(service, job_id: str) -> None:
    """What a dead worker leaves: a heartbeat older than the timeout."""
    stale = utcnow() - timedelta(seconds=2 * service.settings.worker_heartbeat_timeout_ms / 1000)
    with service.context.sessions() as session, session.begin():
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=stale))


def job_of(service, model_id: str) -> Job:
    with service.context.sessions() as session:
        return session.query(Job).filter(Job.model_id == model_id).one()


async def test_redelivered_message_of_a_done_job_is_a_no_op(service, multiclass_model):
    before = job_of(service, multiclass_model.id)
    make_runner(service.settings).run(before.id)
    after = job_of(service, multiclass_model.id)
    async with service.client() as client:
        status = (await client.get(f"/models/{multiclass_model.id}")).json()
    assert (after.attempts, after.status) == (before.attempts, "done")
    assert status["version"] == multiclass_model.status["version"] == 1


async def test_job_interrupted_mid_run_is_resumed_and_leaves_no_partial_result(service):
    runner = make_runner(service.settings)
    async with service.client() as client:
        created = await register_parked(client)
        job = job_of(service, created["id"])
        runner._claim(job.id)  # attempt 1 starts ...
        partial = service.context.store.new_result_dir(created["id"])
        (partial / "train_features.npy").write_bytes(b"half written")  # ... and dies mid-write
        running = (await client.get(f"/models/{created['id']}")).json()
        assert (running["status"], running["attempts"]) == ("running", 1)
        runner.run(job.id)  # redelivered while attempt 1 still beats: skipped
        assert job_of(service, created["id"]).attempts == 1
        stop_heartbeat(service, job.id)
        runner.run(job.id)  # redelivered once the heartbeat is stale: attempt 2
        ready = (await client.get(f"/models/{created['id']}")).json()
        explained = await client.get("/explain", params={"model_id": created["id"], "test_id": "1"})
        await client.delete(f"/models/{created['id']}")
    assert (ready["status"], ready["attempts"], ready["job_status"], ready["version"]) == (
        "ready",
        2,
        "done",
        1,
    )
    assert not partial.exists()
    assert explained.status_code == 200 and len(explained.json()["positive"]) == 10


async def test_failure_is_recorded_as_a_problem_body(service):
    async with service.client() as client:
        created = await register_parked(client, seed=3)
        (service.context.store.inputs_dir(created["id"]) / "train_features.npy").unlink()
        make_runner(service.settings).run(job_of(service, created["id"]).id)
        failed = (await client.get(f"/models/{created['id']}")).json()
        explain = await client.get("/explain", params={"model_id": created["id"], "test_id": "0"})
        await client.delete(f"/models/{created['id']}")
    assert (
        failed["status"] == "failed"
        and failed["job_status"] == "failed"
        and failed["attempts"] == 1
    )
    error = failed["error"]
    assert error["status"] == 500 and error["title"] == "Precompute failed"
    assert "train_features.npy" in error["detail"]
    assert explain.status_code == 409 and explain.json()["model_status"] == "failed"
    results = service.context.store.model_dir(created["id"]) / "results"
    assert not results.exists() or not any(results.iterdir())


async def test_unfinished_jobs_are_re_enqueued(service):
    """What ``rps serve`` does at start: every queued/running job gets a new message."""
    async with service.client() as client:
        created = await register_parked(client, seed=4)
        with service.context.sessions() as session, session.begin():
            session.execute(update(Model).where(Model.id == created["id"]).values(queue="default"))
        requeued = requeue_unfinished_jobs(service.context.sessions, service.context.broker)
        assert job_of(service, created["id"]).id in requeued
        ready = await wait_ready(client, created["id"])
        await client.delete(f"/models/{created['id']}")
    assert ready["status"] == "ready" and ready["attempts"] == 1


async def test_progress_is_reported_while_running(service):
    """A bigger job: the status shows a progress strictly between 0 and 1 at some point."""
    problem = linear_problem(n=3000, d=48, k=10, m=2, seed=5)
    spec = {"kind": "linear", "methods": ["lje", "l2", "influence"]}
    seen: set[float] = set()
    async with service.client() as client:
        created = (await client.post("/models", files=linear_parts(problem, spec))).json()
        for _ in range(1200):
            status = (await client.get(f"/models/{created['id']}")).json()
            seen.add(status["progress"])
            if status["status"] in ("ready", "failed"):
                break
            await asyncio.sleep(0.05)
        await client.delete(f"/models/{created['id']}")
    assert status["status"] == "ready", status
    assert any(0.0 < value < 1.0 for value in seen), sorted(seen)


async def test_engine_refusal_is_a_422_problem_naming_the_argument(service):
    """Duplicated feature columns make the Hessian singular: the job says to raise damping."""
    problem = linear_problem(n=40, d=3, k=1, m=2, seed=6)
    problem["train_features"] = np.hstack(
        [problem["train_features"], problem["train_features"][:, :1]]
    )
    problem["test_features"] = np.hstack(
        [problem["test_features"], problem["test_features"][:, :1]]
    )
    problem["weights"] = np.hstack([problem["weights"], problem["weights"][:, :1]])
    async with service.client() as client:
        created = (
            await client.post("/models", files=linear_parts(problem, {"kind": "linear"}))
        ).json()
        failed = await wait_ready(client, created["id"])
        with_damping = linear_parts(problem, {"kind": "linear", "lje": {"damping": 1e-3}})
        repaired = await wait_ready(
            client, (await client.post("/models", files=with_damping)).json()["id"]
        )
        for model in (created, repaired):
            await client.delete(f"/models/{model['id']}")
    assert failed["status"] == "failed"
    assert failed["error"]["status"] == 422 and failed["error"]["errors"][0]["field"] == "damping"
    assert "damping" in failed["error"]["detail"]
    assert repaired["status"] == "ready", repaired


async def test_spec_settings_reach_the_engine(service):
    """lje.lr, lje.damping, l2.lambda and influence.damping from the spec are what each state used."""
    spec = {
        "kind": "linear",
        "methods": ["lje", "l2", "influence"],
        "lje": {"lr": 0.001, "damping": 0.002},
        "l2": {"lambda": 0.05},
        "influence": {"damping": 0.003},
    }
    async with service.client() as client:
        created = (
            await client.post(
                "/models", files=linear_parts(linear_problem(n=40, d=4, m=2, seed=7), spec)
            )
        ).json()
        ready = await wait_ready(client, created["id"])
        with service.context.sessions() as session:
            result_dir = Path(session.get(Model, created["id"]).result_dir)
        metas = {
            name: json.loads((result_dir / name / "meta.json").read_text())
            for name in ("lje", "l2", "influence")
        }
        await client.delete(f"/models/{created['id']}")
    assert ready["status"] == "ready"
    assert (metas["lje"]["lr"], metas["lje"]["damping"]) == (0.001, 0.002)
    assert metas["l2"]["lam"] == 0.05 and metas["influence"]["damping"] == 0.003
    assert ready["diagnostics"] == pytest.approx(
        {key: metas["lje"]["diagnostics"][key] for key in ready["diagnostics"]}
    )


@pytest.mark.parametrize(
    ("requested", "used"),
    [(None, "materialised"), ("kernel", "kernel"), ("materialised", "materialised")],
)
async def test_spec_chooses_the_lje_weight_layout(service, requested, used):
    """lje.weight_layout reaches the engine; left out, AUTO materialises a 3-class head that fits."""
    lje = {} if requested is None else {"weight_layout": requested}
    spec = {"kind": "linear", "methods": ["lje"], "lje": lje}
    async with service.client() as client:
        created = (
            await client.post(
                "/models", files=linear_parts(linear_problem(n=40, d=4, k=3, m=2), spec)
            )
        ).json()
        ready = await wait_ready(client, created["id"])
        explained = (
            await client.get("/explain", params={"model_id": created["id"], "test_id": "0", "k": 3})
        ).json()
        with service.context.sessions() as session:
            result_dir = Path(session.get(Model, created["id"]).result_dir)
        meta = json.loads((result_dir / "lje" / "meta.json").read_text())
        await client.delete(f"/models/{created['id']}")
    assert ready["status"] == "ready"
    assert meta["weight_layout_used"] == used
    assert len(explained["positive"]) == 3


async def test_unknown_weight_layout_is_a_422_naming_it(service):
    spec = {"kind": "linear", "lje": {"weight_layout": "sparse"}}
    async with service.client() as client:
        before = len((await client.get("/models")).json()["items"])
        response = await client.post(
            "/models", files=linear_parts(linear_problem(n=40, d=4, k=3, m=2), spec)
        )
        after = len((await client.get("/models")).json()["items"])
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any("weight_layout" in str(error) for error in response.json()["errors"])
    assert after == before


async def _register_ready(client, spec: dict, problem) -> dict:
    created = (await client.post("/models", files=linear_parts(problem, spec))).json()
    return await wait_ready(client, created["id"])


async def test_spec_hessian_blocks_answers_the_dense_ranking_with_its_solver(service):
    """lje/influence.hessian reach the engine; every answer says which solver produced it."""
    problem = linear_problem(n=60, d=4, k=4, m=2)
    answers = {}
    async with service.client() as client:
        for hessian in ("dense", "blocks"):
            options = {"hessian": hessian, "cg_tolerance": 1e-7}
            spec = {
                "kind": "linear",
                "methods": ["lje", "influence"],
                "lje": {**options, "weight_layout": "kernel"},
                "influence": options,
            }
            ready = await _register_ready(client, spec, problem)
            assert ready["status"] == "ready", ready
            for method in ("lje", "influence"):
                params = {"model_id": ready["id"], "test_id": "0", "k": 5, "method": method}
                response = await client.get("/explain", params=params)
                assert response.status_code == 200, response.text
                answers[hessian, method] = response.json()
                suspicious = await client.get(
                    "/debug/suspicious", params={"model_id": ready["id"], "method": method}
                )
                assert suspicious.status_code == 200, suspicious.text
                scores = [item["score"] for item in suspicious.json()["items"]]
                assert scores and all(score >= 0 for score in scores)
            await client.delete(f"/models/{ready['id']}")
    for method in ("lje", "influence"):
        dense, blocks = answers["dense", method], answers["blocks", method]
        assert dense["solver"] == {"name": "dense", "iterations": 0, "relative_residual": 0.0}
        assert blocks["solver"]["name"] == "pcg" and blocks["solver"]["iterations"] > 0
        assert 0 <= blocks["solver"]["relative_residual"] <= 1e-6
        for side in ("positive", "negative"):
            assert [p["train_index"] for p in blocks[side]] == [
                p["train_index"] for p in dense[side]
            ]


@pytest.mark.parametrize(
    ("section", "options", "field"),
    [
        ("lje", {"hessian": "kfac"}, "hessian"),
        ("influence", {"hessian": 3}, "hessian"),
        ("lje", {"cg_tolerance": 0}, "cg_tolerance"),
        ("influence", {"cg_tolerance": 2.0}, "cg_tolerance"),
        ("lje", {"hessian": "blocks", "weight_layout": "materialised"}, "lje"),
    ],
)
async def test_bad_solver_settings_are_a_422_naming_them(service, section, options, field):
    spec = {"kind": "linear", "methods": ["lje", "influence"], section: options}
    async with service.client() as client:
        response = await client.post(
            "/models", files=linear_parts(linear_problem(n=40, d=4, k=3, m=2), spec)
        )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(field in str(error) for error in response.json()["errors"])


@pytest.mark.parametrize(
    ("lje", "message"),
    [
        ({"memory_budget_bytes": 16 * 1024**3}, "RPS_MEMORY_BUDGET_BYTES"),
        ({"memory_budget_bytes": 1000}, "memory_budget_bytes=1000"),
        ({"hessian": "dense", "memory_budget_bytes": 3000}, "memory_budget_bytes=3000"),
    ],
)
async def test_a_head_beyond_the_memory_ceiling_is_a_422_at_registration(service, lje, message):
    """A spec may lower the ceiling, not raise it; what the shapes tell is refused up front."""
    spec = {"kind": "linear", "methods": ["lje"], "lje": lje}
    async with service.client() as client:
        before = len((await client.get("/models")).json()["items"])
        response = await client.post(
            "/models", files=linear_parts(linear_problem(n=40, d=4, k=3, m=2), spec)
        )
        after = len((await client.get("/models")).json()["items"])
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert message in response.json()["detail"]
    assert any("spec.lje.memory_budget_bytes" in str(error) for error in response.json()["errors"])
    assert after == before


def test_refit_budget_floor_does_not_apply_to_heads_served_by_blocks():
    from workers.computation import RefitBudget

    budget = RefitBudget(min_s=60.0, share=0.5)
    assert budget.seconds(4.0) == 60.0  # the floor: small dense heads may always refit
    assert budget.seconds(4.0, blocks=True) == 2.0  # a large head: its share alone
    assert budget.seconds(600.0, blocks=True) == budget.seconds(600.0) == 300.0
