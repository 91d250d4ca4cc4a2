"""``GET /explain`` and ``POST /explain``: the answers equal the engine's own."""

from __future__ import annotations

import numpy as np
import pytest

from representer import LinearHead, LJEConfig, Method, contributions, default_config, explain, fit
from tests.helpers.service import BOB

CONTRIBUTION_RTOL = 1e-6  # the service and the test fit the same float32 features
CONTRIBUTION_ATOL = 1e-9


def engine_contributions(model, method: Method, test_row: int, target: int) -> np.ndarray:
    """c_i(t) for all i, from an independent fit in this process, shape (n,)."""
    problem = model.problem
    head = LinearHead(problem["weights"], problem["bias"])
    features = problem["train_features"].astype(np.float32)
    lr = model.spec.get("lje", {}).get("lr", 0.01)
    config = LJEConfig(lr=lr) if method is Method.LJE else default_config(method)
    state = fit(head, features, problem["train_labels"], method=method, config=config)
    test = problem["test_features"].astype(np.float32)[test_row : test_row + 1]
    return contributions(state, features, test, target_classes=[target])[0]


@pytest.mark.parametrize("method", [Method.LJE, Method.L2, Method.INFLUENCE])
async def test_contributions_equal_engine(service, multiclass_model, method):
    async with service.client() as client:
        response = await client.get(
            "/explain",
            params={
                "model_id": multiclass_model.id,
                "test_id": "te-2",
                "k": 5,
                "method": method.value,
            },
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["test_id"] == "te-2" and body["method"] == method.value
    expected = engine_contributions(multiclass_model, method, 2, body["target_class"])
    order = np.argsort(-expected, kind="stable")
    positive = body["positive"]
    assert [point["train_index"] for point in positive] == order[:5].tolist()
    np.testing.assert_allclose(
        [point["contribution"] for point in positive],
        expected[order[:5]],
        rtol=CONTRIBUTION_RTOL,
        atol=CONTRIBUTION_ATOL,
    )
    negative = body["negative"]
    assert [point["train_index"] for point in negative] == order[::-1][:5].tolist()
    np.testing.assert_allclose(
        body["decomposition"]["sum_of_contributions"], expected.sum(), rtol=1e-6, atol=1e-9
    )
    for point in positive + negative:
        index = point["train_index"]
        assert point["train_id"] == multiclass_model.train_ids[index]
        assert point["label"] == int(multiclass_model.problem["train_labels"][index])
        assert point["record"] == {"row": index}
    assert [point["rank"] for point in positive] == [1, 2, 3, 4, 5]


async def test_prediction_and_decomposition(service, multiclass_model):
    problem = multiclass_model.problem
    async with service.client() as client:
        body = (
            await client.get(
                "/explain", params={"model_id": multiclass_model.id, "test_id": "te-0"}
            )
        ).json()
    logits = problem["test_features"][0].astype(np.float32) @ problem["weights"].T + problem["bias"]
    np.testing.assert_allclose(body["prediction"]["logits"], logits, rtol=1e-5)
    assert body["prediction"]["predicted_class"] == int(np.argmax(logits))
    assert body["target_class"] == int(np.argmax(logits))
    np.testing.assert_allclose(sum(body["prediction"]["probabilities"]), 1.0, rtol=1e-9)
    decomposition = body["decomposition"]
    np.testing.assert_allclose(
        decomposition["residual"],
        decomposition["model_output"] - decomposition["sum_of_contributions"],
        atol=1e-9,
    )
    assert decomposition["model_output"] == pytest.approx(logits[body["target_class"]], rel=1e-5)
    assert len(body["positive"]) == 10 and len(body["negative"]) == 10


async def test_target_label_and_index(service, multiclass_model):
    label = int(multiclass_model.problem["test_labels"][1])
    async with service.client() as client:
        by_label = (
            await client.get(
                "/explain",
                params={"model_id": multiclass_model.id, "test_id": "te-1", "target": "label"},
            )
        ).json()
        by_index = (
            await client.get(
                "/explain",
                params={"model_id": multiclass_model.id, "test_id": "te-1", "target": str(label)},
            )
        ).json()
    assert by_label["target_class"] == label == by_index["target_class"]
    assert by_label["positive"] == by_index["positive"]


async def test_binary_class_zero_is_negated(service, binary_model):
    async with service.client() as client:
        toward_one = (
            await client.get(
                "/explain",
                params={"model_id": binary_model.id, "test_id": "te-3", "target": "1", "k": 3},
            )
        ).json()
        toward_zero = (
            await client.get(
                "/explain",
                params={"model_id": binary_model.id, "test_id": "te-3", "target": "0", "k": 3},
            )
        ).json()
    assert [p["train_index"] for p in toward_zero["positive"]] == [
        p["train_index"] for p in toward_one["negative"]
    ]
    np.testing.assert_allclose(
        [p["contribution"] for p in toward_zero["positive"]],
        [-p["contribution"] for p in toward_one["negative"]],
    )
    expected = engine_contributions(binary_model, Method.LJE, 3, 1)
    np.testing.assert_allclose(
        [p["contribution"] for p in toward_one["positive"]],
        np.sort(expected)[::-1][:3],
        rtol=CONTRIBUTION_RTOL,
    )
    assert len(toward_one["prediction"]["logits"]) == 1


async def test_post_explain_matches_get(service, multiclass_model):
    rows = multiclass_model.problem["test_features"][[4, 5]].astype(np.float32).tolist()
    async with service.client() as client:
        posted = await client.post(
            "/explain", json={"model_id": multiclass_model.id, "features": rows, "k": 4}
        )
        stored = (
            await client.get(
                "/explain", params={"model_id": multiclass_model.id, "test_id": "te-5", "k": 4}
            )
        ).json()
    assert posted.status_code == 200, posted.text
    explanations = posted.json()["explanations"]
    assert len(explanations) == 2 and explanations[1]["test_id"] is None
    assert [p["train_index"] for p in explanations[1]["positive"]] == [
        p["train_index"] for p in stored["positive"]
    ]
    np.testing.assert_allclose(
        [p["contribution"] for p in explanations[1]["positive"]],
        [p["contribution"] for p in stored["positive"]],
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"test_id": "nope"}, 404, None),
        ({"test_id": "te-0", "target": "7"}, 422, "target"),
        ({"test_id": "te-0", "target": "sideways"}, 422, "target"),
        ({"test_id": "te-0", "k": "0"}, 422, "k"),
        ({"test_id": "te-0", "method": "shap"}, 422, "method"),
        ({}, 422, "test_id"),
    ],
)
async def test_get_explain_errors(service, multiclass_model, params, status, field):
    async with service.client() as client:
        response = await client.get("/explain", params={"model_id": multiclass_model.id, **params})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if field:
        assert field in [error["field"] for error in body["errors"]]


