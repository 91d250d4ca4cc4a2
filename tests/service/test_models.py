"""``POST/GET/DELETE /models``: registration, validation (nothing stored on rejection), tenants."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
from sqlalchemy import func, select

from models_store import Score, TrainPoint
from representer.label_errors import LabelRanking
from tests.helpers.problems import linear_problem
from tests.helpers.service import (
    BOB,
    linear_parts,
    wait_ready,
)

SMALL = {"n": 20, "d": 4, "k": 3, "m": 3}


def pickled_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}] * 20, dtype=object), allow_pickle=True)
    return buffer.getvalue()


def with_nan(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array[3, 1] = np.nan
    return array


def bad_upload(case: str) -> tuple[dict, dict]:
    """(problem overrides or part overrides, spec) for each rejected registration."""
    problem = linear_problem(**SMALL)
    spec = {"kind": "linear"}
    parts: dict = {}
    match case:
        case "weights_1d":
            problem["weights"] = problem["weights"][0]
        case "weights_inf":
            problem["weights"][0, 0] = np.inf
        case "bias_shape":
            problem["bias"] = np.zeros(2)
        case "features_cols":
            problem["train_features"] = problem["train_features"][:, :3]
        case "features_nan":
            problem["train_features"] = with_nan(problem["train_features"])
        case "features_one_row":
            problem["train_features"], problem["train_labels"] = (
                problem["train_features"][:1],
                problem["train_labels"][:1],
            )
        case "labels_range":
            problem["train_labels"][5] = 3
        case "labels_negative":
            problem["train_labels"][5] = -1
        case "labels_float":
            problem["train_labels"] = problem["train_labels"].astype(np.float64)
        case "labels_length":
            problem["train_labels"] = problem["train_labels"][:-1]
        case "labels_pickled":
            parts["train_labels"] = ("y.npy", pickled_npy())
        case "weights_pickle_file":
            parts["weights"] = ("w.npy", pickle.dumps(problem["weights"]))
        case "test_cols":
            problem["test_features"] = problem["test_features"][:, :2]
        case "test_labels_range":
            problem["test_labels"][0] = 9
        case "test_labels_alone":
            del problem["test_features"]
        case "missing_weights":
            del problem["weights"]
        case "missing_labels":
            del problem["train_labels"]
        case "unknown_part":
            parts["booster"] = ("b.json", b"{}")
        case "ids_duplicate":
            parts["train_ids"] = (None, json.dumps(["a"] * 20))
        case "ids_length":
            parts["train_ids"] = (None, json.dumps([str(i) for i in range(19)]))
        case "ids_not_strings":
            parts["train_ids"] = (None, json.dumps(list(range(20))))
        case "records_length":
            parts["train_records"] = (None, json.dumps([{}] * 3))
        case "records_not_json":
            parts["train_records"] = (None, "[{not json")
        case "spec_kind":
            spec = {"kind": "forest"}
        case "spec_missing_kind":
            spec = {"name": "x"}
        case "spec_unknown_field":
            spec = {"kind": "linear", "colour": "red"}
        case "spec_lr_negative":
            spec = {"kind": "linear", "lje": {"lr": -1}}
        case "spec_method":
            spec = {"kind": "linear", "methods": ["shap"]}
        case "spec_methods_repeated":
            spec = {"kind": "linear", "methods": ["lje", "lje"]}
        case "spec_class_names":
            spec = {"kind": "linear", "class_names": ["a", "b"]}
        case "spec_not_json":
            parts["spec"] = (None, "{kind: linear")
    return problem, spec, parts


CASES = {
    "weights_1d": "weights",
    "weights_inf": "weights",
    "bias_shape": "bias",
    "features_cols": "train_features",
    "features_nan": "train_features",
    "features_one_row": "train_features",
    "labels_range": "train_labels",
    "labels_negative": "train_labels",
    "labels_float": "train_labels",
    "labels_length": "train_labels",
    "labels_pickled": "train_labels",
    "weights_pickle_file": "weights",
    "test_cols": "test_features",
    "test_labels_range": "test_labels",
    "test_labels_alone": "test_labels",
    "missing_weights": "weights",
    "missing_labels": "train_labels",
    "unknown_part": "booster",
    "ids_duplicate": "train_ids",
    "ids_length": "train_ids",
    "ids_not_strings": "train_ids",
    "records_length": "train_records",
    "records_not_json": "train_records",
    "spec_kind": "spec.kind",
    "spec_missing_kind": "spec.kind",
    "spec_unknown_field": "spec.colour",
    "spec_lr_negative": "spec.lje.lr",
    "spec_method": "spec.methods.0",
    "spec_methods_repeated": "spec.methods",
    "spec_class_names": "spec.class_names",
    "spec_not_json": "spec",
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_rejected_registration_stores_nothing(service, case):
    problem, spec, parts = bad_upload(case)
    models_before, files_before = service.model_count(), set(service.artifact_files())
    async with service.client() as client:
        response = await client.post("/models", files={**linear_parts(problem, spec), **parts})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 422 and body["type"].startswith("urn:rps:problem:")
    assert CASES[case] in [error["field"] for error in body["errors"]], body
    assert service.model_count() == models_before
    assert set(service.artifact_files()) == files_before
    assert service.upload_files() == []


async def test_oversize_part_is_413_naming_the_part(service, monkeypatch):
    problem = linear_problem(**SMALL)
    problem["train_features"] = np.random.default_rng(0).normal(size=(400, 4))
    problem["train_labels"] = np.zeros(400, dtype=np.int64)
    monkeypatch.setattr(service.context.settings, "max_upload_bytes", 4096)
    models_before = service.model_count()
    async with service.client() as client:
        response = await client.post("/models", files=linear_parts(problem, {"kind": "linear"}))
    assert response.status_code == 413, response.text
    assert response.json()["errors"][0]["field"] == "train_features"
    assert service.model_count() == models_before and service.upload_files() == []


async def test_not_multipart_is_415(service):
    async with service.client() as client:
        response = await client.post("/models", json={"kind": "linear"})
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_register_status_list_delete(service):
    problem = linear_problem(**SMALL)
    async with service.client() as client:
        response = await client.post(
            "/models", files=linear_parts(problem, {"kind": "linear", "name": "tiny"})
        )
        assert response.status_code == 202, response.text
        created = response.json()
        assert response.headers["location"] == f"/models/{created['id']}"
        assert created["status"] in ("queued", "running", "ready") and created["methods"] == ["lje"]
        assert (
            created["num_classes"],
            created["feature_dim"],
            created["n_train"],
            created["n_test"],
        ) == (3, 4, 20, 3)
        ready = await wait_ready(client, created["id"])
        assert ready["status"] == "ready" and ready["progress"] == 1.0 and ready["error"] is None
        assert ready["attempts"] == 1 and ready["job_status"] == "done" and ready["ready_at"]
        assert set(ready["diagnostics"]) >= {"train_accuracy", "mean_abs_residual", "theta_shift"}
        assert 0.0 <= ready["diagnostics"]["train_accuracy"] <= 1.0
        listed = (await client.get("/models")).json()
        assert created["id"] in [item["id"] for item in listed["items"]]
        assert created["id"] not in [
            item["id"] for item in (await client.get("/models", headers=BOB)).json()["items"]
        ]
        assert (await client.get(f"/models/{created['id']}", headers=BOB)).status_code == 404
        assert (await client.delete(f"/models/{created['id']}", headers=BOB)).status_code == 404
        model_dir = service.context.store.model_dir(created["id"])
        assert model_dir.exists()
        assert (await client.delete(f"/models/{created['id']}")).status_code == 204
        assert (await client.get(f"/models/{created['id']}")).status_code == 404
        assert (await client.delete(f"/models/{created['id']}")).status_code == 404
    assert not model_dir.exists()
    with service.context.sessions() as session:
        for table in (TrainPoint, Score):
            assert (
                session.scalar(
                    select(func.count()).select_from(table).where(table.model_id == created["id"])
                )
                == 0
            )


async def test_training_rows_are_stored_per_point(service, multiclass_model):
    with service.context.sessions() as session:
        rows = session.scalars(
            select(TrainPoint)
            .where(TrainPoint.model_id == multiclass_model.id)
            .order_by(TrainPoint.train_index)
        ).all()
        scores = session.scalar(
            select(func.count()).select_from(Score).where(Score.model_id == multiclass_model.id)
        )
    labels = multiclass_model.problem["train_labels"]
    assert [row.train_id for row in rows] == multiclass_model.train_ids
    assert [row.label for row in rows] == labels.tolist()
    # One row per point for each of the three methods and each label-error ranking.
    assert scores == (3 + len(LabelRanking)) * len(labels)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}]
)
async def test_bad_or_missing_key_is_401(service, headers):
    async with service.client() as client:
        client.headers.pop("Authorization")
        response = await client.get("/models", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["status"] == 401


async def test_model_not_ready_is_409_with_status(service):
    """A model queued for the GPU queue (no GPU worker in these tests) stays queued."""
    problem = linear_problem(n=20, d=4, k=3, m=3)
    async with service.client() as client:
        created = (
            await client.post(
                "/models", files=linear_parts(problem, {"kind": "linear", "queue": "gpu"})
            )
        ).json()
        explain = await client.get("/explain", params={"model_id": created["id"], "test_id": "0"})
        suspicious = await client.get("/debug/suspicious", params={"model_id": created["id"]})
        posted = await client.post(
            "/explain", json={"model_id": created["id"], "features": [[0.0] * 4]}
        )
        status = (await client.get(f"/models/{created['id']}")).json()
        assert (await client.delete(f"/models/{created['id']}")).status_code == 204
    assert (
        status["status"] == "queued"
        and status["job_status"] == "queued"
        and status["attempts"] == 0
    )
    for response in (explain, suspicious, posted):
        assert response.status_code == 409
        body = response.json()
        assert body["model_status"] == "queued" and body["model"]["id"] == created["id"]


@pytest.mark.parametrize(
    "body",
    [
        b"not multipart at all",
        b'--XYZ\r\nContent-Disposition: form-data; name="spec"\r\n\r\n{"kind": "linear"}',  # no closing boundary
        b"--XYZ\r\nBroken-Header\r\n\r\nx\r\n--XYZ--\r\n",
        b"--XYZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XYZ--\r\n",  # a part without a name
    ],
)
async def test_malformed_multipart_is_422(service, body):
    models_before = service.model_count()
    async with service.client() as client:
        response = await client.post(
            "/models", content=body, headers={"content-type": "multipart/form-data; boundary=XYZ"}
        )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "body"
    assert service.model_count() == models_before and service.upload_files() == []
