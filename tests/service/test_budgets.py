"""Byte budgets refuse oversized parts and bodies before anything parses them (413 naming
the part or the body), nothing is stored, and the service answers afterwards."""

from __future__ import annotations

import json

import pytest

from tests.helpers.problems import linear_problem
from tests.helpers.service import linear_parts
from tests.service.test_hostile_inputs import PROBLEM_JSON, SMALL, assert_problem

MIB = 1024**2


async def _register(service, files: dict):
    models_before, files_before = service.model_count(), set(service.artifact_files())
    async with service.client() as client:
        response = await client.post("/models", files=files)
        assert (await client.get("/healthz")).status_code == 200
    assert service.model_count() == models_before
    assert set(service.artifact_files()) == files_before
    assert service.upload_files() == []
    return response


@pytest.mark.parametrize(
    ("part", "size_setting"),
    [("spec", "max_spec_bytes"), ("train_records", "max_json_part_bytes")],
)
async def test_json_part_over_its_budget_is_413_before_parsing(service, part, size_setting):
    limit = getattr(service.settings, size_setting)
    files = linear_parts(linear_problem(**SMALL), {"kind": "linear"})
    files[part] = (None, json.dumps(["x" * 1000] * (limit // 1000 + 1)))
    response = await _register(service, files)
    problem = assert_problem(response, 413, part, location="part")
    assert "RPS_MAX_" in problem["detail"]


async def test_ids_far_longer_than_the_rows_need_are_413(service):
    """40 MB of ids for 20 rows cost 0.8 GB to parse before the 422; now refused unparsed."""
    files = linear_parts(linear_problem(**SMALL), {"kind": "linear"})
    files["train_ids"] = (None, json.dumps([str(index) for index in range(200_000)]))
    response = await _register(service, files)
    assert_problem(response, 413, "train_ids", location="part")


async def test_too_many_parts_is_422(service):
    files = linear_parts(linear_problem(**SMALL), {"kind": "linear"})
    for index in range(service.settings.max_multipart_parts):
        files[f"extra_{index}"] = (None, "1")
    response = await _register(service, files)
    assert response.status_code == 422, response.text


async def test_oversized_part_headers_are_413(service):
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="spec"\r\n'
        f"X-Padding: {'p' * 20_000}\r\n\r\n{{}}\r\n--{boundary}--\r\n"
    ).encode()
    async with service.client() as client:
        response = await client.post(
            "/models",
            content=body,
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
    assert response.status_code in (413, 422), response.text  # the parser's own cap, or ours
    assert response.headers["content-type"].startswith(PROBLEM_JSON)


@pytest.mark.parametrize("declared", [True, False], ids=["content_length", "chunked"])
async def test_explain_body_over_its_budget_is_413(service, multiclass_model, declared):
    limit = service.settings.max_explain_body_bytes
    row = json.dumps([0.5] * 8)
    count = limit // len(row) + 10
    head = f'{{"model_id": "{multiclass_model.id}", "features": ['.encode()
    body_size = len(head) + count * (len(row) + 1) + 1

    async def chunks():
        yield head
        block = ((row + ",") * 1000).encode()
        for _ in range(count // 1000):
            yield block
        yield (",".join([row] * (count % 1000 or 1)) + "]}").encode()

    async with service.client() as client:
        response = await client.post(
            "/explain",
            content=chunks() if not declared else b"".join([chunk async for chunk in chunks()]),
            headers={"content-type": "application/json"},
        )
        assert_problem(response, 413, "body", location="body")
        assert (await client.get("/healthz")).status_code == 200
    assert body_size > limit


async def test_explain_body_within_its_budget_is_answered(service, multiclass_model):
    body = {"model_id": multiclass_model.id, "features": [[0.5] * 8], "k": 3}
    async with service.client() as client:
        response = await client.post("/explain", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["explanations"]) == 1
