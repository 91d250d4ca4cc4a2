"""Concurrent explain requests share engine passes and still get the answers they would get
alone; a full queue answers 429; one bad request never fails its neighbours."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from app.explain.batcher import PassBatcher, QueueFullError

CONTRIBUTION_ATOL = 1e-6
"""Float32 tolerance: a row scored in a stack of rows may take another BLAS kernel."""
BATCH_WINDOW_S = 0.2
"""Long enough that every request of a test's burst joins the same pass."""


@pytest.fixture
def batching(service, monkeypatch):
    """The service with its result cache off and a batch window, so every request of a
    burst is scored (not served from Redis) and they share passes."""
    context = service.context
    monkeypatch.setattr(context, "results", None)
    monkeypatch.setattr(context, "batcher", PassBatcher(window_s=BATCH_WINDOW_S, max_waiting=256))
    return context


def batch_counts() -> tuple[float, float]:
    """(passes, requests) scored so far, from the /metrics histogram."""
    passes = REGISTRY.get_sample_value("rps_explain_batch_size_count") or 0.0
    requests = REGISTRY.get_sample_value("rps_explain_batch_size_sum") or 0.0
    return passes, requests


def assert_same_answer(together: dict, alone: dict) -> None:
    assert together["target_class"] == alone["target_class"]
    assert together["prediction"]["predicted_class"] == alone["prediction"]["predicted_class"]
    for name in ("logits", "probabilities"):  # float64 rows in a stack: last-bit differences
        np.testing.assert_allclose(
            together["prediction"][name], alone["prediction"][name], rtol=1e-12, atol=1e-12
        )
    for side in ("positive", "negative"):
        assert [p["train_id"] for p in together[side]] == [p["train_id"] for p in alone[side]]
        np.testing.assert_allclose(
            [p["contribution"] for p in together[side]],
            [p["contribution"] for p in alone[side]],
            atol=CONTRIBUTION_ATOL,
        )
    np.testing.assert_allclose(
        together["decomposition"]["sum_of_contributions"],
        alone["decomposition"]["sum_of_contributions"],
        atol=CONTRIBUTION_ATOL * 100,
    )


QUERIES = [
    {"test_id": "te-0", "k": 3, "target": "predicted"},
    {"test_id": "te-1", "k": 5, "target": "label"},
    {"test_id": "te-2", "k": 2, "target": "0"},
    {"test_id": "te-3", "k": 4, "target": "2"},
    {"test_id": "te-4", "k": 3, "target": "predicted"},
    {"test_id": "te-5", "k": 1, "target": "1"},
]


@pytest.mark.parametrize("method", ["lje", "l2", "influence"])
async def test_concurrent_answers_equal_answers_alone(service, multiclass_model, batching, method):
    async with service.client() as client:
        alone = []
        for query in QUERIES:  # one at a time: each request is a pass of its own
            response = await client.get(
                "/explain", params={"model_id": multiclass_model.id, "method": method, **query}
            )
            assert response.status_code == 200, response.text
            alone.append(response.json())
        passes_before, requests_before = batch_counts()
        together = await asyncio.gather(
            *(
                client.get(
                    "/explain", params={"model_id": multiclass_model.id, "method": method, **query}
                )
                for query in QUERIES
            )
        )
        passes, requests = (
            a - b for a, b in zip(batch_counts(), (passes_before, requests_before), strict=True)
        )
    assert [response.status_code for response in together] == [200] * len(QUERIES)
    for response, expected in zip(together, alone, strict=True):
        assert_same_answer(response.json(), expected)
    assert requests == len(QUERIES)
    assert passes < len(QUERIES), "the burst was never scored in a shared pass"


async def test_binary_head_concurrent_answers_equal_answers_alone(service, binary_model, batching):
    queries = [{"test_id": f"te-{i}", "k": 3, "target": str(i % 2)} for i in range(4)]
    async with service.client() as client:
        alone = [
            (await client.get("/explain", params={"model_id": binary_model.id, **query})).json()
            for query in queries
        ]
        together = await asyncio.gather(
            *(client.get("/explain", params={"model_id": binary_model.id, **q}) for q in queries)
        )
    for response, expected in zip(together, alone, strict=True):
        assert_same_answer(response.json(), expected)


async def test_a_failing_request_does_not_fail_its_neighbours(service, multiclass_model, batching):
    dim = 8
    good_rows = [[0.1 * (i + j) for j in range(dim)] for i in range(3)]
    huge_row = [3e38] * dim  # finite in float32, but its contributions overflow
    async with service.client() as client:
        alone = (
            await client.post(
                "/explain",
                json={
                    "model_id": multiclass_model.id,
                    "features": good_rows,
                    "k": 3,
                    "method": "l2",
                },
            )
        ).json()
        good, bad, also_good = await asyncio.gather(
            client.post(
                "/explain",
                json={
                    "model_id": multiclass_model.id,
                    "features": good_rows,
                    "k": 3,
                    "method": "l2",
                },
            ),
            client.post(
                "/explain",
                json={"model_id": multiclass_model.id, "features": [huge_row], "method": "l2"},
            ),
            client.get(
                "/explain",
                params={"model_id": multiclass_model.id, "test_id": "te-0", "method": "l2"},
            ),
        )
    assert bad.status_code == 422, bad.text
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["errors"][0]["field"] == "features"
    assert good.status_code == 200 and also_good.status_code == 200
    for together, expected in zip(good.json()["explanations"], alone["explanations"], strict=True):
        assert_same_answer(together, expected)


