"""Hostile inputs found by probing every route: each is a 4xx problem+json naming the bad
part, never a 500, never a non-finite number in an answer, and a rejected registration
stores nothing (rows, artifacts, upload files)."""

from __future__ import annotations

import json
from urllib.parse import quote

import numpy as np
import pytest

from app.dependencies import MAX_OFFSET
from tests.helpers.problems import linear_problem
from tests.helpers.service import (
    linear_parts,
    npy_bytes,
)

SMALL = {"n": 20, "d": 4, "k": 3, "m": 3}
PROBLEM_JSON = "application/problem+json"


def npy_part(array: np.ndarray) -> tuple[str, bytes, str]:
    return ("part.npy", npy_bytes(array), "application/octet-stream")


def json_text(text: str) -> tuple[None, str]:
    return (None, text)


def hostile_registration(case: str) -> tuple[dict, dict]:
    """(parts replacing those of a valid small registration, spec) for each case."""
    problem = linear_problem(**SMALL)
    features, weights = problem["train_features"], problem["weights"]
    spec: dict = {"kind": "linear"}
    n = SMALL["n"]
    parts = {
        # JSON parts: 500 (RecursionError) or stored and failing later in the worker/database.
        "spec_nested_too_deeply": {"spec": json_text("[" * 100_000 + "]" * 100_000)},
        "records_nested_too_deeply": {"train_records": json_text("[" * 100_000 + "]" * 100_000)},
        # Stored fine, then every answer showing the record was a 500 (serialiser depth limit).
        "records_nested_300_deep": {
            "train_records": json_text("[" + ",".join(["[" * 300 + "]" * 300] * n) + "]")
        },
        "records_nan_token": {"train_records": json_text("[" + ",".join(["NaN"] * n) + "]")},
        "records_infinity_token": {
            "train_records": json_text("[" + ",".join(['{"a": -Infinity}'] * n) + "]")
        },
        "records_number_overflowing_float": {
            "train_records": json_text("[" + ",".join(['{"a": 1e999}'] * n) + "]")
        },
        "records_nul_character": {"train_records": json_text(json.dumps([{"text": "a\x00b"}] * n))},
        "ids_nul_character": {"train_ids": json_text(json.dumps([f"id\x00{i}" for i in range(n)]))},
        "test_ids_lone_surrogate": {
            "test_ids": json_text(json.dumps([f"\ud800{i}" for i in range(3)]))
        },
        "ids_nan_token": {"train_ids": json_text("[NaN]")},
        "spec_name_nul_character": {
            "spec": json_text(json.dumps({"kind": "linear", "name": "a\x00b"}))
        },
        # .npy rows finite as float64 but infinite once stored as float32.
        "features_beyond_float32": {"train_features": npy_part(features * 1e300)},
        "test_features_beyond_float32": {
            "test_features": npy_part(problem["test_features"] * 1e300)
        },
        # dtypes and shapes that must never reach the store.
        "weights_bool": {"weights": npy_part(weights > 0)},
        "weights_complex": {"weights": npy_part(weights.astype(np.complex128))},
        "weights_structured": {"weights": npy_part(np.zeros((3, 4), dtype=[("a", "<f8")]))},
        "weights_0d": {"weights": npy_part(np.float64(1.0))},
        "weights_3d": {"weights": npy_part(weights[None])},
        "weights_no_columns": {"weights": npy_part(np.zeros((3, 0)))},
        "features_empty": {"train_features": npy_part(np.zeros((0, 4)))},
        "features_datetime": {"train_features": npy_part(np.zeros((n, 4), dtype="datetime64[s]"))},
        "labels_2d": {"train_labels": npy_part(problem["train_labels"][:, None])},
        "labels_huge_unsigned": {"train_labels": npy_part(np.full(n, 2**64 - 1, dtype=np.uint64))},
        "test_labels_0d": {"test_labels": npy_part(np.int64(0))},
        # bytes after the array were stored as they came (10 MB seen)
        "features_trailing_bytes": {
            "train_features": ("part.npy", npy_bytes(features) + b"\0" * 4096, "x/y")
        },
        "labels_one_trailing_byte": {
            "train_labels": ("part.npy", npy_bytes(problem["train_labels"]) + b"\n", "x/y")
        },
        "features_truncated": {"train_features": ("part.npy", npy_bytes(features)[:-1], "x/y")},
        # names: 10 MB of class names went into every GET /models
        "class_name_too_long": {
            "spec": json_text(json.dumps({"kind": "linear", "class_names": ["a" * 201, "b", "c"]}))
        },
        "class_names_too_many": {
            "spec": json_text(json.dumps({"kind": "linear", "class_names": ["a"] * 10_001}))
        },
        "class_name_empty": {
            "spec": json_text(json.dumps({"kind": "linear", "class_names": ["", "b", "c"]}))
        },
    }[case]
    return parts, spec


