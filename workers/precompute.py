"""The precompute job around the computation: claim, compute, publish or record failure.

Delivery is at least once, so the job is idempotent: a job already ``done`` (or whose model
is gone) is skipped; every run writes a NEW result directory; the per-point rows and the
flip to ``ready`` are ONE transaction that first re-checks the job; failures are recorded
as a problem body on the job and the model.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from dramatiq.middleware import Interrupt
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from models_store import (
    ArtifactStore,
    Job,
    JobStatus,
    Model,
    ModelFiles,
    ModelStatus,
    Score,
    TestPoint,
    TrainPoint,
    utcnow,
)
from representer import DEFAULT_MEMORY_BUDGET_BYTES
from representer.adapters.xgboost_checks import BoosterLimits
from rps_server.logs import log_context
from workers.computation import ModelInputs, PrecomputeResult, RefitBudget
from workers.isolation import compute_in_child
from workers.lease import JobCancelled, JobLease, Taken, take_job
from workers.metrics import JOB_DURATION, JOB_OUTCOMES
from workers.problems import problem_body

__all__ = ["JobRunner", "PROGRESS_INTERVAL_S"]

logger = logging.getLogger(__name__)
PROGRESS_INTERVAL_S = 0.5
INSERT_BATCH = 5000
CLAIM_TRIES = 5


@dataclass(frozen=True)
class Claim:
    """What a worker took on: the model's inputs and which attempt of the job this is."""

    inputs: ModelInputs
    attempt: int


