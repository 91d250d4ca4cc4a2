"""The typed client (``AsyncClient``, with ``Client``'s methods) against the real service:
typed answers, one error class per problem status, pages followed for you, DataFrames."""

from __future__ import annotations

import httpx
import pytest

import rps.client
from rps.client import (
    AsyncClient,
    Client,
    Conflict,
    Contribution,
    Explanation,
    Model,
    NotFound,
    ServiceError,
    SuspiciousPage,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from rps.errors import ServiceUnavailable, error_for
from tests.helpers.problems import linear_problem
from tests.helpers.service import ALICE_KEY


def _client(service, *, api_key: str | None = ALICE_KEY) -> AsyncClient:
    transport = httpx.ASGITransport(app=service.app, raise_app_exceptions=False)
    return AsyncClient("http://testserver", api_key=api_key, transport=transport)


async def test_answers_are_typed_and_keep_their_body(service, multiclass_model):
    async with _client(service) as client:
        model = await client.get_model(multiclass_model.id)
        test_id = multiclass_model.test_ids[0]
        explanation = await client.explain(model.id, test_id=test_id, k=3, method="l2")
        batch = await client.explain_batch(model.id, multiclass_model.test_ids[:3], k=2)
        rows = await client.explain(
            model.id, features=multiclass_model.problem["test_features"][:2], k=2
        )
        page = await client.suspicious(model.id, method="lje", limit=5)
    assert isinstance(model, Model) and model.ready and model.created_at is not None
    assert model.id == model["id"] == multiclass_model.id and model.class_names == ["a", "b", "c"]
    assert isinstance(explanation, Explanation) and explanation.test_id == test_id
    assert explanation.method == "l2" and len(explanation.positive) == 3
    assert all(isinstance(point, Contribution) for point in explanation.negative)
    assert explanation.positive[0].train_id == explanation["positive"][0]["train_id"]
    assert explanation.decomposition.residual == explanation["decomposition"]["residual"]
    assert [item.test_id for item in batch] == multiclass_model.test_ids[:3]
    assert len(rows) == 2 and all(item.test_id is None for item in rows)
    assert isinstance(page, SuspiciousPage) and len(page) == 5 and page.method == "lje"
    assert [item.rank for item in page] == [1, 2, 3, 4, 5]


async def test_pages_are_followed(service, multiclass_model, binary_model, monkeypatch):
    model_id = multiclass_model.id
    async with _client(service) as client:
        everything = [
            item async for item in client.iter_suspicious(model_id, method="lje", page_size=7)
        ]
        first = await client.suspicious(model_id, method="lje", limit=1)
        monkeypatch.setattr(rps.client, "LIST_PAGE_SIZE", 1)
        models = await client.list_models()
    assert len(everything) == first.total and [i.rank for i in everything] == list(
        range(1, first.total + 1)
    )
    assert {multiclass_model.id, binary_model.id} <= {model.id for model in models}
    assert len({model.id for model in models}) == len(models) > 1


async def test_each_problem_status_has_its_error_class(service):
    async with _client(service) as client:
        with pytest.raises(NotFound) as missing:
            await client.get_model("no-such-model")
        problem = linear_problem(n=40, d=4, k=3, m=2)
        with pytest.raises(Unprocessable) as invalid:
            await client.register_linear(
                problem["weights"],
                problem["bias"],
                problem["train_features"],
                problem["train_labels"],
                lje={"lr": -1},
            )
        queued = await client.register_linear(
            problem["weights"],
            problem["bias"],
            problem["train_features"],
            problem["train_labels"],
            test_features=problem["test_features"],
            queue="gpu",
        )  # no worker of the test service takes the gpu queue: it stays queued
        with pytest.raises(Conflict) as not_ready:
            await client.explain(queued.id, test_id="0")
        await client.delete_model(queued.id)
    async with _client(service, api_key=None) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.list_models()
    assert missing.value.status == 404 and missing.value.type.startswith("urn:rps:problem:")
    assert "spec.lje.lr" in invalid.value.fields
    assert not_ready.value.model_status == "queued"
    for error in (missing.value, invalid.value, not_ready.value):
        assert isinstance(error, ServiceError)


def test_retry_after_comes_from_the_header_or_the_problem():
    busy = error_for(429, {"title": "Too Many Requests", "status": 429}, retry_after="3")
    assert isinstance(busy, TooManyRequests) and busy.retry_after == 3.0
    down = error_for(503, {"status": 503, "retry_after_s": 2.5})
    assert isinstance(down, ServiceUnavailable) and down.retry_after == 2.5
    assert type(error_for(418, {"status": 418})) is ServiceError


def test_from_env_reads_the_url_and_the_key(monkeypatch):
    monkeypatch.setenv("RPS_URL", "http://rps.example:9000/")
    monkeypatch.setenv("RPS_API_KEY", "secret")
    with Client.from_env() as client:
        assert client.base_url == "http://rps.example:9000"
        assert client.headers["Authorization"] == "Bearer secret"
    monkeypatch.delenv("RPS_API_KEY")
    with Client.from_env() as client:
        assert "Authorization" not in client.headers


async def test_frames_when_pandas_is_installed(service, multiclass_model):
    pandas = pytest.importorskip("pandas")
    async with _client(service) as client:
        explanation = await client.explain(
            multiclass_model.id, test_id=multiclass_model.test_ids[1], k=4
        )
        page = await client.suspicious(multiclass_model.id, method="lje", limit=6)
    frame = explanation.to_frame()
    assert isinstance(frame, pandas.DataFrame) and len(frame) == 8
    assert list(frame["side"]) == ["positive"] * 4 + ["negative"] * 4
    assert frame["contribution"].tolist() == [
        p.contribution for p in explanation.positive + explanation.negative
    ]
    ranking = page.to_frame()
    assert ranking["train_id"].tolist() == [item.train_id for item in page.items]


def test_the_async_client_has_every_method_of_the_client():
    import inspect

    public = {
        name
        for name, member in inspect.getmembers(Client, inspect.isfunction)
        if not name.startswith("_") and name != "close"
    }
    missing = sorted(name for name in public if not hasattr(AsyncClient, name))
    assert missing == []
    for name in public - {"iter_models", "iter_suspicious"}:
        member = getattr(AsyncClient, name)
        assert inspect.iscoroutinefunction(member), name


async def test_the_async_review_loop(service):
    problem = linear_problem(n=40, d=4, k=3, m=2, seed=5)
    async with _client(service) as client:
        model = await client.register_linear(
            problem["weights"], problem["bias"], problem["train_features"], problem["train_labels"]
        )  # a model of its own: the shared ones stay unreviewed
        await client.wait_ready(model.id, timeout=90)
        page = await client.suspicious(model.id, method="lje", limit=1)
        point = page.items[0]
        review = await client.review(model.id, point.train_id, "keep", note="checked")
        listed = await client.reviews(model.id)
        table = await client.reviews(model.id, format="csv")
        await client.delete_model(model.id)
    assert review["decision"] == "keep" and review["train_id"] == point.train_id
    assert point.train_id in {item["train_id"] for item in listed["items"]}
    assert point.train_id in table
