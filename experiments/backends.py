"""Where explanations come from: the running service (default) or the engine directly.

Both offer the same three calls, so every experiment runs unchanged on either:
``register`` (returns a handle), ``suspicious_ranking`` and ``explain``. The service
backend starts ``rps serve`` as a subprocess on a free port with ``RPS_DATA_DIR`` in a
temporary directory and talks to it through ``rps.client.Client`` only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from experiments.tasks.base import Registration, XGBoostRegistration

__all__ = [
    "Backend",
    "BackendKind",
    "EngineBackend",
    "ExplainedPoint",
    "ModelSpec",
    "ServiceBackend",
    "open_backend",
]

SERVER_START_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 1800.0
PAGE_SIZE = 500
"""Rows per ``GET /debug/suspicious`` page."""


class BackendKind(str, Enum):
    SERVICE = "service"  # POST /models, GET /debug/suspicious, GET /explain of `rps serve`
    ENGINE = "engine"  # representer.fit / explain in-process (fallback, labelled in the report)


@dataclass(frozen=True)
class ModelSpec:
    """What to register besides the arrays."""

    name: str
    labels: np.ndarray
    """Observed training labels (n,), int64 (possibly noisy)."""
    test_labels: np.ndarray
    methods: tuple[str, ...] = ("lje", "l2", "influence")
    lje: dict[str, float] = field(default_factory=dict)
    l2: dict[str, float] = field(default_factory=dict)
    class_names: tuple[str, ...] = ("0", "1")
    train_records: Sequence[dict] | None = None
    test_records: Sequence[dict] | None = None


@dataclass(frozen=True)
class ExplainedPoint:
    """The top-k positive representer points of one test point, as the backend answered."""

    test_index: int
    predicted_class: int
    positive_indices: np.ndarray
    """(k,) int64 training indices, best first."""
    positive_contributions: np.ndarray
    """(k,) float64."""
    positive_records: list[Any]
    positive_labels: list[int]
    residual: float


class Backend:
    """Common interface (see module docstring)."""

    kind: BackendKind

    def register(self, registration: Registration, spec: ModelSpec) -> str:
        raise NotImplementedError

    def suspicious_ranking(self, handle: str, *, method: str) -> np.ndarray:
        raise NotImplementedError

    def explain(self, handle: str, test_index: int, *, method: str, k: int) -> ExplainedPoint:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds (server process, temporary directory)."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServiceBackend(Backend):
    """An embedded ``rps serve`` subprocess driven through ``rps.client.Client``."""

    kind = BackendKind.SERVICE

    def __init__(self, *, log_path: Path | None = None) -> None:
        from rps.client import Client

        self._directory = tempfile.TemporaryDirectory(prefix="rps-experiments-")
        port = _free_port()
        environment = {**os.environ, "RPS_DATA_DIR": self._directory.name}
        for variable in ("RPS_DATABASE_URL", "RPS_REDIS_URL"):
            environment.pop(variable, None)
        self._log = open(log_path or Path(self._directory.name) / "server.log", "w")  # noqa: SIM115 (closed in stop)
        rps_command = Path(sys.executable).parent / "rps"
        self._process = subprocess.Popen(
            [str(rps_command), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.base_url = f"http://127.0.0.1:{port}"
        self.client = Client(self.base_url, timeout=600.0)
        self._wait_started()

    def _wait_started(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self.client.health():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(
                    f"rps serve did not start (exit code {self._process.returncode})"
                )
            time.sleep(0.2)

    def register(self, registration: Registration, spec: ModelSpec) -> str:
        common = dict(
            name=spec.name,
            class_names=list(spec.class_names),
            methods=list(spec.methods),
            lje=spec.lje or None,
            l2=spec.l2 or None,
            train_ids=[str(index) for index in range(len(spec.labels))],
            train_records=spec.train_records,
            test_labels=spec.test_labels,
            test_ids=[str(index) for index in range(len(spec.test_labels))],
            test_records=spec.test_records,
        )
        if isinstance(registration, XGBoostRegistration):
            body = self.client.register_xgboost(
                registration.booster,
                registration.train_inputs,
                spec.labels,
                test_inputs=registration.test_inputs,
                **common,
            )
        else:
            head = registration.head
            body = self.client.register_linear(
                head.weights,
                head.bias,
                registration.train_features,
                spec.labels,
                test_features=registration.test_features,
                **common,
            )
        self.client.wait_ready(body.id, timeout=READY_TIMEOUT_S, progress=False)
        return body.id

    def suspicious_ranking(self, handle: str, *, method: str) -> np.ndarray:
        items = self.client.iter_suspicious(handle, method=method, page_size=PAGE_SIZE)
        return np.asarray([item.train_index for item in items], dtype=np.int64)

    def explain(self, handle: str, test_index: int, *, method: str, k: int) -> ExplainedPoint:
        body = self.client.explain(handle, test_id=str(test_index), k=k, method=method)
        positive = body.positive
        return ExplainedPoint(
            test_index=test_index,
            predicted_class=body.prediction.predicted_class,
            positive_indices=np.array([item.train_index for item in positive], dtype=np.int64),
            positive_contributions=np.array(
                [item.contribution for item in positive], dtype=np.float64
            ),
            positive_records=[item.record for item in positive],
            positive_labels=[item.label for item in positive],
            residual=body.decomposition.residual,
        )

    def close(self) -> None:
        self.client.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
        self._directory.cleanup()


@dataclass
class _EngineModel:
    train_features: np.ndarray
    test_features: np.ndarray
    labels: np.ndarray
    states: dict[str, Any]
    train_records: Sequence[dict] | None


class EngineBackend(Backend):
    """``representer.fit`` / ``explain`` in-process, behind the same interface (fallback)."""

    kind = BackendKind.ENGINE

    def __init__(self) -> None:
        self._models: dict[str, _EngineModel] = {}

    def register(self, registration: Registration, spec: ModelSpec) -> str:
        import representer
        from representer.adapters import BoosterEmbedding

        if isinstance(registration, XGBoostRegistration):
            embedding = BoosterEmbedding.from_booster(registration.booster)
            head = embedding.head
            train_features = embedding.transform(registration.train_inputs)
            test_features = embedding.transform(registration.test_inputs)
        else:
            head, train_features, test_features = (
                registration.head,
                registration.train_features,
                registration.test_features,
            )
        configs = {
            "lje": representer.LJEConfig(**spec.lje),
            "l2": representer.L2Config(
                **{("lam" if key == "lambda" else key): value for key, value in spec.l2.items()}
            ),
            "influence": representer.InfluenceConfig(),
        }
        states = {
            method: representer.fit(
                head, train_features, spec.labels, method=method, config=configs[method]
            )
            for method in spec.methods
        }
        handle = f"engine-{len(self._models)}"
        self._models[handle] = _EngineModel(
            train_features, test_features, spec.labels, states, spec.train_records
        )
        return handle

    def suspicious_ranking(self, handle: str, *, method: str) -> np.ndarray:
        scores = np.asarray(self._models[handle].states[method].self_scores, dtype=np.float64)
        return np.argsort(-scores, kind="stable").astype(np.int64)

    def explain(self, handle: str, test_index: int, *, method: str, k: int) -> ExplainedPoint:
        import representer

        model = self._models[handle]
        [explanation] = representer.explain(
            model.states[method],
            model.train_features,
            model.test_features[test_index : test_index + 1],
            top_k=k,
        )
        indices = np.asarray(explanation.positive_indices, dtype=np.int64)
        return ExplainedPoint(
            test_index=test_index,
            predicted_class=int(explanation.predicted_class),
            positive_indices=indices,
            positive_contributions=np.asarray(explanation.positive_contributions, dtype=np.float64),
            positive_records=[
                model.train_records[index] if model.train_records else None for index in indices
            ],
            positive_labels=[int(model.labels[index]) for index in indices],
            residual=float(explanation.residual),
        )


def open_backend(kind: BackendKind, *, log_path: Path | None = None) -> Backend:
    """Start the requested backend."""
    return (
        ServiceBackend(log_path=log_path)
        if BackendKind(kind) is BackendKind.SERVICE
        else EngineBackend()
    )
