"""A live ``rps serve`` (embedded, auth on) with small models of each record kind, and a
headless Debian Chromium driven by playwright.

Chromium comes from Debian's package (playwright's own browser download is not reachable):
when ``/usr/bin/chromium`` is missing and the tests run as root, it is installed here with
apt-get, so ``make test`` passes on a fresh machine. Screenshots go to ``test-output/ui/``
(gitignored; ``RPS_UI_OUTPUT`` moves it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rps.client import Client
from rps_server.demo_digits import DIGITS_OPTIONS, fit_digits_head, load_digits_data
from tests.helpers.backing_services import unavailable
from tests.helpers.processes import REPO_ROOT, Backend, ServiceProcess, clean_env, free_port

ALICE_KEY, BOB_KEY = "alice-ui-key", "bob-ui-key"
READY_TIMEOUT_S = 240.0
APT_TIMEOUT_S = 900
OUTPUT_DIR = Path(os.environ.get("RPS_UI_OUTPUT", REPO_ROOT / "test-output" / "ui"))
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DIGITS_TRAIN, DIGITS_TEST = 300, 40


def _find_chromium() -> str | None:
    for path in (os.environ.get("RPS_UI_CHROMIUM"), *CHROMIUM_PATHS, shutil.which("chromium")):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return None


def _install_chromium() -> str:
    """Debian's chromium via apt-get when we are root (the test machines are); else skip."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        unavailable("chromium is not installed and apt-get cannot install it here (not root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            unavailable(f"{' '.join(command)} failed: {done.stderr[-1000:]}")
    path = _find_chromium()
    if path is None:
        unavailable("apt-get installed chromium but no chromium executable was found")
    return str(path)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return _find_chromium() or _install_chromium()


@pytest.fixture(scope="module")
def browser(chromium_path) -> Iterator[Any]:
    """Chromium for one module: playwright's sync API keeps an event loop running while it
    is open, which would break the ``asyncio.run`` of tests collected after this folder."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR


@dataclass
class Viewer:
    """The live server and the models registered on it."""

    server: ServiceProcess
    base_url: str
    digits_id: str
    tabular_id: str
    text_id: str
    bob_id: str
    failed_id: str

    def api(self, key: str = ALICE_KEY) -> Client:
        return Client(self.base_url, api_key=key)


def _register_digits(client: Client) -> str:
    data = load_digits_data()
    train, test = slice(0, DIGITS_TRAIN), slice(0, DIGITS_TEST)
    weights, bias = fit_digits_head(data)
    return client.register_linear(
        weights,
        bias,
        data.train_features[train],
        data.train_labels[train],
        name="ui-digits",
        class_names=data.class_names,
        methods=["lje", "l2"],
        train_ids=data.train_ids[train],
        train_records=data.train_records[train],
        test_features=data.test_features[test],
        test_labels=data.test_labels[test],
        test_ids=data.test_ids[test],
        test_records=data.test_records[test],
        lje=DIGITS_OPTIONS["lje"],
        influence=DIGITS_OPTIONS["influence"],
    )["id"]


WORDS = [
    "red",
    "green",
    "blue",
    "cat",
    "dog",
    "bird",
    "river",
    "stone",
    "cloud",
    "light",
    "dark",
    "fast",
    "slow",
    "warm",
    "cold",
]


def _small_problem(seed: int, *, n: int = 80, m: int = 8, d: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(3, d))
    features = rng.normal(size=(n, d))
    labels = (features @ weights.T).argmax(axis=1)
    test = rng.normal(size=(m, d))
    return {
        "weights": weights,
        "train_features": features,
        "train_labels": labels,
        "test_features": test,
        "test_labels": (test @ weights.T).argmax(axis=1),
    }


def register_records(client: Client, name: str, seed: int, make_record) -> str:
    problem = _small_problem(seed)
    rng = np.random.default_rng(seed + 100)
    return client.register_linear(
        problem["weights"],
        None,
        problem["train_features"],
        problem["train_labels"],
        name=name,
        methods=["lje"],
        train_records=[make_record(rng, row) for row in problem["train_features"]],
        test_features=problem["test_features"],
        test_labels=problem["test_labels"],
        test_records=[make_record(rng, row) for row in problem["test_features"]],
    )["id"]


def tabular_record(rng, row) -> dict[str, Any]:
    return {
        "colour": str(rng.choice(["red", "green"])),
        "size": int(rng.integers(0, 3)),
        "x0": round(float(row[0]), 3),
    }


def text_record(rng, row) -> str:
    return " ".join(str(word) for word in rng.choice(WORDS, size=6, replace=False))


def _register_failing(client: Client) -> str:
    rng = np.random.default_rng(3)  # more features than points: influence's Hessian is singular
    return client.register_linear(
        rng.standard_normal((1, 20)),
        None,
        rng.standard_normal((6, 20)),
        np.array([0, 1, 0, 1, 1, 0]),
        name="ui-failing",
        methods=["influence"],
    )["id"]


@pytest.fixture(scope="session")
def viewer(tmp_path_factory) -> Iterator[Viewer]:
    """``rps serve`` (SQLite, in-process worker) with keys for tenants alice and bob."""
    data_dir = tmp_path_factory.mktemp("ui-data")
    env = clean_env(data_dir)
    env["RPS_API_KEYS"] = f"alice:{ALICE_KEY},bob:{BOB_KEY}"
    backend = Backend(env=env, data_dir=data_dir)
    port = free_port()
    server = backend.spawn(
        "ui-serve", "serve", "--host", "127.0.0.1", "--port", str(port), port=port
    ).wait_healthy()
    try:
        with (
            Client(server.base_url, api_key=ALICE_KEY) as alice,
            Client(server.base_url, api_key=BOB_KEY) as bob,
        ):
            ids = {
                "digits_id": _register_digits(alice),
                "tabular_id": register_records(alice, "ui-tabular", 1, tabular_record),
                "text_id": register_records(alice, "ui-text", 2, text_record),
                "bob_id": register_records(bob, "ui-bob-only", 3, tabular_record),
                "failed_id": _register_failing(alice),
            }
            for name, model_id in ids.items():
                client = bob if name == "bob_id" else alice
                if name != "failed_id":
                    client.wait_ready(model_id, timeout=READY_TIMEOUT_S, progress=False)
        yield Viewer(server=server, base_url=server.base_url, **ids)
    finally:
        backend.stop_all()


def dump(path: Path, body: Any) -> None:
    """Write a JSON body beside the screenshots (what the page was compared with)."""
    path.write_text(json.dumps(body, indent=2))