async def test_method_not_precomputed(service, binary_model):
    async with service.client() as client:
        response = await client.get(
            "/explain", params={"model_id": binary_model.id, "test_id": "te-0", "method": "l2"}
        )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "method"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"features": [[0.0] * 7]}, "features"),
        ({"features": [[0.0] * 8], "inputs": [[0.0] * 8]}, "body"),
        ({"inputs": [[0.0] * 8]}, "inputs"),
        ({"features": [[0.0] * 8], "target": "label"}, "target"),
        ({"features": [[0.0] * 8], "k": 0}, "k"),
    ],
)
async def test_post_explain_errors(service, multiclass_model, body, field):
    async with service.client() as client:
        response = await client.post("/explain", json={"model_id": multiclass_model.id, **body})
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]


async def test_unknown_and_foreign_models_are_404(service, multiclass_model):
    async with service.client() as client:
        missing = await client.get("/explain", params={"model_id": "missing", "test_id": "te-0"})
        foreign = await client.get(
            "/explain", params={"model_id": multiclass_model.id, "test_id": "te-0"}, headers=BOB
        )
        posted = await client.post(
            "/explain", json={"model_id": multiclass_model.id, "features": [[0.0] * 8]}, headers=BOB
        )
    assert missing.status_code == foreign.status_code == posted.status_code == 404
    assert missing.json()["detail"].replace("missing", "X") == foreign.json()["detail"].replace(
        multiclass_model.id, "X"
    )


async def test_explanations_are_cached_in_redis_by_model_version(service, multiclass_model):
    cache = service.context.results
    if service.settings.redis_url is None:
        assert cache is None  # the embedded backend has no Redis, hence no result cache
        return
    pattern = (
        f"{cache.namespace}:explain:{multiclass_model.id}:{multiclass_model.status['version']}:*"
    )
    assert cache.namespace.startswith("rps-test-")
    cache._client.delete(*cache._client.keys(pattern) or ["none"])
    params = {"model_id": multiclass_model.id, "test_id": "te-3", "k": 3, "method": "l2"}
    async with service.client() as client:
        first = (await client.get("/explain", params=params)).json()
        keys = cache._client.keys(pattern)
        second = (await client.get("/explain", params=params)).json()
    assert len(keys) == 1 and first == second


@pytest.mark.parametrize("target", ["predicted", 2])
async def test_http_answer_is_representer_explain(service, multiclass_model, target):
    """Field by field, GET /explain is ``representer.explain`` on the same model and point."""
    problem = multiclass_model.problem
    features = problem["train_features"].astype(np.float32)
    state = fit(
        LinearHead(problem["weights"], problem["bias"]),
        features,
        problem["train_labels"],
        method=Method.LJE,
        config=LJEConfig(lr=0.01),
    )
    test = problem["test_features"].astype(np.float32)[4:5]
    [expected] = explain(state, features, test, target=target, top_k=7)
    async with service.client() as client:
        body = (
            await client.get(
                "/explain",
                params={
                    "model_id": multiclass_model.id,
                    "test_id": "te-4",
                    "k": 7,
                    "target": str(target),
                },
            )
        ).json()
    assert body["target_class"] == expected.target_class
    assert body["prediction"]["predicted_class"] == expected.predicted_class
    np.testing.assert_allclose(body["prediction"]["logits"], expected.logits, rtol=1e-9)
    np.testing.assert_allclose(
        body["prediction"]["probabilities"], expected.probabilities, rtol=1e-9
    )
    for side in ("positive", "negative"):
        assert [p["train_index"] for p in body[side]] == getattr(
            expected, f"{side}_indices"
        ).tolist()
        np.testing.assert_allclose(
            [p["contribution"] for p in body[side]],
            getattr(expected, f"{side}_contributions"),
            rtol=CONTRIBUTION_RTOL,
            atol=CONTRIBUTION_ATOL,
        )
    decomposition = body["decomposition"]
    np.testing.assert_allclose(
        [
            decomposition["sum_of_contributions"],
            decomposition["model_output"],
            decomposition["residual"],
        ],
        [expected.sum_of_contributions, expected.model_output, expected.residual],
        rtol=1e-6,
        atol=1e-9,
    )
