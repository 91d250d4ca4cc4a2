"""End to end on real data: a German Credit XGBoost booster through PostgreSQL + Redis + a worker.

The booster is trained here, registered with its raw rows, explained over HTTP, and every
number compared with the engine run in this process (adapter + fit + contributions).
"""

from __future__ import annotations

import numpy as np
import pytest

from rps.client import Client
from tests.helpers.expected_answers import (
    assert_explanation_matches,
    assert_prediction_matches,
    assert_suspicious_matches,
    fitted_states,
)
from tests.helpers.processes import start_api, start_worker, wait_ready_while_alive

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

TOP_K = 10
READY_TIMEOUT_S = 180.0
METHODS = ("lje", "influence")
NUM_TREES = 40
PROBABILITY_ATOL = 1e-5  # float32 leaf values summed in another order


def _load_split(folder, split: str):
    import pandas as pd

    inputs = pd.read_csv(folder / f"X_{split}_clean.csv", index_col=0)
    labels = pd.read_csv(folder / f"Y_{split}_clean.csv", index_col=0)
    assert (inputs["id"].to_numpy() == labels.index.to_numpy()).all(), (
        "X and Y rows are not aligned"
    )
    ids = [str(row_id) for row_id in inputs.pop("id")]
    return (
        inputs.to_numpy(np.float64),
        labels["classification"].to_numpy(np.int64),
        ids,
        list(inputs.columns),
    )


def _train_booster(train_inputs, train_labels):
    import xgboost

    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.2, "seed": 0, "nthread": 1}
    return xgboost.train(
        params, xgboost.DMatrix(train_inputs, label=train_labels), num_boost_round=NUM_TREES
    )


def test_german_credit_booster_explained_as_the_engine_does(
    production_backend, shared_data, tmp_path
):
    import xgboost

    from representer.adapters import BoosterEmbedding

    folder = shared_data("german_credit")
    train_inputs, train_labels, train_ids, columns = _load_split(folder, "train")
    test_inputs, test_labels, test_ids, _ = _load_split(folder, "test")
    booster = _train_booster(train_inputs, train_labels)
    booster_path = tmp_path / "german_credit.json"
    booster.save_model(booster_path)

    embedding = BoosterEmbedding.from_booster(booster)
    train_features = embedding.transform(train_inputs)  # (800, NUM_TREES)
    test_features = embedding.transform(test_inputs)  # (200, NUM_TREES)
    states = fitted_states(embedding.head, train_features, train_labels, METHODS)
    booster_probabilities = booster.predict(xgboost.DMatrix(test_inputs))  # (200,) P(good)

    api = start_api(production_backend)
    worker = start_worker(production_backend, "worker")
    with Client(api.base_url) as client:
        model = client.register_xgboost(
            booster_path,
            train_inputs,
            train_labels,
            test_inputs=test_inputs,
            test_labels=test_labels,
            name="german-credit-xgb",
            class_names=["bad", "good"],
            methods=list(METHODS),
            train_ids=train_ids,
            test_ids=test_ids,
            train_records=[
                dict(zip(columns, map(float, row), strict=False)) for row in train_inputs
            ],
        )
        ready = wait_ready_while_alive(
            client, model["id"], processes=[api, worker], timeout=READY_TIMEOUT_S
        )
        assert (ready["kind"], ready["n_train"], ready["n_test"], ready["num_classes"]) == (
            "xgboost",
            800,
            200,
            2,
        )
        assert ready["feature_dim"] == train_features.shape[1]

        for method in METHODS:
            for row in (0, 17, 199):
                body = client.explain(model["id"], test_id=test_ids[row], k=TOP_K, method=method)
                assert body["test_id"] == test_ids[row]
                assert_prediction_matches(body, embedding.head, test_features[row])
                np.testing.assert_allclose(
                    body["prediction"]["probabilities"][-1],
                    booster_probabilities[row],
                    atol=PROBABILITY_ATOL,
                )
                assert_explanation_matches(
                    body, states[method], train_features, test_features[row], k=TOP_K
                )
                top = body["positive"][0]
                assert top["train_id"] == train_ids[top["train_index"]]
                assert top["record"]["creditamount"] == pytest.approx(
                    train_inputs[top["train_index"], columns.index("creditamount")]
                )

            submitted = client.explain(model["id"], inputs=test_inputs[:3], k=TOP_K, method=method)
            for row, body in enumerate(submitted):
                assert_explanation_matches(
                    body, states[method], train_features, test_features[row], k=TOP_K
                )

            suspicious = client.suspicious(model["id"], method=method, limit=25)
            assert_suspicious_matches(suspicious, states[method], n_train=800)
            second_page = client.suspicious(model["id"], method=method, limit=25, offset=25)
            assert second_page["items"][0]["rank"] == 26
            assert second_page["items"][0]["score"] <= suspicious["items"][-1]["score"]