HOSTILE_REGISTRATIONS = {
    "spec_nested_too_deeply": "spec",
    "records_nested_too_deeply": "train_records",
    "records_nested_300_deep": "train_records",
    "records_nan_token": "train_records",
    "records_infinity_token": "train_records",
    "records_number_overflowing_float": "train_records",
    "records_nul_character": "train_records",
    "ids_nul_character": "train_ids",
    "test_ids_lone_surrogate": "test_ids",
    "ids_nan_token": "train_ids",
    "spec_name_nul_character": "spec",
    "features_beyond_float32": "train_features",
    "test_features_beyond_float32": "test_features",
    "weights_bool": "weights",
    "weights_complex": "weights",
    "weights_structured": "weights",
    "weights_0d": "weights",
    "weights_3d": "weights",
    "weights_no_columns": "weights",
    "features_empty": "train_features",
    "features_datetime": "train_features",
    "labels_2d": "train_labels",
    "labels_huge_unsigned": "train_labels",
    "test_labels_0d": "test_labels",
    "features_trailing_bytes": "train_features",
    "labels_one_trailing_byte": "train_labels",
    "features_truncated": "train_features",
    "class_name_too_long": "spec.class_names",
    "class_names_too_many": "spec.class_names",
    "class_name_empty": "spec.class_names",
}


def assert_problem(response, status: int, field: str, *, location: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == status and body["type"].startswith("urn:rps:problem:")
    named = [(error["field"], error["location"]) for error in body["errors"]]
    assert any(name == field or name.startswith(f"{field}.") for name, _ in named), body
    if location is not None:
        assert (field, location) in named or any(loc == location for _, loc in named), body
    return body


@pytest.mark.parametrize("case", sorted(HOSTILE_REGISTRATIONS))
async def test_hostile_registration_is_422_and_stores_nothing(service, case):
    parts, spec = hostile_registration(case)
    models_before, files_before = service.model_count(), set(service.artifact_files())
    async with service.client() as client:
        response = await client.post(
            "/models", files={**linear_parts(linear_problem(**SMALL), spec), **parts}
        )
    field = HOSTILE_REGISTRATIONS[case]
    assert_problem(response, 422, field, location="spec" if "." in field else "part")
    assert service.model_count() == models_before
    assert set(service.artifact_files()) == files_before
    assert service.upload_files() == []


@pytest.mark.parametrize(
    "target", ["²", "٣", "1.0", " 1", "-1", "99999999999999999999999", "1" * 4301, "0" * 60_000]
)
async def test_explain_target_that_is_not_an_ascii_class_index_is_422(
    service, multiclass_model, target
):
    params = {
        "model_id": multiclass_model.id,
        "test_id": multiclass_model.test_ids[0],
        "target": target,
    }
    async with service.client() as client:
        response = await client.get("/explain", params=params)
    assert_problem(response, 422, "target", location="query")


@pytest.mark.parametrize("target", ['"' + "1" * 4301 + '"', "1" * 4301, "-" + "9" * 5000])
async def test_posted_target_of_thousands_of_digits_is_422(service, multiclass_model, target):
    """Python refuses int() of 4,301+ digits: that was a 500 on GET and POST /explain.

    As a JSON number the body's parser already refuses it (a 400 problem naming no field).
    """
    body = f'{{"model_id": "{multiclass_model.id}", "features": [[0.0,0,0,0,0,0,0,0]], "target": {target}}}'
    async with service.client() as client:
        response = await client.post(
            "/explain", content=body, headers={"content-type": "application/json"}
        )
        if target.startswith('"'):
            assert_problem(response, 422, "target", location="body")
        else:
            assert response.status_code == 400, response.text
            assert response.headers["content-type"].startswith(PROBLEM_JSON)
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("length", [71, 257, 100_000])
async def test_overlong_multipart_boundary_is_422_naming_the_header(service, length):
    boundary = "b" * length
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="spec"\r\n\r\n'
        f'{{"kind": "linear"}}\r\n--{boundary}--\r\n'
    ).encode()
    models_before = service.model_count()
    async with service.client() as client:
        response = await client.post(
            "/models",
            content=body,
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
    assert_problem(response, 422, "content-type", location="header")
    assert service.model_count() == models_before and service.upload_files() == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"features": [[1e300] * 8]}, "features"),  # finite JSON, infinite as the engine's float32
        ({"features": [["1"] * 8]}, "features"),  # numeric strings are not numbers
        ({"features": [[True] * 8]}, "features"),  # nor are booleans
        ({"features": [[0.0] * 8], "target": True}, "target"),
        ({"features": [[0.0] * 8], "target": 1.0}, "target"),
    ],
    ids=["beyond_float32", "numeric_strings", "booleans", "target_true", "target_float"],
)
async def test_submitted_rows_that_are_not_float32_numbers_are_422(
    service, multiclass_model, change, field
):
    async with service.client() as client:
        response = await client.post("/explain", json={"model_id": multiclass_model.id, **change})
    assert_problem(response, 422, field, location="body")


