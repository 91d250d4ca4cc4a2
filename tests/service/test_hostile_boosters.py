"""Hostile booster files through the service: a 422 naming the tree and field, nothing
stored, and the process still answering. Before the structural check, the first case
killed the process (SIGSEGV in XGBoost) and ``child_is_root`` never answered."""

from __future__ import annotations

import copy
import json

import pytest

from tests.helpers.boosters import (
    HOSTILE_TREES,
    booster_document,
    document_bytes,
    patch_ubj_split_index,
    trees_of,
)
from tests.helpers.service import npy_bytes, wait_ready
from tests.service.test_hostile_inputs import assert_problem

SERVICE_CASES = (
    "split_index_2e9",
    "split_index_in_last_tree",
    "child_is_root",
    "both_children_same_node",
    "leaf_infinite",
    "chain_deeper_than_the_limit",
    "num_feature_2e9",
    "short_split_indices",
)
SPEC = {"kind": "xgboost", "lje": {"damping": 1e-3}}


def booster_parts(booster: bytes, arrays: dict, *, suffix: str = ".json") -> dict:
    files = {"spec": (None, json.dumps(SPEC)), "booster": (f"model{suffix}", booster)}
    files.update({name: (f"{name}.npy", npy_bytes(array)) for name, array in arrays.items()})
    return files


async def _post_and_check(service, files: dict, field: str) -> None:
    models_before, files_before = service.model_count(), set(service.artifact_files())
    async with service.client() as client:
        response = await client.post("/models", files=files)
        assert_problem(response, 422, field, location="part")
        assert (await client.get("/healthz")).status_code == 200
    assert service.model_count() == models_before
    assert set(service.artifact_files()) == files_before
    assert service.upload_files() == []


@pytest.mark.parametrize("case", SERVICE_CASES)
async def test_hostile_booster_is_422_naming_tree_and_field(service, case):
    document, arrays = booster_document()
    change, field = HOSTILE_TREES[case]
    change(document)
    await _post_and_check(service, booster_parts(json.dumps(document).encode(), arrays), field)


async def test_hostile_ubj_booster_is_422(service):
    document, arrays = booster_document()
    data = patch_ubj_split_index(document_bytes(document, ".ubj"), 2_000_000_000)
    await _post_and_check(
        service, booster_parts(data, arrays, suffix=".ubj"), "booster.trees[0].split_indices"
    )


async def test_stored_hostile_booster_never_reaches_xgboost_on_the_query_path(service):
    """A booster stored before the check existed: the query answers a problem, the process lives.

    The hidden tree splits on feature 2e9 only past 1e38, so only an extreme row reaches it
    (this killed the API process with one ``POST /explain`` row).
    """
    document, arrays = booster_document()
    async with service.client() as client:
        created = await client.post(
            "/models", files=booster_parts(json.dumps(document).encode(), arrays)
        )
        assert created.status_code == 202, created.text
        model = await wait_ready(client, created.json()["id"])
        assert model["status"] == "ready", model
        hostile = copy.deepcopy(document)
        tree = trees_of(hostile)[2]
        tree["split_indices"][0] = 2_000_000_000
        tree["split_conditions"][0] = 1e38
        stored = service.context.store.inputs_dir(model["id"]) / "booster.json"
        stored.write_bytes(json.dumps(hostile).encode())
        service.context.models.forget(model["id"])
        response = await client.post(
            "/explain", json={"model_id": model["id"], "inputs": [[3e38, 0.0, 0.0, 0.0]]}
        )
        assert 400 <= response.status_code < 600 and response.status_code != 500, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "booster.trees[2].split_indices" in response.text
        assert (await client.get("/healthz")).status_code == 200
        await client.delete(f"/models/{model['id']}")
