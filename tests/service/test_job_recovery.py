"""The job sweep (the jobs table as outbox) and the running job's lease, in process.

Under live processes (Redis killed during a registration, a model deleted mid-precompute,
a worker SIGKILLed) see tests/integration/test_job_recovery.py and test_fault.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import update

from models_store import Job, Model, utcnow
from tests.helpers.service import wait_ready
from tests.service.test_worker import job_of, register_parked, stop_heartbeat
from workers import make_runner, sweep_jobs
from workers.lease import JobCancelled, JobLease


def sweep(service, **options):
    settings = service.settings
    return sweep_jobs(
        service.context.sessions,
        service.context.broker,
        heartbeat_timeout_s=settings.worker_heartbeat_timeout_ms / 1000,
        resend_after_s=settings.job_resend_after_s,
        **options,
    )


def unpark(service, model_id: str, **job_values) -> None:
    """Move a parked model to the queue the test worker consumes; set job columns."""
    with service.context.sessions() as session, session.begin():
        session.execute(update(Model).where(Model.id == model_id).values(queue="default"))
        if job_values:
            session.execute(update(Job).where(Job.model_id == model_id).values(**job_values))


async def test_a_job_never_sent_is_sent_by_the_sweep(service):
    async with service.client() as client:
        created = await register_parked(client, seed=11)
        # as if the broker had been down: never sent, and older than the grace period
        unpark(service, created["id"], enqueued_at=None, created_at=utcnow() - timedelta(hours=1))
        job_id = job_of(service, created["id"]).id
        outcome = sweep(service)
        assert job_id in outcome.sent and job_id not in outcome.taken_over
        assert job_id not in sweep(service).sent  # sent once, not at every sweep
        ready = await wait_ready(client, created["id"])
        await client.delete(f"/models/{created['id']}")
    assert ready["status"] == "ready" and ready["attempts"] == 1


async def test_a_job_just_registered_and_sent_is_left_alone(service):
    async with service.client() as client:
        created = await register_parked(client, seed=12)
        job = job_of(service, created["id"])
        await client.delete(f"/models/{created['id']}")
    assert job.enqueued_at is not None  # the API recorded that it sent the message
    assert job.id not in sweep(service).sent


async def test_a_running_job_whose_worker_went_silent_is_taken_over(service):
    async with service.client() as client:
        created = await register_parked(client, seed=13)
        job_id = job_of(service, created["id"]).id
        make_runner(service.settings)._claim(job_id)  # attempt 1 starts, then its worker dies
        unpark(service, created["id"])
        assert job_id not in sweep(service).sent  # still beating: left alone
        stop_heartbeat(service, job_id)
        outcome = sweep(service)
        assert job_id in outcome.taken_over and job_id in outcome.sent
        ready = await wait_ready(client, created["id"])
        await client.delete(f"/models/{created['id']}")
    assert ready["status"] == "ready" and ready["attempts"] == 2


@pytest.mark.parametrize("noticed_by", ["sweep", "redelivery"])
async def test_a_job_that_lost_its_worker_on_every_attempt_fails(service, noticed_by):
    capped = replace(make_runner(service.settings), max_attempts=1)
    async with service.client() as client:
        created = await register_parked(client, seed=14)
        job_id = job_of(service, created["id"]).id
        capped._claim(job_id)
        stop_heartbeat(service, job_id)
        if noticed_by == "sweep":
            assert job_id in sweep(service, max_attempts=1).abandoned
        else:
            assert capped._claim(job_id) is None
        failed = (await client.get(f"/models/{created['id']}")).json()
        await client.delete(f"/models/{created['id']}")
    assert failed["status"] == "failed" and failed["job_status"] == "failed"
    assert failed["error"]["type"] == "urn:rps:problem:precompute-abandoned"


@pytest.mark.parametrize("fate", ["deleted", "taken over"])
async def test_the_lease_cancels_a_job_that_is_no_longer_its_own(service, fate):
    async with service.client() as client:
        created = await register_parked(client, seed=15)
        job_id = job_of(service, created["id"]).id
        claim = make_runner(service.settings)._claim(job_id)
        assert claim is not None
        lease = JobLease(service.context.sessions, job_id, claim.attempt, interval_s=60)
        lease.beat()
        lease.check()  # still ours
        if fate == "deleted":
            await client.delete(f"/models/{created['id']}")
        else:
            stop_heartbeat(service, job_id)
            make_runner(service.settings)._claim(job_id)  # attempt 2 elsewhere
        lease.beat()
        with pytest.raises(JobCancelled):
            lease.check()
        await client.delete(f"/models/{created['id']}")
