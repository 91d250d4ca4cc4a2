"""``GET /models/{id}/test-points``: stored test points with the head's predicted class."""

from __future__ import annotations

import numpy as np
import pytest

from representer import LinearHead
from representer.likelihood import predicted_class_from_logits
from tests.helpers.service import BOB


def head_predictions(model) -> np.ndarray:
    """What the registered head predicts for each stored test point, computed here."""
    problem = model.problem
    head = LinearHead(problem["weights"], problem["bias"])
    return predicted_class_from_logits(head.logits(problem["test_features"].astype(np.float32)))


@pytest.fixture(params=["multiclass_model", "binary_model"])
def ready_model(request):
    return request.getfixturevalue(request.param)


async def test_points_carry_label_and_the_heads_prediction(service, ready_model):
    model = ready_model
    async with service.client() as client:
        response = await client.get(f"/models/{model.id}/test-points", params={"limit": 1000})
    assert response.status_code == 200, response.text
    body = response.json()
    predicted = head_predictions(model)
    assert body["total"] == len(model.test_ids) and body["model_id"] == model.id
    assert [item["test_id"] for item in body["items"]] == model.test_ids
    assert [item["label"] for item in body["items"]] == model.problem["test_labels"].tolist()
    assert [item["predicted_class"] for item in body["items"]] == predicted.tolist()


async def test_filters_by_label_and_correctness(service, multiclass_model):
    labels = multiclass_model.problem["test_labels"]
    predicted = head_predictions(multiclass_model)
    path = f"/models/{multiclass_model.id}/test-points"
    async with service.client() as client:
        for params, expected in (
            ({"label": int(labels[0])}, labels == labels[0]),
            ({"correct": "true"}, labels == predicted),
            ({"correct": "false"}, labels != predicted),
            (
                {"label": int(labels[0]), "correct": "false"},
                (labels == labels[0]) & (labels != predicted),
            ),
        ):
            body = (await client.get(path, params=params)).json()
            wanted = [multiclass_model.test_ids[i] for i in np.flatnonzero(expected)]
            assert [item["test_id"] for item in body["items"]] == wanted, params
            assert body["total"] == len(wanted)


async def test_pages_tile_the_points(service, multiclass_model):
    path = f"/models/{multiclass_model.id}/test-points"
    async with service.client() as client:
        pages = [
            (await client.get(path, params={"limit": 4, "offset": offset})).json()
            for offset in (0, 4)
        ]
    ids = [item["test_id"] for page in pages for item in page["items"]]
    assert ids == multiclass_model.test_ids
    assert all(page["total"] == len(multiclass_model.test_ids) for page in pages)


async def test_bad_label_and_other_tenant(service, multiclass_model):
    path = f"/models/{multiclass_model.id}/test-points"
    async with service.client() as client:
        bad_label = await client.get(path, params={"label": 3})
        other_tenant = await client.get(path, headers=BOB)
    assert bad_label.status_code == 422, bad_label.text
    assert bad_label.headers["content-type"].startswith("application/problem+json")
    assert [error["field"] for error in bad_label.json()["errors"]] == ["label"]
    assert other_tenant.status_code == 404
    assert other_tenant.headers["content-type"].startswith("application/problem+json")


async def test_one_point_by_id(service, multiclass_model):
    path = f"/models/{multiclass_model.id}/test-points"
    async with service.client() as client:
        found = (await client.get(path, params={"test_id": multiclass_model.test_ids[2]})).json()
        missing = (await client.get(path, params={"test_id": "no-such\x00id"})).json()
    assert [item["test_id"] for item in found["items"]] == [multiclass_model.test_ids[2]]
    assert found["items"][0]["test_index"] == 2
    assert missing["items"] == [] and missing["total"] == 0
