"""Every spec field travels client -> API -> stored spec -> worker unchanged.

The test walks ``rps.spec.leaves()``, so a field added to the spec later is sent (at its
``example``) and checked here without touching this file: a field that the client, the
command line, the API or the worker drops or defaults fails it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess

import numpy as np
import pytest
import xgboost
from sqlalchemy import select

from models_store import Model, make_engine, make_sessionmaker
from rps.client import Client
from rps.spec import ModelSpec, example_spec, leaves
from rps_server.settings import Settings
from tests.helpers.processes import RPS_SCRIPT
from workers.computation import ModelInputs, method_config

pytestmark = pytest.mark.slow


def _value_at(document: dict, path: str):
    for piece in path.split("."):
        document = document[piece]
    return document


def _booster_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(60, 4))
    labels = (inputs[:, 0] + 0.3 * rng.normal(size=60) > 0).astype(np.int64)
    params = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1, "seed": seed}
    return xgboost.train(params, xgboost.DMatrix(inputs, label=labels), 4), inputs, labels


def _stored_spec(data_dir, model_id: str) -> Model:
    engine = make_engine(Settings(data_dir=data_dir).resolved_database_url)
    try:
        with make_sessionmaker(engine)() as session:
            model = session.scalars(select(Model).where(Model.id == model_id)).one()
            session.expunge(model)
            return model
    finally:
        engine.dispose()


def _check_worker_view(model: Model, expected: ModelSpec) -> None:
    inputs = ModelInputs.of(model)  # what the precompute job reads back
    assert inputs.spec == expected
    stored = model.spec
    for leaf in leaves():
        assert _value_at(stored, leaf.path) == _value_at(expected.to_json(), leaf.path), leaf.path
    for method in expected.methods:
        config = method_config(inputs.spec, method, ceiling=Settings().memory_budget_bytes)
        settings = expected.method_settings(method)
        shared = {item.name for item in dataclasses.fields(config)} & {
            item.name for item in dataclasses.fields(settings)
        }
        assert shared, f"no setting of {method.value} reaches the engine"
        for name in shared:
            assert getattr(config, name) == getattr(settings, name), f"{method.value}.{name}"


def test_every_spec_field_round_trips_through_client_api_and_worker(
    embedded_server, embedded_backend, tmp_path
):
    expected = example_spec()  # every leaf setting away from its default
    booster, inputs, labels = _booster_problem()
    document = expected.to_json()
    top_level = {key: value for key, value in document.items() if key != "kind"}
    with Client(embedded_server.base_url) as client:
        as_spec = client.register_xgboost(booster, inputs, labels, spec=expected)
        as_dict = client.register_xgboost(booster, inputs, labels, spec=document)
        as_keywords = client.register_xgboost(booster, inputs, labels, **top_level)
    for body in (as_spec, as_dict, as_keywords):
        _check_worker_view(_stored_spec(embedded_backend.data_dir, body["id"]), expected)

    # the command line: the example (--spec with sections and the queue) plus flags
    booster_path, inputs_path, labels_path = (
        tmp_path / "booster.json",
        tmp_path / "inputs.npy",
        tmp_path / "labels.npy",
    )
    booster.save_model(booster_path)
    np.save(inputs_path, inputs)
    np.save(labels_path, labels)
    inline = {key: value for key, value in top_level.items() if key != "lje"}
    completed = subprocess.run(
        [
            str(RPS_SCRIPT),
            "register",
            "--url",
            embedded_server.base_url,
            "--json",
            "--booster",
            str(booster_path),
            "--train-inputs",
            str(inputs_path),
            "--train-labels",
            str(labels_path),
            "--spec",
            json.dumps(inline),
            *(f"--lje-{name.replace('_', '-')}={value}" for name, value in document["lje"].items()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=embedded_backend.env,
    )
    assert completed.returncode == 0, completed.stderr
    model_id = json.loads(completed.stdout)["id"]
    _check_worker_view(_stored_spec(embedded_backend.data_dir, model_id), expected)
