"""XGBoost models: the service computes φ itself; answers equal the adapter + engine's own."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from representer import Method, contributions, fit
from representer.adapters import BoosterEmbedding
from tests.helpers.service import npy_bytes, wait_ready

MARGIN_RTOL = 1e-5  # φ is stored as float32
CONTRIBUTION_RTOL = 1e-6


def trained_booster(*, num_class: int, seed: int = 0) -> tuple[xgb.Booster, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(160, 5)).astype(np.float32)
    score = inputs[:, 0] + 0.5 * inputs[:, 1] ** 2 - inputs[:, 2]
    labels = (
        (score > 0.3).astype(np.int64)
        if num_class == 2
        else np.digitize(score, [-0.5, 0.8]).astype(np.int64)
    )
    params = {"max_depth": 3, "eta": 0.3, "seed": seed, "nthread": 1}
    params.update(
        {"objective": "binary:logistic"}
        if num_class == 2
        else {"objective": "multi:softprob", "num_class": 3}
    )
    booster = xgb.train(params, xgb.DMatrix(inputs, label=labels), num_boost_round=8)
    test = rng.normal(size=(4, 5)).astype(np.float32)
    return booster, {
        "train_inputs": inputs,
        "train_labels": labels,
        "test_inputs": test,
        "test_labels": rng.integers(0, num_class, size=4),
    }


def booster_bytes(booster: xgb.Booster, suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"model{suffix}"
        booster.save_model(str(path))
        return path.read_bytes()


def xgb_parts(
    booster: xgb.Booster, arrays: dict[str, np.ndarray], *, suffix: str = ".json", spec=None
) -> dict:
    files = {
        "spec": (None, json.dumps(spec or {"kind": "xgboost", "name": "boosted"})),
        "booster": (f"model{suffix}", booster_bytes(booster, suffix)),
    }
    files.update({name: (f"{name}.npy", npy_bytes(array)) for name, array in arrays.items()})
    return files


@pytest.mark.parametrize(("num_class", "suffix"), [(2, ".json"), (3, ".ubj")])
async def test_xgboost_explanations_equal_adapter_and_engine(service, num_class, suffix):
    booster, arrays = trained_booster(num_class=num_class)
    async with service.client() as client:
        created = await client.post("/models", files=xgb_parts(booster, arrays, suffix=suffix))
        assert created.status_code == 202, created.text
        model = await wait_ready(client, created.json()["id"])
        stored = (
            await client.get("/explain", params={"model_id": model["id"], "test_id": "2", "k": 5})
        ).json()
        posted = await client.post(
            "/explain",
            json={"model_id": model["id"], "inputs": arrays["test_inputs"][2:3].tolist(), "k": 5},
        )
        await client.delete(f"/models/{model['id']}")
    assert model["status"] == "ready", model
    assert (model["num_classes"], model["input_dim"], model["kind"]) == (num_class, 5, "xgboost")
    margin = booster.predict(xgb.DMatrix(arrays["test_inputs"][2:3]), output_margin=True).reshape(
        -1
    )
    np.testing.assert_allclose(stored["prediction"]["logits"], margin, rtol=MARGIN_RTOL, atol=1e-6)

    embedding = BoosterEmbedding.from_booster(booster)
    train_features = embedding.transform(arrays["train_inputs"])
    state = fit(embedding.head, train_features, arrays["train_labels"], method=Method.LJE)
    test_features = embedding.transform(arrays["test_inputs"][2:3])
    expected = contributions(
        state, train_features, test_features, target_classes=[stored["target_class"]]
    )[0]
    order = np.argsort(-expected, kind="stable")[:5]
    assert [point["train_index"] for point in stored["positive"]] == order.tolist()
    np.testing.assert_allclose(
        [p["contribution"] for p in stored["positive"]], expected[order], rtol=CONTRIBUTION_RTOL
    )
    assert posted.status_code == 200, posted.text
    assert posted.json()["explanations"][0]["positive"] == stored["positive"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("pickle_suffix", "booster"),
        ("garbage_json", "booster"),
        ("inputs_width", "train_inputs"),
        ("labels_range", "train_labels"),
        ("features_part", "train_features"),
    ],
)
async def test_xgboost_rejections(service, change, field):
    booster, arrays = trained_booster(num_class=2)
    files = xgb_parts(booster, arrays)
    if change == "pickle_suffix":
        files["booster"] = ("model.pkl", files["booster"][1])
    elif change == "garbage_json":
        files["booster"] = ("model.json", b'{"not": "a booster"}')
    elif change == "inputs_width":
        files["train_inputs"] = ("x.npy", npy_bytes(arrays["train_inputs"][:, :4]))
    elif change == "labels_range":
        files["train_labels"] = ("y.npy", npy_bytes(arrays["train_labels"] + 1))
    else:
        files["train_features"] = ("f.npy", npy_bytes(arrays["train_inputs"]))
    models_before, files_before = service.model_count(), set(service.artifact_files())
    async with service.client() as client:
        response = await client.post("/models", files=files)
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]
    assert service.model_count() == models_before and set(service.artifact_files()) == files_before


async def test_xgboost_refit_is_a_linear_head_over_the_tree_embedding(service):
    """A refit of a booster keeps its tree embedding as the features and refits the head."""
    booster, arrays = trained_booster(num_class=3, seed=3)
    async with service.client() as client:
        created = await client.post("/models", files=xgb_parts(booster, arrays))
        source = await wait_ready(client, created.json()["id"])
        reviewed = await client.put(
            f"/models/{source['id']}/reviews/0", json={"decision": "relabel", "label": 2}
        )
        assert reviewed.status_code == 200, reviewed.text
        refit = await client.post(f"/models/{source['id']}/refit")
        assert refit.status_code == 202, refit.text
        model = await wait_ready(client, refit.json()["id"])
        explained = (
            await client.get("/explain", params={"model_id": model["id"], "test_id": "1"})
        ).json()
    embedding = BoosterEmbedding.from_booster(booster)
    assert model["status"] == "ready" and model["kind"] == "linear"
    assert model["parent_id"] == source["id"] and model["n_train"] == source["n_train"]
    assert model["diagnostics"]["refit_test_accuracy_before"] == pytest.approx(
        np.mean(
            booster.predict(xgb.DMatrix(arrays["test_inputs"])).argmax(axis=1)
            == arrays["test_labels"]
        )
    )
    assert len(explained["prediction"]["logits"]) == embedding.head.num_outputs
