"""The import rules of DESIGN.md: ``app`` never imports ``workers`` (it enqueues by name),
``workers`` never imports ``app``, and neither imports the user tools in ``rps`` (only its
stdlib-only spec module); the client distribution never imports the server's packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALLOWED_RPS = {"rps.spec"}
FORBIDDEN = {"app": {"workers"}, "workers": {"app"}, "models_store": {"app", "workers"}}
SERVER_PACKAGES = {"app", "workers", "models_store", "representer", "rps_server"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_design(package):
    offending = []
    for path in sorted((REPO / package).rglob("*.py")):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in FORBIDDEN[package] or (
                top == "rps" and name not in ALLOWED_RPS and name != "rps"
            ):
                offending.append(f"{path.relative_to(REPO)} imports {name}")
    assert offending == []


def test_client_distribution_imports_no_server_package():
    offending = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in sorted((REPO / "client" / "rps").rglob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] in SERVER_PACKAGES
    ]
    assert offending == []
