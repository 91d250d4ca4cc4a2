"""The Python client and the ``rps`` client commands against a real ``rps serve`` subprocess."""

from __future__ import annotations

import csv
import json
import subprocess
import time

import httpx
import numpy as np
import pytest
import xgboost

from rps.client import Client, ModelFailedError, ServiceError
from rps_server.demo import DEMO_NAME, load_demo_data, train_demo_booster
from rps_server.demo_digits import DIGITS_NAME
from tests.helpers.expected_answers import (
    assert_explanation_matches,
    assert_prediction_matches,
    assert_suspicious_matches,
    fitted_states,
)
from tests.helpers.problems import make_linear_problem
from tests.helpers.processes import RPS_SCRIPT, free_port

pytestmark = pytest.mark.slow

TOP_K = 5
READY_TIMEOUT_S = 120.0
DEMO_READY_TIMEOUT_S = 240.0


@pytest.fixture
def problem():
    return make_linear_problem(seed=7, n_train=240, n_test=12, dim=6, num_classes=3)


def _register(client: Client, problem, *, methods=("lje",), name="client-test"):
    n_train, n_test = len(problem.train_labels), len(problem.test_labels)
    return client.register_linear(
        problem.weights,
        problem.bias,
        problem.train_features,
        problem.train_labels,
        name=name,
        class_names=["a", "b", "c"],
        methods=list(methods),
        train_ids=[f"tr-{i}" for i in range(n_train)],
        train_records=[{"row": i} for i in range(n_train)],
        test_features=problem.test_features,
        test_labels=problem.test_labels,
        test_ids=[f"te-{i}" for i in range(n_test)],
    )


def test_client_registers_explains_and_deletes(embedded_server, problem):
    methods = ("lje", "influence")
    states = fitted_states(problem.head, problem.train_features, problem.train_labels, methods)
    with Client(embedded_server.base_url) as client:
        queued = _register(client, problem, methods=methods)
        assert queued["status"] in ("queued", "running", "ready")
        ready = client.wait_ready(queued["id"], timeout=READY_TIMEOUT_S, progress=False)
        assert ready["status"] == "ready" and ready["progress"] == pytest.approx(1.0)
        assert (ready["n_train"], ready["n_test"], ready["feature_dim"], ready["num_classes"]) == (
            240,
            12,
            6,
            3,
        )
        assert any(model["id"] == queued["id"] for model in client.list_models())

        for method in methods:
            body = client.explain(queued["id"], test_id="te-3", k=TOP_K, method=method)
            assert body["test_id"] == "te-3" and body["method"] == method
            assert_prediction_matches(body, problem.head, problem.test_features[3])
            assert_explanation_matches(
                body, states[method], problem.train_features, problem.test_features[3], k=TOP_K
            )
            first = body["positive"][0]
            assert first["train_id"] == f"tr-{first['train_index']}"
            assert first["record"] == {"row": first["train_index"]}
            assert first["label"] == problem.train_labels[first["train_index"]]

        submitted = client.explain(
            queued["id"], features=problem.test_features[:2], k=TOP_K, target=1
        )
        assert len(submitted) == 2
        for row, body in enumerate(submitted):
            assert body["target_class"] == 1
            assert_explanation_matches(
                body, states["lje"], problem.train_features, problem.test_features[row], k=TOP_K
            )

        assert_suspicious_matches(
            client.suspicious(queued["id"], method="lje", limit=20), states["lje"], n_train=240
        )

        client.delete_model(queued["id"])
        with pytest.raises(ServiceError) as missing:
            client.get_model(queued["id"])
        assert missing.value.status == 404
        assert missing.value.problem["status"] == 404


def test_client_raises_service_error_with_the_problem_body(embedded_server, problem):
    bad_labels = problem.train_labels.copy()
    bad_labels[0] = 7  # out of range for 3 classes
    with Client(embedded_server.base_url) as client:
        with pytest.raises(ServiceError) as rejected:
            client.register_linear(
                problem.weights, problem.bias, problem.train_features, bad_labels
            )
        assert rejected.value.status == 422
        assert "train_labels" in json.dumps(rejected.value.problem)
        assert client.list_models() == []
        with pytest.raises(ServiceError) as unknown:
            client.explain("no-such-model", test_id="0")
        assert unknown.value.status == 404


