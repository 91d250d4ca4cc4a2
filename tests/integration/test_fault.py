"""A worker SIGKILLed in the middle of a precompute: another worker finishes the job.

While the job runs (and dies, and runs again) a second thread polls the model the whole
time. It must never see a ``ready`` model whose results are missing or partial, and
``GET /explain`` must answer 409 until the model is ready.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from rps.client import Client, ServiceError
from tests.helpers.expected_answers import (
    assert_explanation_matches,
    assert_suspicious_matches,
    fitted_states,
)
from tests.helpers.problems import make_linear_problem
from tests.helpers.processes import start_api, start_worker, wait_ready_while_alive

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

# Large enough that the precompute runs for seconds on one thread, so the kill lands mid-job.
FAULT_PROBLEM = dict(seed=31, n_train=20_000, n_test=4, dim=96, num_classes=8)
METHODS = ("lje", "influence")
RUNNING_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 240.0
POLL_INTERVAL_S = 0.05
TOP_K = 5


@dataclass
class StatusWatcher:
    """Polls a model in a thread; checks every answer for a half-published result."""

    base_url: str
    model_id: str
    n_train: int
    statuses: list[str] = field(default_factory=list)
    attempts_seen: list[int] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> StatusWatcher:
        self._thread = threading.Thread(target=self._watch, name="status-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _watch(self) -> None:
        with Client(self.base_url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    self._check_once(client)
                except (
                    Exception
                ) as error:  # recorded, so the test reports it instead of a silent thread
                    self.violations.append(f"{type(error).__name__}: {error}")
                time.sleep(POLL_INTERVAL_S)

    def _check_once(self, client: Client) -> None:
        model = client.get_model(self.model_id)
        status = model["status"]
        if not self.statuses or self.statuses[-1] != status:
            self.statuses.append(status)
        self.attempts_seen.append(int(model.get("attempts") or 0))
        if status == "ready":
            body = client.explain(self.model_id, test_id="0", k=TOP_K)
            if len(body["positive"]) != TOP_K or len(body["negative"]) != TOP_K:
                self.violations.append(f"ready but explain returned a partial answer: {body}")
            suspicious = client.suspicious(self.model_id, limit=3)
            if suspicious["total"] != self.n_train or len(suspicious["items"]) != 3:
                self.violations.append(
                    f"ready but suspicious is partial: total={suspicious['total']}"
                )
            return
        if status == "failed":
            self.violations.append(f"the model failed: {model.get('error')}")
            return
        try:
            client.explain(self.model_id, test_id="0", k=TOP_K)
        except ServiceError as error:
            if error.status != 409:
                self.violations.append(
                    f"explain on a {status} model answered {error.status}, not 409"
                )
            return
        # 200: fine only if the model became ready between the two requests
        now = client.get_model(self.model_id)["status"]
        if now != "ready":
            self.violations.append(f"explain answered 200 while the model was {status}, then {now}")


def _wait_until_running(client: Client, model_id: str) -> dict:
    deadline = time.monotonic() + RUNNING_TIMEOUT_S
    while time.monotonic() < deadline:
        model = client.get_model(model_id)
        if model["status"] == "running":
            return model
        assert model["status"] == "queued", f"expected the job to start running, got {model}"
        time.sleep(POLL_INTERVAL_S)
    pytest.fail(f"the job did not start running within {RUNNING_TIMEOUT_S:g} s")


def test_sigkilled_worker_job_is_finished_by_another_worker(production_backend):
    problem = make_linear_problem(**FAULT_PROBLEM)
    api = start_api(production_backend)
    doomed = start_worker(production_backend, "worker-killed")

    with Client(api.base_url) as client:
        model = client.register_linear(
            problem.weights,
            problem.bias,
            problem.train_features,
            problem.train_labels,
            name="fault",
            methods=list(METHODS),
            test_features=problem.test_features,
            test_labels=problem.test_labels,
        )
        watcher = StatusWatcher(
            api.base_url, model["id"], n_train=len(problem.train_labels)
        ).start()
        try:
            running = _wait_until_running(client, model["id"])
            assert running["attempts"] == 1, running
            time.sleep(1.0)  # well inside the precompute
            before_kill = client.get_model(model["id"])
            assert before_kill["status"] == "running", (
                f"the job ended before the kill: {before_kill}"
            )
            doomed.kill()
            assert not doomed.alive()
            assert client.get_model(model["id"])["status"] != "ready"

            rescuer = start_worker(production_backend, "worker-rescuer")
            ready = wait_ready_while_alive(
                client, model["id"], processes=[api, rescuer], timeout=READY_TIMEOUT_S
            )
            time.sleep(3 * POLL_INTERVAL_S)  # let the watcher check the ready model too
        finally:
            watcher.stop()

        story = (
            f"statuses {watcher.statuses}, attempts seen {sorted(set(watcher.attempts_seen))}\n"
            f"killed worker:\n{doomed.log_tail()[-1500:]}\nrescuer:\n{rescuer.log_tail()[-1500:]}"
        )
        assert watcher.violations == [], story
        assert "running" in watcher.statuses and watcher.statuses[-1] == "ready", story
        assert "ready" not in watcher.statuses[:-1], story
        assert ready["attempts"] >= 2, story
        assert max(watcher.attempts_seen) >= 2, story
        assert rescuer.alive(), story

        states = fitted_states(problem.head, problem.train_features, problem.train_labels, METHODS)
        for method in METHODS:
            body = client.explain(model["id"], test_id="1", k=TOP_K, method=method)
            assert_explanation_matches(
                body, states[method], problem.train_features, problem.test_features[1], k=TOP_K
            )
            assert_suspicious_matches(
                client.suspicious(model["id"], method=method, limit=10),
                states[method],
                n_train=len(problem.train_labels),
            )