async def test_a_full_queue_answers_429_with_retry_after(service, multiclass_model, monkeypatch):
    context = service.context
    monkeypatch.setattr(context, "results", None)
    monkeypatch.setattr(context, "batcher", PassBatcher(window_s=0.5, max_waiting=2))
    async with service.client() as client:
        responses = await asyncio.gather(
            *(
                client.get(
                    "/explain", params={"model_id": multiclass_model.id, "test_id": f"te-{i % 6}"}
                )
                for i in range(6)
            )
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) >= 2 and 429 in statuses and set(statuses) <= {200, 429}
    refused = next(response for response in responses if response.status_code == 429)
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["status"] == 429


@pytest.mark.parametrize(
    "route",
    [
        ("GET", "/explain", {"test_id": "te-0"}),
        ("POST", "/explain", {"features": [[0.1] * 8]}),
        ("POST", "/explain/batch", {"test_ids": ["te-0", "te-1"]}),
    ],
    ids=["stored", "rows", "batch"],
)
async def test_a_request_waiting_for_its_pass_holds_no_database_connection(
    service, multiclass_model, monkeypatch, route
):
    """Its model was read before the wait and its rows are read after it; in between its
    connection is back in the pool, so many waiting requests need no more connections."""
    context = service.context
    monkeypatch.setattr(context, "results", None)
    monkeypatch.setattr(context, "batcher", PassBatcher(window_s=0.6, max_waiting=256))
    verb, path, fields = route
    async with service.client() as client:
        if verb == "GET":
            sent = client.get(path, params={"model_id": multiclass_model.id, **fields})
        else:
            sent = client.post(path, json={"model_id": multiclass_model.id, **fields})
        answer = asyncio.create_task(sent)
        await asyncio.sleep(0.3)  # the request sits in the batch window
        waiting, held = context.batcher.waiting, context.engine.pool.checkedout()
        response = await answer
    assert response.status_code == 200, response.text
    assert waiting == 1
    assert held == 0


async def test_batch_endpoint_equals_single_calls(service, multiclass_model):
    test_ids = ["te-3", "te-0", "te-5", "te-1"]
    async with service.client() as client:
        batch = await client.post(
            "/explain/batch",
            json={"model_id": multiclass_model.id, "test_ids": test_ids, "k": 4, "target": "label"},
        )
        singles = [
            (
                await client.get(
                    "/explain",
                    params={
                        "model_id": multiclass_model.id,
                        "test_id": test_id,
                        "k": 4,
                        "target": "label",
                    },
                )
            ).json()
            for test_id in test_ids
        ]
    assert batch.status_code == 200, batch.text
    answers = batch.json()["explanations"]
    assert [answer["test_id"] for answer in answers] == test_ids
    for answer, single in zip(answers, singles, strict=True):
        assert_same_answer(answer, single)


async def test_batch_endpoint_names_an_unknown_test_id(service, multiclass_model):
    async with service.client() as client:
        response = await client.post(
            "/explain/batch", json={"model_id": multiclass_model.id, "test_ids": ["te-0", "nope"]}
        )
        too_many = await client.post(
            "/explain/batch",
            json={"model_id": multiclass_model.id, "test_ids": [str(i) for i in range(1001)]},
        )
    assert response.status_code == 404
    assert "test_ids[1]" in response.json()["detail"]
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "test_ids"


def test_batcher_refuses_beyond_its_queue_and_serves_the_rest():
    release = threading.Event()
    passes: list[list[int]] = []

    def score(items):
        release.wait(5)
        passes.append(list(items))
        return [item * 10 for item in items]

    batcher: PassBatcher[int, int] = PassBatcher(window_s=0.0, max_waiting=2)
    results: dict[int, int] = {}

    def submit(value: int) -> None:
        results[value] = batcher.submit("key", value, score)

    leader = threading.Thread(target=submit, args=(1,))
    leader.start()
    time.sleep(0.1)  # the leader's pass is running and blocked
    followers = [threading.Thread(target=submit, args=(value,)) for value in (2, 3)]
    for thread in followers:
        thread.start()
    time.sleep(0.1)
    with pytest.raises(QueueFullError):
        batcher.submit("key", 4, score)
    release.set()
    for thread in (leader, *followers):
        thread.join(5)
    assert results == {1: 10, 2: 20, 3: 30}
    assert passes == [[1], [2, 3]]  # the two that waited shared the next pass
    assert batcher.waiting == 0


def test_batcher_gives_each_item_its_own_error():
    def score(items):
        return [ValueError(f"bad {item}") if item < 0 else item for item in items]

    batcher: PassBatcher[int, int] = PassBatcher(window_s=0.0, max_waiting=4)
    assert batcher.submit("key", 3, score) == 3
    with pytest.raises(ValueError, match="bad -1"):
        batcher.submit("key", -1, score)


def test_batcher_counts_a_shared_pass_once_per_pass_and_once_per_request():
    release = threading.Event()

    def score(items):
        release.wait(5)
        return list(items)

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    before = {
        name: sample(name)
        for name in ("rps_explain_pass_seconds_count", "rps_explain_batch_size_count")
    }
    batcher: PassBatcher[int, int] = PassBatcher(window_s=0.0, max_waiting=8)
    threads = [
        threading.Thread(target=batcher.submit, args=("key", value, score)) for value in range(3)
    ]
    threads[0].start()
    time.sleep(0.1)  # the first pass is running; the other two wait and share the next
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.1)
    release.set()
    for thread in threads:
        thread.join(5)
    assert sample("rps_explain_batch_size_count") - before["rps_explain_batch_size_count"] == 2
    assert sample("rps_explain_pass_seconds_count") - before["rps_explain_pass_seconds_count"] == 3
