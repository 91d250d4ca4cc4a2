"""The documentation in ``docs/`` and ``README.md`` stays true to the code.

Enumerated from the code, so that adding an undocumented setting, route or problem type
fails here:
* every ``RPS_*`` setting (the fields of ``Settings``) has a row in the settings table of
  docs/operations.md, and every row there is a real setting;
* every route of the app (path and method) is named in docs/api.md as ``METHOD /path``;
* every problem type the service or its workers can answer (the ``ServiceError`` classes,
  and every ``slug=``/``urn:rps:problem:`` literal in the source) has a row in the problem
  tables of docs/api.md with its status, and every row there is a real problem type.
And the text itself: no Markdown link in README.md or docs/ leaves the repository or points
to a missing file or heading, nothing outside tests points at ``shared/docs`` or its
``MATH.md``/``API.md``, the README's
python blocks compile, and every ``rps`` command shown in a shell block exists.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import unicodedata
from pathlib import Path

import pytest
from starlette.routing import Route

import app as app_package
from app import create_app
from app.core.errors import ServiceError
from rps.cli import build_parser
from rps_server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MARKDOWN_FILES = [README, *sorted(DOCS.glob("*.md"))]
SOURCE_DIRS = ("app", "workers", "rps_server", "models_store", "representer", "client")
PROBLEM_URN = re.compile(r"urn:rps:problem:([a-z0-9-]+)")
SLUG_LITERAL = re.compile(r"""\bslug\s*=\s*["']([a-z0-9-]+)["']""")
TABLE_ROW = re.compile(r"^\|(.+)\|\s*$", re.MULTILINE)
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^>]*)>")
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
FENCE = re.compile(r"^```([a-zA-Z0-9_+-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _docs_text() -> str:
    return "\n".join(_read(path) for path in sorted(DOCS.glob("*.md")))


def _table_first_cells(text: str) -> list[str]:
    """The first cell of every Markdown table row, stripped of spaces."""
    return [row.split("|")[0].strip() for row in TABLE_ROW.findall(text)]


def _code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# -- settings ----------------------------------------------------------------------------


def _setting_names() -> set[str]:
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias or field.alias
        names.add(alias.upper() if isinstance(alias, str) else f"RPS_{field_name.upper()}")
    return names


def test_docs_folder_has_the_four_guides() -> None:
    for name in ("api.md", "math.md", "methods.md", "operations.md"):
        assert (DOCS / name).is_file(), f"docs/{name} is missing"


def test_every_setting_has_a_row_in_the_settings_table() -> None:
    documented = {
        span
        for cell in _table_first_cells(_read(DOCS / "operations.md"))
        for span in _code_spans(cell)
        if span.startswith("RPS_")
    }
    missing = sorted(_setting_names() - documented)
    assert not missing, f"settings without a row in docs/operations.md: {missing}"
    stale = sorted(documented - _setting_names())
    assert not stale, f"docs/operations.md documents settings that do not exist: {stale}"


# -- routes ------------------------------------------------------------------------------


def _routes(tmp_path: Path) -> set[str]:
    """``METHOD /path`` of every operation in the app's OpenAPI schema, plus the schema
    and viewer routes FastAPI adds outside it (HEAD, which Starlette adds to every GET,
    left out)."""
    application = create_app(Settings(data_dir=tmp_path))
    found = {
        f"{method.upper()} {path}"
        for path, operations in application.openapi()["paths"].items()
        for method in operations
        if method.upper() in HTTP_METHODS
    }
    for route in application.routes:
        if isinstance(route, Route):
            found.update(
                f"{method} {route.path}" for method in route.methods or () if method != "HEAD"
            )
    return found


def test_every_route_is_documented(tmp_path: Path) -> None:
    routes = _routes(tmp_path)
    assert "POST /models" in routes and "GET /explain" in routes  # the enumeration works
    api = _read(DOCS / "api.md")
    missing = sorted(route for route in routes if f"`{route}`" not in api)
    assert not missing, f"routes not named as `METHOD /path` in docs/api.md: {missing}"


def test_documented_routes_exist(tmp_path: Path) -> None:
    routes = _routes(tmp_path)
    named = re.findall(r"`((?:GET|POST|PUT|PATCH|DELETE) /[^`?\s]*)`", _read(DOCS / "api.md"))
    stale = sorted({route for route in named if route not in routes})
    assert not stale, f"docs/api.md names routes the app does not have: {stale}"


# -- problem types -----------------------------------------------------------------------


def _import_all(package) -> None:
    for module in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        importlib.import_module(module.name)


def _service_error_classes() -> list[type[ServiceError]]:
    _import_all(app_package)
    found, pending = [], [ServiceError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _problem_slugs_in_source() -> set[str]:
    slugs = set()
    for directory in SOURCE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            text = _read(path)
            slugs.update(PROBLEM_URN.findall(text))
            slugs.update(SLUG_LITERAL.findall(text))
    return slugs


def _documented_problems() -> dict[str, str]:
    """``{slug: the rest of its table row}`` for every problem row of docs/api.md."""
    rows = {}
    for row in TABLE_ROW.findall(_read(DOCS / "api.md")):
        first, _, rest = row.partition("|")
        match = re.fullmatch(r"\s*`urn:rps:problem:([a-z0-9-]+)`\s*", first)
        if match:
            rows[match.group(1)] = rest
    return rows


def test_every_problem_type_has_a_row_with_its_status() -> None:
    documented = _documented_problems()
    classes = _service_error_classes()
    assert len(classes) >= 8  # the enumeration works
    for cls in classes:
        assert cls.slug in documented, f"{cls.__name__} (urn:rps:problem:{cls.slug}) undocumented"
        status_cell = documented[cls.slug].split("|")[0]
        assert str(cls.status) in status_cell, (
            f"docs/api.md gives urn:rps:problem:{cls.slug} status {status_cell.strip()!r}, "
            f"the code answers {cls.status}"
        )
    in_source = _problem_slugs_in_source()
    missing = sorted(in_source - set(documented))
    assert not missing, f"problem types in the source but not in docs/api.md: {missing}"
    stale = sorted(set(documented) - in_source - {cls.slug for cls in classes})
    assert not stale, f"docs/api.md documents problem types the code never answers: {stale}"


# -- links and examples ------------------------------------------------------------------


def _heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of ``path`` (outside code blocks)."""
    text = FENCE.sub("", _read(path))
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE):
        plain = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
        slug = "".join(
            ch for ch in plain if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N")
        )
        anchors.add(slug.replace(" ", "-"))
    return anchors


def _links(path: Path) -> list[str]:
    text = FENCE.sub("", _read(path))
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return LINK.findall(text) + REFERENCE_LINK.findall(text) + AUTOLINK.findall(text)


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda path: path.name)
def test_links_stay_inside_the_repository(path: Path) -> None:
    problems = []
    for target in _links(path):
        if not target or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//", target):
            problems.append(f"{target!r} leaves the repository")
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{target!r} points outside the repository")
        elif not resolved.exists():
            problems.append(f"{target!r} points to a missing file")
        elif anchor and resolved.suffix == ".md" and anchor not in _heading_anchors(resolved):
            problems.append(f"{target!r}: no heading #{anchor} in {resolved.name}")
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


SHARED_SPEC = re.compile(r"shared/docs|(?<![\w/.-])(?:MATH|API|DESIGN|STYLE)\.md")
"""The project's spec files outside the repository; a clone has docs/*.md instead."""


def test_nothing_points_at_the_shared_folder() -> None:
    paths = [*MARKDOWN_FILES]
    for directory in (*SOURCE_DIRS, "benchmarks", "experiments"):
        paths += [p for p in (ROOT / directory).rglob("*") if p.suffix in (".py", ".md")]
    offenders = sorted(
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in paths
        for match in SHARED_SPEC.finditer(_read(path))
    )
    assert not offenders, (
        "references to spec files a clone does not have (point at docs/math.md, docs/api.md, "
        f"docs/methods.md or docs/operations.md instead): {offenders}"
    )


def _blocks(path: Path, languages: tuple[str, ...]) -> list[str]:
    return [body for language, body in FENCE.findall(_read(path)) if language in languages]


def test_readme_python_examples_compile() -> None:
    blocks = _blocks(README, ("python", "py"))
    assert blocks, "README.md has no python example"
    for number, block in enumerate(blocks, 1):
        compile(block, f"README.md python block {number}", "exec")


def test_readme_keeps_make_test() -> None:
    assert "make test" in _read(README)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _rps_commands() -> set[str]:
    return set(_subcommands(build_parser()))


def test_every_rps_command_is_documented() -> None:
    """Each ``rps`` command, and each of its own subcommands (``keys create``), is named in
    docs/ as ``rps <command>``."""
    docs = _docs_text()
    missing = []
    for name, parser in _subcommands(build_parser()).items():
        for full in [name] + [f"{name} {sub}" for sub in _subcommands(parser)]:
            if not re.search(rf"\brps {re.escape(full)}(?![\w-])", docs):
                missing.append(f"rps {full}")
    assert not missing, f"rps commands not documented in docs/: {missing}"


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda path: path.name)
def test_shell_examples_use_existing_rps_commands(path: Path) -> None:
    commands = _rps_commands()
    assert {"serve", "register", "explain"} <= commands  # the enumeration works
    unknown = set()
    for block in _blocks(path, ("bash", "sh", "shell", "console")):
        for line in block.splitlines():
            match = re.match(r"^\s*(?:\$\s*)?(?:\S*/)?rps\s+([a-z][a-z-]*)", line)
            if match and match.group(1) not in commands:
                unknown.add(match.group(1))
    assert not unknown, f"{path.name} shows rps commands that do not exist: {sorted(unknown)}"
