"""The review loop: reviews per tenant, their export, ``reviewed=false`` and refits."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from sqlalchemy import select

from models_store import Score, TrainPoint
from tests.helpers.problems import linear_problem
from tests.helpers.service import BOB, register_ready, wait_ready


@pytest.fixture(scope="module")
def reviewed_model(service):
    """A fresh three-class model per backend, so reviews never leak into other tests."""
    spec = {"name": "to-review", "kind": "linear", "methods": ["lje"]}
    return register_ready(service, linear_problem(k=3, seed=11), spec)


async def put(client, model_id, train_id, body, **kwargs):
    return await client.put(f"/models/{model_id}/reviews/{train_id}", json=body, **kwargs)


async def test_put_is_idempotent_and_listed_as_json_and_csv(service, reviewed_model):
    model_id, labels = reviewed_model.id, reviewed_model.problem["train_labels"]
    new_label = int((labels[3] + 1) % 3)
    body = {"decision": "relabel", "label": new_label, "note": "looks like the next class"}
    async with service.client() as client:
        first = await put(client, model_id, "tr-3", body)
        second = await put(client, model_id, "tr-3", body)
        kept = await put(client, model_id, "tr-4", {"decision": "keep"})
        listed = (await client.get(f"/models/{model_id}/reviews")).json()
        as_csv = await client.get(f"/models/{model_id}/reviews", params={"format": "csv"})
    assert first.status_code == 200, first.text
    assert second.status_code == 200
    a, b = first.json(), second.json()
    assert a["created_at"] == b["created_at"]
    assert {k: v for k, v in a.items() if k != "time"} == {
        k: v for k, v in b.items() if k != "time"
    }
    assert a["old_label"] == int(labels[3]) and a["new_label"] == new_label
    assert kept.json()["new_label"] == int(labels[4])
    by_id = {item["train_id"]: item for item in listed["items"]}
    assert listed["total"] == len(by_id) and by_id["tr-3"]["decision"] == "relabel"
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert list(rows[0]) == ["train_id", "old_label", "new_label", "decision", "note", "time"]
    row = next(row for row in rows if row["train_id"] == "tr-3")
    assert row["new_label"] == str(new_label) and row["note"] == "looks like the next class"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"decision": "relabel", "label": 3}, 422, "label"),
        ({"decision": "relabel", "label": -1}, 422, "label"),
        ({"decision": "relabel"}, 422, "label"),
        ({"decision": "keep", "label": 1}, 422, "label"),
        ({"decision": "maybe"}, 422, "decision"),
        ({"decision": "keep", "extra": 1}, 422, "extra"),
        ({"decision": "keep", "note": "x" * 2001}, 422, "note"),
    ],
)
async def test_review_validation(service, reviewed_model, body, status, field):
    async with service.client() as client:
        response = await put(client, reviewed_model.id, "tr-5", body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(field in error["field"] for error in response.json()["errors"]), response.json()


async def test_unknown_point_or_model_is_404(service, reviewed_model):
    async with service.client() as client:
        point = await put(client, reviewed_model.id, "no-such-point", {"decision": "keep"})
        model = await put(client, "no-such-model", "tr-1", {"decision": "keep"})
        listing = await client.get("/models/no-such-model/reviews")
        refit = await client.post("/models/no-such-model/refit")
    assert point.status_code == 404 and point.json()["errors"][0]["field"] == "train_id"
    assert model.status_code == listing.status_code == refit.status_code == 404


async def test_tenants_never_see_each_others_reviews(service, reviewed_model):
    async with service.client() as client:
        await put(client, reviewed_model.id, "tr-6", {"decision": "remove", "note": "alice"})
        foreign_put = await put(
            client, reviewed_model.id, "tr-6", {"decision": "keep"}, headers=BOB
        )
        foreign_list = await client.get(f"/models/{reviewed_model.id}/reviews", headers=BOB)
        foreign_refit = await client.post(f"/models/{reviewed_model.id}/refit", headers=BOB)
        mine = (await client.get(f"/models/{reviewed_model.id}/reviews")).json()
    assert foreign_put.status_code == foreign_list.status_code == foreign_refit.status_code == 404
    assert next(i for i in mine["items"] if i["train_id"] == "tr-6")["decision"] == "remove"


async def test_reviewed_false_hides_reviewed_points(service, reviewed_model):
    model_id = reviewed_model.id
    async with service.client() as client:
        top = (
            await client.get("/debug/suspicious", params={"model_id": model_id, "limit": 3})
        ).json()
        for item in top["items"]:
            await put(client, model_id, item["train_id"], {"decision": "keep"})
        hidden = (
            await client.get(
                "/debug/suspicious",
                params={"model_id": model_id, "limit": 200, "reviewed": "false"},
            )
        ).json()
        shown = (
            await client.get(
                "/debug/suspicious",
                params={"model_id": model_id, "limit": 200, "reviewed": "true"},
            )
        ).json()
        reviews = (await client.get(f"/models/{model_id}/reviews")).json()
    reviewed_ids = {item["train_id"] for item in reviews["items"]}
    assert {item["train_id"] for item in top["items"]} <= reviewed_ids
    assert not reviewed_ids & {item["train_id"] for item in hidden["items"]}
    assert {item["train_id"] for item in shown["items"]} == reviewed_ids
    assert hidden["total"] + shown["total"] == top["total"]
    assert [item["rank"] for item in hidden["items"]] == list(range(1, len(hidden["items"]) + 1))


def source_snapshot(service, model_id):
    with service.context.sessions() as session:
        labels = session.scalars(
            select(TrainPoint.label)
            .where(TrainPoint.model_id == model_id)
            .order_by(TrainPoint.train_index)
        ).all()
        scores = session.scalars(
            select(Score.score)
            .where(Score.model_id == model_id)
            .order_by(Score.method, Score.train_index)
        ).all()
    return list(labels), list(scores)


@pytest.fixture(scope="module")
def refit_source(service):
    spec = {"name": "refit-source", "kind": "linear", "methods": ["lje"]}
    return register_ready(service, linear_problem(k=3, seed=12), spec)


async def test_refit_registers_a_new_ready_model_and_leaves_the_source(service, refit_source):
    """Relabelling the flipped points and removing one: the new model trains on the
    corrections, the source keeps its labels, scores, status and version."""
    source, problem = refit_source, refit_source.problem
    labels = problem["train_labels"]
    clean = np.argmax(problem["train_features"] @ problem["weights"].T + problem["bias"], axis=1)
    wrong = np.flatnonzero(labels != clean)
    assert len(wrong) > 0
    before = source_snapshot(service, source.id)
    async with service.client() as client:
        status_before = (await client.get(f"/models/{source.id}")).json()
        for index in wrong:
            body = {"decision": "relabel", "label": int(clean[index])}
            assert (await put(client, source.id, f"tr-{index}", body)).status_code == 200
        await put(client, source.id, "tr-0", {"decision": "remove"})
        response = await client.post(f"/models/{source.id}/refit", json={"name": "fixed"})
        assert response.status_code == 202, response.text
        refit = response.json()
        status = await wait_ready(client, refit["id"])
        status_after = (await client.get(f"/models/{source.id}")).json()
        page = (
            await client.get("/debug/suspicious", params={"model_id": refit["id"], "limit": 1000})
        ).json()
    removed = 0 not in wrong
    assert refit["id"] != source.id and refit["parent_id"] == source.id
    assert refit["relabelled"] == len(wrong) - (0 in wrong) and refit["removed"] == 1
    assert status["status"] == "ready" and status["parent_id"] == source.id
    assert status["name"] == "fixed" and status["n_train"] == len(labels) - 1
    diagnostics = status["diagnostics"]
    assert diagnostics["refit_test_accuracy_change"] == pytest.approx(
        diagnostics["refit_test_accuracy_after"] - diagnostics["refit_test_accuracy_before"]
    )
    by_id = {item["train_id"]: item["label"] for item in page["items"]}
    assert "tr-0" not in by_id and len(by_id) == len(labels) - 1
    for index in wrong:
        if index != 0 or not removed:
            assert by_id.get(f"tr-{index}", int(clean[index])) == int(clean[index])
    assert source_snapshot(service, source.id) == before
    for key in ("status", "version", "ready_at", "n_train", "parent_id"):
        assert status_after[key] == status_before[key], key
