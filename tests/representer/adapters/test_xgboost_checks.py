"""Structural checks of booster files: every hostile tree is refused, naming the tree and
field, before XGBoost reads it; real boosters (.json and .ubj) pass unchanged."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from representer import InvalidInputError
from representer.adapters import BoosterEmbedding, BoosterLimits, load_booster
from representer.adapters.ubjson import UBJSONError, decode_ubjson
from representer.adapters.xgboost_checks import check_model_document, parse_model_bytes
from tests.helpers.boosters import (
    HOSTILE_TREES,
    NUM_FEATURES,
    booster_document,
    chain_tree,
    document_bytes,
    patch_ubj_split_index,
    trees_of,
)


@pytest.fixture(scope="module")
def document() -> dict:
    return booster_document()[0]


def _refusal(document: dict, *, limits: BoosterLimits | None = None) -> InvalidInputError:
    data = json.dumps(document).encode()
    with pytest.raises(InvalidInputError) as error:
        check_model_document(parse_model_bytes(data), limits=limits)
    return error.value


@pytest.mark.parametrize("case", sorted(HOSTILE_TREES))
def test_hostile_tree_is_refused_naming_tree_and_field(document, case):
    change, field = HOSTILE_TREES[case]
    hostile = copy.deepcopy(document)
    change(hostile)
    error = _refusal(hostile)
    assert error.argument == field, (error.argument, str(error))
    assert str(error).startswith(field)


def test_hostile_file_is_refused_before_xgboost_reads_it(tmp_path, document):
    """load_booster on the crashing file: a clean error (a SIGSEGV would end this test run)."""
    hostile = copy.deepcopy(document)
    trees_of(hostile)[0]["split_indices"][0] = 2_000_000_000
    path = tmp_path / "model.json"
    path.write_bytes(json.dumps(hostile).encode())
    with pytest.raises(InvalidInputError) as error:
        load_booster(path)
    assert error.value.argument == "booster.trees[0].split_indices"


def test_hostile_ubj_file_is_refused(tmp_path, document):
    data = patch_ubj_split_index(document_bytes(document, ".ubj"), 2_000_000_000)
    path = tmp_path / "model.ubj"
    path.write_bytes(data)
    with pytest.raises(InvalidInputError) as error:
        load_booster(path)
    assert error.value.argument == "booster.trees[0].split_indices"


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_real_boosters_pass_and_load(tmp_path, document, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(document_bytes(document, suffix))
    booster = load_booster(path)
    embedding = BoosterEmbedding.from_booster(booster)
    assert embedding.trees.num_features == NUM_FEATURES
    assert embedding.trees.is_leaf.shape == (embedding.trees.node_offsets[-1],)


def test_ubj_reader_agrees_with_json(document):
    from_ubj = parse_model_bytes(document_bytes(document, ".ubj"))
    num_feature, trees = check_model_document(from_ubj)
    reference_features, reference = check_model_document(
        parse_model_bytes(json.dumps(document).encode())
    )
    assert num_feature == reference_features
    for mine, theirs in zip(trees, reference, strict=True):
        np.testing.assert_array_equal(mine.is_leaf, theirs.is_leaf)
        np.testing.assert_allclose(mine.leaf_values, theirs.leaf_values, rtol=1e-7)


@pytest.mark.parametrize(
    "data",
    [
        b"{L\x00\x00\x00\x00\x00\x00\x00\x07learn",  # truncated key
        b"[$l#L\x7f\xff\xff\xff\xff\xff\xff\xff",  # a count far beyond the bytes present
        b"[$l#L\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00",  # 2 int32 promised, 2 bytes given
        b"[" * 100 + b"]" * 100,  # nesting
        b"{}\x00",  # bytes after the value
        b"Q",  # unknown marker
    ],
    ids=["truncated", "huge_count", "short_typed_array", "nested", "trailing", "marker"],
)
def test_ubj_reader_refuses_broken_files_without_allocating(data):
    with pytest.raises(UBJSONError):
        decode_ubjson(data, max_depth=32)


def test_node_budget_counts_all_trees(document):
    total = sum(int(tree["tree_param"]["num_nodes"]) for tree in trees_of(document))
    check_model_document(document, limits=BoosterLimits(max_nodes=total))
    error = _refusal(document, limits=BoosterLimits(max_nodes=total - 1))
    assert error.argument is not None and error.argument.startswith("booster.trees[")
    assert "RPS_BOOSTER_MAX_NODES" in str(error)


def test_depth_limit_is_inclusive(document):
    deep = copy.deepcopy(document)
    trees_of(deep)[1] = {**chain_tree(10, template=trees_of(deep)[1]), "id": 1}
    check_model_document(deep, limits=BoosterLimits(max_depth=10))
    assert _refusal(deep, limits=BoosterLimits(max_depth=9)).argument == (
        "booster.trees[1].left_children"
    )


def test_tables_are_sized_by_the_nodes_that_exist(document):
    """One deep tree among small ones: tables of N entries, not trees x the largest tree."""
    import xgboost as xgb

    wide = copy.deepcopy(document)
    trees_of(wide)[1] = {**chain_tree(60, template=trees_of(wide)[1]), "id": 1}
    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(wide).encode()))
    trees = BoosterEmbedding.from_booster(booster).trees
    nodes = sum(int(tree["tree_param"]["num_nodes"]) for tree in trees_of(wide))
    assert trees.is_leaf.shape == trees.leaf_values.shape == (nodes,)
    assert nodes < trees.num_trees * 121  # the dense (T, max_nodes) table it replaces