@dataclass(frozen=True)
class JobRunner:
    """Runs precompute jobs against one database and artifact store.

    ``heartbeat_timeout_s``: a running job whose heartbeat is older than this is deemed
    abandoned (its worker died) and may be taken over; the lease beats four times as often.
    """

    sessions: sessionmaker[Session]
    store: ArtifactStore
    device: str = "cpu"
    refit_budget: RefitBudget = RefitBudget()
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES
    booster_limits: BoosterLimits | None = None
    heartbeat_timeout_s: float = 60.0
    max_attempts: int | None = None

    def run(self, job_id: str) -> None:
        """Run job ``job_id`` once (a no-op if it is finished or its model is gone).

        Every line logged meanwhile carries the job id and, once known, the model id.
        """
        with log_context(job_id=job_id):
            claim = self._claim(job_id)
            if claim is None:
                return
            lease = JobLease(
                self.sessions, job_id, claim.attempt, interval_s=self.heartbeat_timeout_s / 4
            )
            with log_context(model_id=claim.inputs.model_id), lease:
                self._compute_and_publish(job_id, claim, lease)

    def _compute_and_publish(self, job_id: str, claim: Claim, lease: JobLease) -> None:
        inputs, started = claim.inputs, time.perf_counter()
        try:
            result = compute_in_child(
                self.store,
                inputs,
                device=self.device,
                progress=self._progress_writer(lease),
                refit_budget=self.refit_budget,
                memory_budget_bytes=self.memory_budget_bytes,
                booster_limits=self.booster_limits,
            )
        except JobCancelled:
            self._stop_cancelled(job_id, inputs.model_id)
            JOB_OUTCOMES.labels("cancelled").inc()
            return
        except Exception as error:
            if not self._still_ours(job_id, claim.attempt):  # e.g. its inputs went with DELETE
                self._stop_cancelled(job_id, inputs.model_id)
                JOB_OUTCOMES.labels("cancelled").inc()
                return
            logger.exception("job %s of model %s failed", job_id, inputs.model_id)
            self._fail(job_id, claim.attempt, error, started)
            return
        except Interrupt as interrupt:  # the time limit (or a shutdown) stopped the job
            self._fail(job_id, claim.attempt, interrupt, started)
            raise
        published = self._publish(job_id, claim, result)
        outcome = "done" if published else "discarded"
        JOB_DURATION.labels(outcome).observe(time.perf_counter() - started)
        JOB_OUTCOMES.labels(outcome).inc()

    def _fail(self, job_id: str, attempt: int, error: BaseException, started: float) -> None:
        self._record_failure(job_id, attempt, error)
        self._remove_unpublished_runs(job_id)
        JOB_DURATION.labels("failed").observe(time.perf_counter() - started)
        JOB_OUTCOMES.labels("failed").inc()

    def _claim(self, job_id: str) -> Claim | None:
        """Take the job (compare-and-set: a sweep or another worker may change it meanwhile,
        and SQLite has no row locks); ``None`` when there is nothing to run."""
        timeout = timedelta(seconds=self.heartbeat_timeout_s)
        for _ in range(CLAIM_TRIES):
            with self.sessions() as session, session.begin():
                taken = take_job(
                    session, job_id, heartbeat_timeout=timeout, max_attempts=self.max_attempts
                )
            if isinstance(taken, Taken):
                return Claim(ModelInputs.of(taken.model), taken.attempt)
            if taken is None:
                return None
        logger.warning("job %s: changed under every claim; left to the next message", job_id)
        return None

    def _progress_writer(self, lease: JobLease) -> Callable[[float], None]:
        """Record progress; stop the computation (``JobCancelled``) once the job is not ours."""
        last = [0.0]

        def write(fraction: float) -> None:
            lease.check()
            now = time.monotonic()
            if now - last[0] < PROGRESS_INTERVAL_S and fraction < 1.0:
                return
            last[0] = now
            value = round(0.95 * fraction, 4)  # the last 5% is the publish
            with self.sessions() as session, session.begin():
                job = session.get(Job, lease.job_id)
                if not _is_attempt(job, lease.attempt):
                    lease.cancelled.set()
                    lease.check()
                assert job is not None
                job.progress, job.heartbeat_at = value, utcnow()
                session.execute(
                    update(Model)
                    .where(Model.id == job.model_id, Model.status == ModelStatus.RUNNING.value)
                    .values(progress=value)
                )

        return write

    def _still_ours(self, job_id: str, attempt: int) -> bool:
        with self.sessions() as session:
            return _is_attempt(session.get(Job, job_id), attempt)

    def _stop_cancelled(self, job_id: str, model_id: str) -> None:
        """The run's folder is already gone (``compute_result``); a deleted model's folder,
        which the run may have made again, goes too."""
        with self.sessions() as session:
            deleted = session.get(Model, model_id) is None
        if deleted:
            self.store.delete_model(model_id)
        logger.info(
            "job %s: stopped (%s)", job_id, "model deleted" if deleted else "taken over elsewhere"
        )

    def _publish(self, job_id: str, claim: Claim, result: PrecomputeResult) -> bool:
        """Insert the per-point rows and flip the model to ready in one transaction."""
        inputs = claim.inputs
        with self.sessions() as session, session.begin():
            job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
            model = session.get(Model, inputs.model_id)
            if job is None or model is None or not _is_attempt(job, claim.attempt):
                shutil.rmtree(result.directory, ignore_errors=True)
                logger.info(
                    "job %s: result discarded (job finished elsewhere or model deleted)", job_id
                )
                return False
            for table in (Score, TrainPoint, TestPoint):
                session.execute(delete(table).where(table.model_id == model.id))
            self._insert_points(session, model.id, result)
            now = utcnow()
            model.status, model.progress, model.error, model.ready_at = (
                ModelStatus.READY.value,
                1.0,
                None,
                now,
            )
            model.result_dir, model.version = str(result.directory), model.version + 1
            model.diagnostics = result.diagnostics
            model.rankings = result.rankings
            job.status, job.progress, job.finished_at, job.error = (
                JobStatus.DONE.value,
                1.0,
                now,
                None,
            )
        self.store.delete_other_results(inputs.model_id, keep=result.directory)
        logger.info("job %s: model %s ready", job_id, inputs.model_id)
        return True

    def _insert_points(self, session: Session, model_id: str, result: PrecomputeResult) -> None:
        files = ModelFiles(self.store, model_id)
        train_ids = self.store.load_json(files.input("train_ids.json"))
        records_path = files.input("train_records.json")
        records = (
            self.store.load_json(records_path) if records_path.exists() else [None] * len(train_ids)
        )
        labels, predicted = result.train_labels.tolist(), result.predicted_class.tolist()
        rows = [
            {
                "model_id": model_id,
                "train_index": index,
                "train_id": train_ids[index],
                "label": labels[index],
                "predicted_class": predicted[index],
                "record": records[index],
            }
            for index in range(len(train_ids))
        ]
        _insert_batches(session, TrainPoint, rows)
        for name, values in result.label_scores.items():
            for array in (values.scores, values.label_error_probability):
                if not np.all(np.isfinite(array)):
                    raise RuntimeError(f"the engine returned non-finite {name} scores")
            _insert_batches(
                session,
                Score,
                [
                    {
                        "model_id": model_id,
                        "method": name,
                        "train_index": i,
                        "score": score,
                        "suggested_label": suggested,
                        "label_error_probability": probability,
                    }
                    for i, (score, suggested, probability) in enumerate(
                        zip(
                            values.scores.tolist(),
                            values.suggested_label.tolist(),
                            values.label_error_probability.tolist(),
                            strict=True,
                        )
                    )
                ],
            )
        _insert_batches(session, TestPoint, self._test_rows(model_id, result))

    def _test_rows(self, model_id: str, result: PrecomputeResult) -> list[dict]:
        files = ModelFiles(self.store, model_id)
        test_ids = self.store.load_json(files.input("test_ids.json"))
        labels_path, records_path = files.input("test_labels.npy"), files.input("test_records.json")
        labels = np.load(labels_path).tolist() if labels_path.exists() else [None] * len(test_ids)
        records = (
            self.store.load_json(records_path) if records_path.exists() else [None] * len(test_ids)
        )
        predicted = (
            result.test_predicted_class.tolist()
            if result.test_predicted_class is not None
            else [None] * len(test_ids)
        )
        return [
            {
                "model_id": model_id,
                "test_index": i,
                "test_id": test_id,
                "label": labels[i],
                "predicted_class": predicted[i],
                "record": records[i],
            }
            for i, test_id in enumerate(test_ids)
        ]

    def _record_failure(self, job_id: str, attempt: int, error: BaseException) -> None:
        problem = problem_body(error)
        with self.sessions() as session, session.begin():
            job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
            if job is None or not _is_attempt(job, attempt):  # deleted, or taken over
                return
            job.status, job.error, job.finished_at = JobStatus.FAILED.value, problem, utcnow()
            session.execute(
                update(Model)
                .where(Model.id == job.model_id)
                .values(status=ModelStatus.FAILED.value, error=problem)
            )

    def _remove_unpublished_runs(self, job_id: str) -> None:
        """A failed run keeps nothing: remove result runs other than the published one."""
        with self.sessions() as session:
            job = session.get(Job, job_id)
            model = session.get(Model, job.model_id) if job is not None else None
            if job is None or model is None or job.status != JobStatus.FAILED.value:
                return
            published = Path(model.result_dir) if model.result_dir else None
        self.store.delete_other_results(model.id, keep=published)


def _is_attempt(job: Job | None, attempt: int) -> bool:
    """The job still exists, runs, and runs as ``attempt`` (not taken over since)."""
    return job is not None and job.status == JobStatus.RUNNING.value and job.attempts == attempt


def _insert_batches(session: Session, table: type, rows: list[dict]) -> None:
    for start in range(0, len(rows), INSERT_BATCH):
        session.execute(insert(table), rows[start : start + INSERT_BATCH])
