"""The Docker files agree with the code: no Docker engine runs here, so they are parsed.

Every ``RPS_*`` variable docker-compose.yml sets must be a field of ``rps_server.settings.Settings``
(a misspelt one would be silently ignored), the services the design names must exist, they
must share one artifact volume at ``RPS_DATA_DIR``, the commands must be real ``rps``
subcommands, and the Dockerfile must install torch pinned to pyproject's version.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from rps_server.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("api", "worker", "gpu-worker")
REQUIRED_VARIABLES = (
    "RPS_DATABASE_URL",
    "RPS_REDIS_URL",
    "RPS_DATA_DIR",
    "RPS_ENV",
    "RPS_API_KEYS",
)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (REPO_ROOT / "Dockerfile").read_text()


def _env_prefix() -> str:
    return Settings.model_config.get("env_prefix", "")


def _environment(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(entry.split("=", 1) for entry in environment)
    return {str(key): str(value) for key, value in environment.items()}


def test_the_design_services_exist(compose):
    services = compose["services"]
    for name in (*APP_SERVICES, "postgres", "redis"):
        assert name in services, f"docker-compose.yml lacks service {name!r}"
    for name in ("api", "postgres", "redis"):
        assert "test" in services[name].get("healthcheck", {}), f"{name} has no healthcheck"


def test_every_rps_variable_is_a_settings_field(compose):
    prefix = _env_prefix()
    assert prefix == "RPS_"
    fields = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    for name in APP_SERVICES:
        variables = _environment(compose["services"][name])
        for variable in variables:
            if variable.startswith(prefix):
                assert variable in fields, (
                    f"{name}: {variable} is not a Settings field ({sorted(fields)})"
                )
        for variable in REQUIRED_VARIABLES:
            assert variable in variables, f"{name} does not set {variable}"


def _interpolated(value: str) -> str:
    """Compose's ``${NAME:-default}`` -> default; ``${NAME:?message}`` (required) -> a sample."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "tenant:sample-key", value)


def test_compose_environment_validates_as_settings(compose):
    prefix = _env_prefix()
    for name in APP_SERVICES:
        variables = _environment(compose["services"][name])
        values = {
            variable[len(prefix) :].lower(): _interpolated(value)
            for variable, value in variables.items()
            if variable.startswith(prefix)
        }
        settings = Settings(**values)  # runs the production checks (no SQLite, keys parse)
        assert settings.env.value == "production"
        assert settings.env_api_keys == {"sample-key": "tenant"}
        assert not settings.resolved_database_url.startswith("sqlite")


def test_app_services_point_at_postgres_and_redis_in_production(compose):
    for name in APP_SERVICES:
        variables = _environment(compose["services"][name])
        assert variables["RPS_ENV"] == "production"
        assert variables["RPS_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:" in variables["RPS_DATABASE_URL"]
        assert variables["RPS_REDIS_URL"].startswith("redis://redis:")


def test_app_services_share_one_artifact_volume_at_the_data_dir(compose):
    mounts = set()
    for name in APP_SERVICES:
        service = compose["services"][name]
        data_dir = _environment(service)["RPS_DATA_DIR"]
        volumes = [entry for entry in service["volumes"] if entry.split(":")[1] == data_dir]
        assert len(volumes) == 1, f"{name} does not mount a volume at {data_dir}"
        mounts.add(volumes[0].split(":")[0])
    assert len(mounts) == 1, f"services mount different artifact volumes: {mounts}"
    assert mounts.pop() in compose["volumes"]


def test_gpu_worker_reserves_an_nvidia_device_and_listens_on_gpu(compose):
    service = compose["services"]["gpu-worker"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        device.get("driver") == "nvidia" and "gpu" in device.get("capabilities", [])
        for device in devices
    )
    command = service["command"]
    assert command[0] == "worker" and command[command.index("--queues") + 1] == "gpu"
    assert _environment(service)["RPS_DEVICE"].startswith("cuda")
    cpu_command = compose["services"]["worker"]["command"]
    assert cpu_command[cpu_command.index("--queues") + 1] == "default"


def _rps_help(*arguments: str) -> subprocess.CompletedProcess:
    code = "import sys; from rps.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *arguments, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_commands_are_real_rps_subcommands(compose):
    for name, service in compose["services"].items():
        command = service.get("command")
        if "build" not in service and service.get("image", "").startswith(("postgres", "redis")):
            continue
        flags = [argument for argument in command if argument.startswith("--")]
        words = command[: command.index(flags[0])] if flags else command
        answer = _rps_help(*words)
        assert answer.returncode == 0, (
            f"{name}: `rps {' '.join(words)} --help` failed: {answer.stderr[-500:]}"
        )
        for flag in flags:
            assert flag in answer.stdout, f"{name}: `rps {' '.join(words)}` has no option {flag}"


def test_dockerfile_installs_torch_pinned_to_pyproject(dockerfile):
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    [pinned] = [dep for dep in pyproject["project"]["dependencies"] if dep.startswith("torch")]
    version = pinned.split("==")[1]
    assert re.search(rf"ARG TORCH_VERSION={re.escape(version)}\s", dockerfile)
    assert re.search(
        r'pip install --index-url "\$\{TORCH_INDEX\}" "torch==\$\{TORCH_VERSION\}"', dockerfile
    )
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in dockerfile
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", dockerfile, re.MULTILINE)


def test_dockerfile_copies_every_package_and_runs_unprivileged(dockerfile):
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert re.search(rf"^COPY {package} ", dockerfile, re.MULTILINE), (
            f"Dockerfile does not copy {package}/"
        )
    # The service depends on the client distribution, which is installed from client/ first.
    assert re.search(r"^COPY client \./client$", dockerfile, re.MULTILINE)
    assert dockerfile.index("pip install ./client") < dockerfile.index("pip install . ")
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["rps"]' in dockerfile


def test_dockerignore_keeps_local_state_out():
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".venv", "data", ".git"} <= ignored