def _rps(server, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(RPS_SCRIPT), *arguments, "--url", server.base_url],
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT_S,
    )


def test_cli_register_wait_status_explain_suspicious(embedded_server, problem, tmp_path):
    arrays = {
        "weights": problem.weights,
        "bias": problem.bias,
        "train_features": problem.train_features,
        "train_labels": problem.train_labels,
        "test_features": problem.test_features,
        "test_labels": problem.test_labels,
    }
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array, allow_pickle=False)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"kind": "linear", "name": "cli-test", "methods": ["lje"]}))
    flags = [f"--{name.replace('_', '-')}={tmp_path / (name + '.npy')}" for name in arrays]

    registered = _rps(embedded_server, "register", f"--spec={spec}", *flags, "--wait", "--json")
    assert registered.returncode == 0, registered.stderr
    model = json.loads(registered.stdout)
    assert model["status"] == "ready" and model["name"] == "cli-test"

    listed = _rps(embedded_server, "status")
    assert listed.returncode == 0 and model["id"] in listed.stdout and "ready" in listed.stdout

    explained = _rps(embedded_server, "explain", model["id"], "--test-id", "2", "-k", "3", "--json")
    assert explained.returncode == 0, explained.stderr
    body = json.loads(explained.stdout)
    state = fitted_states(problem.head, problem.train_features, problem.train_labels, ["lje"])[
        "lje"
    ]
    assert_explanation_matches(body, state, problem.train_features, problem.test_features[2], k=3)

    table = _rps(embedded_server, "explain", model["id"], "--test-id", "2", "-k", "3")
    assert table.returncode == 0 and "positive" in table.stdout and "negative" in table.stdout
    assert f"{body['positive'][0]['contribution']:.6g}" in table.stdout

    suspicious = _rps(
        embedded_server, "suspicious", model["id"], "--method", "lje", "--limit", "4", "--json"
    )
    assert suspicious.returncode == 0
    assert_suspicious_matches(json.loads(suspicious.stdout), state, n_train=240)

    predicted = problem.head.logits(problem.test_features).argmax(axis=1)
    wrong = [str(i) for i in np.flatnonzero(predicted != problem.test_labels)]
    points = _rps(embedded_server, "test-points", model["id"], "--wrong", "--json")
    assert points.returncode == 0, points.stderr
    page = json.loads(points.stdout)
    assert [item["test_id"] for item in page["items"]] == wrong and page["total"] == len(wrong)
    assert [item["predicted_class"] for item in page["items"]] == [
        int(predicted[int(i)]) for i in wrong
    ]
    label = int(problem.test_labels[0])
    points_table = _rps(embedded_server, "test-points", model["id"], "--label", str(label))
    expected_total = int(np.sum(problem.test_labels == label))
    assert points_table.returncode == 0
    assert f"of {expected_total} test points" in points_table.stdout

    missing = _rps(embedded_server, "status", "no-such-model")
    assert missing.returncode == 1 and "404" in missing.stderr


def test_serve_demo_becomes_ready_and_explains(embedded_backend):
    port = free_port()
    server = embedded_backend.spawn(
        "serve-demo", "serve", "--host", "127.0.0.1", "--port", str(port), "--demo", port=port
    ).wait_healthy()
    with Client(server.base_url) as client:
        model = _wait_for_demo(client, server)
        assert model["kind"] == "xgboost" and sorted(model["methods"]) == ["influence", "l2", "lje"]
        demo = load_demo_data()
        assert (model["n_train"], model["n_test"]) == (
            len(demo.train_labels),
            len(demo.test_labels),
        )
        test_id = demo.test_ids[0]
        answer = httpx.get(
            f"{server.base_url}/explain",
            params={"model_id": model["id"], "test_id": test_id, "k": 5},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["positive"]) == 5 and len(body["negative"]) == 5
        assert set(body["positive"][0]["record"]) == set(demo.feature_names)
        decomposition = body["decomposition"]
        assert decomposition["residual"] == pytest.approx(
            decomposition["model_output"] - decomposition["sum_of_contributions"], abs=1e-6
        )
        # the image demo: digits whose records are PNG data URLs, and the viewer's address logged
        _wait_for_log(server, "curl", timeout=DEMO_READY_TIMEOUT_S)
        digits = [entry for entry in client.list_models() if entry["name"] == DIGITS_NAME]
        assert [entry["status"] for entry in digits] == ["ready"]
        points = client.test_points(digits[0]["id"], limit=3)
        assert all(item["record"].startswith("data:image/png;base64,") for item in points["items"])
    log = server.log_tail()
    assert "curl" in log and model["id"] in log
    assert f"{server.base_url}/ui" in log and digits[0]["id"] in log

    # a restart on the same data directory keeps the one demo model instead of adding another
    server.stop()
    port = free_port()
    again = embedded_backend.spawn(
        "serve-demo-again", "serve", "--host", "127.0.0.1", "--port", str(port), "--demo", port=port
    ).wait_healthy()
    with Client(again.base_url) as client:
        _wait_for_log(again, "already registered")
        demos = [entry for entry in client.list_models() if entry["name"] == DEMO_NAME]
        assert [entry["id"] for entry in demos] == [model["id"]]
        assert demos[0]["status"] == "ready"


