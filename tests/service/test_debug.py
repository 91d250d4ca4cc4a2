"""``GET /debug/suspicious``: the self-score ranking, paginated, equal to the engine's."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select, text

from models_store import Score, TrainPoint
from representer import LinearHead, Method, fit
from tests.helpers.service import BOB

SCORE_RTOL = 1e-6


def engine_self_scores(model, method: Method) -> np.ndarray:
    problem = model.problem
    state = fit(
        LinearHead(problem["weights"], problem["bias"]),
        problem["train_features"].astype(np.float32),
        problem["train_labels"],
        method=method,
    )
    return np.asarray(state.self_scores, dtype=np.float64)


@pytest.mark.parametrize("method", [Method.LJE, Method.INFLUENCE])
async def test_ranking_equals_engine(service, multiclass_model, method):
    async with service.client() as client:
        response = await client.get(
            "/debug/suspicious",
            params={"model_id": multiclass_model.id, "method": method.value, "limit": 15},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    scores = engine_self_scores(multiclass_model, method)
    assert body["total"] == len(scores) and body["method"] == method.value
    items = body["items"]
    assert [item["rank"] for item in items] == list(range(1, 16))
    np.testing.assert_allclose(
        [item["score"] for item in items], np.sort(scores)[::-1][:15], rtol=SCORE_RTOL
    )
    got = [item["score"] for item in items]
    assert got == sorted(got, reverse=True)
    for item in items:
        index = item["train_index"]
        assert item["train_id"] == multiclass_model.train_ids[index]
        assert item["label"] == int(multiclass_model.problem["train_labels"][index])
        assert item["record"] == {"row": index}
        assert item["score"] == pytest.approx(scores[index], rel=SCORE_RTOL)


async def test_pages_tile_the_ranking(service, multiclass_model):
    async with service.client() as client:
        whole = (
            await client.get(
                "/debug/suspicious", params={"model_id": multiclass_model.id, "limit": 30}
            )
        ).json()
        pages = [
            (
                await client.get(
                    "/debug/suspicious",
                    params={"model_id": multiclass_model.id, "limit": 10, "offset": offset},
                )
            ).json()
            for offset in (0, 10, 20)
        ]
        beyond = (
            await client.get(
                "/debug/suspicious", params={"model_id": multiclass_model.id, "offset": 10_000}
            )
        ).json()
    tiled = [item for page in pages for item in page["items"]]
    assert [item["train_index"] for item in tiled] == [
        item["train_index"] for item in whole["items"]
    ]
    assert [item["rank"] for item in tiled] == list(range(1, 31))
    assert beyond["items"] == [] and beyond["total"] == 200


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"limit": 0}, 422, "limit"),
        ({"limit": 5000}, 422, "limit"),
        ({"offset": -1}, 422, "offset"),
        ({"method": "nope"}, 422, "method"),
    ],
)
async def test_suspicious_errors(service, multiclass_model, params, status, field):
    async with service.client() as client:
        response = await client.get(
            "/debug/suspicious", params={"model_id": multiclass_model.id, **params}
        )
    assert response.status_code == status
    assert field in [error["field"] for error in response.json()["errors"]]


async def test_suspicious_unknown_or_foreign_model(service, binary_model):
    async with service.client() as client:
        assert (
            await client.get("/debug/suspicious", params={"model_id": "nope"})
        ).status_code == 404
        foreign = await client.get(
            "/debug/suspicious", params={"model_id": binary_model.id}, headers=BOB
        )
        not_computed = await client.get(
            "/debug/suspicious", params={"model_id": binary_model.id, "method": "l2"}
        )
    assert foreign.status_code == 404
    assert not_computed.status_code == 422


def test_ranking_query_is_served_by_the_index(service, multiclass_model):
    """The page query walks ix_scores_rank in order: no sort of all n scores."""
    query = (
        select(Score, TrainPoint)
        .join(
            TrainPoint,
            (TrainPoint.model_id == Score.model_id) & (TrainPoint.train_index == Score.train_index),
        )
        .where(Score.model_id == multiclass_model.id, Score.method == "lje")
        .order_by(Score.score.desc(), Score.train_index)
        .limit(10)
    )
    engine = service.context.engine
    compiled = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = " | ".join(
                row[3] for row in connection.execute(text("EXPLAIN QUERY PLAN " + compiled))
            )
            assert "ix_scores_rank" in plan and "TEMP B-TREE" not in plan, plan
        else:
            connection.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " | ".join(row[0] for row in connection.execute(text("EXPLAIN " + compiled)))
            assert "ix_scores_rank" in plan and "Sort" not in plan, plan
