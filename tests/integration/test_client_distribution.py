"""The client distribution installs alone: a fresh virtual environment gets ``./client`` and
httpx, numpy, tqdm, and nothing of the server (torch, xgboost, SQLAlchemy, Dramatiq, or the
server's packages) is importable there, while ``rps.client`` and the ``rps`` command work.

The packages come from whatever index pip is configured with (here a local one); when none
answers, the test is skipped with the reason (a failure under CI=true).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.backing_services import unavailable
from tests.helpers.processes import REPO_ROOT

pytestmark = pytest.mark.slow

SERVER_ONLY = ["torch", "xgboost", "sqlalchemy", "dramatiq", "fastapi", "app", "workers"]
SERVER_ONLY += ["representer", "models_store", "rps_server", "pandas"]


def _run(*argv: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run outside the repository, so that nothing of it is importable by accident."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [str(arg) for arg in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def test_the_client_installs_without_the_server(tmp_path):
    source = tmp_path / "client"
    shutil.copytree(
        REPO_ROOT / "client",
        source,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"),
    )
    venv = tmp_path / "venv"
    created = _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    dependencies = _run(
        python, "-m", "pip", "install", "-q", "httpx", "numpy", "tqdm", cwd=tmp_path
    )
    if dependencies.returncode != 0:
        unavailable(f"pip could not install httpx, numpy, tqdm: {dependencies.stderr[-500:]}")
    installed = _run(python, "-m", "pip", "install", "-q", "--no-deps", source, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]
    pip_check = _run(python, "-m", "pip", "check", cwd=tmp_path)
    assert pip_check.returncode == 0, pip_check.stdout  # its declared dependencies are all there

    probe = (
        "import importlib.util, json, sys\n"
        "import rps.client, rps.spec, rps.results, rps.errors, rps.cli\n"
        "from rps.client import AsyncClient, Client, NotFound, ServiceError\n"
        "assert issubclass(NotFound, ServiceError)\n"
        f"names = {SERVER_ONLY!r}\n"
        "print(json.dumps({name: importlib.util.find_spec(name) is not None for name in names}))\n"
        "print(rps.client.__file__)\n"
    )
    probed = _run(python, "-c", probe, cwd=tmp_path)
    assert probed.returncode == 0, probed.stderr
    found, location = probed.stdout.splitlines()[-2:]
    assert str(venv) in location  # the installed copy, not the repository's
    assert not any(json.loads(found).values()), found

    help_text = _run(venv / "bin" / "rps", "--help", cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    for command in ("register", "explain", "explain-batch", "suspicious", "status"):
        assert command in help_text.stdout
    assert "serve" not in help_text.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
