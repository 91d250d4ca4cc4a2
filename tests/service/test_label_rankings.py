"""``GET /debug/suspicious`` with the label-error rankings: equal to the engine's, the
default named in the answer, skipped rankings answered with their reason."""

from __future__ import annotations

import numpy as np
import pytest

from representer import LinearHead
from representer.label_errors import LabelRanking, choose_ranking, label_rankings
from tests.helpers.problems import linear_problem
from tests.helpers.service import register_ready

SCORE_RTOL = 1e-6


def engine_rankings(model):
    problem = model.problem
    return label_rankings(
        LinearHead(problem["weights"], problem["bias"]),
        problem["train_features"].astype(np.float32),
        problem["train_labels"],
        test_features=problem["test_features"].astype(np.float32),
        test_labels=problem["test_labels"],
    )


@pytest.mark.parametrize("ranking", list(LabelRanking))
async def test_label_ranking_equals_engine(service, multiclass_model, ranking):
    async with service.client() as client:
        response = await client.get(
            "/debug/suspicious",
            params={"model_id": multiclass_model.id, "method": ranking.value, "limit": 20},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == ranking.value and body["total"] == 200
    expected = engine_rankings(multiclass_model).rankings[ranking]
    labels = multiclass_model.problem["train_labels"]
    got = [item["score"] for item in body["items"]]
    assert got == sorted(got, reverse=True)
    np.testing.assert_allclose(got, np.sort(expected.scores)[::-1][:20], rtol=SCORE_RTOL)
    for item in body["items"]:
        index = item["train_index"]
        assert item["suggested_label"] == int(expected.suggested_label[index])
        assert item["suggested_label"] != int(labels[index])
        assert 0.0 <= item["label_error_probability"] <= 1.0
        assert item["label_error_probability"] == pytest.approx(
            expected.label_error_probability[index], rel=SCORE_RTOL
        )


async def test_default_ranking_is_named_and_method_rankings_keep_working(service, multiclass_model):
    async with service.client() as client:
        default = (
            await client.get("/debug/suspicious", params={"model_id": multiclass_model.id})
        ).json()
        lje = (
            await client.get(
                "/debug/suspicious", params={"model_id": multiclass_model.id, "method": "lje"}
            )
        ).json()
        status = (await client.get(f"/models/{multiclass_model.id}")).json()
    assert default["method"] == choose_ranking(set(LabelRanking)).value
    assert lje["method"] == "lje"
    # Method rankings carry the default ranking's suggestion and probability per point.
    by_index = {item["train_index"]: item for item in default["items"]}
    for item in lje["items"]:
        if item["train_index"] in by_index:
            reference = by_index[item["train_index"]]
            assert item["suggested_label"] == reference["suggested_label"]
    assert {name: state["status"] for name, state in status["rankings"].items()} == {
        ranking.value: "ready" for ranking in LabelRanking
    }
    # The stored test set has labels: adaptive says which view it took and why.
    adaptive = status["rankings"]["adaptive"]
    assert adaptive["view"] == engine_rankings(multiclass_model).adaptive_view.value
    assert set(adaptive["test_log_loss"]) == {"head", "refit"}
    assert set(adaptive["simulated_flips_found"]) == {"head", "refit", "difference_sd"}


@pytest.fixture(scope="module")
def rare_class_model(service):
    """Class 2 has 3 training points: too few for 5-fold refits."""
    problem = linear_problem(k=3, seed=4)
    labels = problem["train_labels"]
    rare = np.flatnonzero(labels == 2)
    labels[rare[3:]] = 0
    spec = {"name": "rare", "kind": "linear", "methods": ["lje"]}
    return register_ready(service, problem, spec)


async def test_skipped_rankings_answer_their_reason(service, rare_class_model):
    async with service.client() as client:
        default = await client.get("/debug/suspicious", params={"model_id": rare_class_model.id})
        skipped = await client.get(
            "/debug/suspicious", params={"model_id": rare_class_model.id, "method": "cleanlab"}
        )
        status = (await client.get(f"/models/{rare_class_model.id}")).json()
    assert default.status_code == 200 and default.json()["method"] == "confidence"
    assert skipped.status_code == 422
    problem = skipped.json()
    assert problem["errors"][0]["field"] == "method"
    assert "fewer than 5 training points" in problem["detail"]
    assert status["rankings"]["cleanlab"]["status"] == "skipped"
    assert status["rankings"]["confidence"] == {"status": "ready"}