def _wait_for_log(server, text: str, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log_tail():
        if time.monotonic() > deadline:
            pytest.fail(f"{server.name} never logged {text!r}:\n{server.log_tail()}")
        time.sleep(0.2)


def _wait_for_demo(client: Client, server) -> dict:
    deadline = time.monotonic() + DEMO_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        demos = [model for model in client.list_models() if model["name"] == DEMO_NAME]
        if demos and demos[0]["status"] == "ready":
            return demos[0]
        assert not demos or demos[0]["status"] != "failed", demos[0].get("error")
        time.sleep(0.5)
    pytest.fail(
        f"the demo model was not ready within {DEMO_READY_TIMEOUT_S:g} s:\n{server.log_tail()}"
    )


def test_wait_ready_raises_the_recorded_problem_of_a_failed_job(embedded_server):
    # more features than points: the Hessian is singular, so the precompute must fail, and say why
    rng = np.random.default_rng(3)
    features = rng.standard_normal((6, 20)).astype(np.float32)
    labels = np.array([0, 1, 0, 1, 1, 0])
    with Client(embedded_server.base_url) as client:
        model = client.register_linear(
            rng.standard_normal((1, 20)), None, features, labels, methods=["influence"]
        )
        with pytest.raises(ModelFailedError) as failed:
            client.wait_ready(model["id"], timeout=READY_TIMEOUT_S, progress=False)
        assert failed.value.model["status"] == "failed"
        assert "damping" in json.dumps(failed.value.problem)
        assert isinstance(failed.value, ServiceError)

    waited = _rps(embedded_server, "wait", model["id"])
    assert waited.returncode == 1 and "damping" in waited.stderr


def test_cli_registers_an_xgboost_booster(embedded_server, tmp_path):
    demo = load_demo_data()
    booster = train_demo_booster(demo)
    booster.save_model(tmp_path / "booster.ubj")
    np.save(tmp_path / "train_inputs.npy", demo.train_inputs, allow_pickle=False)
    np.save(tmp_path / "train_labels.npy", demo.train_labels, allow_pickle=False)
    np.save(tmp_path / "test_inputs.npy", demo.test_inputs[:5], allow_pickle=False)
    (tmp_path / "train_ids.json").write_text(json.dumps(demo.train_ids))

    registered = _rps(
        embedded_server,
        "register",
        f"--booster={tmp_path / 'booster.ubj'}",
        f"--train-inputs={tmp_path / 'train_inputs.npy'}",
        f"--train-labels={tmp_path / 'train_labels.npy'}",
        f"--train-ids={tmp_path / 'train_ids.json'}",
        "--name=cli-xgb",
        "--class-names=malignant,benign",
        # one-hot leaves of a tree sum to one, like the bias column: the Hessian needs damping
        "--embedding=leaf_onehot",
        "--lje-damping=1e-3",
        "--wait",
        "--json",
    )
    assert registered.returncode == 0, registered.stderr
    model = json.loads(registered.stdout)
    assert (model["kind"], model["status"], model["n_train"]) == (
        "xgboost",
        "ready",
        len(demo.train_labels),
    )
    assert model["class_names"] == ["malignant", "benign"]

    explained = _rps(
        embedded_server,
        "explain",
        model["id"],
        f"--inputs={tmp_path / 'test_inputs.npy'}",
        "--json",
    )
    assert explained.returncode == 0, explained.stderr
    bodies = json.loads(explained.stdout)
    assert len(bodies) == 5
    margins = booster.predict(xgboost.DMatrix(demo.test_inputs[:5]), output_margin=True)  # (5,)
    for body, margin in zip(bodies, margins, strict=False):
        assert body["prediction"]["logits"][0] == pytest.approx(float(margin), abs=1e-4)
        assert body["positive"][0]["train_id"] in set(demo.train_ids)


def test_list_models_follows_the_pages(embedded_server, monkeypatch):
    import rps.client

    monkeypatch.setattr(rps.client, "LIST_PAGE_SIZE", 2)  # five models over three pages
    rng = np.random.default_rng(5)
    with Client(embedded_server.base_url) as client:
        registered = [
            client.register_linear(
                rng.standard_normal((1, 3)),
                None,
                rng.standard_normal((20, 3)),
                np.arange(20) % 2,
                name=f"page-{index}",
            )["id"]
            for index in range(5)
        ]
        assert sorted(model["id"] for model in client.list_models()) == sorted(registered)


def test_review_loop_through_the_client_and_the_cli(embedded_server, problem):
    """Suspicious -> reviews (client and CLI) -> CSV -> refit --wait: a new ready model."""
    with Client(embedded_server.base_url) as client:
        model = client.wait_ready(_register(client, problem)["id"], progress=False)
        top = client.suspicious(model["id"], limit=2)
        first, second = top["items"]
        client.review(
            model["id"], first["train_id"], "relabel", label=first["suggested_label"], note="n"
        )
        unreviewed = client.suspicious(model["id"], limit=240, reviewed=False)
    assert first["train_id"] not in {item["train_id"] for item in unreviewed["items"]}
    removed = _rps(embedded_server, "review", model["id"], second["train_id"], "remove")
    assert removed.returncode == 0, removed.stderr
    exported = _rps(embedded_server, "reviews", model["id"], "--csv")
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.strip().splitlines()
    assert lines[0] == "train_id,old_label,new_label,decision,note,time" and len(lines) == 3
    refit = _rps(embedded_server, "refit", model["id"], "--wait", "--json")
    assert refit.returncode == 0, refit.stderr
    answer = json.loads(refit.stdout)
    assert answer["model"]["status"] == "ready" and answer["model"]["parent_id"] == model["id"]
    assert answer["refit"]["relabelled"] == 1 and answer["refit"]["removed"] == 1
    assert answer["model"]["n_train"] == len(problem.train_labels) - 1
    assert "refit_test_accuracy_change" in answer["model"]["diagnostics"]


def test_cli_explain_batch_writes_json_lines_and_csv(embedded_server, problem, tmp_path):
    with Client(embedded_server.base_url) as client:
        model = _register(client, problem, methods=("lje",))
        client.wait_ready(model.id, timeout=READY_TIMEOUT_S, progress=False)
        expected = client.explain_batch(model.id, ["te-2", "te-0"], k=3)
        everything = client.explain_batch(model.id, [f"te-{i}" for i in range(12)], k=2)

    lines = _rps(embedded_server, "explain-batch", model.id, "--test-ids", "te-2,te-0", "-k", "3")
    assert lines.returncode == 0, lines.stderr
    bodies = [json.loads(line) for line in lines.stdout.splitlines()]
    assert bodies == [explanation.raw for explanation in expected]

    output = tmp_path / "all.csv"
    table = _rps(
        embedded_server,
        "explain-batch",
        model.id,
        "--all",
        "-k",
        "2",
        "--format",
        "csv",
        "--chunk",
        "5",
        "-o",
        str(output),
    )
    assert table.returncode == 0, table.stderr
    with output.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 * 4  # 12 stored test points, 2 points on each side
    assert [(row["test_id"], row["train_id"]) for row in rows] == [
        (explanation.test_id, point.train_id)
        for explanation in everything
        for point in explanation.positive + explanation.negative
    ]
