"""The spec module: defaults, examples, errors that name the field, and its documentation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from representer import InfluenceConfig, L2Config, LJEConfig
from rps.spec import DEFAULT_SPEC, ModelSpec, SpecError, example_spec, leaves

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _value_at(document, path: str):
    for piece in path.split("."):
        document = document[piece]
    return document


def test_every_example_differs_from_its_default_and_parses_back():
    spec = example_spec()
    for leaf in leaves():
        assert leaf.example != leaf.default, leaf.path
        assert _value_at(spec.to_json(), leaf.path) == leaf.example
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert ModelSpec.from_json({"kind": "linear"}) == DEFAULT_SPEC


def test_the_engine_defaults_are_the_specs():
    for config, section in (
        (LJEConfig(), DEFAULT_SPEC.lje),
        (L2Config(), DEFAULT_SPEC.l2),
        (InfluenceConfig(), DEFAULT_SPEC.influence),
    ):
        # a setting whose spec default is None means "the operator's" (memory_budget_bytes)
        shared = {
            name
            for name in set(vars(config)) & set(vars(section))
            if getattr(section, name) is not None
        }
        assert shared
        assert {name: getattr(config, name) for name in shared} == {
            name: getattr(section, name) for name in shared
        }


@pytest.mark.parametrize(
    ("document", "paths"),
    [
        ({}, ["kind"]),
        ([], [""]),
        ({"kind": "forest", "colour": 1}, ["colour", "kind"]),
        ({"kind": "linear", "lje": {"lr": -1}, "methods": ["shap"]}, ["lje.lr", "methods.0"]),
        ({"kind": "linear", "methods": ["lje", "lje"]}, ["methods"]),
        ({"kind": "linear", "methods": []}, ["methods"]),
        ({"kind": "linear", "l2": {"lambda": 0}}, ["l2.lambda"]),
        ({"kind": "linear", "lje": {"lr": True}}, ["lje.lr"]),
        ({"kind": "linear", "influence": {"cg_tolerance": 1}}, ["influence.cg_tolerance"]),
        ({"kind": "linear", "class_names": [1]}, ["class_names.0"]),
        ({"kind": "linear", "name": "x" * 201}, ["name"]),
        ({"kind": "linear", "lje": None}, ["lje"]),
        (
            {"kind": "linear", "lje": {"hessian": "blocks", "weight_layout": "materialised"}},
            ["lje.weight_layout"],
        ),
    ],
)
def test_errors_name_every_bad_field(document, paths):
    with pytest.raises(SpecError) as caught:
        ModelSpec.from_json(document)
    assert sorted(path for path, _ in caught.value.errors) == sorted(paths)
    for path in paths:
        assert (path or "spec") in str(caught.value)


def test_every_spec_field_has_a_row_in_the_api_reference():
    first_cells = re.findall(r"^\|([^|]+)\|", API_DOC.read_text(), re.MULTILINE)
    rows = {name for cell in first_cells for name in re.findall(r"`([a-z0-9_.]+)`", cell)}
    missing = [leaf.path for leaf in leaves() if leaf.path not in rows]
    assert missing == []
