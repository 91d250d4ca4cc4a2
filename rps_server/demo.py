"""The demo models `rps serve --demo` registers: XGBoost on the breast-cancer data set, and
an image model on the 8×8 digits (``rps_server.demo_digits``).

The data ship inside scikit-learn (no download). The models are trained with a fixed seed
on fixed train/test splits, registered through the public client like any user's models,
and the viewer's address and a ready-to-paste ``curl`` for ``GET /explain`` are logged once
they are ready.
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


def _registered(client: Client, name: str) -> str | None:
    """The id of this tenant's model called ``name``, if one exists."""
    for model in client.list_models():
        if model.name == name:
            logger.info("demo model %s already registered (%s)", model.id, model.status)
            return model.id
    return None


def register_demo(base_url: str, *, api_key: str | None = None, wait: bool = True) -> str:
    """Register the demo models unless they exist; returns the breast-cancer model's id.

    Both models are trained before either is registered: nothing trains in this process
    while the in-process worker precomputes (XGBoost and the engine then never share it).
    """
    from rps_server.demo_digits import (
        DIGITS_NAME,
        DIGITS_OPTIONS,
        fit_digits_head,
        load_digits_data,
    )

    with Client(base_url, api_key=api_key) as client:
        model_id = _registered(client, DEMO_NAME)
        digits_id = _registered(client, DIGITS_NAME)
        data = load_demo_data()
        booster = None if model_id else train_demo_booster(data)
        digits = None if digits_id else load_digits_data()
        digits_head = None if digits is None else fit_digits_head(digits)
        if booster is not None:
            model_id = client.register_xgboost(
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
            ).id
            logger.info(
                "demo model %s registered, precomputing %s", model_id, ", ".join(DEMO_METHODS)
            )
        if digits is not None and digits_head is not None:
            digits_id = client.register_linear(
                *digits_head,
                digits.train_features,
                digits.train_labels,
                name=DIGITS_NAME,
                class_names=digits.class_names,
                methods=list(DEMO_METHODS),
                train_ids=digits.train_ids,
                train_records=digits.train_records,
                test_features=digits.test_features,
                test_labels=digits.test_labels,
                test_ids=digits.test_ids,
                test_records=digits.test_records,
                lje=DIGITS_OPTIONS["lje"],
                influence=DIGITS_OPTIONS["influence"],
            ).id
            logger.info(
                "image demo %s registered (8x8 digits, %d training labels flipped on purpose)",
                digits_id,
                len(digits.flipped),
            )
        assert model_id is not None and digits_id is not None  # registered or found above
        if wait:
            for waited in (model_id, digits_id):
                client.wait_ready(waited, timeout=READY_WAIT_S, progress=False)
            auth = "" if api_key is None else ' -H "Authorization: Bearer $RPS_API_KEY"'
            logger.info(
                "demo models ready; open %s/ui/models/%s to see digits explained, or try:\n"
                "  curl%s '%s/explain?model_id=%s&test_id=%s&k=5'",
                client.base_url,
                digits_id,
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