async def test_rows_whose_contributions_overflow_name_the_submitted_rows(service, multiclass_model):
    """3e38 fits float32, but L2's float32 products overflow: the rows are at fault, not the stored Φ."""
    body = {
        "model_id": multiclass_model.id,
        "features": [[0.5] * 8, [3e38] * 8],
        "method": "l2",
        "target": 0,
    }
    async with service.client() as client:
        response = await client.post("/explain", json=body)
    problem = assert_problem(response, 422, "features", location="body")
    assert "row 1" in problem["detail"] and "train_features" not in response.text


async def test_deeply_nested_explain_body_is_a_4xx_problem(service, multiclass_model):
    body = f'{{"model_id": "{multiclass_model.id}", "features": {"[" * 5000 + "]" * 5000}}}'
    async with service.client() as client:
        response = await client.post(
            "/explain", content=body, headers={"content-type": "application/json"}
        )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)


@pytest.mark.parametrize("path", ["/debug/suspicious", "/models"])
@pytest.mark.parametrize("offset", [str(MAX_OFFSET + 1), "99999999999999999999"])
async def test_offset_beyond_a_64_bit_integer_is_422(service, multiclass_model, path, offset):
    async with service.client() as client:
        response = await client.get(
            path, params={"model_id": multiclass_model.id, "offset": offset}
        )
    assert_problem(response, 422, "offset", location="query")


@pytest.mark.parametrize("path", ["/debug/suspicious", "/models"])
async def test_largest_offset_is_an_empty_page(service, multiclass_model, path):
    async with service.client() as client:
        response = await client.get(
            path, params={"model_id": multiclass_model.id, "offset": str(MAX_OFFSET)}
        )
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


@pytest.mark.parametrize(
    "booster", [b"{}", b"[]", b"\x00\x01 not a model"], ids=["empty_object", "array", "binary"]
)
async def test_unreadable_booster_is_422_without_a_native_stack_trace(service, booster):
    rng = np.random.default_rng(0)
    files = {
        "spec": (None, json.dumps({"kind": "xgboost"})),
        "booster": ("model.json", booster, "application/octet-stream"),
        "train_inputs": npy_part(rng.normal(size=(20, 5)).astype(np.float32)),
        "train_labels": npy_part(rng.integers(0, 2, size=20)),
    }
    models_before = service.model_count()
    async with service.client() as client:
        response = await client.post("/models", files=files)
    body = assert_problem(response, 422, "booster", location="part")
    assert (
        "Stack trace" not in response.text
        and "[bt]" not in response.text
        and ".cc:" not in response.text
    ), body
    assert service.model_count() == models_before and service.upload_files() == []


@pytest.mark.parametrize(
    "model_id",
    ["a\x00b", "\x00", "\ud800", "☃", "x" * 5000],
    ids=["nul", "only_nul", "surrogate", "non_ascii", "long"],
)
async def test_model_ids_no_model_can_have_are_404_everywhere(service, model_id):
    """PostgreSQL refuses NUL in a query parameter: that was a 500 on every route taking an id."""
    in_urls = (
        "\ud800" not in model_id
    )  # a lone surrogate cannot be encoded into a URL; JSON escapes it
    body = json.dumps({"model_id": model_id, "features": [[0.0] * 8]})
    async with service.client() as client:
        answers = {
            "POST /explain": await client.post(
                "/explain", content=body, headers={"content-type": "application/json"}
            )
        }
        if in_urls:
            path = f"/models/{quote(model_id, safe='')}"
            answers |= {
                "GET /explain": await client.get(
                    "/explain", params={"model_id": model_id, "test_id": "0"}
                ),
                "GET /debug/suspicious": await client.get(
                    "/debug/suspicious", params={"model_id": model_id}
                ),
                "GET /models/{id}": await client.get(path),
                "DELETE /models/{id}": await client.delete(path),
            }
    for route, response in answers.items():
        assert response.status_code == 404, (route, response.text)
        assert response.headers["content-type"].startswith(PROBLEM_JSON), route


async def test_a_trailing_slash_is_a_problem_not_a_redirect(service):
    async with service.client() as client:
        response = await client.get("/models/")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 404
