"""The import rules of DESIGN.md: ``app`` never imports ``workers`` (it enqueues by name),
``workers`` never imports ``app``, and neither imports the user tools in ``rps`` (only its
stdlib-only spec module); the client distribution never imports the server's packages.

Inside ``app``: ``app/core`` is plumbing and imports no other part of ``app``; each domain
package (``app/models``, ``app/explain``, ...) imports only ``app.core``, the composition
modules ``app.context`` and ``app.dependencies`` (where a ready model is resolved), and itself,
never another domain. Only ``app.main``, ``app.context`` and ``app.dependencies`` compose domains.
There is no list of exceptions."""

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


APP = REPO / "app"
COMPOSITION = {"app", "app.main", "app.context", "app.dependencies"}
DOMAINS = sorted(
    path.name for path in APP.iterdir() if (path / "__init__.py").exists() and path.name != "core"
)


def _app_imports(package_dir: Path) -> list[tuple[Path, str]]:
    return [
        (path, name)
        for path in sorted(package_dir.rglob("*.py"))
        for name in imported_modules(path)
        if name == "app" or name.startswith("app.")
    ]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_app_core_imports_nothing_else_of_app():
    offending = [
        f"{path.relative_to(REPO)} imports {name}"
        for path, name in _app_imports(APP / "core")
        if not _within(name, "app.core")
    ]
    assert offending == []


def test_there_are_domain_packages_to_check():
    assert {"models", "explain", "debug"} <= set(DOMAINS)


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_packages_do_not_import_each_other(domain):
    allowed = ("app.core", "app.context", "app.dependencies", f"app.{domain}")
    offending = [
        f"{path.relative_to(REPO)} imports {name}"
        for path, name in _app_imports(APP / domain)
        if not any(_within(name, package) for package in allowed)
    ]
    assert offending == []


def test_only_composition_modules_sit_at_the_top_of_app():
    modules = {f"app.{path.stem}" for path in APP.glob("*.py") if path.stem != "__init__"}
    assert modules <= COMPOSITION


def test_client_distribution_imports_no_server_package():
    offending = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in sorted((REPO / "client" / "rps").rglob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] in SERVER_PACKAGES
    ]
    assert offending == []
