"""What the client refuses before sending anything, and how it words the service's problems."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from rps.client import Client, ModelFailedError, ServiceError, _build_spec, _npy_part
from tests.helpers.processes import free_port


@pytest.fixture
def offline_client():
    # nothing listens on this port: every check below must fire before a request is sent
    with Client(f"http://127.0.0.1:{free_port()}") as client:
        yield client


def test_labels_travel_as_int64_npy_without_pickles():
    name, (filename, payload, _media) = _npy_part(
        "train_labels", np.array([0.0, 1.0, 2.0]), integer=True
    )
    labels = np.load(io.BytesIO(payload), allow_pickle=False)
    assert (name, filename) == ("train_labels", "train_labels.npy")
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="train_labels must hold integers"):
        _npy_part("train_labels", np.array([0.0, 0.5]), integer=True)


def test_features_keep_their_float_precision():
    features = np.arange(6, dtype=np.float32).reshape(3, 2)
    _, (_, payload, _) = _npy_part("train_features", features)
    decoded = np.load(io.BytesIO(payload), allow_pickle=False)
    assert decoded.dtype == np.float32 and np.array_equal(decoded, features)


def test_booster_must_be_json_or_ubj(offline_client, tmp_path):
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"not a booster")
    with pytest.raises(ValueError, match=".json or .ubj"):
        offline_client.register_xgboost(pickled, np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(TypeError, match="xgboost.Booster"):
        offline_client.register_xgboost(object(), np.zeros((2, 3)), np.array([0, 1]))


def test_explain_takes_exactly_one_source(offline_client):
    with pytest.raises(ValueError, match="exactly one of test_id, features, inputs"):
        offline_client.explain("m")
    with pytest.raises(ValueError, match="exactly one"):
        offline_client.explain("m", test_id="1", features=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="features holds NaN"):
        offline_client.explain("m", features=np.array([[0.0, np.nan]]))


def test_service_error_names_each_field_problem():
    problem = {
        "type": "about:blank",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "bad arrays",
        "errors": [
            {"field": "train_labels", "message": "values must be in 0..2"},
            {"loc": ["body", "spec", "kind"], "msg": "field required"},
        ],
    }
    error = ServiceError(422, problem)
    assert error.status == 422 and error.problem == problem
    lines = str(error).splitlines()
    assert lines == [
        "422 Unprocessable Entity: bad arrays",
        "  - train_labels: values must be in 0..2",
        "  - body.spec.kind: field required",
    ]


def test_model_failed_error_carries_the_jobs_problem():
    model = {
        "id": "m",
        "status": "failed",
        "error": {
            "title": "Precompute rejected the model",
            "status": 422,
            "detail": "raise `damping`",
        },
    }
    error = ModelFailedError(model)
    assert isinstance(error, ServiceError) and error.status == 422
    assert error.model == model and "raise `damping`" in str(error)
    assert json.loads(json.dumps(error.problem)) == model["error"]


def test_spec_fields_go_into_the_spec_unchanged():
    spec = json.loads(
        _build_spec(
            "linear",
            {"influence": {"damping": 0.01}, "queue": "gpu", "lje": {"lr": 1e-3}},
            {
                "name": "m",
                "class_names": None,
                "methods": ["lje", "influence"],
                "lje": {"weight_layout": "kernel"},
            },
        )
    )
    assert spec == {
        "kind": "linear",
        "name": "m",
        "methods": ["lje", "influence"],
        "lje": {"lr": 1e-3, "weight_layout": "kernel"},
        "influence": {"damping": 0.01},
        "queue": "gpu",
    }


def test_unknown_spec_keywords_and_a_wrong_kind_are_refused(offline_client):
    with pytest.raises(TypeError, match="unknown spec field 'colour'"):
        _build_spec("linear", None, {"colour": "red"})
    with pytest.raises(ValueError, match="does not fit a linear registration"):
        _build_spec("linear", {"kind": "xgboost"}, {})


def test_solver_flags_reach_lje_and_influence(tmp_path):
    from rps.cli import build_parser
    from rps.client_commands import _merged_spec

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"kind": "linear", "influence": {"damping": 0.01}}))
    args = build_parser().parse_args(
        [
            "register",
            f"--spec={spec_file}",
            "--train-labels=labels.npy",
            "--hessian=blocks",
            "--cg-tolerance=1e-7",
        ]
    )
    spec = _merged_spec(args)
    assert spec["lje"] == {"hessian": "blocks", "cg_tolerance": 1e-7}
    assert spec["influence"] == {"damping": 0.01, "hessian": "blocks", "cg_tolerance": 1e-7}
