"""The demo model `rps serve --demo` registers: XGBoost on the breast-cancer data set.

The data ships inside scikit-learn (no download). The booster is trained with a fixed
seed on a fixed train/test split, registered through the public client like any user's
model, and a ready-to-paste ``curl`` for ``GET /explain`` is logged once it is ready.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from rps.client import Client, ServiceError

__all__ = [
    "DEMO_NAME",
    "DemoData",
    "load_demo_data",
    "train_demo_booster",
    "register_demo",
    "register_demo_in_background",
]

DEMO_NAME = "demo-breast-cancer"
DEMO_METHODS = ("lje", "l2", "influence")
DEMO_SEED = 0
DEMO_TEST_FRACTION = 0.25
HEALTH_WAIT_S = 120.0
READY_WAIT_S = 900.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoData:
    """The breast-cancer split the demo model is trained and explained on.

    Attributes
    ----------
    train_inputs : ndarray of shape (n, 30), float64
    train_labels : ndarray of shape (n,), int64 (0 malignant, 1 benign)
    test_inputs : ndarray of shape (m, 30), float64
    test_labels : ndarray of shape (m,), int64
    train_ids, test_ids : list of str
        The rows' indices in the original data set.
    feature_names : list of str
    class_names : list of str
    """

    train_inputs: np.ndarray
    train_labels: np.ndarray
    test_inputs: np.ndarray
    test_labels: np.ndarray
    train_ids: list[str]
    test_ids: list[str]
    feature_names: list[str]
    class_names: list[str]

    def records(self, inputs: np.ndarray) -> list[dict[str, float]]:
        """One ``{feature name: value}`` record per row of ``inputs`` (n, 30)."""
        return [
            {
                name: round(float(value), 4)
                for name, value in zip(self.feature_names, row, strict=False)
            }
            for row in inputs
        ]


def load_demo_data(*, seed: int = DEMO_SEED) -> DemoData:
    """The fixed stratified train/test split of ``sklearn.datasets.load_breast_cancer``."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    dataset = load_breast_cancer()
    row_ids = np.arange(len(dataset.target))
    train_rows, test_rows = train_test_split(
        row_ids, test_size=DEMO_TEST_FRACTION, random_state=seed, stratify=dataset.target
    )
    inputs = dataset.data.astype(np.float64)
    labels = dataset.target.astype(np.int64)
    return DemoData(
        train_inputs=inputs[train_rows],
        train_labels=labels[train_rows],
        test_inputs=inputs[test_rows],
        test_labels=labels[test_rows],
        train_ids=[str(row) for row in train_rows],
        test_ids=[str(row) for row in test_rows],
        feature_names=[str(name) for name in dataset.feature_names],
        class_names=[str(name) for name in dataset.target_names],
    )


def train_demo_booster(data: DemoData, *, seed: int = DEMO_SEED):
    """A small binary:logistic booster (40 trees of depth 3) on ``data``'s training rows."""
    import xgboost

    params = {
        "objective": "binary:logistic",
        "max_depth": 3,
        "eta": 0.3,
        "seed": seed,
        "nthread": 1,
        "eval_metric": "logloss",
    }
    matrix = xgboost.DMatrix(data.train_inputs, label=data.train_labels)
    return xgboost.train(params, matrix, num_boost_round=40)


def register_demo(base_url: str, *, api_key: str | None = None, wait: bool = True) -> str:
    """Register the demo model unless one named ``DEMO_NAME`` exists; returns its id."""
    with Client(base_url, api_key=api_key) as client:
        existing = [model for model in client.list_models() if model.get("name") == DEMO_NAME]
        if existing:
            model_id = existing[0]["id"]
            logger.info(
                "demo model %s already registered (%s)", model_id, existing[0].get("status")
            )
            return model_id
        data = load_demo_data()
        booster = train_demo_booster(data)
        model = client.register_xgboost(
            booster,
            data.train_inputs,
            data.train_labels,
            test_inputs=data.test_inputs,
            test_labels=data.test_labels,
            name=DEMO_NAME,
            class_names=data.class_names,
            methods=list(DEMO_METHODS),
            train_ids=data.train_ids,
            train_records=data.records(data.train_inputs),
            test_ids=data.test_ids,
            test_records=data.records(data.test_inputs),
        )
        model_id = model["id"]
        logger.info("demo model %s registered, precomputing %s", model_id, ", ".join(DEMO_METHODS))
        if wait:
            client.wait_ready(model_id, timeout=READY_WAIT_S, progress=False)
            auth = "" if api_key is None else ' -H "Authorization: Bearer $RPS_API_KEY"'
            logger.info(
                "demo model ready; try:\n  curl%s '%s/explain?model_id=%s&test_id=%s&k=5'",
                auth,
                client.base_url,
                model_id,
                data.test_ids[0],
            )
        return model_id


def _wait_healthy(base_url: str, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with Client(base_url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if client.health():
                return True
            time.sleep(0.2)
    return False


def _make_logs_visible() -> None:
    """Print this module's INFO lines when nobody configured logging (uvicorn only sets its own)."""
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per status poll
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)


def _run_demo(base_url: str, api_key: str | None) -> None:
    _make_logs_visible()
    if not _wait_healthy(base_url, timeout=HEALTH_WAIT_S):
        logger.error(
            "demo: %s/healthz did not answer within %.0f s; demo not registered",
            base_url,
            HEALTH_WAIT_S,
        )
        return
    try:
        register_demo(base_url, api_key=api_key)
    except ServiceError as error:
        logger.error("demo registration failed: %s", error)
    except Exception:  # a daemon thread must not die silently
        logger.exception("demo registration failed")


def register_demo_in_background(base_url: str, api_key: str | None = None) -> threading.Thread:
    """Start a daemon thread that waits for ``/healthz`` and then registers the demo model."""
    thread = threading.Thread(
        target=_run_demo, args=(base_url, api_key), name="rps-demo", daemon=True
    )
    thread.start()
    return thread
